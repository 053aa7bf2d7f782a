"""Environment benchmark: what one ``scenarios/Scenario-v0`` step costs, and the baselines' success rates.

Run with ``.venv/bin/python bench/env_step_bench.py`` (about a minute on 2 cores; ``--quick`` for one
scenario per family and fewer episodes). It builds real scenarios (``--per-family`` offline-authored
scripts of every family, validated in the sandbox with one harness seed) and promotes them into a
benchmark in a temporary local store, then measures:

* **step cost**: per family, the stored demonstration replayed through ``gymnasium.make`` (its default
  wrappers: the passive env checker and order enforcing) at the control rate (one step per 20 ms of
  simulated time, 10 MuJoCo steps at the scenes' 2 ms timestep), against the raw ``mujoco.mj_step``
  calls that step makes: the same calls, with the same applied forces, replayed on a bare ``MjData``
  (the final states are checked equal). The abstract hand's own controller (``Hand.act`` without the
  environment) is timed too, so the ratio splits into the hand's share and the environment's. Each
  figure is the fastest of ``--repeats`` passes (the machine is shared; the minimum is the least noisy);
* **baselines**: success rates of ``demo``, ``zero`` and ``random`` over the tier-1 and tier-2 families,
  ``--episodes`` episodes per scenario (the issue's bars: 100 %, 0 %, at most 5 %).

Results go to ``bench/results/env_step.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# scenario_lib picks the headless OpenGL backend before anything imports mujoco.
import gymnasium  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from scenario_lib.authoring.offline import author_script  # noqa: E402
from scenario_lib.envs import ENV_ID, ScenarioEnv  # noqa: E402
from scenario_lib.envs.benchmark import open_benchmark  # noqa: E402
from scenario_lib.envs.evaluation import evaluate_benchmark  # noqa: E402
from scenario_lib.envs.policies import load_policy  # noqa: E402
from scenario_lib.runs.promotion import promote  # noqa: E402
from scenario_lib.sandbox.pool import SandboxPool  # noqa: E402
from scenario_lib.scene.actuation import Hand, HandAction  # noqa: E402
from scenario_lib.store import DatasetStore  # noqa: E402
from scenario_lib.store.commit import commit_scenario  # noqa: E402
from scenario_lib.store.layout import staging_prefix  # noqa: E402
from scenario_lib.tiers import TIER_PRESETS, Tier  # noqa: E402
from scenario_lib.validation.artifacts import write_scenario_folder  # noqa: E402
from scenario_lib.validation.pipeline import HarnessConfig, Validator, library_versions  # noqa: E402

DEST = "bench"
RESULTS = REPO / "bench" / "results" / "env_step.json"
STEP_COST_BAR = 1.5
RANDOM_BAR = 0.05


def build_benchmark(root: Path, per_family: int) -> tuple[DatasetStore, dict[str, str]]:
    """Promote ``per_family`` validated scenarios of every family into benchmark ``bench``; id -> family."""
    store = DatasetStore.from_url(f"file://{root / 'store'}")
    families: dict[str, str] = {}
    with SandboxPool(workers=1) as pool:
        validator = Validator(pool, HarnessConfig(seeds=1, decomposition_cache_dir=root / "coacd"))
        for tier, preset in TIER_PRESETS.items():
            for family in preset.families:
                for author_seed in range(per_family):
                    authored = author_script(tier, family.replace("_", " "), author_seed)
                    report, result = validator.validate_script(authored.source, base_seed=author_seed)
                    if not report.passed:
                        print(f"  {family} author seed {author_seed} did not validate: {report.summary()}", flush=True)
                        continue
                    scenario_id = f"{family.replace('_', '-')}_{author_seed}"
                    folder = root / "folders" / scenario_id
                    write_scenario_folder(
                        folder, scenario_id=scenario_id, tier=tier.value, prompt=preset.default_prompt,
                        author="offline:bench", source=authored.source, report=report, result=result,
                    )  # fmt: skip
                    commit_scenario(store, folder, staging_prefix(scenario_id))
                    families[scenario_id] = family
    promote(store, sorted(families), dest=DEST)
    return store, families


def time_env_steps(
    env: gymnasium.Env[Any, Any], actions: np.ndarray, record: list[tuple[int, bytes, bytes]] | None = None
) -> tuple[float, int, np.ndarray]:
    """Seconds spent in ``env.step`` over one demonstration episode, its step count and final qpos; with
    ``record``, the hand's kernel appends its mj_step calls to it."""
    env.reset(seed=0)
    unwrapped = env.unwrapped
    assert isinstance(unwrapped, ScenarioEnv)
    unwrapped._hand.kernel.record = record  # the episode's hand, made by reset
    spent = 0.0
    steps = 0
    for action in actions:
        started = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        spent += time.perf_counter() - started
        steps += 1
        if terminated or truncated:
            break
    unwrapped._hand.kernel.record = None
    return spent, steps, unwrapped.data.qpos.copy()


