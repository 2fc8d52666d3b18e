"""The methods compared, as commands the harness runs: which runs exist and how each is started.

Every method reads the same generated flow table (or, for the ceiling, the same documents
pre-encoded) and writes the same documents with the same ids into an index of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from benchlib.es_node import LOAD_SETTINGS, EsNode, index_mapping
from benchlib.runner import Command
from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.resources import FlowStorage

PIPELINE = "flows_pipeline"
PIPELINE_SPAWN = "flows_pipeline_spawn"
INCIDENT = "incident"
PARALLEL_BULK = "parallel_bulk"
STREAMING_BULK = "streaming_bulk"
DAGSTER_ES = "dagster_elasticsearch"
CEILING = "ceiling"
CEILING_WITHOUT_IDS = "ceiling_without_ids"  # the same bodies, the node generating ids (issue 23, "Peers")
ESPIPE = "espipe"  # a peer, built by bench/peers.sh (issue 23)
METHODS = (
    PIPELINE, PIPELINE_SPAWN, INCIDENT, PARALLEL_BULK, STREAMING_BULK, DAGSTER_ES, CEILING, CEILING_WITHOUT_IDS, ESPIPE,
)  # fmt: skip
DEFAULT_METHODS = tuple(m for m in METHODS if m != CEILING_WITHOUT_IDS)  # asked for by name only
DAGSTER_METHODS = frozenset({PIPELINE, PIPELINE_SPAWN, DAGSTER_ES})

# Which processes of a tree are the "workers" whose peak and growth are reported.
WORKERS_DAGSTER_STEPS = "dagster_steps"  # step processes, by the pids of the run's STEP_START events
WORKERS_POOL_CHILDREN = "pool_children"  # the root's forked pool processes
WORKERS_ROOT = "root"  # single-process methods (threads only)


@dataclass(frozen=True)
class Dataset:
    rows: int
    storage_root: Path
    table_path: Path
    bodies_dir: Path

    @property
    def bodies_without_ids_dir(self) -> Path:
        """The same bodies with no `_id` in their action lines (strip_ids)."""
        return self.bodies_dir.with_name(self.bodies_dir.name + "-without-ids")


@dataclass(frozen=True)
class Settings:
    project: Path
    work: Path
    partition: str
    node: EsNode
    client_chunk_size: int
    pipeline_env: dict[str, str]  # extra FLOWS_* knobs for the pipeline's runs
    address_space_limit_bytes: int
    timeout_s: float | None
    dagster_es_python: Path

    @property
    def python(self) -> str:
        return sys.executable

    def dagster_cli(self, python: Path | str) -> str:
        return str(Path(python).parent / "dagster")

    def script(self, name: str) -> str:
        return str(self.project / "bench" / "methods" / name)


@dataclass(frozen=True)
class RunSpec:
    method: str
    rows: int
    max_concurrent: int
    run_id: str
    command: Command
    count_target: str  # index or alias whose _count must equal the rows
    delete_pattern: str  # every index (and template) the run made
    create_index: str | None = None  # made by the harness before the run (non-Dagster methods)
    dagster_home: Path | None = None
    workers: str = WORKERS_ROOT
    notes: str = ""


@dataclass(frozen=True)
class GeneratedTables:
    table_path: Path
    raw_rows: int
    table_rows: int
    row_groups: int
    table_bytes: int


def generation_spec(settings: Settings, root: Path, rows: int, run_id: str) -> RunSpec:
    """The project's own raw_flows and flow_table assets, for the synthetic hour at `rows`."""
    home = _new_dagster_home(settings, run_id)
    env = {
        "DAGSTER_HOME": str(home),
        "FLOWS_STORAGE_ROOT": str(root),
        "FLOWS_SOURCE": "synthetic",
        "FLOWS_SYNTHETIC_ROWS": str(rows),
    }
    argv = [
        settings.dagster_cli(settings.python), "asset", "materialize", "-m", "flows_pipeline.definitions",
        "--select", "raw_flows,flow_table", "--partition", settings.partition,
    ]  # fmt: skip
    command = Command(argv, env, timeout_s=timeout_for(settings, rows))
    return RunSpec("generate", rows, 1, run_id, command, "", "", dagster_home=home)


