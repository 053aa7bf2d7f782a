"""Analysis of runs: yields, cost per accepted scenario, coverage, diversity, comparison tests, tables and plots."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from scenario_lib.cli.analysis_tables import TableData, comparison_tables, report_tables, tables_to_csv, write_plots
from scenario_lib.insight.analysis import (
    GroupBy,
    RunInput,
    ScenarioFacts,
    analyze_runs,
    diversity,
    group_stats,
    parameter_coverage,
    stage_yields,
)
from scenario_lib.insight.comparison import compare_groups, seed_metric
from scenario_lib.errors import ConfigError
from scenario_lib.runs.generation import RunSummary, SeedOutcome

STAGES = ("code", "geometry", "mjcf", "stability", "task")


def outcome(
    seed: int, *, passed: bool, failed_at: str | None = None, run: str = "run", **fields: object
) -> SeedOutcome:
    """A seed's outcome as `run_generation` records it: verdicts up to the failing stage, then skipped."""
    verdicts: dict[str, str] = {}
    if failed_at != "review":
        for stage in STAGES:
            if failed_at == stage:
                verdicts[stage] = "fail"
            elif verdicts and "fail" in verdicts.values():
                verdicts[stage] = "skipped"
            else:
                verdicts[stage] = "pass"
    values: dict[str, object] = {
        "scenario_id": f"{run}_{seed}",
        "seed": seed,
        "passed": passed,
        "stage_reached": failed_at or "task",
        "family": "push_box" if failed_at != "review" else "unknown",
        "attempts": 1,
        "duration_s": 2.0,
        "input_tokens": 100,
        "output_tokens": 50,
        "cost_usd": 0.01,
        "stage_verdicts": verdicts,
    }
    return SeedOutcome.model_validate(values | fields)


def run(
    run_id: str, outcomes: list[SeedOutcome], *, tier: str = "test_dummy", model: str = "m", **extra: object
) -> RunInput:
    summary = RunSummary(
        run_id=run_id,
        tier=tier,
        prompt="p",
        provider="offline",
        model=model,
        count=len(outcomes),
        base_seed=0,
        headroom=0,
        store_url="file:///nowhere",
        started_at="2025-01-01T00:00:00+00:00",
        outcomes=outcomes,
    )
    return RunInput(summary, **extra)  # type: ignore[arg-type]


def test_stage_yields_count_reached_passed_and_failed() -> None:
    outcomes = [
        outcome(0, passed=True),
        outcome(1, passed=False, failed_at="stability"),
        outcome(2, passed=False, failed_at="code"),
        outcome(3, passed=False, failed_at="review", attempts=4),
    ]
    rows = {row.stage: row for row in stage_yields(outcomes)}
    assert (rows["review"].reached, rows["review"].passed, rows["review"].failed) == (4, 3, 1)
    assert (rows["code"].reached, rows["code"].passed, rows["code"].failed) == (3, 2, 1)
    assert (rows["stability"].reached, rows["stability"].passed, rows["stability"].failed) == (2, 1, 1)
    assert rows["task"].reached == 1 and rows["task"].yield_rate == 1.0 and rows["task"].cumulative_rate == 0.25
    assert rows["geometry"].yield_rate == 1.0 and rows["mjcf"].cumulative_rate == 0.5


def test_cost_per_accepted_counts_failed_seeds_and_leaves_reused_ones_out() -> None:
    pairs_run = run(
        "r",
        [
            outcome(0, passed=True, attempts=1, duration_s=4.0, input_tokens=300, output_tokens=100, cost_usd=0.02),
            outcome(1, passed=False, failed_at="task", attempts=3, duration_s=6.0, input_tokens=500, output_tokens=100),
            # Finished by an interrupted earlier try: its time and tokens were never recorded.
            outcome(
                2, passed=True, attempts=2, duration_s=0.0, input_tokens=0, output_tokens=0, reused=True, cost_usd=None
            ),
        ],
    )
    stats = group_stats("all", [(pairs_run, o) for o in pairs_run.summary.outcomes])
    assert (stats.seeds, stats.accepted, stats.runs) == (3, 2, 1)
    assert stats.yield_rate == pytest.approx(2 / 3, abs=1e-6)
    assert stats.attempts_per_accepted == 3.0  # (1 + 3 + 2) attempts / 2 accepted
    assert stats.time_per_accepted_s == 10.0  # (4 + 6) s over the one measured acceptance
    assert stats.tokens_per_accepted == 1000.0
    assert stats.cost_per_accepted_usd == pytest.approx(0.03)
    unknown = group_stats("x", [(pairs_run, outcome(5, passed=True, cost_usd=None))])
    assert unknown.cost_per_accepted_usd is None
    nothing = group_stats("none", [(pairs_run, outcome(6, passed=False, failed_at="code"))])
    assert nothing.yield_rate == 0.0 and nothing.attempts_per_accepted is None