def record_mj_step_calls(env: gymnasium.Env[Any, Any], actions: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The ``mj_step`` calls one episode makes: (nstep, xfrc_applied, qfrc_applied) at each call, as the hand's
    kernel records them (it calls libmujoco directly)."""
    recorded: list[tuple[int, bytes, bytes]] = []
    time_env_steps(env, actions, recorded)
    nbody = env.unwrapped.model.nbody  # type: ignore[attr-defined]
    return [(nstep, np.frombuffer(xfrc).reshape(nbody, 6), np.frombuffer(qfrc)) for nstep, xfrc, qfrc in recorded]


def time_raw_calls(model: mujoco.MjModel, calls: list[tuple[int, np.ndarray, np.ndarray]]) -> tuple[float, np.ndarray]:
    """Seconds inside the same ``mj_step`` calls on a bare MjData (only the calls are timed), final qpos."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    spent = 0.0
    for nstep, xfrc, qfrc in calls:
        data.xfrc_applied[:] = xfrc
        data.qfrc_applied[:] = qfrc
        started = time.perf_counter()
        mujoco.mj_step(model, data, nstep=nstep)
        spent += time.perf_counter() - started
    return spent, data.qpos.copy()


def time_hand(model: mujoco.MjModel, actions: np.ndarray, steps: int) -> float:
    """Seconds in ``Hand.act`` alone (the controller and its mj_step calls) over the same actions."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    hand = Hand(model, data)
    decoded = [HandAction.from_vector(action) for action in actions[:steps]]
    started = time.perf_counter()
    for action in decoded:
        hand.act(action)
    return time.perf_counter() - started


def measure_step_cost(store: DatasetStore, families: dict[str, str], repeats: int) -> list[dict[str, Any]]:
    first_of_family: dict[str, str] = {}
    for scenario_id, family in sorted(families.items()):
        first_of_family.setdefault(family, scenario_id)
    rows = []
    for family, scenario_id in first_of_family.items():
        env = gymnasium.make(ENV_ID, benchmark=DEST, scenario_id=scenario_id, store=store.url)
        unwrapped = env.unwrapped
        assert isinstance(unwrapped, ScenarioEnv)
        actions = np.asarray(unwrapped.demonstration.actions, dtype=np.float64)
        calls = record_mj_step_calls(env, actions)
        env_s, raw_s, hand_s = [], [], []
        for _ in range(repeats):
            spent, steps, env_qpos = time_env_steps(env, actions)
            raw, raw_qpos = time_raw_calls(unwrapped.model, calls)
            assert np.array_equal(env_qpos, raw_qpos), f"{scenario_id}: the raw calls did not reproduce the episode"
            env_s.append(spent)
            raw_s.append(raw)
            hand_s.append(time_hand(unwrapped.model, actions, steps))
        env_us, raw_us, hand_us = (min(values) / steps * 1e6 for values in (env_s, raw_s, hand_s))
        rows.append(
            {
                "family": family,
                "scenario_id": scenario_id,
                "steps": steps,
                "mj_steps_per_env_step": sum(nstep for nstep, _, _ in calls) / steps,
                "env_step_us": round(env_us, 1),
                "raw_mj_step_us": round(raw_us, 1),
                "hand_act_us": round(hand_us, 1),
                "ratio_env_to_raw": round(env_us / raw_us, 2),
                "ratio_hand_to_raw": round(hand_us / raw_us, 2),
                "ratio_env_to_hand": round(env_us / hand_us, 2),
            }
        )
        env.close()
        print(
            f"  {family:15s} env step {env_us:7.1f} us   raw mj_step {raw_us:7.1f} us   hand.act {hand_us:7.1f} us   "
            f"env/raw {env_us / raw_us:4.2f}   hand/raw {hand_us / raw_us:4.2f}   env/hand {env_us / hand_us:4.2f}",
            flush=True,
        )
    return rows


def measure_baselines(store: DatasetStore, families: dict[str, str], episodes: int) -> dict[str, Any]:
    benchmark = open_benchmark(DEST, store=store)
    record = evaluate_benchmark(benchmark, [load_policy(name) for name in ("demo", "zero", "random")], episodes=episodes)
    tier_families = {family for tier in (Tier.TIER1, Tier.TIER2) for family in TIER_PRESETS[tier].families}
    summary: dict[str, Any] = {}
    for policy in record.policies:
        per_family: dict[str, list[bool]] = {}
        for scenario in policy.scenarios:
            per_family.setdefault(families[scenario.scenario_id], []).extend(e.success for e in scenario.episodes)
        tiers = [success for family, runs in per_family.items() if family in tier_families for success in runs]
        summary[policy.policy] = {
            "tier1_tier2_success_rate": sum(tiers) / len(tiers),
            "tier1_tier2_episodes": len(tiers),
            "per_family": {family: sum(runs) / len(runs) for family, runs in sorted(per_family.items())},
            "mean_normalized_return": policy.figures.mean_normalized_return,
        }
        print(
            f"  {policy.policy:7s} success {sum(tiers) / len(tiers):6.1%} over {len(tiers)} tier-1/tier-2 episodes "
            f"({len({s.scenario_id for s in policy.scenarios})} scenarios), mean normalized return "
            f"{policy.figures.mean_normalized_return:.3f}",
            flush=True,
        )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--per-family", type=int, default=3, help="Scenarios per family (author seeds 0, 1, ...).")
    parser.add_argument("--episodes", type=int, default=10, help="Episodes per scenario and baseline.")
    parser.add_argument("--repeats", type=int, default=15, help="Timed passes per family (the fastest counts).")
    parser.add_argument("--quick", action="store_true", help="One scenario per family, 3 episodes, 3 repeats.")
    args = parser.parse_args()
    if args.quick:
        args.per_family, args.episodes, args.repeats = 1, 3, 3
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="env-bench-") as scratch:
        print(f"building {args.per_family} scenario(s) per family ...", flush=True)
        store, families = build_benchmark(Path(scratch), args.per_family)
        print("step cost (demonstration episodes, fastest of the repeats):", flush=True)
        steps = measure_step_cost(store, families, args.repeats)
        print("baselines:", flush=True)
        baselines = measure_baselines(store, families, args.episodes)
    ratios = [row["ratio_env_to_raw"] for row in steps]
    hand_over_raw = [row["ratio_hand_to_raw"] for row in steps]
    env_over_hand = [row["ratio_env_to_hand"] for row in steps]
    results = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "versions": library_versions(),
        "arguments": vars(args),
        "step_cost": {
            "bar_env_to_raw": STEP_COST_BAR,
            "median_ratio_env_to_raw": round(statistics.median(ratios), 3),
            "max_ratio_env_to_raw": max(ratios),
            "min_ratio_env_to_raw": min(ratios),
            "median_ratio_hand_to_raw": round(statistics.median(hand_over_raw), 3),
            "range_ratio_hand_to_raw": [min(hand_over_raw), max(hand_over_raw)],
            "median_ratio_env_to_hand": round(statistics.median(env_over_hand), 3),
            "range_ratio_env_to_hand": [min(env_over_hand), max(env_over_hand)],
            "per_family": steps,
        },
        "baselines": baselines,
        "bars_met": {
            "demo_100_percent": baselines["demo"]["tier1_tier2_success_rate"] == 1.0,
            "zero_0_percent": baselines["zero"]["tier1_tier2_success_rate"] == 0.0,
            "random_at_most_5_percent": baselines["random"]["tier1_tier2_success_rate"] <= RANDOM_BAR,
            "step_cost_at_most_1_5": max(ratios) <= STEP_COST_BAR,
        },
        "duration_s": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"bars: {results['bars_met']}; written to {RESULTS.relative_to(REPO)} ({results['duration_s']} s)")


if __name__ == "__main__":
    main()