def generated_tables(settings: Settings, root: Path) -> GeneratedTables:
    """What the generation wrote, from the Parquet footers of the pipeline's table layout."""
    storage = FlowStorage(root=str(root))
    hour = hour_of(settings.partition)
    table = storage.table_path("flow_table", hour)
    meta = pq.ParquetFile(table).metadata
    raw_rows = pq.ParquetFile(storage.table_path("raw_flows", hour)).metadata.num_rows
    return GeneratedTables(table, raw_rows, meta.num_rows, meta.num_row_groups, table.stat().st_size)


@dataclass(frozen=True)
class PlannedRun:
    method: str
    max_concurrent: int


def planned_runs(methods: list[str], concurrencies: list[int], rows: int, smallest: int) -> list[PlannedRun]:
    """The runs of one size, in a fixed order (the ceiling first: it also shows the node is warm)."""
    order = [
        CEILING, PIPELINE, ESPIPE, CEILING_WITHOUT_IDS,
        PARALLEL_BULK, STREAMING_BULK, DAGSTER_ES, INCIDENT, PIPELINE_SPAWN,
    ]  # fmt: skip
    runs: list[PlannedRun] = []
    for method in order:
        if method not in methods:
            continue
        if method in (CEILING, PIPELINE, ESPIPE, CEILING_WITHOUT_IDS, PARALLEL_BULK):
            runs += [PlannedRun(method, n) for n in concurrencies]
        elif method == INCIDENT:
            runs.append(PlannedRun(method, os.cpu_count() or 1))  # its default max_workers
        elif method == PIPELINE_SPAWN:
            if rows == smallest:  # start-up cost is measured at the quick size only
                runs.append(PlannedRun(method, min(concurrencies)))
        else:
            runs.append(PlannedRun(method, 1))
    return runs


ID_IN_ACTION = re.compile(rb'^\{"index":\{"_id":"[^"]+"\}\}$', re.MULTILINE)  # the pipeline's action lines


def without_ids(bodies: Path, out: Path) -> None:
    """Copies into `out` of the bodies (and manifest) in `bodies`, every action line `{"index":{}}`: the
    node then generates the ids and indexes append-only, with no id look-up per document (what a loader
    that sends no ids, espipe, gets; what no loader whose re-sent request must overwrite rather than
    duplicate can get). Raises RuntimeError unless each body had one action line with an id a document."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((bodies / "manifest.json").read_text())
    for entry in manifest:
        stripped, replaced = ID_IN_ACTION.subn(b'{"index":{}}', (bodies / entry["file"]).read_bytes())
        if replaced != entry["docs"]:
            raise RuntimeError(f"{entry['file']}: {replaced} action lines with an id, expected {entry['docs']}")
        (out / entry["file"]).write_bytes(stripped)
    (out / "manifest.json").write_text(json.dumps(manifest))


def strip_ids(data: Dataset) -> None:
    """The ceiling_without_ids method's input, made outside any timed run (without_ids)."""
    shutil.rmtree(data.bodies_without_ids_dir, ignore_errors=True)
    without_ids(data.bodies_dir, data.bodies_without_ids_dir)


def timeout_for(settings: Settings, rows: int) -> float:
    """Generous but bounded: slower than 2,000 documents/s counts as a failure of the method."""
    return settings.timeout_s or 300.0 + rows / 2_000


def build_spec(planned: PlannedRun, data: Dataset, settings: Settings, run_id: str) -> RunSpec:
    builders = {
        PIPELINE: _pipeline,
        PIPELINE_SPAWN: _pipeline,
        INCIDENT: _incident,
        PARALLEL_BULK: _client_helper,
        STREAMING_BULK: _client_helper,
        DAGSTER_ES: _dagster_es,
        CEILING: _ceiling,
        CEILING_WITHOUT_IDS: _ceiling,
        ESPIPE: _espipe,
    }
    return builders[planned.method](planned, data, settings, run_id)


