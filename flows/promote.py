"""The ``promote`` flow: move staged scenarios (a run, or given ids) into ``benchmarks/{dest}/`` with its manifest.

A thin wrapper of `scenario_lib.runs.promotion.promote`, which is crash-safe and idempotent: an unknown run
or scenario id, or a ``dest`` that is not a plain name (``../x``), fails the flow run with the library's
message; scenarios promoted before are reported as already present. A near duplicate of a scenario in the
benchmark (or earlier in the same promotion) stays in staging, and the flow run ends Failed with a message that
names each refused id, the id it duplicates and the distance (the others are promoted); pass
``allow_near_duplicates=True`` to promote them anyway.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.states import Failed

from scenario_lib.runs import promotion
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.runs.promotion import PromotionResult

from flows.artifacts import publish_promotion
from flows.parameters import settings_for


@flow(name="promote", validate_parameters=True)
def promote(
    dest: str = "default",
    run_id: str | None = None,
    scenario_ids: list[str] | None = None,
    store_url: str | None = None,
    allow_near_duplicates: bool = False,
) -> PromotionResult:
    """Promote every staged scenario of ``run_id``, or the ``scenario_ids``, into the benchmark ``dest``."""
    store = DatasetStore.from_settings(settings_for(store_url=store_url).store)
    result = promotion.promote(
        store, scenario_ids, run_id=run_id, dest=dest, allow_near_duplicates=allow_near_duplicates
    )
    get_run_logger().info(
        "promoted %d into %s (%d already there); manifest %s lists %d scenarios",
        len(result.promoted), result.dest, len(result.already_present), result.manifest_url, result.entry_count,
    )  # fmt: skip
    publish_promotion(result)
    if result.refused:
        return Failed(  # type: ignore[return-value]
            message=(
                f"{len(result.refused)} near duplicate(s) not promoted into {result.dest}, left in staging: "
                + "; ".join(item.message for item in result.refused)
            ),
            data=result,
        )
    return result


__all__ = ["promote"]
