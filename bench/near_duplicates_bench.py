"""Near-duplicate calibration: how far apart the offline author's distinct seeds are, and how near a near copy is.

Run with ``.venv/bin/python bench/near_duplicates_bench.py`` (500 author seeds per tier; about 5 min on
2 cores) or ``--quick`` (40 per tier, about a minute). For every tier it

* writes ``author_script(tier, default prompt, s)`` for ``s`` in ``0..count-1``, validates it with the real
  sandbox and a one-seed harness (``base_seed=s``, so the scale is the one ``s`` draws), writes the scenario
  folder of each passing seed and computes its descriptor from the folder's files
  (`scenario_lib.runs.duplicates.describe_folder`, the function promotion uses);
* computes every scenario's nearest-neighbour distance (`scenario_distance`) among the tier's scenarios:
  distinct seeds, which promotion must not refuse;
* validates ``--copies`` near copies per tier (`near_copy_source`: every parameter moved by 1 % of its range
  towards the middle, every body renamed, the whole scene translated by 23, -17, 6 mm) and measures their
  distance to their original: what promotion must refuse;

then prints, per tier and per family, the distribution of nearest distances (min, p1, p5, p25, median) and
the near copies' largest distance, and the margin of `NEAR_DUPLICATE_DISTANCE` on both sides. Results go
to ``bench/results/near_duplicates.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("MUJOCO_GL", "egl")

from scenario_lib.authoring.offline import author_script  # noqa: E402
from scenario_lib.runs.descriptor import ScenarioDescriptor, scenario_distance  # noqa: E402
from scenario_lib.runs.duplicates import NEAR_DUPLICATE_DISTANCE, describe_folder  # noqa: E402
from scenario_lib.sandbox.pool import SandboxPool  # noqa: E402
from scenario_lib.store.dataset import DatasetStore  # noqa: E402
from scenario_lib.tiers import TIER_PRESETS, Tier  # noqa: E402
from scenario_lib.validation.artifacts import write_scenario_folder  # noqa: E402
from scenario_lib.validation.pipeline import HarnessConfig, Validator, library_versions  # noqa: E402

DEFAULT_OUT = REPO / "bench" / "results" / "near_duplicates.json"
COPY_SHIFT = 0.01  # of each parameter's range
COPY_OFFSET_MM = (23.0, -17.0, 6.0)
COPY_PREFIX = "renamed_"
_PARAMETER_LINE = "    p = {name: rng.uniform(low, high) for name, (low, high, _) in RANGES.items()}\n"

# Appended to a template: build() calls the original, then renames every body and translates the scene.
_WRAPPER = '''

def build(seed, scale):
    from scenario_lib.contract import AllOf, InsideZone

    scenario = _original_build(seed, scale)
    offset = {offset!r}
    rename = {{body.name: {prefix!r} + body.name for body in scenario.bodies}}

    def moved(position):
        return tuple(value + shift for value, shift in zip(position, offset))

    def condition(item):
        if isinstance(item, AllOf):
            return item.model_copy(update={{"conditions": tuple(condition(c) for c in item.conditions)}})
        update = {{"body": rename[item.body]}}
        if isinstance(item, InsideZone):
            update["zone"] = item.zone.model_copy(update={{"center_mm": moved(item.zone.center_mm)}})
        return item.model_copy(update=update)

    bodies = []
    for body in scenario.bodies:
        update = {{"name": rename[body.name], "parent": rename[body.parent] if body.parent else None}}
        if body.parent is None:  # a child's pose is relative to its parent
            update["pose"] = body.pose.model_copy(update={{"position_mm": moved(body.pose.position_mm)}})
        bodies.append(body.model_copy(update=update))
    demonstration = scenario.demonstration
    if demonstration is not None:
        steps = tuple(
            step.model_copy(update={{
                "body": rename[step.body],
                "position_mm": moved(step.position_mm) if step.position_mm is not None else None,
            }})
            for step in demonstration.steps
        )
        demonstration = demonstration.model_copy(update={{"steps": steps}})
    return scenario.model_copy(
        update={{"bodies": tuple(bodies), "success": condition(scenario.success), "demonstration": demonstration}}
    )
'''


def near_copy_source(
    source: str,
    *,
    shift: float = COPY_SHIFT,
    offset_mm: Sequence[float] | None = COPY_OFFSET_MM,
    prefix: str | None = COPY_PREFIX,
) -> str:
    """An offline-authored script rewritten into a near copy of itself.

    Each drawn parameter moves by ``shift`` of its range towards the middle of the range; with `prefix`
    and `offset_mm`, every body is renamed ``prefix + name`` and the whole scene (poses of top-level
    bodies, goal zones, demonstration waypoints) moves by `offset_mm`.
    """
    if _PARAMETER_LINE not in source:
        raise ValueError("not an offline-authored template: its parameter draw line was not found")
    moved_parameters = (
        "    p = {name: value + %r * (RANGES[name][1] - RANGES[name][0]) * "
        "(1 if value < (RANGES[name][0] + RANGES[name][1]) / 2 else -1) for name, value in p.items()}\n" % shift
    )
    rewritten = source.replace(_PARAMETER_LINE, _PARAMETER_LINE + moved_parameters)
    if prefix is None or offset_mm is None:
        return rewritten
    rewritten = rewritten.replace("\ndef build(", "\ndef _original_build(", 1)
    return rewritten + _WRAPPER.format(offset=tuple(offset_mm), prefix=prefix)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def distribution(values: Sequence[float]) -> dict[str, float | int]:
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return {"n": 0}
    return {
        "n": len(finite),
        "min": round(min(finite), 5),
        "p1": round(percentile(finite, 0.01), 5),
        "p5": round(percentile(finite, 0.05), 5),
        "p25": round(percentile(finite, 0.25), 5),
        "median": round(statistics.median(finite), 5),
        "max": round(max(finite), 5),
    }


def nearest_distances(descriptors: dict[str, ScenarioDescriptor]) -> dict[str, tuple[float, str]]:
    """Each scenario's nearest other scenario of the set: ``{id: (distance, nearest id)}``."""
    ids = sorted(descriptors)
    nearest: dict[str, tuple[float, str]] = {sid: (math.inf, "") for sid in ids}
    for index, left in enumerate(ids):
        for right in ids[index + 1 :]:
            distance = scenario_distance(descriptors[left], descriptors[right])
            if distance < nearest[left][0]:
                nearest[left] = (distance, right)
            if distance < nearest[right][0]:
                nearest[right] = (distance, left)
    return nearest


