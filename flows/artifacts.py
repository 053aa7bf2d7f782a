"""What the flows show in the Prefect UI: tables of scenarios with stage verdicts, reports and previews.

Previews are embedded as ``data:image/png;base64`` images in markdown: the UI renders them, they need
no URL reachable from the browser, and they do not expire (an image artifact takes only a URL, and a
presigned S3 URL would). Test-dummy previews are ~5 KB, tier previews tens of KB.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from scenario_lib.validation.artifacts import PREVIEW_FILE, read_scenario_manifest, read_scenario_report
from scenario_lib.runs.promotion import PromotionResult
from scenario_lib.report import STAGE_ORDER
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError
from scenario_lib.store.layout import join_key, staging_prefix

from flows.results import GenerationResult, ReviewResult, SeedRun

GENERATED_TABLE_KEY = "generated-scenarios"
GENERATION_REPORT_KEY = "generation-report"
STAGE_TABLE_KEY = "generation-stages"
REVIEW_KEY = "scenario-review"
PROMOTION_KEY = "promotion"
LISTING_KEY = "scenario-listing"
_MARKS = {"pass": "pass", "fail": "FAIL", "skipped": "-"}
REPORT_PREVIEWS = 12  # passed scenarios whose previews a run's report shows inline


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) made from ``parts``."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-") or "artifact"


def preview_markdown(store: DatasetStore, folder: str, *, alt: str) -> str:
    """The folder's preview as an inline markdown image, or a note when it has none."""
    try:
        data = store.read_bytes(join_key(folder, PREVIEW_FILE))
    except ObjectNotFoundError:
        return "_no preview (rendering was off or unavailable)_"
    return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"


def _seed_row(seed_run: SeedRun) -> dict[str, object]:
    outcome = seed_run.outcome
    row: dict[str, object] = {
        "scenario": outcome.scenario_id,
        "seed": outcome.seed,
        "result": "passed" if outcome.passed else "failed",
        "family": outcome.family,
        "attempts": outcome.attempts,
    }
    for stage in STAGE_ORDER:
        row[stage.value] = _MARKS.get(outcome.stage_verdicts.get(stage.value, ""), "")
    row["duration_s"] = outcome.duration_s
    row["slot_acquired_at"] = seed_run.slot_acquired_at.isoformat() if seed_run.slot_acquired_at else ""
    row["slot_released_at"] = seed_run.slot_released_at.isoformat() if seed_run.slot_released_at else ""
    row["message"] = outcome.message[:300]
    row["location"] = outcome.location
    return row


def publish_generation(result: GenerationResult, store: DatasetStore) -> None:
    """A table of the run's seeds with stage verdicts, and a report with counts, previews and next steps."""
    create_table_artifact(
        key=STAGE_TABLE_KEY,
        table=[
            {"stage": stage, "passed": counts.passed, "failed_here": counts.failed}
            for stage, counts in result.stage_counts.items()
        ],
        description=f"Run {result.run_id}: {result.passed}/{result.count} passed; seeds that passed each stage or failed there.",
    )
    create_table_artifact(
        key=GENERATED_TABLE_KEY,
        table=[_seed_row(seed_run) for seed_run in result.seeds],
        description=f"Seeds of run {result.run_id}: stage verdicts (worst over the harness seeds) and locations.",
    )
    create_markdown_artifact(
        key=GENERATION_REPORT_KEY, markdown=generation_report(result, store), description=f"Report of run {result.run_id}"
    )


def generation_report(result: GenerationResult, store: DatasetStore, *, previews: int = REPORT_PREVIEWS) -> str:
    """The run's report in markdown: counts per stage, where things are, the first ``previews`` passed
    scenarios' previews (each ~10 KB inline: a run of thousands would make a page the UI cannot open) and
    the failed seeds."""
    lines = [
        f"# Run `{result.run_id}`",
        "",
        f"**{result.passed}/{result.count}** {result.tier} scenarios passed "
        f"({'complete' if result.complete else 'INCOMPLETE'}), {result.failed} failed seeds, {result.duration_s:.1f} s.",
        "",
        "| stage | passed | failed here |",
        "|---|---|---|",
        *(f"| {stage} | {counts.passed} | {counts.failed} |" for stage, counts in result.stage_counts.items()),
        "",
        f"- staged scenarios: `{result.staging_url}/{result.run_id}_*`",
        f"- failed seeds, with their reports: `{result.failures_url}/{result.run_id}_*`",
        f"- run record: `{result.run_record_url}`",
        f"- review and promote: `prefect deployment run review/default -p run_id={result.run_id}` "
        f"or `prefect deployment run promote/default -p run_id={result.run_id}`",
        "",
    ]
    passed = [seed_run.outcome for seed_run in result.seeds if seed_run.outcome.passed]
    for outcome in passed[:previews]:
        folder = staging_prefix(outcome.scenario_id)
        lines += [f"### {outcome.scenario_id} ({outcome.family})", "", preview_markdown(store, folder, alt=outcome.scenario_id), ""]
    if len(passed) > previews:
        lines += [
            f"_{len(passed) - previews} more passed scenarios; see one with `scenarios show <scenario id>`, or all of "
            f"them with `prefect deployment run review/default -p run_id={result.run_id}`._",
            "",
        ]
    failed = [seed_run.outcome for seed_run in result.seeds if not seed_run.outcome.passed]
    if failed:
        lines += ["## Failed seeds", ""]
        lines += [f"- `{o.scenario_id}` stopped at **{o.stage_reached}**: {o.message[:300] or (o.verdict or '')}" for o in failed]
    return "\n".join(lines)


