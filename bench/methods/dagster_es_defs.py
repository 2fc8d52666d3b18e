"""The PyPI integration dagster-elasticsearch, used as its README describes.

An hourly-partitioned asset returns the hour's flows as a pandas DataFrame; the package's
`ElasticsearchIOManager` indexes it (`elasticsearch.helpers.bulk`, its default bulk_chunk_size
of 500 rows) into a fresh index behind an alias (`use_alias=True`), created from `index_config`
with the pipeline's mapping and load settings. An `_id` column of row numbers gives the same
ids as every other method (the README: `id_field`, default `_id`, is lifted into the `_id`).

Runs in its own venv (bench/work/venv-dagster-es) with the project's pins, loaded by:

    dagster asset materialize -f bench/methods/dagster_es_defs.py --select flows_hour --partition KEY

Configured by the harness through BENCH_ES_URL, BENCH_ES_INDEX, BENCH_FLOW_TABLE,
BENCH_ES_MAPPING and BENCH_ES_SETTINGS (JSON).
"""

from __future__ import annotations

import json
import os

import pandas as pd
from dagster import Definitions, HourlyPartitionsDefinition, asset
from dagster_elasticsearch import ElasticsearchIndexConfig, ElasticsearchIOManager, HostsConfig

hourly = HourlyPartitionsDefinition(start_date="2021-10-28-00:00", timezone="UTC")


@asset(partitions_def=hourly, io_manager_key="es_io_manager")
def flows_hour() -> pd.DataFrame:
    """The hour's flow table as one DataFrame (nullable dtypes: NaN is not valid JSON for ES)."""
    frame = pd.read_parquet(os.environ["BENCH_FLOW_TABLE"], dtype_backend="numpy_nullable")
    frame["event.sequence"] = range(len(frame))  # as in flows_pipeline's documents
    frame["_id"] = [str(row) for row in range(len(frame))]
    return frame


defs = Definitions(
    assets=[flows_hour],
    resources={
        "es_io_manager": ElasticsearchIOManager(
            connection_config=HostsConfig(hosts=[os.environ["BENCH_ES_URL"]]),
            index=os.environ["BENCH_ES_INDEX"],
            use_alias=True,
            index_config=ElasticsearchIndexConfig(
                mappings=json.loads(os.environ["BENCH_ES_MAPPING"]),
                settings=json.loads(os.environ["BENCH_ES_SETTINGS"]),
            ),
            request_timeout=300,
        )
    },
)
