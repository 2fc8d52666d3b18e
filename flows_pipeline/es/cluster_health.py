"""The cluster's state, read before anything is created or loaded, and when a load meets a refusal.

Some states make every later request fail the same way, however often it is resent: replicas
that no node can hold, data nodes past the disk watermarks, write blocks, no room for more shards,
an index whose primary is gone with its node. Each is named here with the cluster's own facts
(nodes, disk, settings, the allocation deciders' explanations) and what to change, as a
`ClusterRefusedError` (terminal: no retry spends time on it). These are plain functions: index
creation calls `check_can_create` before creating and `check_created` after; loading calls
`check_index_health` and `explain_block` when a bulk answer says a shard is missing or blocked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from elasticsearch import Elasticsearch

from flows_pipeline.es.cluster_errors import RED_INDEX_ADVICE, ClusterRefusedError

DISK = "cluster.routing.allocation.disk"
_BYTE_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "pb": 1 << 50}


@dataclass(frozen=True)
class DataNode:
    """One data node's disk, as the allocation deciders see it."""

    node_id: str
    name: str
    total_bytes: int
    free_bytes: int

    @property
    def disk(self) -> str:
        used = 100 * (1 - self.free_bytes / self.total_bytes) if self.total_bytes else 0.0
        return f"{_size(self.free_bytes)} free of {_size(self.total_bytes)} ({used:.0f}% used)"


def check_can_create(client: Elasticsearch, url: str, *, index: str, shards: int, replicas: int) -> None:
    """Raise ClusterRefusedError when `index` (`shards` primaries, `replicas` replicas each) cannot be
    created and kept green: fewer data nodes than copies, nodes past the high or flood-stage disk
    watermark, a cluster-wide write block, or too few shards left under cluster.max_shards_per_node.
    Creates nothing; call it before the index (and before its template matters)."""
    settings = _cluster_settings(client)
    nodes = data_nodes(client)
    what = f"creating index {index}: Elasticsearch at {url}"
    if blocks := _global_write_blocks(client):
        raise ClusterRefusedError(
            f"{what} has a cluster-wide write block ({'; '.join(blocks)}); an operator must lift it "
            "(PUT _cluster/settings, cluster.blocks.*), then re-materialize the hour"
        )
    copies = replicas + 1
    if copies > len(nodes):
        raise ClusterRefusedError(
            f"{what} has {len(nodes)} data node(s) ({', '.join(n.name for n in nodes)}), but FLOWS_INDEX_REPLICAS="
            f"{replicas} needs {copies}: each copy of a shard must be on its own node, so the replicas cannot be "
            f"assigned and the cluster would stay yellow. Lower FLOWS_INDEX_REPLICAS to {max(len(nodes) - 1, 0)} "
            "or add data nodes; nothing was created"
        )
    if _effective(settings, f"{DISK}.threshold_enabled", "true") == "true":
        full = [(node, level) for node in nodes if (level := _past_watermark(node, settings))]
        if len(nodes) - len(full) < copies:
            described = "; ".join(f"{node.name} is past the {level} ({node.disk})" for node, level in full)
            raise ClusterRefusedError(
                f"{what} cannot place {copies} cop{'y' if copies == 1 else 'ies'} of a new shard: {described}. "
                "Elasticsearch puts no new shard on a node past its high disk watermark, and blocks writes to "
                "indices on a node past the flood stage (read_only_allow_delete). Free disk space on "
                f"{', '.join(node.name for node, _ in full)} (delete old indices) or add disk, or raise "
                f"{DISK}.watermark.high / .flood_stage; nothing was created"
            )
    per_node = int(_effective(settings, "cluster.max_shards_per_node", "1000"))
    health = client.cluster.health()
    open_shards = health["active_shards"] + health["initializing_shards"] + health["unassigned_shards"]
    limit = per_node * len(nodes)
    needed = shards * copies
    if open_shards + needed > limit:
        raise ClusterRefusedError(
            f"{what} has {open_shards} shards open of its limit {limit} (cluster.max_shards_per_node={per_node} "
            f"x {len(nodes)} data nodes); this index needs {needed} more ({shards} primaries x {copies} copies). "
            "Delete old hours (FLOWS_RETENTION_DAYS and flows_retention_job), use week buckets "
            "(FLOWS_INDEX_BUCKET=week), or raise cluster.max_shards_per_node; nothing was created"
        )


