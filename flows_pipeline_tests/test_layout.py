"""The layout's rule: domain code never imports Dagster; only flows_pipeline/orchestration does."""

import pkgutil
import subprocess
import sys

import flows_pipeline

WIRING = ("flows_pipeline.orchestration", "flows_pipeline.definitions")


def domain_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(flows_pipeline.__path__, "flows_pipeline.")]
    return sorted(name for name in names if not name.startswith(WIRING))


def test_the_domain_is_grouped_by_stage():
    packages = {name.split(".")[1] for name in domain_modules() if name.count(".") >= 2}
    assert packages == {"sources", "tables", "es"}


def test_no_domain_module_imports_dagster_in_a_fresh_interpreter():
    modules = domain_modules()
    assert len(modules) > 15
    # each module is imported after the ones before it; the first that loads dagster is named
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'dagster' in sys.modules:\n"
        "        print(name); break\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"{done.stdout.strip()} imports dagster"
