"""Issue 4's figure: nfcapd -> flow_table for one hour, next to nfdump's own export rate.

The hour's nfcapd files are made once per size by nfdump's own `nfpcapd` from a pcap written with
the project's test helper (bench/methods/make_pcap.py: N single-packet TCP/UDP flows, distinct
5-tuples, spread over the hour) and cached in bench/work/nfcapd/flows-N/. Then, in the same
invocation: `nfdump -R DIR -o json` and `-o csv` to /dev/null (nfdump's export rate), each way
of reading the files into rows alone (bench/methods/nfcapd_readers.py: issue 22's options), and the
pipeline's `dagster asset materialize --select raw_flows,flow_table` with FLOWS_SOURCE=nfcapd
(raw_flows reads the files natively), its step times taken from the run's event log.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq

from benchlib import methods as m
from benchlib.dagster_events import step_timings
from benchlib.runner import Command, Measurement, run_measured
from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.resources import FlowStorage

PARTITION = "2021-10-28-05:00"
HOUR_ISO = "2021-10-28T05:00"
UTC_ENV = {"TZ": "UTC"}


def _measured(bench, name: str, command: Command) -> Measurement:
    log_path = bench.settings.work / "logs" / f"nfcapd-{name}.log"
    project, interval = bench.settings.project, bench.args.sample_interval_s
    return run_measured(command, bench.node, bench.guard, log_path, project, interval)


def make_files(bench, flows: int) -> tuple[Path, dict]:
    """The hour's nfcapd files (cached): pcap by make_pcap.py, then nfpcapd."""
    base = bench.settings.work / "nfcapd" / f"flows-{flows}"
    files, made = base / "files", base / "made.json"
    if made.exists() and files.is_dir():
        return files, json.loads(made.read_text()) | {"cached": True}
    shutil.rmtree(base, ignore_errors=True)
    pcap = base / "hour.pcap"
    timeout = 600 + flows / 1_000
    write = _measured(
        bench,
        f"make_pcap-{flows}",
        Command(
            [bench.settings.python, bench.settings.script("make_pcap.py"), "--flows", str(flows),
             "--hour", HOUR_ISO, "--out", str(pcap)],
            timeout_s=timeout,
        ),
    )  # fmt: skip
    if write.error:
        raise RuntimeError(f"make_pcap.py failed: {write.error}")
    files.mkdir(parents=True)
    nfpcapd = Command(
        ["nfpcapd", "-r", str(pcap), "-w", str(files), "-S", "1", "-t", "300", "-e", "60,30"],
        UTC_ENV,
        timeout_s=timeout,
    )
    conv = _measured(bench, f"nfpcapd-{flows}", nfpcapd)
    if conv.error:
        raise RuntimeError(f"nfpcapd failed: {conv.error}")
    info = {
        "pcap_bytes": pcap.stat().st_size,
        "pcap_write_s": round(write.wall_s, 2),
        "nfpcapd_s": round(conv.wall_s, 2),
        "make_pcap_command": write_command(bench, flows, pcap),
        "nfpcapd_command": nfpcapd.shell_form(),
        "files": sorted(str(p.relative_to(files)) for p in files.rglob("nfcapd.*")),
        "files_bytes": sum(p.stat().st_size for p in files.rglob("nfcapd.*")),
    }
    made.write_text(json.dumps(info, indent=1) + "\n")
    pcap.unlink()  # the nfcapd files are the cache; the pcap is ~100 bytes a flow
    return files, info | {"cached": False}


def write_command(bench, flows: int, pcap: Path) -> str:
    return shlex.join(
        [bench.settings.python, bench.settings.script("make_pcap.py"), "--flows", str(flows), "--hour", HOUR_ISO,
         "--out", str(pcap)]
    )  # fmt: skip


