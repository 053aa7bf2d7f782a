"""Batch files: validation with line numbers, expansion, run ids, and a real batch killed with SIGKILL then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scenario_lib.runs.batch import BatchCheckpoint, UnitProgress, UnitState, reconcile
from scenario_lib.runs.batch_spec import expand_units, infer_tier, load_batch, parse_batch, plan_batch
from scenario_lib.config import LlmProvider
from scenario_lib.errors import ConfigError
from scenario_lib.store.commit import list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import COMMIT_MARKER
from scenario_lib.tiers import Tier
from tests.cli.test_cli import assert_one_paragraph_error, cli_env, invoke
from tests.support import REPO

EXAMPLE = REPO / "configs" / "example_batch.yaml"
SMALL_BATCH = """\
name: resumable
description: two runs of two scenarios, one seed at a time
defaults:
  tiers: test_dummy
  counts: 2
  max_concurrency: 1
experiments:
  - name: temps
    temperatures: [0.0, 0.5]
"""


# --- the file -------------------------------------------------------------------------------------------


def test_experiments_expand_to_the_product_of_their_lists() -> None:
    spec = parse_batch("""\
name: sweep
defaults: {providers: offline, tiers: [tier1], counts: 3}
experiments:
  - name: grid
    providers: [offline, openai]
    models: {openai: [gpt-4o-mini, gpt-4.1]}
    tiers: all
    temperatures: [0.0, 0.7]
  - name: defaults-only
""")
    units = expand_units(spec)

    grid = [unit for unit in units if unit.experiment == "grid"]
    assert len(grid) == 3 * 2 * 2  # (offline default + 2 openai models) x 2 tiers x 2 temperatures
    assert {(u.provider, u.model) for u in grid} == {
        (LlmProvider.OFFLINE, "offline-architect"),
        (LlmProvider.OPENAI, "gpt-4o-mini"),
        (LlmProvider.OPENAI, "gpt-4.1"),
    }
    assert {u.tier for u in grid} == {Tier.TIER1, Tier.TIER2} and {u.temperature for u in grid} == {0.0, 0.7}
    rest = [unit for unit in units if unit.experiment == "defaults-only"]
    assert [(u.provider, u.tier, u.count, u.temperature) for u in rest] == [(LlmProvider.OFFLINE, Tier.TIER1, 3, 0.2)]
    assert [unit.index for unit in units] == list(range(len(units)))
    run_ids = [unit.run_id for unit in units]
    assert len(set(run_ids)) == len(run_ids) and all(len(r) <= 64 and r.startswith("sweep-e") for r in run_ids)


def test_run_ids_are_stable_and_a_new_count_keeps_them() -> None:
    text = "name: b\nexperiments:\n  - {tiers: test_dummy, counts: 2, temperatures: [0.1, 0.2]}\n"
    first = [unit.run_id for unit in expand_units(parse_batch(text))]
    again = [unit.run_id for unit in expand_units(parse_batch(text))]
    more = [unit.run_id for unit in expand_units(parse_batch(text.replace("counts: 2", "counts: 5")))]
    other_seed = [
        unit.run_id for unit in expand_units(parse_batch(text.replace("counts: 2", "counts: 2, base_seed: 9")))
    ]
    assert first == again == more  # resuming or enlarging a batch reuses each run's finished seeds
    assert set(first).isdisjoint(other_seed)  # other scenarios, other runs
    duplicated = expand_units(parse_batch("name: b\nexperiments:\n  - {tiers: test_dummy, counts: [2, 4]}\n"))
    assert duplicated[0].run_id != duplicated[1].run_id


def test_a_prompt_picks_its_tier_unless_tiers_are_given() -> None:
    units = expand_units(parse_batch("""\
name: prompts
defaults: {tiers: [test_dummy]}
experiments:
  - {name: levers, prompt: make me ten levers}
  - {name: pegs, prompt: a peg into a hole, tiers: tier2}
  - {name: plain}
