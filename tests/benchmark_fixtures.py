"""A promoted benchmark for the environment, evaluation and export tests: one real scenario per family.

Each family's offline-authored script is validated in the real sandbox (one harness seed), written as a
scenario folder, committed to staging of a local store and promoted into benchmark ``v1``. Built once
per test session (about 10 s) and shared by the modules that import the fixture.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from scenario_lib.authoring.offline import author_script
from scenario_lib.runs.promotion import promote
from scenario_lib.sandbox.pool import SandboxPool
from scenario_lib.store import DatasetStore
from scenario_lib.store.commit import commit_scenario
from scenario_lib.store.layout import staging_prefix
from scenario_lib.tiers import TIER_PRESETS, Tier
from scenario_lib.validation.artifacts import write_scenario_folder
from scenario_lib.validation.pipeline import HarnessConfig, Validator

DEST = "v1"
FAMILIES = tuple(family for preset in TIER_PRESETS.values() for family in preset.families)
TIER_FAMILIES = tuple(family for tier in (Tier.TIER1, Tier.TIER2) for family in TIER_PRESETS[tier].families)


@dataclass(frozen=True)
class PromotedBenchmark:
    """Benchmark ``v1`` in a local store, the scenario id of each family, and the folders it was made from."""

    store: DatasetStore
    dest: str
    ids: dict[str, str]  # family -> scenario id
    folders: dict[str, Path]  # scenario id -> the scenario folder as written (a copy outside the store)

    @property
    def store_url(self) -> str:
        return self.store.url

    def env_kwargs(self, family: str) -> dict[str, str]:
        return {"benchmark": self.dest, "scenario_id": self.ids[family], "store": self.store_url}


@pytest.fixture(scope="session")
def promoted_benchmark(tmp_path_factory: pytest.TempPathFactory) -> PromotedBenchmark:
    root = tmp_path_factory.mktemp("benchmark")
    store = DatasetStore.from_url(f"file://{root / 'store'}")
    ids: dict[str, str] = {}
    folders: dict[str, Path] = {}
    with SandboxPool(workers=1) as pool:
        validator = Validator(pool, HarnessConfig(seeds=1, decomposition_cache_dir=root / "coacd"))
        for tier, preset in TIER_PRESETS.items():
            for family in preset.families:
                authored = author_script(tier, family.replace("_", " "), 0)
                report, result = validator.validate_script(authored.source, base_seed=0)
                assert report.passed, (family, report.summary())
                scenario_id = f"{family.replace('_', '-')}_0"
                folder = root / "folders" / scenario_id
                write_scenario_folder(
                    folder,
                    scenario_id=scenario_id,
                    tier=tier.value,
                    prompt=preset.default_prompt,
                    author="offline:test",
                    source=authored.source,
                    report=report,
                    result=result,
                )
                commit_scenario(store, folder, staging_prefix(scenario_id))
                ids[family] = scenario_id
                folders[scenario_id] = folder
    promote(store, sorted(ids.values()), dest=DEST)
    return PromotedBenchmark(store, DEST, ids, folders)


@pytest.fixture(name="store")
def benchmark_store_copy(promoted_benchmark: PromotedBenchmark, tmp_path: Path) -> DatasetStore:
    """A copy of the promoted benchmark's store, to change (promote into, tamper with, withdraw, release)."""
    root = promoted_benchmark.store.local_root
    assert root is not None
    shutil.copytree(root, tmp_path / "store")
    return DatasetStore.from_url(f"file://{tmp_path / 'store'}")
