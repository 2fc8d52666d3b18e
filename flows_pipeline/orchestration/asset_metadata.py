"""Metadata the Dagster UI understands: row counts, column schemas, ownership; shared by the assets."""

from __future__ import annotations

import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema

# Who to ask, and how the catalog groups and versions the assets (bump CODE_VERSION when a change
# alters what an asset computes, so Dagster flags the partitions made by the older code).
OWNERS = ["team:network-operations"]
TAGS = {"domain": "network-flows"}
CODE_VERSION = "2"


def column_schema(schema: pa.Schema, descriptions: dict[str, str]) -> MetadataValue:
    """`dagster/column_schema`: each column's name, Arrow type and meaning."""
    return MetadataValue.table_schema(
        TableSchema(
            columns=[TableColumn(f.name, str(f.type), description=descriptions.get(f.name, "")) for f in schema]
        )
    )


def table_metadata(rows: int, schema: pa.Schema, descriptions: dict[str, str]) -> dict[str, object]:
    return {"dagster/row_count": MetadataValue.int(rows), "dagster/column_schema": column_schema(schema, descriptions)}
