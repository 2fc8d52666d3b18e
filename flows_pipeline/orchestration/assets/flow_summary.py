"""`flow_summary`: the hour at a glance, as a table and as documents of the summary index."""

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Backoff,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)
from elasticsearch import ApiError, TransportError

from flows_pipeline.errors import TerminalError
from flows_pipeline.es.cluster_errors import cluster_error
from flows_pipeline.es.summary_index import (
    ensure_summary_index,
    index_summary,
    index_totals,
    summary_history,
    summary_totals,
)
from flows_pipeline.exporter_health import (
    ExporterHealthSettings,
    SummaryHistory,
    history_hours,
    judge_volume,
    lookback_with_history,
    silent_exporters,
    silent_exporters_text,
)
from flows_pipeline.hour import Hour
from flows_pipeline.orchestration.asset_metadata import CODE_VERSION, OWNERS, TAGS
from flows_pipeline.orchestration.assets.flow_index import flow_index
from flows_pipeline.orchestration.assets.flow_table import FLOW_TABLE
from flows_pipeline.orchestration.failures import retry_only_transient_errors
from flows_pipeline.orchestration.partitions import hourly_partitions, partition_hour
from flows_pipeline.orchestration.resources import FlowsElasticsearch, FlowSource, FlowStorage
from flows_pipeline.tables.row_groups import write_table
from flows_pipeline.tables.summary import summarize

SUMMARY_AGREES_WITH_INDEX = AssetCheckSpec(
    "summary_agrees_with_index",
    asset="flow_summary",
    blocking=True,
    partitions_def=hourly_partitions,
    description=(
        "The summary's flows, bytes and packets equal Elasticsearch's own count and sums through the hour alias "
        "(exact below 2^53); the summary is written only when they do."
    ),
)

# Warnings, not gates: an hour with a silent exporter or few flows is still what arrived, and is
# published as it is; the checks tell the operator where to look (exporter_health.py).
EXPORTERS_REPORTING = AssetCheckSpec(
    "exporters_reporting",
    asset="flow_summary",
    partitions_def=hourly_partitions,
    description=(
        "Every exporter (observer.ip) that sent flows in the previous FLOWS_EXPORTER_LOOKBACK_HOURS hours sent some "
        "in this one; warns naming the silent ones and when each was last seen."
    ),
)
HOUR_VOLUME = AssetCheckSpec(
    "hour_volume",
    asset="flow_summary",
    partitions_def=hourly_partitions,
    description=(
        "The hour's flows are at least FLOWS_MIN_HOUR_VOLUME_FRACTION of the same hour's median over the previous "
        "7 days (judged with 3 or more of them in the summary index); warns below."
    ),
)


class SummaryDisagreesError(TerminalError):
    """The hour's summary and its published flows have different totals (or the hour is not published)."""