def facts(scenario_id: str, family: str, passed: bool = True, **parameters: float) -> ScenarioFacts:
    return ScenarioFacts(scenario_id=scenario_id, family=family, passed=passed, parameters=parameters)


def test_coverage_fills_bins_of_the_explored_range() -> None:
    found = {
        f"s{index}": facts(f"s{index}", "lever", passed=index < 5, length_mm=100.0 + 10 * index, mass_kg=1.0)
        for index in range(10)
    }
    length, mass = parameter_coverage(found)
    assert (length.parameter, length.low, length.high, length.accepted) == ("length_mm", 100.0, 190.0, 5)
    assert (length.bins_filled, length.bins, length.coverage) == (5, 10, 0.5)
    assert (mass.bins_filled, mass.bins, mass.coverage) == (1, 1, 1.0)  # a constant parameter is one bin


def test_diversity_is_zero_for_copies_and_one_across_families() -> None:
    copies = [facts(f"c{i}", "lever", length_mm=100.0, mass_kg=2.0) for i in range(4)]
    assert diversity(copies).mean_pairwise_distance == 0.0 and diversity(copies).families == 1

    apart = [facts("a", "lever", length_mm=100.0), facts("b", "seesaw", width_mm=5.0)]
    result = diversity(apart, tiers=["tier2"])
    assert result.mean_pairwise_distance == 1.0
    assert result.family_entropy == pytest.approx(math.log(2) / math.log(4))  # 2 of tier 2's 4 families, evenly

    near = diversity([facts("a", "lever", length_mm=100.0), facts("b", "lever", length_mm=110.0)])
    assert near.mean_pairwise_distance == pytest.approx(10 / 210, abs=1e-6)
    failed_ones_do_not_count = diversity([*copies, facts("z", "slider", passed=False, x=1.0)])
    assert failed_ones_do_not_count.accepted == 4 and failed_ones_do_not_count.families == 1


def test_analyze_runs_groups_by_tier_family_model_and_batch_fields() -> None:
    first = run(
        "a",
        [outcome(0, passed=True, run="a"), outcome(1, passed=False, failed_at="mjcf", run="a")],
        model="m1",
        batch="b",
        temperature=0.0,
        experiment="e",
    )
    second = run(
        "c",
        [outcome(0, passed=True, run="c", family="lever")],
        tier="tier2",
        model="m2",
        batch="b",
        temperature=0.7,
        experiment="e",
    )
    known = {
        "a_0": facts("a_0", "push_box", size_mm=30.0),
        "c_0": facts("c_0", "lever", length_mm=200.0),
        "z_9": facts("z_9", "x"),
    }

    report = analyze_runs([first, second], known)

    assert (report.seeds, report.accepted, report.runs) == (3, 2, ["a", "c"])
    assert [g.key for g in report.by_tier] == ["test_dummy", "tier2"]
    assert [(g.key, g.accepted) for g in report.by_family] == [("lever", 1), ("push_box", 1)]
    assert [g.key for g in report.by_model] == ["offline:m1", "offline:m2"]
    assert [g.key for g in report.by_temperature] == ["0", "0.7"] and [g.key for g in report.by_experiment] == ["e"]
    assert report.diversity.accepted == 2 and report.diversity.mean_pairwise_distance == 1.0  # z_9 is not in these runs
    titles = [table.title for table in report_tables(report)]
    assert titles[:5] == ["Overview", "Yield per stage", "Per tier", "Per family", "Per provider:model"]
    assert "Per temperature" in titles and "Parameter coverage" in titles
    with pytest.raises(ConfigError, match="nothing to analyse"):
        analyze_runs([])


