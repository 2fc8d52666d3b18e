"""Operating the pipeline as people do: a UI backfill through a real webserver and daemon, the CLI.

The instance config is the one the project ships (dagster_home/dagster.yaml): the test proves
that its cross-run limits hold while a backfill of many hours runs.
"""

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import yaml
from dagster import AssetCheckKey, AssetKey, DagsterRunStatus

from flows_pipeline.hour import hour_of, recent_closed_hours
from flows_pipeline_tests.support import PROJECT, free_port, make_project, max_overlap, wait_for_dagster_ui

# the six most recent closed hours, as a user backfills them: the UI lists and plots the newest first
BACKFILL_HOURS = recent_closed_hours(datetime.now(UTC), 5)  # one more than the shipped max_concurrent_runs
CLI_RANGE = ("2021-10-28-16:00", "2021-10-28-17:00")
ASSETS = ("raw_flows", "flow_table", "flow_quarantine", "flow_index", "flow_summary")
SHIPPED_LIMITS = yaml.safe_load((PROJECT / "dagster_home" / "dagster.yaml").read_text())["concurrency"]

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } ... on PythonError { message } }
}"""


UI_BACKFILL_TEST = "test_ui_backfill_of_five_hours_respects_the_pool_and_run_limits"


@pytest.fixture(scope="module")
def dagster_ui(request, tmp_path_factory, index_prefix):
    """`make ui`'s `dagster dev` (webserver and daemon, through scripts/ui.py) on the project's
    workspace and shipped instance config, and the id of the UI backfill of BACKFILL_HOURS, launched
    as soon as the webserver answers when the UI backfill's test is to run (else None).

    Dagster's backfill daemon takes a new backfill at its next iteration, up to 30 s later (a fixed
    interval); the CLI backfill's test runs first, in that wait, so the two backfills' runs overlap,
    and the UI backfill's test then waits for the hours' runs and checks the limits over all of them."""
    project = make_project(tmp_path_factory.mktemp("ui"), index_prefix)
    port = free_port()
    log = open(project.home / "dagster-dev.log", "w")  # noqa: SIM115 - open for the fixture's whole life
    server = subprocess.Popen(
        [sys.executable, "scripts/ui.py", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT,
        env=project.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_dagster_ui(url, server, log=project.home / "dagster-dev.log")
        wanted = any(item.originalname == UI_BACKFILL_TEST for item in request.session.items)
        yield project, url, launch_ui_backfill(url) if wanted else None
    finally:
        server.terminate()  # the wrapper stops dagster dev's whole group within 10 s (test_ui_stops.py)
        server.wait(timeout=30)
        log.close()


BACKFILL_GOING_WELL = ("REQUESTED", "COMPLETED", "COMPLETED_SUCCESS")  # not failing, failed nor canceled


def graphql(url: str, query: str, variables: dict) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30)
    response.raise_for_status()
    return response.json()["data"]


def partition_of(run) -> str | None:
    return run.tags.get("dagster/partition")


def wait_for_runs(project, partitions: list[str], timeout_s: float) -> list:
    """The finished runs of these partitions, once every one of them has one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with project.instance() as instance:
            records = instance.get_run_records()
        runs = [r for r in records if partition_of(r.dagster_run) in partitions]
        finished = [r for r in runs if r.dagster_run.is_finished]
        if len(finished) == len(runs) and {partition_of(r.dagster_run) for r in finished} == set(partitions):
            return finished
        time.sleep(0.5)
    raise AssertionError(f"runs of {partitions} did not finish in {timeout_s} s")


def test_cli_backfill_of_a_range_runs_one_hour_per_run(dagster_ui, es_client):
    """Runs while the UI backfill waits for the daemon (dagster_ui), its runs queued with the UI's."""
    project, _, _ = dagster_ui
    command = [
        str(Path(sys.executable).parent / "dagster"), "job", "backfill", "-w", "workspace.yaml",
        "-j", "flows_hourly_job", "--from", CLI_RANGE[0], "--to", CLI_RANGE[1], "--noprompt",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=PROJECT, env=project.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    runs = wait_for_runs(project, list(CLI_RANGE), 600)  # behind the UI backfill's runs, at worst
    assert len(runs) == 2 and all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in runs)
    for hour_key in CLI_RANGE:
        alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(hour_key).label}"
        assert es_client.count(index=alias)["count"] == 20_000


def launch_ui_backfill(url: str) -> str:
    """The backfill id of the UI's launch (GraphQL, as the UI's button sends it) of every asset of BACKFILL_HOURS."""
    params = {
        "partitionNames": BACKFILL_HOURS,
        "assetSelection": [{"path": [a]} for a in ASSETS],
    }
    launched = graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def test_ui_backfill_of_five_hours_respects_the_pool_and_run_limits(dagster_ui, es_client):
    project, url, backfill_id = dagster_ui
    # the hours' runs are what the user waits for; the backfill daemon marks the backfill completed
    # at its next iteration, up to 30 s later (not configurable), which the test does not wait for
    runs = wait_for_runs(project, BACKFILL_HOURS, 600)
    status = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]
    assert status in BACKFILL_GOING_WELL, status
    assert all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in runs)
    # one run per hour, each with every asset of the hour and its checks, each recorded once for its hour
    assert len(runs) == len(BACKFILL_HOURS)
    assert all({k.to_user_string() for k in r.dagster_run.asset_selection} == set(ASSETS) for r in runs)
    with project.instance() as instance:
        for check in ("documents_match_table", "no_duplicate_documents"):
            history = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(AssetKey("flow_index"), check), limit=100
            )
            ours = [h for h in history if h.partition in BACKFILL_HOURS]
            assert sorted(h.partition for h in ours) == BACKFILL_HOURS, check
            assert {h.status.value for h in ours} == {"SUCCEEDED"}, check
    for hour_key in BACKFILL_HOURS:
        alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(hour_key).label}"
        assert es_client.count(index=alias)["count"] == 20_000, hour_key

    # the limits hold across both backfills: the CLI's runs (its test ran first and waited for them) were
    # queued with these
    with project.instance() as instance:
        cli_runs = [r for r in instance.get_run_records() if partition_of(r.dagster_run) in CLI_RANGE]
    every_run = runs + cli_runs
    run_spans = [(r.start_time, r.end_time) for r in every_run]
    chunk_spans = [
        span
        for r in every_run
        for key, span in project.step_intervals(r.dagster_run.run_id).items()
        if key.startswith("flow_index.index_chunk[")
    ]
    assert len(chunk_spans) == 4 * len(every_run)
    assert max_overlap(run_spans) <= SHIPPED_LIMITS["runs"]["max_concurrent_runs"]
    assert max_overlap(chunk_spans) <= SHIPPED_LIMITS["pools"]["default_limit"]
    assert max_overlap(run_spans) > 1  # the limits were exercised: runs really ran side by side


