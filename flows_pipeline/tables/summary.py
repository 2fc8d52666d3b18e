"""The hour at a glance: top talkers, top destination ports, protocol totals, flows per exporter and minute.

Aggregated batch by batch with pandas: the running totals grow with the number of distinct
addresses and ports of the hour, never with its rows. The result is small (a few hundred rows),
so it is kept both as a table and as documents of a summary index (es/summary_index.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from flows_pipeline.errors import TerminalError
from flows_pipeline.hour import Hour
from flows_pipeline.tables.row_groups import read_batches, verify_digest
from flows_pipeline.tables.table_store import TableLocation

if TYPE_CHECKING:  # imported where used: the run's orchestrating process imports this module, never pandas
    import pandas as pd

TOP = 20
COUNTERS = ["flows", "bytes", "packets"]
SUMMARY_SCHEMA = pa.schema(
    [
        ("hour", pa.string()),
        # top_source | top_destination | top_destination_port | transport | exporter | minute
        ("kind", pa.string()),
        ("key", pa.string()),  # the address, "443/tcp", the transport, the exporter's address, or the minute (ISO)
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
    # every exporter, uncut: one that sends nothing is told by its absence (exporter_health.py)
    "exporter": (["observer.ip"], False),
    "minute": (["minute"], False),
}
_COLUMNS = ["@timestamp", "source.ip", "destination.ip", "destination.port", "network.transport", "observer.ip"]


# Counters are summed exactly: each is split into its high and low 32 bits, whose int64 sums cannot
# wrap below 2^31 flows a key per hour, and the halves are joined as Python ints at the end. A
# total beyond Elasticsearch's `long` is an error, never a wrapped or negative number.
_PARTS = ["flows", "bytes_hi", "bytes_lo", "packets_hi", "packets_lo"]
_LOW_BITS = 32
INT64_MAX = 2**63 - 1


class SummaryOverflowError(TerminalError):
    """An hour's total that no 64-bit counter holds: the flow table's counters are implausible."""


@dataclass
class _Totals:
    by: list[str]
    totals: pd.DataFrame | None = None

    def add(self, frame: pd.DataFrame) -> None:
        part = frame.groupby(self.by, dropna=True)[_PARTS].sum()
        if self.totals is None:
            self.totals = part
        else:  # concatenated and regrouped, not DataFrame.add: its alignment goes through float64
            import pandas as pd

            levels = list(range(part.index.nlevels))
            self.totals = pd.concat([self.totals, part]).groupby(level=levels).sum()


def _split(frame: pd.DataFrame) -> None:
    for counter in ("bytes", "packets"):
        values = frame[counter].to_numpy()
        frame[f"{counter}_hi"] = values >> _LOW_BITS
        frame[f"{counter}_lo"] = values & ((1 << _LOW_BITS) - 1)


def _joined(result: pd.DataFrame, hour: Hour, kind: str) -> pd.DataFrame:
    """The exact totals per key (Python ints), checked against Elasticsearch's long."""
    import pandas as pd

    joined = pd.DataFrame(index=result.index)
    joined["flows"] = [int(v) for v in result["flows"]]
    for counter in ("bytes", "packets"):
        totals = [
            (int(hi) << _LOW_BITS) + int(lo)
            for hi, lo in zip(result[f"{counter}_hi"], result[f"{counter}_lo"], strict=True)
        ]
        if totals and max(totals) > INT64_MAX:
            key = result.index[totals.index(max(totals))]
            raise SummaryOverflowError(
                f"{hour.key}: the {counter} of {kind} {_key_text(key)} add up to {max(totals)}, beyond a 64-bit "
                "counter (2^63-1): no link carries that in an hour; check that key's flows in flow_table (their "
                "counters and sampling_interval), fix the source, then re-materialize the hour"
            )
        joined[counter] = pd.Series(totals, index=result.index, dtype=object)
    return joined


def summarize(table_path: TableLocation, hour: Hour) -> pa.Table:
    """The summary rows of one hour's flow table."""
    verify_digest(table_path)  # the summary is published too: never from a damaged table
    totals = {kind: _Totals(by) for kind, (by, _) in _KINDS.items()}
    for batch in read_batches(table_path, columns=[*_COLUMNS, "network.bytes", "network.packets"]):
        frame = batch.to_pandas().rename(columns={"network.bytes": "bytes", "network.packets": "packets"})
        frame["flows"] = 1
        _split(frame)
        frame["minute"] = frame["@timestamp"].dt.floor("min").dt.strftime("%Y-%m-%dT%H:%MZ")
        for running in totals.values():
            running.add(frame)
    rows = []
    for kind, (_, cut) in _KINDS.items():
        if totals[kind].totals is None or totals[kind].totals.empty:
            continue
        result = _joined(totals[kind].totals, hour, kind)
        if cut:  # largest first, ties in key order so the same hour always ranks the same
            exact = list(result["bytes"])
            result = result.iloc[sorted(range(len(exact)), key=lambda i: -exact[i])]
        else:
            result = result.sort_index()
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