def nfdump_flows(files: Path) -> int:
    """The flows nfdump itself counts in the files (`nfdump -I`, the summary's `Flows:` line)."""
    done = subprocess.run(
        ["nfdump", "-R", str(files), "-I"], env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    match = re.search(r"^Flows:\s*(\d+)", done.stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no Flows: line in nfdump -I output: {done.stdout[-500:]}")
    return int(match.group(1))


EXPORT_ROUNDS = 3  # nfdump's export takes seconds: the best of a few rounds, all of them kept


def export_rate(bench, files: Path, fmt: str, flows: int) -> dict:
    """`TZ=UTC nfdump -R DIR -o FMT > /dev/null`, timed as a measured process tree (best of rounds)."""
    shell = f"nfdump -R {shlex.quote(str(files))} -o {fmt} > /dev/null"
    command = Command(["bash", "-c", shell], UTC_ENV, timeout_s=600 + flows / 1_000)
    rounds = [_measured(bench, f"nfdump-{fmt}-{flows}", command) for _ in range(EXPORT_ROUNDS)]
    measured = min(rounds, key=lambda r: (r.error is not None, r.wall_s))
    return {
        "format": fmt,
        "command": f"TZ=UTC {shell}",
        "rounds_wall_s": [round(r.wall_s, 3) for r in rounds],
        "wall_s": round(measured.wall_s, 3),
        "records_per_s": round(flows / measured.wall_s) if not measured.error else None,
        "cpu_s": measured.cpu.as_dict()["tree_s"],
        "other_cpu_share": measured.cpu.as_dict()["other_share"],
        "peak_tree_rss_mb": round(measured.memory.peak_rss_mb, 1),
        "error": measured.error,
    }


def pipeline_rate(bench, files: Path, flows: int, run_id: str) -> dict:
    """raw_flows (reading through nfdump) and flow_table, from the run's event log."""
    root = bench.settings.work / "data" / f"nfcapd-{flows}"
    shutil.rmtree(root, ignore_errors=True)
    home = m._new_dagster_home(bench.settings, f"nfcapd-{run_id}")
    env = {
        "DAGSTER_HOME": str(home),
        "FLOWS_SOURCE": "nfcapd",
        "FLOWS_SOURCE_ROOT": str(files),
        "FLOWS_STORAGE_ROOT": str(root),
        "TZ": "UTC",
    }
    argv = [
        bench.settings.dagster_cli(bench.settings.python), "asset", "materialize", "-m", "flows_pipeline.definitions",
        "--select", "raw_flows,flow_table", "--partition", PARTITION,
    ]  # fmt: skip
    command = Command(argv, env, timeout_s=600 + flows / 1_000)
    measured = _measured(bench, f"pipeline-{flows}", command)
    steps = {s.step_key: s for s in step_timings(home)}
    storage, hour = FlowStorage(root=str(root)), hour_of(PARTITION)
    counts = {}
    for table in ("raw_flows", "flow_table"):
        path = storage.table_path(table, hour)
        counts[table] = pq.ParquetFile(path).metadata.num_rows if path.exists() else None
    seconds = {
        key: (steps[key].finished - steps[key].started)
        if key in steps and steps[key].finished and steps[key].started
        else None
        for key in ("raw_flows", "flow_table")
    }
    raw_s, table_s = seconds["raw_flows"], seconds["flow_table"]
    both_s = raw_s + table_s if raw_s and table_s else None
    return {
        "command": command.shell_form(),
        "wall_s": round(measured.wall_s, 2),
        "error": measured.error,
        "raw_flows_rows": counts["raw_flows"],
        "flow_table_rows": counts["flow_table"],
        "raw_flows_s": _r(raw_s),
        "flow_table_s": _r(table_s),
        "raw_flows_records_per_s": round(flows / raw_s) if raw_s else None,
        "flow_table_records_per_s": round(flows / table_s) if table_s else None,
        "both_s": _r(both_s),
        "both_records_per_s": round(flows / both_s) if both_s else None,
        "startup_s": {key: _r(s.startup_s) for key, s in steps.items()},
        "peak_tree_pss_mb": round(measured.memory.peak_pss_mb, 1),
        "log": str(measured.log_path),
    }


def _r(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


READERS = ("native", "nfdump_json", "nfdump_json_2proc", "nfdump_csv_arrow")  # bench/methods/nfcapd_readers.py


def reader_rate(bench, files: Path, reader: str, flows: int) -> dict:
    """One way of reading the hour's files into rows, alone (issue 22's options), as a measured process tree."""
    script = bench.settings.script("nfcapd_readers.py")
    argv = [bench.settings.python, script, "--files", str(files), "--reader", reader]
    command = Command(argv, UTC_ENV, timeout_s=600 + flows / 1_000)
    measured = _measured(bench, f"reader-{reader}-{flows}", command)
    result = measured.result or {}
    read_s = result.get("read_s")
    return {
        "reader": reader,
        "command": command.shell_form(),
        "rows": result.get("rows"),
        "read_s": read_s,
        "records_per_s": round(flows / read_s) if read_s else None,
        "wall_s": round(measured.wall_s, 3),
        "cpu_s": measured.cpu.as_dict()["tree_s"],
        "peak_tree_pss_mb": round(measured.memory.peak_pss_mb, 1),
        "error": measured.error or (None if result.get("rows") == flows else f"read {result.get('rows')} rows"),
    }


def measure(bench, flows: int, run_id: str) -> dict:
    files, made = make_files(bench, flows)
    reported = nfdump_flows(files)
    result = {
        "flows_requested": flows,
        "nfdump_flows": reported,
        "partition": PARTITION,
        "files_dir": str(files),
        "made": made,
        "nfdump_export": [export_rate(bench, files, fmt, reported) for fmt in ("json", "csv")],
        "readers": [reader_rate(bench, files, reader, reported) for reader in READERS],
    }
    result["pipeline"] = pipeline_rate(bench, files, reported, run_id)
    got = result["pipeline"]["flow_table_rows"]
    result["rows_match"] = got == reported
    result["error"] = result["pipeline"]["error"] or (
        None if got == reported else f"flow_table has {got} rows, nfdump -I reports {reported} flows"
    )
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result