"""))
    assert [(u.experiment, u.tier) for u in units] == [
        ("levers", Tier.TIER2),
        ("pegs", Tier.TIER2),
        ("plain", Tier.TEST_DUMMY),
    ]
    assert infer_tier("open the hinged door") is Tier.TIER2 and infer_tier("stack three blocks") is Tier.TIER1


def test_the_example_batch_is_valid() -> None:
    plan = load_batch(EXAMPLE)
    assert plan.name == "example-campaign" and len(plan.units) == 9
    assert plan.scenarios == 2 * 10 + 6 * 20 + 5
    assert plan.model_calls(max_attempts=4) == (plan.scenarios * 3, plan.max_seeds * 9)
    assert {unit.api_key_env for unit in plan.units if unit.provider is LlmProvider.ANTHROPIC} == {"ANTHROPIC_API_KEY"}


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("name: x\nexperiments:\n  - tiers: [1\n", ("x.yaml:4:1: malformed YAML",)),
        ("- just\n- a list\n", ("a batch file is a mapping",)),
        ("name: x\nexperiments: []\n", ("x.yaml:2: experiments:",)),
        (
            "name: x\nexperiments:\n  - tiers: 1\n    providers: [offline, openia]\n",
            ("x.yaml:4: experiments[0].providers[1]:", "'openai'"),
        ),
        ("name: x\nexperiments:\n  - tiers: tier9\n", ("x.yaml:3: experiments[0].tiers: unknown tier 'tier9'",)),
        ("name: x\nexperiments:\n  - tiers: 1\n    counts: [2, 0]\n", ("x.yaml:4: experiments[0].counts: count 0",)),
        ("name: x\nexperiments:\n  - tiers: 1\n    colour: red\n", ("x.yaml:4: experiments[0].colour: Extra inputs",)),
        ("name: x\nexperiments:\n  - tiers: 1\n    temperatures: 3\n", ("temperature 3.0 is outside 0..2",)),
        ("name: ../x\nexperiments:\n  - tiers: 1\n", ("x.yaml:1: name: invalid batch name",)),
        ("name: x\nexperiments:\n  - {}\n", ("set tiers",)),
        ("name: x\nexperiments:\n  - {tiers: 1, models: {openai: [m]}}\n", ("models names provider(s) openai",)),
        ("name: x\nexperiments:\n  - {name: a, tiers: 1}\n  - {name: a, tiers: 2}\n", ("repeated: a",)),
    ],
    ids=[
        "malformed",
        "not-a-mapping",
        "no-experiments",
        "unknown-provider",
        "unknown-tier",
        "zero-count",
        "unknown-field",
        "hot-temperature",
        "bad-name",
        "no-tier",
        "model-of-unused-provider",
        "duplicate-names",
    ],
)
def test_bad_files_point_at_the_line_and_field(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_batch(path)
    for needle in needles:
        assert needle in str(caught.value)


def test_reconcile_keeps_finished_units_of_an_unchanged_definition() -> None:
    plan = plan_batch(parse_batch("name: r\nexperiments:\n  - {tiers: test_dummy, temperatures: [0.1, 0.2]}\n"))
    first, second = plan.units
    earlier = BatchCheckpoint(
        name="r",
        created_at="then",
        units=[
            UnitProgress(unit=first, state=UnitState.DONE, passed=1),
            UnitProgress(unit=second, state=UnitState.RUNNING, passed=0),
        ],
    )
    states = [progress.state for progress in reconcile(plan, earlier).units]
    assert states == [UnitState.DONE, UnitState.PENDING]
    enlarged = plan_batch(
        parse_batch("name: r\nexperiments:\n  - {tiers: test_dummy, temperatures: [0.1, 0.2], counts: 3}\n")
    )
    assert [p.state for p in reconcile(enlarged, earlier).units] == [UnitState.PENDING, UnitState.PENDING]
    assert reconcile(plan, earlier).created_at == "then"


# --- the commands without running anything -------------------------------------------------------------


def test_batch_validate_and_dry_run_print_the_plan(tmp_path: Path) -> None:
    keys = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test"}
    validated = invoke(["batch", "validate", str(EXAMPLE)], cli_env(tmp_path, **keys))
    assert validated.exit_code == 0, validated.output
    assert "9 runs, 145 scenarios" in validated.stdout and "is valid" in validated.stdout

    dry = invoke(["batch", "run", str(EXAMPLE), "--dry-run"], cli_env(tmp_path))
    assert dry.exit_code == 0 and "9 runs, 145 scenarios (at most 235 seeds), 435-2115 model calls" in dry.stdout
    assert "needs an API key" in dry.stdout  # a warning: the plan still prints
    assert not (tmp_path / "store").exists()  # nothing was generated, the store was not even opened


def test_a_missing_key_stops_the_batch_before_it_starts(tmp_path: Path) -> None:
    result = invoke(["batch", "run", str(EXAMPLE)], cli_env(tmp_path, ANTHROPIC_API_KEY="sk-ant-test"))
    assert_one_paragraph_error(result, "experiment hosted-tier2", "needs an API key", "OPENAI_API_KEY")


def test_malformed_yaml_is_one_paragraph(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nexperiments:\n  - {tiers: [1}\n")
    assert_one_paragraph_error(
        invoke(["batch", "validate", str(path)], cli_env(tmp_path)), "broken.yaml:3:", "malformed YAML"
    )
    missing = invoke(["batch", "run", str(tmp_path / "absent.yaml")], cli_env(tmp_path))
    assert_one_paragraph_error(missing, "cannot read the batch file")
    unknown = invoke(["batch", "status", "never-ran"], cli_env(tmp_path))
    assert_one_paragraph_error(unknown, "no batch 'never-ran'")


# --- a real batch, killed and resumed --------------------------------------------------------------------


def _wait_for_a_commit(
    store: DatasetStore, process: subprocess.Popen[bytes], *, beyond: int = 0, timeout_s: float = 240.0
) -> list[str]:
    """Wait until more than ``beyond`` scenarios are staged; returns them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        staged = list_scenarios(store, "staging")
        if len(staged) > beyond:
            return staged
        if process.poll() is not None:
            raise AssertionError(f"the batch exited ({process.returncode}) before a new scenario was staged")
        time.sleep(0.05)
    raise AssertionError("no scenario was staged in time")