@asset(
    partitions_def=hourly_partitions,
    group_name="flows",
    kinds={"parquet", "elasticsearch"},
    deps=[FLOW_TABLE.key, flow_index],
    check_specs=[SUMMARY_AGREES_WITH_INDEX, EXPORTERS_REPORTING, HOUR_VOLUME],
    owners=OWNERS,
    tags=TAGS,
    code_version=CODE_VERSION,
    # transient faults only (a blocked or busy node): terminal ones fail at once (failures.py)
    retry_policy=RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS),
)
def flow_summary(context: AssetExecutionContext, storage: FlowStorage, es: FlowsElasticsearch, source: FlowSource):
    """Top talkers (source, destination), top destination ports, transport totals, flows per exporter and
    minute; written only when its totals agree with the hour's published flows. Then the hour is judged
    against the summaries of the hours before it: silent exporters and a small hour warn."""
    with retry_only_transient_errors(context, "indexing the hour's summary"):
        hour = partition_hour(context.partition_key)
        summary = summarize(storage.table_path("flow_table", hour), hour)
        client = es.connect()
        hour_alias = es.layout.hour_alias(hour)
        mine, published = summary_totals(summary), index_totals(client, hour_alias)
        agrees = published is not None and mine.agrees_with(published)
        yield AssetCheckResult(
            check_name=SUMMARY_AGREES_WITH_INDEX.name,
            passed=agrees,
            metadata={
                "summary": str(mine),
                "index": str(published) if published else f"{hour_alias} is not published",
            },
        )
        if not agrees:
            raise SummaryDisagreesError(
                f"{hour.key}: the summary of flow_table ({mine}) does not agree with "
                + (f"{hour_alias} at {es.safe_url} ({published})" if published else f"{hour_alias}: not published")
                + "; nothing was written. Re-materialize flow_table and flow_index for the hour, then flow_summary"
            )
        path = storage.table_path("flow_summary", hour)
        write_table(path, summary)
        index = es.layout.summary_index
        ensure_summary_index(client, index, es.replicas)
        documents = index_summary(client, index, hour, summary)
        exporters = _rows(summary, "exporter")
        health = source.exporter_health()
        try:
            history = summary_history(client, index, history_hours(hour, health))  # earlier hours only
        except (ApiError, TransportError) as error:
            # the hour is summarized and written: a history that cannot be read leaves it unjudged, not failed
            reason = cluster_error(error, f"reading the earlier hours' summaries in {index}")
            yield from _unjudged_checks(f"not judged: {reason}; re-materialize flow_summary to judge the hour")
        else:
            yield from _exporter_health_checks(hour, exporters, history, health, mine.flows)
    top = _rows(summary, "top_source")[:5]
    yield MaterializeResult(
        metadata={
            "exporters": len(exporters),
            "flows_by_exporter": MetadataValue.md(
                "| observer.ip | flows | bytes |\n|---|---:|---:|\n"
                + "\n".join(f"| {r['key']} | {r['flows']:,} | {r['bytes']:,} |" for r in exporters)
            ),
            "summary_rows": summary.num_rows,
            "summary_documents": documents,
            "summary_index": index,
            "table": MetadataValue.path(str(path)),
            "top_sources": MetadataValue.md(
                "| source.ip | bytes | flows |\n|---|---:|---:|\n"
                + "\n".join(f"| {r['key']} | {r['bytes']:,} | {r['flows']:,} |" for r in top)
            ),
        }
    )


def _rows(summary: pa.Table, kind: str) -> list[dict]:
    return summary.filter(pc.equal(summary["kind"], kind)).to_pylist()


def _exporter_health_checks(
    hour: Hour, exporters: list[dict], history: SummaryHistory, health: ExporterHealthSettings, flows: int
) -> Iterator[AssetCheckResult]:
    """The two warnings of exporter_health.py as check results."""
    silent = silent_exporters(hour, {r["key"]: r["flows"] for r in exporters}, history, health)
    judged = lookback_with_history(hour, history, health)
    yield AssetCheckResult(
        check_name=EXPORTERS_REPORTING.name,
        passed=not silent,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "exporters": len(exporters),
            "silent_exporters": len(silent),
            "lookback_hours_with_summary": judged,
            "silent": silent_exporters_text(hour, silent, judged, health.lookback_hours),
        },
    )
    volume = judge_volume(hour, flows, history, health)
    yield AssetCheckResult(
        check_name=HOUR_VOLUME.name,
        passed=not volume.too_low,
        severity=AssetCheckSeverity.WARN,
        metadata={"flows": flows, "volume": str(volume)}
        | ({"usual_flows": round(volume.usual)} if volume.usual is not None else {}),
    )


def _unjudged_checks(reason: str) -> Iterator[AssetCheckResult]:
    """Both warnings, failed with `reason`: the operator sees the hour was not judged, and why."""
    for check in (EXPORTERS_REPORTING, HOUR_VOLUME):
        yield AssetCheckResult(
            check_name=check.name, passed=False, severity=AssetCheckSeverity.WARN, metadata={"not_judged": reason}
        )
