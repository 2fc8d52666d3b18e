"""The hour's quarantine: every record set aside, and why, counted by reason.

`flow_quarantine/<date>/<HH>.parquet` (QUARANTINE_SCHEMA) holds both kinds of rejection: records
the source reader could not read as flows (first landed in `raw_quarantine/`, copied here by
flow_table) and records read but invalid as flows (the normalizer's rules). Each reason names the
raw field first ("bytes: negative", "src_addr: not an IP address"), so a reason is also its kind;
a few name the whole record ("empty line", "unparseable JSON: <the parser's message>"), and those
can differ per record, so reports keep the most frequent reasons and sum the rest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow.compute as pc

from flows_pipeline.tables.row_groups import parquet_metadata, read_batches
from flows_pipeline.tables.table_store import TableLocation


@dataclass(frozen=True)
class QuarantineReport:
    """What an hour's quarantine holds: records (rows), of which unreadable ones, by reason."""

    records: int
    rejected_on_read: int  # rows of raw_quarantine: records the source reader could not read
    reasons: dict[str, int]  # reason -> records, most frequent first

    @property
    def invalid(self) -> int:
        """Records read as flows but breaking a rule of the flow schema."""
        return self.records - self.rejected_on_read

    def top_reasons(self, top: int = 50) -> dict[str, int]:
        """The `top` most frequent reasons, the rest summed under "(N other reasons)"."""
        items = list(self.reasons.items())
        rest = items[top:]
        return dict(items[:top]) | ({f"({len(rest)} other reasons)": sum(n for _, n in rest)} if rest else {})

    def reasons_markdown(self, top: int = 20) -> str:
        """The `top` most frequent reasons as a Markdown table (the rest summed in one line)."""
        rows = [f"| {reason.replace('|', '/')} | {n:,} |" for reason, n in self.top_reasons(top).items()]
        return "\n".join(["| reason | records |", "|---|---:|", *rows]) if rows else "nothing was quarantined"


def count_reasons(
    quarantine_path: TableLocation, raw_quarantine_path: TableLocation, batch_rows: int = 65_536
) -> QuarantineReport:
    """Count the quarantine's records by reason, reading its `reason` column a row group at a time.

    Raises CorruptTableError, naming the file, when a table cannot be decoded.
    """
    reasons: Counter[str] = Counter()
    for batch in read_batches(quarantine_path, batch_rows=batch_rows, columns=["reason"]):
        counts = pc.value_counts(batch.column("reason"))
        reasons.update(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)))
    return QuarantineReport(
        records=sum(reasons.values()),
        rejected_on_read=parquet_metadata(raw_quarantine_path).num_rows,
        reasons=dict(reasons.most_common()),
    )