def _stop_after_a_commit(
    command: list[str], env: dict[str, str], store: DatasetStore, stop: signal.Signals
) -> tuple[int, str]:
    """Run the CLI in a child process and send it ``stop`` as soon as it commits a new scenario."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scenario_lib", *command],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _wait_for_a_commit(store, process, beyond=len(list_scenarios(store, "staging")))
        os.kill(process.pid, stop)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    return process.returncode, stderr.decode()


def _child_env(env: dict[str, str | None]) -> dict[str, str]:
    """This process's environment with the test's settings applied (None: unset)."""
    return {key: value for key, value in os.environ.items() if key not in env} | {
        key: value for key, value in env.items() if value is not None
    }


@pytest.fixture(scope="module")
def resumed_batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real batch in a child process, SIGKILLed right after a scenario is committed, then resumed here."""
    tmp = tmp_path_factory.mktemp("batch")
    batch_file = tmp / "resumable.yaml"
    batch_file.write_text(SMALL_BATCH)
    env = cli_env(tmp)
    store = DatasetStore.from_url(str(env["SCENARIOS_STORE__URL"]))
    command = ["batch", "run", str(batch_file)]

    killed = _stop_after_a_commit(command, _child_env(env), store, signal.SIGKILL)
    staged_at_kill = list_scenarios(store, "staging")
    markers = {sid: store.read_bytes(f"staging/{sid}/{COMMIT_MARKER}") for sid in staged_at_kill}
    checkpoint_at_kill = json.loads(store.read_bytes("batches/resumable.json"))

    refused = invoke(command, env)
    resumed = invoke([*command, "--resume", "--parallel", "2"], env)
    return {
        "env": env,
        "store": store,
        "plan": load_batch(batch_file),
        "killed": killed,
        "markers": markers,
        "checkpoint_at_kill": checkpoint_at_kill,
        "refused": refused,
        "resumed": resumed,
    }


