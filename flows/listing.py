"""The ``list`` flow: the scenarios in staging, in failures or in a benchmark, as a table artifact."""

from __future__ import annotations

from enum import Enum

from prefect import flow, get_run_logger

from scenario_lib.errors import ConfigError, ScenarioError
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.runs.promotion import read_manifest
from scenario_lib.store.commit import list_scenarios
from scenario_lib.store.layout import FAILURES_PREFIX, STAGING_PREFIX, join_key, parse_scenario_id, scenario_id_of_folder

from flows.artifacts import publish_listing
from flows.parameters import settings_for


class ListingArea(str, Enum):
    """Where to list scenarios."""

    STAGING = "staging"
    FAILURES = "failures"
    BENCHMARK = "benchmark"


def _run_of(name: str, prefix: str) -> str:
    """The run id of a folder name: ``{run_id}_{seed}`` in staging, ``{run_id}_{seed}_a{attempts}`` in failures."""
    try:
        return parse_scenario_id(scenario_id_of_folder(prefix, name))[0]
    except ScenarioError:
        return ""


@flow(name="list", validate_parameters=True)
def list_scenarios_flow(
    area: ListingArea = ListingArea.STAGING,
    run_id: str | None = None,
    dest: str | None = None,
    store_url: str | None = None,
) -> list[dict[str, str]]:
    """List the committed scenarios of ``area`` (for ``benchmark``, of ``dest``), optionally of one ``run_id``."""
    store = DatasetStore.from_settings(settings_for(store_url=store_url).store)
    rows: list[dict[str, str]] = []
    if area is ListingArea.BENCHMARK:
        if dest is None:
            raise ConfigError("listing a benchmark needs its name: pass dest='default' (or another benchmark)")
        manifest = read_manifest(store, dest)
        entries = manifest.entries if manifest is not None else []
        rows = [
            {"scenario": entry.scenario_id, "run_id": entry.run_id, "location": store.url_for(entry.path)}
            for entry in entries
            if run_id is None or entry.run_id == run_id
        ]
        where = f"benchmarks/{dest}"
    else:
        prefix = STAGING_PREFIX if area is ListingArea.STAGING else FAILURES_PREFIX
        for name in list_scenarios(store, prefix):
            owner = _run_of(name, prefix)
            if run_id is None or owner == run_id:
                rows.append({"scenario": name, "run_id": owner, "location": store.url_for(join_key(prefix, name))})
        where = prefix
    get_run_logger().info("%d scenarios in %s of %s", len(rows), where, store.describe())
    publish_listing(rows, where=where)
    return rows


__all__ = ["ListingArea", "list_scenarios_flow"]
