"""The hour at a glance: top talkers, top destination ports, protocol totals, flows per minute.

Aggregated batch by batch with pandas: the running totals grow with the number of distinct
addresses and ports of the hour, never with its rows. The result is small (a few hundred rows),
so it is kept both as a table and as documents of a summary index (es/summary_index.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from flows_pipeline.hour import Hour
from flows_pipeline.tables.row_groups import read_batches

TOP = 20
COUNTERS = ["flows", "bytes", "packets"]
SUMMARY_SCHEMA = pa.schema(
    [
        ("hour", pa.string()),
        ("kind", pa.string()),  # top_source | top_destination | top_destination_port | transport | minute
        ("key", pa.string()),  # the address, "443/tcp", the transport, or the minute (ISO time)
        ("rank", pa.int32()),
        ("flows", pa.int64()),
        ("bytes", pa.int64()),
        ("packets", pa.int64()),
    ]
)
# what each kind groups by, and whether it is cut to the TOP largest by bytes
_KINDS: dict[str, tuple[list[str], bool]] = {
    "top_source": (["source.ip"], True),
    "top_destination": (["destination.ip"], True),
    "top_destination_port": (["destination.port", "network.transport"], True),
    "transport": (["network.transport"], False),
    "minute": (["minute"], False),
}
_COLUMNS = ["@timestamp", "source.ip", "destination.ip", "destination.port", "network.transport"]


@dataclass
class _Totals:
    by: list[str]
    totals: pd.DataFrame | None = None

    def add(self, frame: pd.DataFrame) -> None:
        part = frame.groupby(self.by, dropna=True)[COUNTERS].sum()
        self.totals = part if self.totals is None else self.totals.add(part, fill_value=0)


def summarize(table_path: Path, hour: Hour) -> pa.Table:
    """The summary rows of one hour's flow table."""
    totals = {kind: _Totals(by) for kind, (by, _) in _KINDS.items()}
    for batch in read_batches(table_path, columns=[*_COLUMNS, "network.bytes", "network.packets"]):
        frame = batch.to_pandas().rename(columns={"network.bytes": "bytes", "network.packets": "packets"})
        frame["flows"] = 1
        frame["minute"] = frame["@timestamp"].dt.floor("min").dt.strftime("%Y-%m-%dT%H:%MZ")
        for running in totals.values():
            running.add(frame)
    rows = []
    for kind, (_, cut) in _KINDS.items():
        result = totals[kind].totals
        if result is None or result.empty:
            continue
        result = result.sort_values("bytes", ascending=False) if cut else result.sort_index()
        result = result.head(TOP) if cut else result
        for rank, (key, values) in enumerate(result.iterrows(), start=1):
            rows.append(
                {
                    "hour": hour.key,
                    "kind": kind,
                    "key": _key_text(key),
                    "rank": rank,
                    **{c: int(values[c]) for c in COUNTERS},
                }
            )
    return pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA)


def _key_text(key) -> str:
    if isinstance(key, tuple):  # (port, transport)
        port, transport = key
        return f"{int(port)}/{transport}"
    return str(key)