def test_compare_finds_a_real_difference_and_not_a_fake_one() -> None:
    good = run("good", [outcome(i, passed=True, run="good", attempts=1) for i in range(10)], model="strong")
    bad = run(
        "bad", [outcome(i, passed=False, failed_at="stability", run="bad", attempts=4) for i in range(10)], model="weak"
    )
    twin = run("twin", [outcome(i, passed=True, run="twin", attempts=1) for i in range(10)], model="twin")

    (comparison,) = compare_groups([good, bad, twin], GroupBy.MODEL)

    assert comparison.tier == "test_dummy" and [g.key for g in comparison.groups] == [
        "offline:strong",
        "offline:twin",
        "offline:weak",
    ]
    tests = {(t.metric, t.test, tuple(t.groups)): t for t in comparison.tests}
    kruskal = tests[("passed", "kruskal", ("offline:strong", "offline:twin", "offline:weak"))]
    assert kruskal.p_value is not None and kruskal.p_value < 0.001
    strong_vs_weak = tests[("attempts", "mannwhitneyu", ("offline:strong", "offline:weak"))]
    assert strong_vs_weak.p_value is not None and strong_vs_weak.p_value < 0.001
    assert strong_vs_weak.statistic == 0.0  # every strong seed took fewer attempts than every weak one
    same = tests[("passed", "mannwhitneyu", ("offline:strong", "offline:twin"))]
    assert same.p_value is None and same.note == "all values are equal"
    stages = tests[("stages_passed", "mannwhitneyu", ("offline:strong", "offline:weak"))]
    assert stages.p_value is not None and stages.p_value < 0.001  # 5 stages against 3


def test_compare_keeps_tiers_apart_and_needs_two_groups() -> None:
    one = run("one", [outcome(0, passed=True)], model="a")
    other_tier = run("two", [outcome(0, passed=True)], model="b", tier="tier1")
    assert compare_groups([one, other_tier], GroupBy.MODEL) == []
    same_tier = run("three", [outcome(0, passed=False, failed_at="code")], model="b")
    comparisons = compare_groups([one, other_tier, same_tier], GroupBy.MODEL, tier="test_dummy")
    assert [c.tier for c in comparisons] == ["test_dummy"]
    by_temperature = compare_groups(
        [run("x", [outcome(0, passed=True)], temperature=0.0), run("y", [outcome(0, passed=True)], temperature=1.0)],
        GroupBy.TEMPERATURE,
    )
    assert [g.key for g in by_temperature[0].groups] == ["0", "1"]
    assert comparison_tables(by_temperature)[1].title == "test_dummy: tests"


def test_reused_seeds_leave_time_and_tokens_out_of_the_tests() -> None:
    reused = outcome(0, passed=True, reused=True, duration_s=0.0)
    fresh = outcome(1, passed=True, duration_s=3.0)
    comparison = compare_groups(
        [run("a", [reused, fresh], model="a"), run("b", [outcome(0, passed=True, duration_s=5.0)], model="b")],
        metrics=("duration_s", "passed"),
    )[0]
    duration = next(t for t in comparison.tests if t.metric == "duration_s" and t.test == "mannwhitneyu")
    assert duration.p_value is not None  # 3.0 against 5.0: the reused 0.0 was left out
    assert seed_metric(fresh, "tokens") == 150.0
    with pytest.raises(ConfigError, match="unknown metric"):
        seed_metric(fresh, "beauty")


def test_tables_render_as_csv_and_markdown() -> None:
    table = TableData("Per model", ("group", "yield", "cost"), (("a|b", 0.5, None), ("c", 1.0, 0.25)))
    rows = list(csv.DictReader(io.StringIO(tables_to_csv([table]))))
    assert rows[0] == {"table": "Per model", "row": "a|b", "column": "yield", "value": "0.5"}
    assert rows[1] == {"table": "Per model", "row": "a|b", "column": "cost", "value": ""}
    markdown = table.to_markdown()
    assert "| group | yield | cost |" in markdown and "| a\\|b | 0.5 | - |" in markdown


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    report = analyze_runs(
        [run("r", [outcome(0, passed=True), outcome(1, passed=False, failed_at="task")])],
        {"r_0": ScenarioFacts("r_0", "push_box", True, {"size_mm": 30.0}, {"code": 0.2, "task": 0.1})},
    )
    paths = write_plots(report, tmp_path / "plots")
    assert [path.name for path in paths] == ["yield_by_stage.png", "time_per_stage.png", "diversity.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5000 for path in paths)
