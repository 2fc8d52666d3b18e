"""Elasticsearch nodes a test starts and stops itself, by PID, for what the local node cannot show:
another major version, several data nodes, a node that dies.

Each node is the Maven integ-test-zip distribution already in ~/.m2 (scripts/es.sh fetches the
9.x one), unpacked once per version under `.es/test-dist/`, run with security off, a 512 MB heap
and one processor (2 cores are shared by everything on this machine), its data under the test's
own folder under `.es/test-nodes/` (readable by the node's user; pytest's tmp_path is private to root),
removed when the nodes stop. As root, it runs as the system user `flowsearch` (Elasticsearch refuses
root), as scripts/es.sh does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from flows_pipeline_tests.support import PROJECT

M2_ZIP = "~/.m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch/{v}/elasticsearch-{v}.zip"
JAVA = {"8": "/usr/lib/jvm/java-17-openjdk-amd64", "9": "/usr/lib/jvm/temurin-25-jdk-amd64"}
RUN_USER = "flowsearch"


@dataclass(frozen=True)
class StartedNode:
    name: str
    http_port: int
    pid: int
    folder: Path  # config, data and logs

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def distribution(version: str) -> Path | None:
    """The unpacked distribution of `version`, or None when ~/.m2 does not hold it."""
    home = PROJECT / ".es" / "test-dist" / f"elasticsearch-{version}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    archive = Path(os.path.expanduser(M2_ZIP.format(v=version)))
    if not archive.exists():
        return None
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(home.parent)
    for tool in (home / "bin").iterdir():
        tool.chmod(0o755)
    return home


def start_nodes(version: str, http_ports: list[int], **settings: str) -> list[StartedNode]:
    """Start one node per port as one cluster (one node: single-node discovery); wait until all joined."""
    home = distribution(version)
    assert home is not None, f"no Elasticsearch {version} in ~/.m2"
    (PROJECT / ".es" / "test-nodes").mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"{http_ports[0]}-", dir=PROJECT / ".es" / "test-nodes"))
    root.chmod(0o755)
    names = [f"n{i + 1}" for i in range(len(http_ports))]
    seeds = ",".join(f"127.0.0.1:{port + 100}" for port in http_ports)
    shared = {"cluster.name": f"flows-test-{http_ports[0]}"} | (
        {"discovery.type": "single-node"}
        if len(http_ports) == 1
        else {"discovery.seed_hosts": seeds, "cluster.initial_master_nodes": ",".join(names)}
    )
    # launched at once: each launcher waits for its node, and the nodes wait for each other to form the cluster
    with ThreadPoolExecutor(len(http_ports)) as pool:
        started = [
            pool.submit(_launch, home, version, root / name, name, port, shared | settings)
            for name, port in zip(names, http_ports, strict=True)
        ]
        nodes = [future.result() for future in started]
    wait_for_nodes(nodes[0].url, len(nodes))
    return nodes


def _launch(home: Path, version: str, folder: Path, name: str, port: int, settings: dict[str, str]) -> StartedNode:
    config = folder / "config"
    shutil.copytree(home / "config", config, dirs_exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    options = {
        "node.name": name,
        "network.host": "127.0.0.1",
        "http.port": str(port),
        "transport.port": str(port + 100),
        "path.data": str(folder / "data"),
        "path.logs": str(folder / "logs"),
        "node.processors": "1",
        "xpack.security.enabled": "false",
        "xpack.ml.enabled": "false",
        "action.destructive_requires_name": "false",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        **settings,
    }
    command = [str(home / "bin" / "elasticsearch"), "-d", "-p", str(folder / "es.pid")]
    command += [f"-E{key}={value}" for key, value in options.items()]
    if os.geteuid() == 0:
        _ensure_run_user()
        user = pwd.getpwnam(RUN_USER)
        for path in (folder, home):
            subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(path)], check=True)
        command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", *command]
    env = {**os.environ, "ES_PATH_CONF": str(config), "ES_JAVA_HOME": JAVA[version.split(".")[0]]}
    env["ES_JAVA_OPTS"] = "-Xms512m -Xmx512m"
    with open(folder / "logs" / "startup.out", "w") as out:
        subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=180)
    return StartedNode(name=name, http_port=port, pid=int((folder / "es.pid").read_text()), folder=folder)


def _ensure_run_user() -> None:
    try:
        pwd.getpwnam(RUN_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_USER], check=True
        )


def wait_for_nodes(url: str, count: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    target = f"{url}/_cluster/health?wait_for_nodes={count}&wait_for_status=yellow&timeout=2s"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(target, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{count} nodes never joined at {url}")


def kill_node(node: StartedNode) -> None:
    """SIGKILL: the node dies as a crashed machine would, without leaving the cluster."""
    os.kill(node.pid, signal.SIGKILL)
    _wait_gone(node.pid, 30)


def stop_nodes(nodes: list[StartedNode]) -> None:
    """Stop each node by its PID, then remove their folder."""
    for node in nodes:
        try:
            os.kill(node.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for node in nodes:
        if not _wait_gone(node.pid, 60):
            os.kill(node.pid, signal.SIGKILL)
            _wait_gone(node.pid, 10)
    shutil.rmtree(nodes[0].folder.parent, ignore_errors=True)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False
