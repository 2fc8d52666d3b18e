"""Can the cluster take a new index? Checked before anything is created, never after a load.

A node refuses shards beyond `cluster.max_shards_per_node` (default 1000) times the data nodes,
counting replicas even when they are unassigned; and a replica can never be placed on the node
that holds its primary, so `replicas` must be fewer than the data nodes or the index stays
yellow. Both are found out here in two cheap requests, with the numbers and the fix, instead of
as a refusal after the hour's table was built, or an index left yellow.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticsearch import Elasticsearch

from flows_pipeline.es.cluster_errors import ClusterRefusedError

DEFAULT_MAX_SHARDS_PER_NODE = 1000  # Elasticsearch's default for cluster.max_shards_per_node


@dataclass(frozen=True)
class ShardRoom:
    data_nodes: int
    max_per_node: int
    open_shards: int  # as the limit counts them: primaries and replicas of open indices, assigned or not

    @property
    def limit(self) -> int:
        return self.max_per_node * self.data_nodes

    @property
    def free(self) -> int:
        return self.limit - self.open_shards


def shard_room(client: Elasticsearch) -> ShardRoom:
    health = client.cluster.health()
    settings = client.cluster.get_settings(include_defaults=True, flat_settings=True)
    name = "cluster.max_shards_per_node"
    per_node = next(
        (settings[level][name] for level in ("transient", "persistent", "defaults") if name in settings[level]),
        DEFAULT_MAX_SHARDS_PER_NODE,
    )
    open_shards = health["active_shards"] + health["initializing_shards"] + health["unassigned_shards"]
    return ShardRoom(data_nodes=health["number_of_data_nodes"], max_per_node=int(per_node), open_shards=open_shards)


def check_room_for_index(client: Elasticsearch, url: str, index: str, shards: int, replicas: int) -> None:
    """Raise ClusterRefusedError (terminal) if `index` with these shards and replicas cannot be created
    and become green: too few free shard slots, or more replicas than other data nodes."""
    room = shard_room(client)
    if replicas > room.data_nodes - 1:
        raise ClusterRefusedError(
            f"creating {index} at {url}: {replicas} replica(s) of each shard cannot be assigned on "
            f"{room.data_nodes} data node(s) (a replica never shares a node with its primary), so the index "
            f"would stay yellow; set FLOWS_INDEX_REPLICAS to at most {max(room.data_nodes - 1, 0)}, or add data nodes"
        )
    needed = shards * (1 + replicas)
    if needed > room.free:
        raise ClusterRefusedError(
            f"creating {index} at {url} needs {needed} shard(s) ({shards} primary x {1 + replicas} copies), but "
            f"the cluster has {room.open_shards} of its {room.limit} open (cluster.max_shards_per_node "
            f"{room.max_per_node} x {room.data_nodes} data node(s)): delete old hours (FLOWS_RETENTION_DAYS), use "
            "week buckets (FLOWS_INDEX_BUCKET=week), or raise cluster.max_shards_per_node"
        )