def validate_and_describe(
    validator: Validator, store: DatasetStore, root: Path, tier: Tier, scenario_id: str, source: str, seed: int
) -> ScenarioDescriptor | None:
    report, result = validator.validate_script(source, base_seed=seed)
    if not report.passed:
        return None
    folder = root / scenario_id
    write_scenario_folder(
        folder,
        scenario_id=scenario_id,
        tier=tier.value,
        prompt=TIER_PRESETS[tier].default_prompt,
        author="offline:bench",
        source=source,
        report=report,
        result=result,
    )
    descriptor = describe_folder(store, scenario_id)
    if descriptor is None:
        raise RuntimeError(f"the folder of {scenario_id} has no descriptor")
    return descriptor


def bench_tier(validator: Validator, tier: Tier, count: int, copies: int, threads: int) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"near-dup-{tier.value}-") as tmp:
        root = Path(tmp)
        store = DatasetStore.from_url(f"file://{root}")
        authored = {seed: author_script(tier, TIER_PRESETS[tier].default_prompt, seed) for seed in range(count)}

        def one(seed: int) -> tuple[int, ScenarioDescriptor | None]:
            return seed, validate_and_describe(
                validator, store, root, tier, f"{tier.value}_{seed}", authored[seed].source, seed
            )

        with ThreadPoolExecutor(max_workers=threads) as pool:
            described = dict(pool.map(one, range(count)))
        descriptors = {f"{tier.value}_{seed}": d for seed, d in described.items() if d is not None}
        families = {f"{tier.value}_{seed}": authored[seed].family for seed in range(count)}
        nearest = nearest_distances(descriptors)

        copy_seeds = [seed for seed in range(count) if described[seed] is not None][:copies]

        def copy(seed: int) -> tuple[int, ScenarioDescriptor | None]:
            source = near_copy_source(authored[seed].source)
            return seed, validate_and_describe(validator, store, root, tier, f"copy-{tier.value}_{seed}", source, seed)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            copied = dict(pool.map(copy, copy_seeds))
    copy_distances = {
        f"{tier.value}_{seed}": scenario_distance(described[seed], descriptor)  # type: ignore[arg-type]
        for seed, descriptor in copied.items()
        if descriptor is not None
    }
    by_family: dict[str, list[float]] = defaultdict(list)
    for scenario_id, (distance, _) in nearest.items():
        by_family[families[scenario_id]].append(distance)
    refused = sorted(
        (scenario_id, round(distance, 5), other)
        for scenario_id, (distance, other) in nearest.items()
        if distance <= NEAR_DUPLICATE_DISTANCE
    )
    closest = sorted(nearest.items(), key=lambda item: item[1][0])[:10]
    return {
        "tier": tier.value,
        "authored": count,
        "passed": len(descriptors),
        "wall_s": round(time.perf_counter() - started, 1),
        "nearest": distribution([distance for distance, _ in nearest.values()]),
        "nearest_by_family": {family: distribution(values) for family, values in sorted(by_family.items())},
        "closest_pairs": [[sid, other, round(distance, 5)] for sid, (distance, other) in closest],
        "nearest_sorted": sorted(round(distance, 5) for distance, _ in nearest.values()),
        "distinct_seeds_refused": len(refused),
        "refused": [list(item) for item in refused],
        "near_copies": {
            "n": len(copy_distances),
            "failed_validation": len(copy_seeds) - len(copy_distances),
            "distance": distribution(list(copy_distances.values())),
            "refused": sum(distance <= NEAR_DUPLICATE_DISTANCE for distance in copy_distances.values()),
            "sorted": sorted(round(distance, 5) for distance in copy_distances.values()),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=500, help="author seeds per tier")
    parser.add_argument("--copies", type=int, default=40, help="near copies validated per tier")
    parser.add_argument("--tiers", nargs="*", default=[tier.value for tier in Tier])
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="sandbox workers")
    parser.add_argument("--quick", action="store_true", help="40 seeds and 10 copies per tier")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.copies = 40, 10

    tiers = []
    with SandboxPool(workers=args.workers) as pool:
        validator = Validator(pool, HarnessConfig(seeds=1))
        for name in args.tiers:
            tier = Tier(name)
            result = bench_tier(validator, tier, args.count, args.copies, args.threads)
            tiers.append(result)
            nearest, copies = result["nearest"], result["near_copies"]
            print(
                f"{tier.value}: {result['passed']}/{result['authored']} passed in {result['wall_s']} s; nearest "
                f"distance min {nearest.get('min')} p1 {nearest.get('p1')} p5 {nearest.get('p5')} median "
                f"{nearest.get('median')}; {result['distinct_seeds_refused']} distinct seeds under the threshold; "
                f"near copies: max {copies['distance'].get('max')}, {copies['refused']}/{copies['n']} refused",
                flush=True,
            )
            for family, values in result["nearest_by_family"].items():
                print(f"  {family:15} n {values.get('n')} min {values.get('min')} p1 {values.get('p1')} "
                      f"p5 {values.get('p5')} median {values.get('median')}")  # fmt: skip

    lowest_distinct = min(result["nearest"].get("min", math.inf) for result in tiers)
    highest_copy = max(result["near_copies"]["distance"].get("max", 0.0) for result in tiers)
    summary = {
        "threshold": NEAR_DUPLICATE_DISTANCE,
        "lowest_distinct_nearest": lowest_distinct,
        "highest_near_copy": highest_copy,
        "margin_below_distinct": round(lowest_distinct / NEAR_DUPLICATE_DISTANCE, 3),
        "margin_above_copies": round(NEAR_DUPLICATE_DISTANCE / highest_copy, 3) if highest_copy else None,
        "distinct_seeds_refused": sum(result["distinct_seeds_refused"] for result in tiers),
    }
    print(
        f"threshold {NEAR_DUPLICATE_DISTANCE}: lowest distinct nearest distance {lowest_distinct} "
        f"({summary['margin_below_distinct']}x the threshold), highest near copy {highest_copy} "
        f"(threshold {summary['margin_above_copies']}x it); distinct seeds refused: {summary['distinct_seeds_refused']}"
    )
    payload = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": library_versions(),
        "arguments": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
        "near_copy": {"shift_of_range": COPY_SHIFT, "offset_mm": COPY_OFFSET_MM, "rename_prefix": COPY_PREFIX},
        "summary": summary,
        "tiers": tiers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