def check_created(response: Mapping, client: Elasticsearch, url: str, index: str) -> None:
    """Raise ClusterRefusedError when indices.create answered `shards_acknowledged: false`: the index
    exists but its primaries did not start within the wait, and every bulk request would wait for
    them in turn. The message says why (the allocation deciders); the caller deletes the index."""
    if response.get("shards_acknowledged", True):
        return
    raise ClusterRefusedError(
        f"creating index {index}: Elasticsearch at {url} created it but could not start its shards: "
        f"{explain_unassigned(client, index)}. Fix that, then re-materialize the hour"
    )


def check_index_health(
    client: Elasticsearch, url: str, index: str, what: str, known_nodes: Mapping[str, str] | None = None
) -> None:
    """Raise ClusterRefusedError when `index` is red: a primary shard has no live copy, and no resend
    can write to it until its node returns. `known_nodes` (node id -> name, from `index_nodes` taken
    while the index was healthy) lets the message name the node that left."""
    if why := red_index_explanation(client, index, known_nodes):
        raise ClusterRefusedError(f"{what}: index {index} at {url} is red: {why}. {RED_INDEX_ADVICE}")


def red_index_explanation(
    client: Elasticsearch, index: str, known_nodes: Mapping[str, str] | None = None
) -> str | None:
    """Why `index` is red (explain_unassigned), or None when it is not."""
    if client.cluster.health(index=index, filter_path="status").get("status") != "red":
        return None
    return explain_unassigned(client, index, known_nodes)


def index_nodes(client: Elasticsearch, index: str) -> dict[str, str]:
    """Node id -> name of the nodes holding `index`'s shards now: a node that leaves later is known by id only."""
    found = client.search_shards(index=index, expand_wildcards="all")
    return {node_id: node["name"] for node_id, node in found["nodes"].items()}


def explain_unassigned(client: Elasticsearch, index: str, known_nodes: Mapping[str, str] | None = None) -> str:
    """Why `index`'s first unassigned shard (a primary before a replica) is unassigned, in the
    cluster's words: _cluster/allocation/explain, with each node's refusing deciders."""
    # `index` may be an alias (an attempt's): the explain API takes the concrete index cat names
    shards = client.cat.shards(index=index, format="json", h="index,shard,prirep,state")
    unassigned = sorted((s["prirep"] != "p", int(s["shard"]), s["index"]) for s in shards if s["state"] == "UNASSIGNED")
    if not unassigned:
        return f"every shard of {index} is assigned now"
    replica, shard, concrete = unassigned[0]
    explained = client.cluster.allocation_explain(index=concrete, shard=shard, primary=not replica)
    info = explained.get("unassigned_info", {})
    cause = info.get("reason", "")
    if details := info.get("details", ""):
        left = re.fullmatch(r"node_left \[(.+)\]", details)
        name = (known_nodes or {}).get(left.group(1)) if left else None
        cause += f": the node {name} ({left.group(1)}) left the cluster" if name else f": {details}"
    refusals = sorted(
        {
            f"{node['node_name']}: {decider['explanation']}"
            for node in explained.get("node_allocation_decisions", [])
            for decider in node.get("deciders", [])
            if decider.get("decision") == "NO"
        }
    )
    text = f"{'replica' if replica else 'primary'} shard {shard} of {index} is unassigned ({cause}); "
    text += explained.get("allocate_explanation", "")
    return text + (f" Nodes: {'; '.join(refusals)}" if refusals else "")