def _index_name(planned: PlannedRun, data: Dataset, run_id: str) -> str:
    return f"bench-{planned.method.replace('_', '-')}-{data.rows}-c{planned.max_concurrent}-{run_id}"


def _new_dagster_home(settings: Settings, run_id: str, pool_limit: int | None = None) -> Path:
    """A fresh instance per run (its event log then holds exactly this run), configured as the
    project's dagster_home/dagster.yaml, except that the pools' limit is raised to `pool_limit`:
    the project's cross-run limit on index_chunk steps (2) would otherwise cap es_bulk_steps=4."""
    home = settings.work / "dagster_homes" / run_id
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((settings.project / "dagster_home" / "dagster.yaml").read_text()) or {}
    if pool_limit is not None:
        pools = config.setdefault("concurrency", {}).setdefault("pools", {})
        pools["default_limit"] = max(pool_limit, pools.get("default_limit", 0))
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def _pipeline(planned: PlannedRun, data: Dataset, settings: Settings, run_id: str) -> RunSpec:
    prefix = _index_name(planned, data, run_id)
    home = _new_dagster_home(settings, run_id, pool_limit=planned.max_concurrent)
    executor: dict = {"max_concurrent": planned.max_concurrent, "es_bulk_steps": planned.max_concurrent}
    if planned.method == PIPELINE_SPAWN:
        executor["start_method"] = "spawn"
    env = {
        "DAGSTER_HOME": str(home),
        "ES_PORT": str(settings.node.port),
        "FLOWS_STORAGE_ROOT": str(data.storage_root),
        "FLOWS_INDEX_PREFIX": prefix,
        # N steps with one request each: N in flight, as every other method at concurrency N (with
        # the default 2 a step, twice the ceiling's; request_concurrency.py, RESULTS.md session 5)
        "FLOWS_BULK_IN_FLIGHT": "1",
    }
    env |= settings.pipeline_env  # e.g. FLOWS_MAX_ROW_GROUPS_PER_CHUNK, FLOWS_BULK_MAX_BYTES (resources.py)
    argv = [
        settings.dagster_cli(settings.python),
        "asset",
        "materialize",
        "-m",
        "flows_pipeline.definitions",
        "--select",
        "flow_index",
        "--partition",
        settings.partition,
        "--config-json",
        json.dumps({"execution": {"config": executor}}, separators=(",", ":")),
    ]
    return RunSpec(
        method=planned.method,
        rows=data.rows,
        max_concurrent=planned.max_concurrent,
        run_id=run_id,
        command=Command(argv, env, timeout_s=timeout_for(settings, data.rows)),
        count_target=f"{prefix}-{hour_of(settings.partition).label}",  # the hour alias publish_flow_index set
        delete_pattern=f"{prefix}-*",
        dagster_home=home,
        workers=WORKERS_DAGSTER_STEPS,
        notes=f"start_method {executor.get('start_method', 'forkserver')}, flows_es_bulk pool limit "
        f"{planned.max_concurrent}, FLOWS_BULK_IN_FLIGHT {env['FLOWS_BULK_IN_FLIGHT']}, "
        f"env {settings.pipeline_env or 'defaults'}",
    )


def _incident(planned: PlannedRun, data: Dataset, settings: Settings, run_id: str) -> RunSpec:
    index = _index_name(planned, data, run_id)
    argv = [
        settings.python,
        settings.script("incident.py"),
        "--url",
        settings.node.url,
        "--index",
        index,
        "--table",
        str(data.table_path),
    ]
    command = Command(
        argv, timeout_s=timeout_for(settings, data.rows), address_space_limit_bytes=settings.address_space_limit_bytes
    )
    return _into_harness_index(
        planned, data, run_id, command, index,
        notes="ProcessPoolExecutor() default max_workers = os.cpu_count(), fork, helpers.bulk per chunk",
        workers=WORKERS_POOL_CHILDREN,
    )  # fmt: skip


