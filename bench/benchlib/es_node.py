"""The benchmark's own Elasticsearch node, its JVM heap over time, and the indices of its runs.

One node, separate from the project's (own folder and port), started and stopped with the
project's scripts/es.sh, so every method writes to the same server with the same settings.
Every index a non-pipeline method writes is created here with the pipeline's mapping and
load settings, so all methods index the same documents into the same kind of index.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from elasticsearch import Elasticsearch

from flows_pipeline.es.flow_mapping import es_properties

MB = 2**20

_HEAP_FIELD = "nodes.*.jvm.mem.heap_used_in_bytes"
# What the pipeline's bucket index uses (index_lifecycle.bucket_settings, with the defaults): one
# shard, no replica, no refresh. Given to every method's index so only the client differs.
LOAD_SETTINGS = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"}


@dataclass(frozen=True)
class EsNode:
    project: Path  # /work/main: where scripts/es.sh lives
    es_dir: Path
    port: int
    heap: str
    cores: str | None = None  # `taskset -c` cores the node is started on (bench/run.py --pin); None: any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _script(self, action: str) -> str:
        env = os.environ | {"ES_DIR": str(self.es_dir), "ES_PORT": str(self.port), "ES_HEAP": self.heap}
        env.pop("ES_URL", None)  # es.sh starts nothing when ES_URL is set; this node is always local
        # a node started pinned sizes its thread pools for its cores (allocated_processors)
        pinned = ["taskset", "-c", self.cores] if self.cores is not None else []
        done = subprocess.run(
            [*pinned, str(self.project / "scripts" / "es.sh"), action],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode:
            raise RuntimeError(f"scripts/es.sh {action} failed: {done.stdout}{done.stderr}")
        return done.stdout.strip()

    def up(self) -> str:
        started = self._script("up")
        if self.cores is None:
            return started
        pid = self.pid()
        if pid is None:
            raise RuntimeError(f"--pin: no PID file in {self.es_dir}: cannot pin the node")
        processors = self.describe()["processors"]
        wanted = len(self.cores.split(","))
        if processors != wanted:
            raise RuntimeError(
                f"--pin: the node at {self.url} was started on {processors} processors, before pinning; stop it "
                f"(ES_DIR={self.es_dir} ES_PORT={self.port} scripts/es.sh stop) and run again"
            )
        return started

    def stop(self) -> str:
        return self._script("stop")

    def client(self) -> Elasticsearch:
        return Elasticsearch(self.url, request_timeout=300)

    def pid(self) -> int | None:
        try:
            return int((self.es_dir / "es.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def describe(self) -> dict:
        """Version, JVM and the settings that matter for a load benchmark, as the node reports them."""
        nodes = self.client().nodes.info(node_id="_local", metric="settings,jvm,os")["nodes"]
        node = next(iter(nodes.values()))
        settings = node["settings"]
        return {
            "version": node["version"],
            "url": self.url,
            "heap": self.heap,
            "heap_max_mb": round(node["jvm"]["mem"]["heap_max_in_bytes"] / MB),
            "jvm": f"{node['jvm']['vm_name']} {node['jvm']['version']}",
            "processors": node["os"].get("allocated_processors"),
            "node_settings": {
                "discovery.type": settings.get("discovery", {}).get("type"),
                "xpack.security.enabled": settings.get("xpack", {}).get("security", {}).get("enabled"),
                "xpack.ml.enabled": settings.get("xpack", {}).get("ml", {}).get("enabled"),
                "disk.threshold_enabled": settings.get("cluster", {})
                .get("routing", {})
                .get("allocation", {})
                .get("disk", {})
                .get("threshold_enabled"),
            },
            "index_settings_during_load": LOAD_SETTINGS,
            "started_with": (f"taskset -c {self.cores} " if self.cores is not None else "")
            + f"ES_DIR={self.es_dir} ES_PORT={self.port} ES_HEAP={self.heap} scripts/es.sh up",
            "cores": self.cores or "any",
        }


def index_mapping() -> dict:
    """The flow mapping of the pipeline's index template: explicit types, strict."""
    return {"dynamic": "strict", "properties": es_properties()}


def create_index(client: Elasticsearch, name: str) -> None:
    client.indices.delete(index=name, ignore_unavailable=True)
    client.indices.create(index=name, settings={"index": LOAD_SETTINGS}, mappings=index_mapping())


def count_documents(client: Elasticsearch, target: str) -> int | None:
    """Refresh, then `_count` (through an alias if `target` is one); None when nothing is there."""
    if not (client.indices.exists(index=target) or client.indices.exists_alias(name=target)):
        return None
    client.indices.refresh(index=target, expand_wildcards="all")
    return client.count(index=target)["count"]


def delete_indices(client: Elasticsearch, pattern: str) -> None:
    """The run's indices (hidden ones too) and any template it made: 7.85M docs are several GB."""
    client.indices.delete(index=pattern, expand_wildcards="all", ignore_unavailable=True, allow_no_indices=True)
    templates = client.options(ignore_status=404).indices.get_index_template(name=pattern)
    for template in templates.get("index_templates", []):
        client.indices.delete_index_template(name=template["name"])


class HeapSampler(threading.Thread):
    """The node's JVM heap used (from _nodes/stats) and its process RSS, every `interval_s`."""

    def __init__(self, node: EsNode, t0: float, interval_s: float = 0.5) -> None:
        super().__init__(name="es-heap-sampler", daemon=True)
        self._client = node.client().options(request_timeout=5)
        self._pid = node.pid()
        self._interval_s = interval_s
        self._stop_event = threading.Event()
        self._t0 = t0  # the run's start (time.monotonic), shared with the tree monitor for plots
        self.samples: list[tuple[float, float, float]] = []  # (t, heap used MB, process RSS MB)

    def stop(self) -> list[tuple[float, float, float]]:
        self._stop_event.set()
        self.join()
        return self.samples

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._sample_once()
            self._stop_event.wait(self._interval_s)

    def _sample_once(self) -> None:
        try:
            stats = self._client.nodes.stats(node_id="_local", metric="jvm", filter_path=_HEAP_FIELD)
            heap = next(iter(stats["nodes"].values()))["jvm"]["mem"]["heap_used_in_bytes"] / MB
            rss = psutil.Process(self._pid).memory_info().rss / MB if self._pid else 0.0
        except Exception:
            return
        self.samples.append((round(time.monotonic() - self._t0, 3), round(heap, 1), round(rss, 1)))

    @property
    def peak_heap_mb(self) -> float | None:
        return max((s[1] for s in self.samples), default=None)

    @property
    def peak_rss_mb(self) -> float | None:
        return max((s[2] for s in self.samples), default=None)