def explain_block(client: Elasticsearch, index: str) -> str:
    """The write blocks on `index` and, for the flood-stage one, the disk of the nodes holding it."""
    settings = client.indices.get_settings(index=index, name="index.blocks.*", flat_settings=True)
    blocks = sorted(
        key for key, value in next(iter(settings.values()), {}).get("settings", {}).items() if value == "true"
    )
    if "index.blocks.read_only_allow_delete" not in blocks:
        return f"index {index} has the blocks {blocks or 'none now'}; an operator must remove them"
    holders = {s["node"] for s in client.cat.shards(index=index, format="json", h="node") if s.get("node")}
    cluster = _cluster_settings(client)
    flood = _effective(cluster, f"{DISK}.watermark.flood_stage", "95%")
    disks = []
    for node in data_nodes(client):
        if node.name in holders:
            past = _past_watermark(node, cluster)
            state = f"past the {past}" if past else "now below the high watermark"
            disks.append(f"{node.name} has {node.disk}, {state}")
    return (
        f"index {index} has index.blocks.read_only_allow_delete, which Elasticsearch sets when a node holding it "
        f"passes the flood-stage disk watermark ({DISK}.watermark.flood_stage={flood}): {'; '.join(disks)}. "
        "Free disk space on that node (delete old indices) or add disk, or raise the watermark; Elasticsearch "
        f"lifts the block once the node is below the high watermark (or: PUT {index}/_settings "
        '{"index.blocks.read_only_allow_delete": null} once there is room)'
    )


def data_nodes(client: Elasticsearch) -> list[DataNode]:
    stats = client.nodes.stats(metric="fs", filter_path="nodes.*.name,nodes.*.roles,nodes.*.fs.total")["nodes"]
    return sorted(
        (
            DataNode(
                node_id=node_id,
                name=node["name"],
                total_bytes=node.get("fs", {}).get("total", {}).get("total_in_bytes", 0),
                free_bytes=node.get("fs", {}).get("total", {}).get("available_in_bytes", 0),
            )
            for node_id, node in stats.items()
            if any(role.startswith("data") for role in node.get("roles", []))
        ),
        key=lambda node: node.name,
    )


def _past_watermark(node: DataNode, settings: dict[str, dict]) -> str:
    """ "flood-stage disk watermark ..." / "high disk watermark ..." the node is past, or ""."""
    for level in ("flood_stage", "high"):
        key = f"{DISK}.watermark.{level}"
        value = _effective(settings, key, {"flood_stage": "95%", "high": "90%"}[level])
        if node.free_bytes < _required_free(value, node.total_bytes, _headroom(settings, key)):
            return f"{level.replace('_', '-')} disk watermark ({key}={value})"
    return ""


def _required_free(watermark: str, total: int, headroom: int | None) -> float:
    """Free bytes a node must keep under a watermark: a percentage or ratio of used disk (capped by
    its max_headroom), or an absolute amount of free space."""
    text = watermark.strip().lower()
    if text.endswith("%") or re.fullmatch(r"[0-9.]+", text):
        used = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
        free = total * (1 - used)
        return min(free, headroom) if headroom is not None and headroom >= 0 else free
    return _bytes(text)


def _headroom(settings: dict[str, dict], key: str) -> int | None:
    """The watermark's max_headroom: Elasticsearch applies its default only when the watermark is a default too."""
    explicit = any(key in settings[scope] for scope in ("transient", "persistent"))
    headroom_set = any(f"{key}.max_headroom" in settings[scope] for scope in ("transient", "persistent"))
    if explicit and not headroom_set:
        return None
    value = _effective(settings, f"{key}.max_headroom", "-1")
    return None if value == "-1" else int(_bytes(value.lower()))


def _bytes(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)\s*([kmgtp]?b)", text)
    if not match:
        raise ValueError(f"not a byte size: {text}")
    return float(match.group(1)) * _BYTE_UNITS[match.group(2)]


def _size(n: float) -> str:
    for unit in ("b", "kb", "mb", "gb", "tb"):
        if n < 1024 or unit == "tb":
            return f"{n:.0f}{unit}" if unit == "b" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}pb"


def _cluster_settings(client: Elasticsearch) -> dict[str, dict]:
    found = client.cluster.get_settings(include_defaults=True, flat_settings=True)
    return {scope: found.get(scope, {}) for scope in ("transient", "persistent", "defaults")}


def _effective(settings: dict[str, dict], key: str, default: str) -> str:
    for scope in ("transient", "persistent", "defaults"):
        if key in settings[scope] and settings[scope][key] is not None:
            return str(settings[scope][key])
    return default


def _global_write_blocks(client: Elasticsearch) -> list[str]:
    blocks = client.cluster.state(metric="blocks", filter_path="blocks.global").get("blocks", {}).get("global", {})
    return [block["description"] for block in blocks.values() if "write" in block.get("levels", [])]