@pytest.mark.slow
def test_ctrl_c_stops_at_once_and_the_batch_resumes(tmp_path: Path) -> None:
    batch_file = tmp_path / "interrupted.yaml"
    batch_file.write_text(SMALL_BATCH.replace("name: resumable", "name: interrupted"))
    env = cli_env(tmp_path)
    store = DatasetStore.from_url(str(env["SCENARIOS_STORE__URL"]))

    code, stderr = _stop_after_a_commit(["batch", "run", str(batch_file)], _child_env(env), store, signal.SIGINT)

    assert code == 130 and "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    resumed = invoke(["batch", "run", str(batch_file), "--resume"], env)
    assert resumed.exit_code == 0, resumed.output
    assert len(list_scenarios(store, "staging")) == 4


def test_a_killed_batch_resumes_to_exactly_the_planned_scenarios(resumed_batch: dict[str, Any]) -> None:
    store: DatasetStore = resumed_batch["store"]
    plan = resumed_batch["plan"]
    assert resumed_batch["killed"][0] == -signal.SIGKILL
    at_kill = resumed_batch["checkpoint_at_kill"]
    assert at_kill["finished_at"] == "" and "running" in [unit["state"] for unit in at_kill["units"]]
    assert 1 <= len(resumed_batch["markers"]) < 4  # killed right after a commit, before the end

    resumed = resumed_batch["resumed"]
    assert resumed.exit_code == 0, resumed.output
    planned = sorted(f"{unit.run_id}_{seed}" for unit in plan.units for seed in range(unit.count))
    assert list_scenarios(store, "staging") == planned  # every planned scenario, no extra seed
    assert list_scenarios(store, "failures") == []
    # Scenarios committed before the kill were not redone: their commit markers (with the commit time)
    # are the very bytes written before the kill.
    assert resumed_batch["markers"] == {
        sid: store.read_bytes(f"staging/{sid}/{COMMIT_MARKER}") for sid in resumed_batch["markers"]
    }
    for unit in plan.units:
        record = json.loads(store.read_bytes(f"runs/{unit.run_id}.json"))
        seeds = [outcome["seed"] for outcome in record["outcomes"]]
        assert sorted(seeds) == list(range(unit.count)) and len(set(seeds)) == len(seeds)
        # A seed the last process of this run took over from an earlier one is marked reused.
        reused = {f"{unit.run_id}_{o['seed']}" for o in record["outcomes"] if o["reused"]}
        assert reused <= set(resumed_batch["markers"])
    checkpoint = json.loads(store.read_bytes("batches/resumable.json"))
    assert [unit["state"] for unit in checkpoint["units"]] == ["done", "done"] and checkpoint["finished_at"]


def test_a_batch_that_ran_before_needs_resume(resumed_batch: dict[str, Any]) -> None:
    assert_one_paragraph_error(resumed_batch["refused"], "batch 'resumable' already ran", "--resume")


def test_a_finished_batch_resumes_to_nothing(resumed_batch: dict[str, Any], tmp_path: Path) -> None:
    batch_file = tmp_path / "resumable.yaml"
    batch_file.write_text(SMALL_BATCH)
    again = invoke(["batch", "run", str(batch_file), "--resume"], resumed_batch["env"])
    assert again.exit_code == 0 and "Generating" not in again.stdout and "2/2 runs finished" in again.stdout


def test_batch_list_and_status(resumed_batch: dict[str, Any]) -> None:
    env = resumed_batch["env"]
    listed = json.loads(invoke(["batch", "list", "--json"], env).stdout)
    assert listed == [
        {
            "name": "resumable",
            "state": "complete",
            "runs": 2,
            "finished_runs": 2,
            "passed": 4,
            "planned": 4,
            "updated_at": listed[0]["updated_at"],
        }
    ]
    status = json.loads(invoke(["batch", "status", "resumable", "--json"], env).stdout)
    assert [(u["unit"]["temperature"], u["passed"], u["state"]) for u in status["units"]] == [
        (0.0, 2, "done"),
        (0.5, 2, "done"),
    ]
    table = invoke(["batch", "status", "resumable"], env)
    assert table.exit_code == 0 and "4/4 scenarios" in table.stdout
    assert "resumable" in invoke(["batch", "list"], env).stdout


