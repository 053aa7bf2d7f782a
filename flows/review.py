"""The ``review`` flow: a human approves or rejects a run's staged scenarios in the Prefect UI, then it promotes.

The flow posts a markdown artifact with each staged scenario's preview and validation report, then
pauses for typed input (`ReviewDecision`): the UI shows a form on **Resume** whose ``approved`` list
starts with every staged scenario. The approved ones are promoted into ``benchmarks/{dest}/``; the
rejected ones stay in staging, listed in the result and in a decision artifact. A pause that nobody
resumes within ``timeout_s`` fails the flow run and promotes nothing.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field, create_model

from scenario_lib.runs import promotion
from scenario_lib.errors import ConfigError
from scenario_lib.store.commit import list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import (
    STAGING_PREFIX,
    parse_scenario_id,
    staging_prefix,
    validate_dest,
    validate_run_id,
)

from flows.artifacts import publish_review, publish_review_decision
from flows.parameters import settings_for
from flows.results import ReviewResult


class ReviewDecision(RunInput):
    """Keep in ``approved`` the scenarios to promote; the others stay in staging."""

    approved: list[str] = Field(default_factory=list, description="Scenario ids to promote.")
    comment: str = Field(default="", description="Why (kept with the decision).")


def decision_form(scenario_ids: list[str]) -> type[ReviewDecision]:
    """A `ReviewDecision` whose ``approved`` may only name ``scenario_ids`` and starts with all of them."""
    choice = Literal[tuple(scenario_ids)]  # type: ignore[valid-type]
    form: type[ReviewDecision] = create_model(
        "ReviewDecision",
        __base__=ReviewDecision,
        approved=(
            list[choice],  # type: ignore[valid-type]
            Field(default=list(scenario_ids), description="Scenario ids to promote; remove the ones you reject."),
        ),
    )
    return form


def staged_of_run(store: DatasetStore, run_id: str) -> list[str]:
    """The staged scenario ids of ``run_id``."""
    return [sid for sid in list_scenarios(store, STAGING_PREFIX) if parse_scenario_id(sid)[0] == run_id]


@flow(name="review", validate_parameters=True)
def review(
    run_id: str,
    dest: str = "default",
    store_url: str | None = None,
    timeout_s: int = 3600,
    poll_interval_s: int = 5,
) -> ReviewResult:
    """Show ``run_id``'s staged scenarios, wait for a reviewer's decision, promote the approved into ``dest``."""
    validate_run_id(run_id)
    validate_dest(dest)
    logger = get_run_logger()
    store = DatasetStore.from_settings(settings_for(store_url=store_url).store)
    staged = staged_of_run(store, run_id)
    if not staged:
        raise ConfigError(
            f"run {run_id!r} has no staged scenarios in {store.describe()}: it is unknown, generated none, or was "
            f"already promoted (see `prefect deployment run list/default -p area=benchmark -p dest={dest}`)"
        )
    publish_review(store, run_id, {sid: staging_prefix(sid) for sid in staged}, dest)
    logger.info("waiting up to %d s for a review of %d scenarios of %s (Resume in the UI)", timeout_s, len(staged), run_id)
    decision = pause_flow_run(
        wait_for_input=decision_form(staged), timeout=timeout_s, poll_interval=poll_interval_s, key=f"review-{run_id}"
    )
    approved = sorted(set(decision.approved))
    rejected = [sid for sid in staged if sid not in approved]
    result = ReviewResult(run_id=run_id, dest=dest, approved=approved, rejected=rejected, comment=decision.comment)
    if approved:
        result.promotion = promotion.promote(store, approved, dest=dest)
    logger.info("approved %d, rejected %d (left in staging)", len(approved), len(rejected))
    publish_review_decision(result)
    return result


__all__ = ["ReviewDecision", "decision_form", "review"]