def _into_harness_index(
    planned: PlannedRun,
    data: Dataset,
    run_id: str,
    command: Command,
    index: str,
    notes: str,
    workers: str = WORKERS_ROOT,
) -> RunSpec:
    """A method that loads one index the harness creates (same mapping and settings for all), and counts."""
    return RunSpec(
        planned.method, data.rows, planned.max_concurrent, run_id, command, index, index,
        create_index=index, workers=workers, notes=notes,
    )  # fmt: skip


def _client_helper(planned: PlannedRun, data: Dataset, settings: Settings, run_id: str) -> RunSpec:
    index = _index_name(planned, data, run_id)
    argv = [
        settings.python,
        settings.script("client_helpers.py"),
        "--helper",
        planned.method,
        "--threads",
        str(planned.max_concurrent),
        "--chunk-size",
        str(settings.client_chunk_size),
        "--url",
        settings.node.url,
        "--index",
        index,
        "--table",
        str(data.table_path),
    ]
    command = Command(argv, timeout_s=timeout_for(settings, data.rows))
    return _into_harness_index(planned, data, run_id, command, index, notes=f"chunk_size {settings.client_chunk_size}")


def _dagster_es(planned: PlannedRun, data: Dataset, settings: Settings, run_id: str) -> RunSpec:
    alias = _index_name(planned, data, run_id)
    home = _new_dagster_home(settings, run_id)
    env = {
        "DAGSTER_HOME": str(home),
        "BENCH_ES_URL": settings.node.url,
        "BENCH_ES_INDEX": alias,
        "BENCH_FLOW_TABLE": str(data.table_path),
        "BENCH_ES_MAPPING": json.dumps(index_mapping()),
        "BENCH_ES_SETTINGS": json.dumps(LOAD_SETTINGS),
    }
    argv = [
        settings.dagster_cli(settings.dagster_es_python),
        "asset",
        "materialize",
        "-f",
        settings.script("dagster_es_defs.py"),
        "--select",
        "flows_hour",
        "--partition",
        settings.partition,
    ]
    return RunSpec(
        planned.method,
        data.rows,
        planned.max_concurrent,
        run_id,
        Command(argv, env, timeout_s=timeout_for(settings, data.rows)),
        alias,
        f"{alias}*",
        dagster_home=home,
        workers=WORKERS_DAGSTER_STEPS,
        notes="ElasticsearchIOManager(use_alias=True, index_config=...), bulk_chunk_size 500 (default)",
    )


def _ceiling(planned: PlannedRun, data: Dataset, settings: Settings, run_id: str) -> RunSpec:
    index = _index_name(planned, data, run_id)
    argv = [
        settings.python,
        settings.script("ceiling.py"),
        "--url",
        settings.node.url,
        "--index",
        index,
        "--bodies",
        str(data.bodies_dir),
        "--concurrency",
        str(planned.max_concurrent),
    ]
    notes = "the pipeline's own bodies, from disk, N requests in flight"
    if planned.method == CEILING_WITHOUT_IDS:
        argv[argv.index("--bodies") + 1] = str(data.bodies_without_ids_dir)
        notes += ", without the action lines' _id (the node generates ids)"
    command = Command(argv, timeout_s=timeout_for(settings, data.rows))
    return _into_harness_index(planned, data, run_id, command, index, notes=notes)


def _espipe(planned: PlannedRun, data: Dataset, settings: Settings, run_id: str) -> RunSpec:
    index = _index_name(planned, data, run_id)
    espipe = settings.work / "peers" / "bin" / "espipe"
    if not espipe.exists():
        raise RuntimeError(f"{espipe} is missing: build it with bench/peers.sh (cargo, crates.io)")
    argv = [
        settings.python, settings.script("espipe_loader.py"), "--espipe", str(espipe),
        "--documents", str(data.bodies_dir / "documents.ndjson"), "--url", settings.node.url, "--index", index,
        "--concurrency", str(planned.max_concurrent), "--batch-size", "10000",
    ]  # fmt: skip
    command = Command(argv, timeout_s=timeout_for(settings, data.rows))
    return _into_harness_index(
        planned, data, run_id, command, index,
        notes="espipe 0.7.0: the same documents from finished NDJSON, 10,000 a request, N requests in flight",
    )  # fmt: skip