CHROMIUM = "/usr/bin/chromium"
# as root, in a closed network: no sandbox, and none of Chromium's background connections
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = PROJECT / ".test-artifacts"


def series_pixels(canvas) -> int:
    """Pixels of a plot's data series (Dagster draws it in blue-violet; axes and grid are grey)."""
    return canvas.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i + 2] - d[i] > 60) n++; return n; }"""
    )


def test_ui_shows_what_a_user_must_see_after_the_backfills(dagster_ui):
    """After the backfills above, in a real headless Chromium: the filled hours newest first and their
    plots, the quarantine found by searching, row counts and column schemas, check results attached to
    hours, and each run's hour. Screenshots in .test-artifacts/."""
    from playwright.sync_api import sync_playwright

    _, url, _ = dagster_ui
    newest = BACKFILL_HOURS[-1]
    assert Path(CHROMIUM).exists(), (
        f"the UI test needs Debian's Chromium at {CHROMIUM}: run `make system-packages` as root"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        def visit(path: str) -> None:
            page.goto(f"{url}{path}", wait_until="networkidle")
            skip = page.get_by_role("button", name="Skip")  # the first-visit newsletter dialog
            if skip.count():
                skip.click()

        def shot(name: str) -> None:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

        visit("/asset-groups/flows")
        for asset in ASSETS:
            page.get_by_text(asset, exact=True).first.wait_for(timeout=30_000)
        shot("asset-graph")

        # the backfilled hours are the newest partitions, at the top of the list: filled without hunting
        visit("/assets/flow_index?view=partitions")
        materialized = page.get_by_text(re.compile(r"Materialized \(\d+\)")).first
        materialized.wait_for(timeout=30_000)
        assert int(re.search(r"\((\d+)\)", materialized.inner_text()).group(1)) == len(BACKFILL_HOURS) + len(CLI_RANGE)
        page.get_by_text(newest, exact=True).first.wait_for(timeout=10_000)
        shot("flow_index-partitions")

        # the freshness policy, evaluated by the daemon: the hours were just published
        deadline = time.monotonic() + 120
        while True:
            visit("/assets/flow_index")
            freshness = page.get_by_text("Freshness policy").first
            freshness.wait_for(timeout=30_000)
            if "Passing" in freshness.evaluate("e => e.parentElement.innerText") or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert "Passing" in freshness.evaluate("e => e.parentElement.innerText")

        # a numeric metadata value plotted across the hours
        page.get_by_text("Plots", exact=True).first.click()
        chart = page.get_by_text("documents", exact=True).first.locator("xpath=../..").locator("canvas")
        chart.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)  # the chart animates in
        assert series_pixels(chart) > 20, "the plot of `documents` across partitions draws no data"
        shot("flow_index-plots")

        # searching the catalog for "quarantine" finds the quarantine, an asset with its schema and counts
        visit("/assets")
        page.get_by_label("Search and filter assets").first.focus()
        page.keyboard.type("quarantine")
        page.keyboard.press("Escape")
        page.get_by_role("link", name="raw_flows", exact=True).first.wait_for(state="detached", timeout=30_000)
        page.get_by_role("link", name="flow_quarantine").first.click()
        page.wait_for_url(re.compile(r"/assets/flow_quarantine"), timeout=30_000)
        page.get_by_text("rejected_on_read", exact=True).first.wait_for(timeout=30_000)
        assert page.get_by_text("Row count").count() and page.get_by_text("raw_record", exact=True).count()
        shot("flow_quarantine")

        # flow_table: its row count and its column schema, with a description per column
        visit("/assets/flow_table")
        row_count = page.get_by_text("Row count").first
        row_count.wait_for(timeout=30_000)
        assert "20,000" in row_count.evaluate("e => e.parentElement.innerText")
        assert page.get_by_text("Bytes of the flow, scaled by the sampling rate.").count()
        shot("flow_table")

        # each check result belongs to its hour
        visit("/assets/flow_index?view=checks")
        page.get_by_text("Execution history", exact=True).first.click()
        page.get_by_role("cell", name=newest).first.wait_for(timeout=30_000)
        shot("flow_index-check-history")

        # each run shows its hour, also the runs of a backfill (which the runs list folds by default)
        visit("/runs")
        page.get_by_text("Show runs within backfills").first.click()
        page.get_by_text(f"partition: {newest}").first.wait_for(timeout=30_000)
        shot("runs")
        browser.close()