def test_analyze_and_compare_a_batch(resumed_batch: dict[str, Any]) -> None:
    env = resumed_batch["env"]
    report = json.loads(invoke(["analyze", "resumable", "--format", "json"], env).stdout)
    assert report["seeds"] == 4 and report["accepted"] == 4
    assert [(g["key"], g["accepted"]) for g in report["by_temperature"]] == [("0", 2), ("0.5", 2)]
    assert [g["key"] for g in report["by_experiment"]] == ["temps"]

    compared = invoke(["compare", "resumable", "--by", "temperature", "--format", "json"], env)
    assert compared.exit_code == 0, compared.output
    (comparison,) = json.loads(compared.stdout)
    assert comparison["tier"] == "test_dummy" and [g["key"] for g in comparison["groups"]] == ["0", "0.5"]
    tests = {(t["metric"], t["test"]): t for t in comparison["tests"]}
    assert tests[("passed", "kruskal")]["note"] == "all values are equal"  # every seed passed in both groups
    assert set(tests) == {
        (metric, test)
        for metric in ("passed", "stages_passed", "attempts", "duration_s", "tokens")
        for test in ("kruskal", "mannwhitneyu")
    }
    table = invoke(["compare", "resumable", "--by", "temperature", "--tier", "test_dummy"], env)
    assert table.exit_code == 0 and "test_dummy: tests" in table.stdout


def test_a_provider_down_mid_batch_is_recorded_and_one_paragraph(tmp_path: Path) -> None:
    path = tmp_path / "down.yaml"
    path.write_text("""\
name: down
experiments:
  - providers: openai
    models: [gpt-4o-mini]
    tiers: test_dummy
    counts: 1
    max_concurrency: 1
    api_key_env: {openai: FAKE_OPENAI_KEY}
    base_url: {openai: "http://127.0.0.1:9/v1"}
""")
    env = cli_env(tmp_path, FAKE_OPENAI_KEY="sk-not-a-real-key")

    result = invoke(["batch", "run", str(path)], env)

    assert_one_paragraph_error(result, "batch down stopped: ", "ConnectionError", "--resume")
    assert "sk-not-a-real-key" not in result.output
    status = json.loads(invoke(["batch", "status", "down", "--json"], env).stdout)
    assert status["units"][0]["state"] == "error" and "ConnectionError" in status["units"][0]["error"]


def test_a_hosted_provider_gets_its_key_model_and_temperature_from_the_batch(tmp_path: Path) -> None:
    from scenario_lib.authoring.offline import author_script
    from tests.openai_stub_server import serve_openai_stub
    from tests.scripted_model import APPROVE, fenced

    plan = '{"family": "push_box", "summary": "push a cube", "verification_strategy": "goal away from the start"}'
    script = author_script(Tier.TEST_DUMMY, None, 0).source
    with serve_openai_stub([fenced("json", plan), fenced("python", script), APPROVE], api_key="sk-stub") as (url, stub):
        path = tmp_path / "hosted.yaml"
        path.write_text(f"""\
name: hosted
experiments:
  - providers: openai
    models: [stub-model]
    tiers: test_dummy
    temperatures: 0.7
    counts: 1
    max_concurrency: 1
    api_key_env: {{openai: STUB_KEY}}
    base_url: {{openai: "{url}"}}
""")
        env = cli_env(tmp_path, STUB_KEY="sk-stub")
        result = invoke(["batch", "run", str(path)], env)

    assert result.exit_code == 0, result.output
    assert [request["model"] for request in stub.requests] == ["stub-model"] * 3  # plan, code, review
    assert {request["temperature"] for request in stub.requests} == {0.7}
    store = DatasetStore.from_url(str(env["SCENARIOS_STORE__URL"]))
    (unit,) = load_batch(path).units
    record = json.loads(store.read_bytes(f"runs/{unit.run_id}.json"))
    assert (record["provider"], record["model"], record["outcomes"][0]["passed"]) == ("openai", "stub-model", True)
    assert "sk-stub" not in result.output
