"""A benchmark's derived files and releases, on a real promoted benchmark in a real local store.

The index loads with `datasets` (by file, and by the card's own ``configs``), the card's YAML parses,
`mlcroissant` validates ``croissant.json`` and iterates its records, rebuilds are byte-identical, a
withdrawal shows in the card with its reason, and a release stays as it was while the benchmark grows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from scenario_lib.errors import ConfigError
from scenario_lib.coverage import ScenarioFacts, diversity, parameter_coverage
from scenario_lib.runs.benchmark_index import (
    DRAFT_VERSION,
    INDEX_COLUMNS,
    CardSettings,
    Split,
    split_of,
)
from scenario_lib.runs.promotion import promote, read_manifest
from scenario_lib.runs.publication import (
    list_releases,
    read_card_settings,
    rebuild_benchmark_files,
    release_benchmark,
)
from scenario_lib.runs.withdrawal import withdraw
from scenario_lib.store import DatasetStore
from scenario_lib.store.layout import COMMIT_MARKER, benchmark_release_prefix
from scenario_lib.validation.artifacts import read_scenario_manifest
from tests.benchmark_fixtures import PromotedBenchmark, benchmark_store_copy, promoted_benchmark  # noqa: F401
from tests.support import invoke_cli
from tests.store.test_store import make_scenario_folder

DERIVED = ("index.parquet", "splits/train.parquet", "splits/test.parquet", "README.md", "croissant.json")




def folder(store: DatasetStore, *parts: str) -> Path:
    assert store.local_root is not None
    return store.local_root.joinpath("benchmarks", "v1", *parts)


def card_header(path: Path) -> dict[str, object]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n", 2)[1])
    assert isinstance(header, dict)
    return header


def croissant_records(path: Path) -> list[dict[str, object]]:
    import mlcroissant

    dataset = mlcroissant.Dataset(jsonld=str(path))  # validates; raises on an error
    assert dataset.metadata.ctx.issues.errors == set()
    records = []
    for record in dataset.records("scenarios"):
        records.append({key.split("/", 1)[1]: value for key, value in record.items()})
    return records




def test_promotion_writes_an_index_card_and_croissant_that_their_readers_accept(
    promoted_benchmark: PromotedBenchmark,
) -> None:
    import datasets

    store = promoted_benchmark.store
    manifest = read_manifest(store, "v1")
    assert manifest is not None
    ids = sorted(promoted_benchmark.ids.values())
    for name in DERIVED:
        assert folder(store, name).is_file(), name

    index = datasets.load_dataset("parquet", data_files=str(folder(store, "index.parquet")))["train"]
    assert index.column_names == [column.name for column in INDEX_COLUMNS]
    assert index["scenario_id"] == ids
    for row in index:
        stored = read_scenario_manifest(store, f"benchmarks/v1/{row['scenario_id']}")
        assert (row["tier"], row["family"], row["objective"]) == (stored.tier, stored.family, stored.objective)
        assert json.loads(row["parameters"]) == stored.parameters and stored.parameters
        assert row["passed"] and row["certified"] and row["problem"] == ""
        assert row["harness_builds"] == row["harness_passed"] >= 1
        assert all(verdicts["passed"] for verdicts in json.loads(row["verdicts"]))
        assert row["demonstration_steps"] > 0 and row["demonstration_time_to_success_s"] >= 0
        assert json.loads(row["file_sha256"]) == {item.path: item.sha256 for item in stored.files}
        assert row["manifest_sha256"] == hashlib.sha256(folder(store, row["scenario_id"], "manifest.json").read_bytes()).hexdigest()
        assert row["split"] == split_of(row["scenario_id"]).value

    # The card's own configs: `datasets` reads README.md's YAML and loads the two splits it names.
    splits = datasets.load_dataset(str(folder(store)))
    expected = {split.value: [sid for sid in ids if split_of(sid) is split] for split in Split}
    assert {name: sorted(split["scenario_id"]) for name, split in splits.items()} == {
        name: members for name, members in expected.items() if members  # an empty split is not a configuration
    }

    header = card_header(folder(store, "README.md"))
    assert header["license"] == "cc-by-4.0"
    assert header["task_categories"] == ["robotics", "reinforcement-learning"]
    assert header["size_categories"] == ["n<1K"]
    configs = {config["config_name"]: config["data_files"] for config in header["configs"]}  # type: ignore[attr-defined]
    assert configs["index"] == [{"split": "full", "path": "index.parquet"}]
    card = folder(store, "README.md").read_text(encoding="utf-8")
    for section in ("## Contents", "## Splits", "## Parameter coverage", "## Diversity", "## Validation",
                    "## Withdrawn", "## How it was generated", "## Load and evaluate", "## Licence"):  # fmt: skip
        assert section in card, section
    assert "offline:test" in card and "mujoco" in card and "80/20" in card
    assert f"{len(ids)} of {len(ids)} scenarios passed" in card

    croissant = json.loads(folder(store, "croissant.json").read_text(encoding="utf-8"))
    assert croissant["conformsTo"] == "http://mlcommons.org/croissant/1.0" and croissant["version"] == DRAFT_VERSION
    assert croissant["distribution"][0]["sha256"] == hashlib.sha256(folder(store, "index.parquet").read_bytes()).hexdigest()
    records = croissant_records(folder(store, "croissant.json"))
    assert sorted(record["scenario_id"].decode() for record in records) == ids  # type: ignore[union-attr]
    assert {record["family"].decode() for record in records} == set(promoted_benchmark.ids)  # type: ignore[union-attr]


def test_rebuilds_are_byte_identical_and_write_nothing_when_nothing_changed(store: DatasetStore) -> None:
    before = {name: folder(store, name).read_bytes() for name in DERIVED}
    assert rebuild_benchmark_files(store, "v1").written == []
    for name in DERIVED:
        folder(store, name).unlink()
    again = rebuild_benchmark_files(store, "v1")
    assert again.written == sorted(DERIVED)
    assert {name: folder(store, name).read_bytes() for name in DERIVED} == before


def test_the_card_reports_the_benchmarks_coverage_and_diversity(promoted_benchmark: PromotedBenchmark) -> None:
    store = promoted_benchmark.store
    manifests = [read_scenario_manifest(store, f"benchmarks/v1/{sid}") for sid in sorted(promoted_benchmark.ids.values())]
    facts = {m.id: ScenarioFacts(scenario_id=m.id, family=m.family, passed=True, parameters=m.parameters) for m in manifests}
    card = store.read_bytes("benchmarks/v1/README.md").decode()
    coverage = parameter_coverage(facts)
    assert coverage and all(c.accepted == sum(m.family == c.family for m in manifests) for c in coverage)
    for row in coverage:  # one table row per family parameter, with its bins
        assert f"| {row.family} | {row.parameter} | {row.accepted} |" in card and f"| {row.bins_filled}/{row.bins} |" in card
    summary = diversity(list(facts.values()), sorted({m.tier for m in manifests}))
    assert 0 < summary.mean_pairwise_distance <= 1 and summary.families == len({m.family for m in manifests})
    assert f"Mean pairwise distance {summary.mean_pairwise_distance:.3f}" in card
    assert f"family mix {summary.family_entropy:.3f}" in card


def test_splits_are_a_stable_hash_of_the_id_at_the_stated_ratio() -> None:
    ids = [f"run-{index}_{index % 7}" for index in range(4000)]
    train = [sid for sid in ids if split_of(sid) is Split.TRAIN]
    assert 0.77 < len(train) / len(ids) < 0.83
    assert [split_of(sid) for sid in ids[:50]] == [split_of(sid) for sid in ids[:50]]
    assert sum(split_of(sid, 0.5) is Split.TRAIN for sid in ids) / len(ids) == pytest.approx(0.5, abs=0.03)
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ConfigError, match="strictly between 0 and 1"):
            CardSettings.from_options(train_fraction=bad)
    with pytest.raises(ConfigError, match="SPDX"):
        CardSettings.from_options(license="my own licence")


def test_a_withdrawal_is_listed_with_its_reason_and_leaves_the_index(store: DatasetStore, promoted_benchmark: PromotedBenchmark) -> None:
    gone = promoted_benchmark.ids["push_box"]
    withdraw(store, [gone], dest="v1", reason="the box | slides off after a MuJoCo upgrade")  # rebuilds the files

    import pyarrow.parquet as pq

    listed = pq.read_table(folder(store, "index.parquet")).column("scenario_id").to_pylist()
    assert gone not in listed and len(listed) == len(promoted_benchmark.ids) - 1
    card = folder(store, "README.md").read_text(encoding="utf-8")
    withdrawn = card.split("## Withdrawn", 1)[1].split("##", 1)[0]
    assert gone in withdrawn and "the box \\| slides off after a MuJoCo upgrade" in withdrawn


def test_a_release_is_frozen_while_later_promotions_change_the_live_files(store: DatasetStore, tmp_path: Path) -> None:
    result = release_benchmark(store, "v1", "1.0.0")
    release = Path(result.url.removeprefix("file://"))
    frozen = {path.relative_to(release).as_posix(): path.read_bytes() for path in release.rglob("*") if path.is_file()}
    assert set(frozen) == {*DERIVED, "manifest.json", COMMIT_MARKER}
    assert frozen["manifest.json"] == folder(store, "manifest.json").read_bytes()
    assert frozen["index.parquet"] == folder(store, "index.parquet").read_bytes()  # same entries, same rows
    croissant = json.loads(frozen["croissant.json"])
    assert croissant["version"] == "1.0.0" and "version 1.0.0" in croissant["citeAs"] and not croissant["isLiveDataset"]
    assert card_header(release / "README.md")["version"] == "1.0.0"
    assert "## Citation" in frozen["README.md"].decode() and "@misc{scenarios_v1_1_0_0" in frozen["README.md"].decode()
    assert len(croissant_records(release / "croissant.json")) == result.entry_count
    assert list_releases(store, "v1") == ["1.0.0"]

    # A later promotion (of a folder with no readable scenario manifest) changes the live files only.
    store.put_dir(make_scenario_folder(tmp_path / "late", tag="late"), "staging/late_0")
    store.write_bytes(f"staging/late_0/{COMMIT_MARKER}", b"{}")
    promote(store, ["late_0"], dest="v1")
    assert {path.relative_to(release).as_posix(): path.read_bytes() for path in release.rglob("*") if path.is_file()} == frozen

    import pyarrow.parquet as pq

    live = pq.read_table(folder(store, "index.parquet")).to_pylist()
    late = next(row for row in live if row["scenario_id"] == "late_0")
    assert late["family"] is None and "does not match the manifest format" in late["problem"]
    assert len(live) == result.entry_count + 1
    assert "late_0" in folder(store, "README.md").read_text(encoding="utf-8")  # listed as unreadable

    with pytest.raises(ConfigError, match="already released.*never changes"):
        release_benchmark(store, "v1", "1.0.0")
    with pytest.raises(ConfigError, match="MAJOR.MINOR.PATCH"):
        release_benchmark(store, "v1", "v1")
    with pytest.raises(ConfigError, match="unknown benchmark"):
        release_benchmark(store, "nowhere", "1.0.0")


def test_a_crashed_release_is_invisible_and_redone(store: DatasetStore) -> None:
    prefix = benchmark_release_prefix("v1", "2.0.0")
    store.write_bytes(f"{prefix}/index.parquet", b"half a release")  # a release killed before its marker
    assert list_releases(store, "v1") == []
    result = release_benchmark(store, "v1", "2.0.0")
    assert store.read_bytes(f"{prefix}/index.parquet") == folder(store, "index.parquet").read_bytes()
    assert result.files["index.parquet"] == hashlib.sha256(folder(store, "index.parquet").read_bytes()).hexdigest()


def test_card_and_release_commands(store: DatasetStore, tmp_path: Path) -> None:
    url = store.url_for("benchmarks/v1")
    result = invoke_cli(["card", url, "--license", "CC0-1.0", "--train-fraction", "0.5"], tmp_path)
    assert result.exit_code == 0, result.output
    assert "derived files" in result.output and "README.md" in result.output
    assert read_card_settings(store, "v1") == CardSettings(license="CC0-1.0", train_fraction=0.5)
    assert card_header(folder(store, "README.md"))["license"] == "cc0-1.0"
    assert "50/50" in folder(store, "README.md").read_text(encoding="utf-8")
    # A promotion keeps the stored settings.
    rebuild_benchmark_files(store, "v1")
    assert card_header(folder(store, "README.md"))["license"] == "cc0-1.0"

    released = invoke_cli(["release", "v1", "--version", "1.2.3", "--store", store.url, "--json"], tmp_path)
    assert released.exit_code == 0, released.output
    assert json.loads(released.stdout)["version"] == "1.2.3"
    again = invoke_cli(["release", url, "--version", "1.2.3"], tmp_path)
    assert again.exit_code != 0 and "already released" in again.stderr and "Traceback" not in again.output
    bad = invoke_cli(["card", url, "--license", "two words"], tmp_path)
    assert bad.exit_code != 0 and "SPDX" in bad.stderr