def scenario_markdown(store: DatasetStore, folder: str, scenario_id: str) -> str:
    """One staged scenario for a reviewer: preview, what it is, and its validation report per harness seed."""
    manifest, report = read_scenario_manifest(store, folder), read_scenario_report(store, folder)
    header = "| harness seed | scale | " + " | ".join(stage.value for stage in STAGE_ORDER) + " |"
    rows = [header, "|" + "---|" * (len(STAGE_ORDER) + 2)]
    for seed_report in report.seeds:
        verdicts = {result.stage: _MARKS[result.verdict.value] for result in seed_report.stages}
        scale = ", ".join(f"{value:.2f}" for value in seed_report.scale)
        cells = " | ".join(verdicts.get(stage, "") for stage in STAGE_ORDER)
        rows.append(f"| {seed_report.seed} | {scale} | {cells} |")
    parameters = ", ".join(f"{name}={value:.4g}" for name, value in sorted(manifest.parameters.items()))
    return "\n".join(
        [
            f"## {scenario_id}",
            "",
            preview_markdown(store, folder, alt=scenario_id),
            "",
            f"- family **{manifest.family}**, tier {manifest.tier}, author {manifest.author}, attempt {manifest.attempt}",
            f"- objective: {manifest.objective or '-'}",
            f"- parameters: {parameters or '-'}",
            f"- validation: {report.summary()} ({report.duration_s:.1f} s)",
            f"- folder: `{store.url_for(folder)}`",
            "",
            *rows,
            "",
        ]
    )


def publish_review(store: DatasetStore, run_id: str, folders: dict[str, str], dest: str) -> None:
    """The markdown a reviewer reads before resuming the paused review flow run."""
    intro = [
        f"# Review run `{run_id}`",
        "",
        f"{len(folders)} staged scenario(s). Resume this flow run (**Resume** in the UI) and keep in "
        f"`approved` the ones to promote into `benchmarks/{dest}/`; the others stay in staging.",
        "",
    ]
    body = [scenario_markdown(store, folder, scenario_id) for scenario_id, folder in folders.items()]
    create_markdown_artifact(
        key=artifact_key(REVIEW_KEY), markdown="\n".join(intro + body), description=f"Staged scenarios of {run_id}"
    )


def _ids(label: str, ids: Sequence[str]) -> str:
    return f"- {label} ({len(ids)}): {', '.join(ids) or 'none'}"


def publish_review_decision(result: ReviewResult) -> None:
    lines = [f"# Review of `{result.run_id}`", "", _ids("approved", result.approved), _ids("rejected, left in staging", result.rejected)]
    if result.comment:
        lines.append(f"- reviewer's comment: {result.comment}")
    if result.promotion is not None:
        lines.append(f"- manifest: `{result.promotion.manifest_url}` ({result.promotion.entry_count} entries)")
    create_markdown_artifact(key=artifact_key(REVIEW_KEY, "decision"), markdown="\n".join(lines))


def publish_promotion(result: PromotionResult) -> None:
    lines = [
        f"# Promotion into `{result.dest}`",
        "",
        _ids("promoted now", result.promoted),
        _ids("already there", result.already_present),
        _ids("refused as near duplicates, left in staging", [refused.scenario_id for refused in result.refused]),
        *(f"  - {refused.message}" for refused in result.refused),
        _ids("promoted without a near-duplicate check (unreadable folder)", result.unchecked),
        f"- manifest: `{result.manifest_url}` ({result.entry_count} entries)",
    ]
    create_markdown_artifact(key=PROMOTION_KEY, markdown="\n".join(lines), description=f"Promotion into {result.dest}")


def publish_listing(rows: Sequence[Mapping[str, object]], *, where: str) -> None:
    create_table_artifact(key=LISTING_KEY, table=[dict(row) for row in rows], description=f"Scenarios in {where}")


__all__ = [
    "artifact_key",
    "preview_markdown",
    "publish_generation",
    "publish_listing",
    "publish_promotion",
    "publish_review",
    "publish_review_decision",
    "scenario_markdown",
]
