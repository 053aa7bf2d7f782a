"""A benchmark's derived documents: the index (Parquet), the dataset card (README.md) and Croissant metadata.

Pure functions from what a benchmark has committed — its manifest, one `ScenarioRecord` per listed
scenario (the folder's manifest, certificate and harness verdicts), its withdrawal records and its
`CardSettings` — to bytes. The same inputs give byte-identical files: rows are sorted by scenario id,
JSON is written with sorted keys, and the only dates are the manifest's own ``updated_at`` and the
entries' ``promoted_at``. Reading the store and writing the files is `scenario_lib.runs.publication`.

The files, relative to the benchmark folder (``benchmarks/<dest>/``):

- ``index.parquet``: one row per scenario (`INDEX_COLUMNS`); nested values (parameters, verdicts,
  demonstration metrics, file hashes, versions) are JSON text columns, so every reader sees plain columns;
- ``splits/train.parquet``, ``splits/test.parquet``: the index's rows of each split (`split_of`: a hash of
  the scenario id against a stated train fraction), the card's ``default`` configuration;
- ``README.md``: a Hugging Face dataset card, YAML header (licence, task categories, size, ``configs``)
  then counts, coverage, diversity, validation, withdrawals, provenance, loading and citation;
- ``croissant.json``: Croissant 1.0 JSON-LD: the index as a ``cr:FileObject`` (with its SHA-256), the
  scenario files as a ``cr:FileSet``, and a ``scenarios`` record set whose fields are the index's columns.

The records and the index are `scenario_lib.runs.benchmark_index`, the Croissant metadata
`scenario_lib.runs.croissant`; coverage and diversity are `scenario_lib.coverage`'s.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from scenario_lib.coverage import COVERAGE_BINS, ScenarioFacts, diversity, parameter_coverage
from scenario_lib.runs.benchmark_index import (
    DRAFT_VERSION,
    CardSettings,
    Release,
    ScenarioRecord,
    Split,
    index_rows,
    parquet_bytes,
    split_file,
    split_of,
)
from scenario_lib.runs.croissant import croissant_jsonld
from scenario_lib.runs.promotion import BenchmarkManifest
from scenario_lib.runs.withdrawal import WithdrawalRecord
from scenario_lib.store.layout import CARD_FILE, CROISSANT_FILE, INDEX_FILE

# --- coverage, diversity, counts -------------------------------------------------------------------------


def _size_category(count: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if count < limit:
            return name
    return "n>1M"


def _cell(text: object) -> str:
    """A Markdown table cell: no line breaks, no unescaped pipes."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(_cell(value) for value in row) + " |" for row in rows)
    return lines


# --- the card ---------------------------------------------------------------------------------------------


def _yaml_header(dest: str, splits: Mapping[str, int], settings: CardSettings, release: Release | None) -> str:
    import yaml

    # `datasets` cannot read a Parquet file of no rows (a small benchmark may have no test scenario yet): a
    # configuration names only the splits that hold a scenario, though both files are always written.
    present = [split for split in Split if splits.get(split.value)] or [Split.TRAIN]

    header: dict[str, Any] = {
        "pretty_name": f"Validated physics scenarios: benchmark {dest}",
        "license": settings.license.lower(),
        "task_categories": ["robotics", "reinforcement-learning"],
        "tags": ["physics", "simulation", "mujoco", "build123d", "benchmark", "manipulation"],
        "size_categories": [_size_category(sum(splits.values()))],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split.value, "path": split_file(split)} for split in present],
            },
            {"config_name": "index", "data_files": [{"split": "full", "path": INDEX_FILE}]},
        ],
    }
    if release is not None:
        header["version"] = release.version
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def card_markdown(
    dest: str,
    manifest: BenchmarkManifest,
    records: Sequence[ScenarioRecord],
    withdrawals: Sequence[WithdrawalRecord],
    settings: CardSettings,
    *,
    index_sha256: str,
    release: Release | None = None,
) -> bytes:
    """The dataset card (``README.md``) of the benchmark `dest` as committed in `manifest`."""
    readable = [record.manifest for record in records if record.manifest is not None]
    rows = index_rows(records, settings.train_fraction)
    splits = Counter(row["split"] for row in rows)
    version = release.version if release is not None else f"{DRAFT_VERSION} (live: rebuilt at every promotion)"
    out = [_yaml_header(dest, splits, settings, release)]
    out += [
        f"# Benchmark `{dest}`",
        "",
        f"{len(records)} validated physics scenarios (build123d geometry, MuJoCo scenes), each with a stored "
        "demonstration that solves it and a certificate of every check it passed. Version: "
        f"{version}; manifest updated {manifest.updated_at.isoformat()}. Licence: {settings.license}.",
        "",
        "## Contents",
        "",
    ]
    tiers = Counter(manifest_.tier for manifest_ in readable)
    out += _table(["tier", "scenarios"], sorted(tiers.items()))
    out.append("")
    families = Counter((manifest_.tier, manifest_.family) for manifest_ in readable)
    family_splits = Counter((m.tier, m.family, split_of(m.id, settings.train_fraction)) for m in readable)
    out += _table(
        ["tier", "family", "scenarios", "train", "test"],
        [
            (tier, family, count, family_splits[(tier, family, Split.TRAIN)], family_splits[(tier, family, Split.TEST)])
            for (tier, family), count in sorted(families.items())
        ],
    )
    unreadable = [record for record in records if record.manifest is None]
    if unreadable:
        out += ["", f"{len(unreadable)} listed folder(s) have no readable scenario manifest:"]
        out += [f"- `{record.entry.scenario_id}`: {_cell(record.problem)}" for record in unreadable]
    out += [
        "",
        "## Splits",
        "",
        f"Deterministic, by the scenario id: a scenario is in **train** when the first 8 bytes of SHA-256(scenario id), "
        f"read as a big-endian integer, are below {settings.train_fraction:g} × 2^64, else in **test** (stated ratio "
        f"{round(settings.train_fraction * 100):d}/{round((1 - settings.train_fraction) * 100):d}). A scenario keeps its "
        f"split in every later version. Here: {splits[Split.TRAIN.value]} train, {splits[Split.TEST.value]} test "
        f"(`{split_file(Split.TRAIN)}`, `{split_file(Split.TEST)}`; the `split` column of `{INDEX_FILE}`). The card's "
        "`default` configuration names the splits that hold a scenario.",
        "",
        "## Parameter coverage",
        "",
        f"Per family parameter: the share of {COVERAGE_BINS} equal bins, spanning the values the benchmark's scenarios "
        "drew, that hold at least one scenario.",
        "",
    ]
    # Every scenario of a benchmark passed: coverage and diversity are over all of them.
    facts = [ScenarioFacts(scenario_id=m.id, family=m.family, passed=True, parameters=m.parameters) for m in readable]
    coverage = parameter_coverage({fact.scenario_id: fact for fact in facts})
    out += _table(
        ["family", "parameter", "scenarios", "low", "high", "bins filled"],
        [(c.family, c.parameter, c.accepted, f"{c.low:.6g}", f"{c.high:.6g}", f"{c.bins_filled}/{c.bins}") for c in coverage],
    ) if coverage else ["No family parameters recorded."]
    summary = diversity(facts, tiers=sorted({manifest.tier for manifest in readable}))
    out += [
        "",
        "## Diversity",
        "",
        f"Mean pairwise distance {summary.mean_pairwise_distance:.3f} (two families: 1 apart; one family: the RMS over "
        "its parameters of |a − b| / (|a| + |b|)); normalised entropy of the family mix "
        f"{summary.family_entropy:.3f} (0: one family, 1: every family the tiers offer, equally often).",
        "",
    ]
    out += _table(["family", "mean distance within"], sorted(summary.per_family.items())) if summary.per_family else []
    builds = sum(row["harness_builds"] for row in rows)
    passed_builds = sum(row["harness_passed"] for row in rows)
    verdicts: Counter[tuple[str, str]] = Counter(
        (stage, verdict) for record in records for build in record.harness for stage, verdict in build.verdicts.items()
    )
    steps = [row["demonstration_steps"] for row in rows if row["demonstration_steps"] is not None]
    times = [t for row in rows if (t := row["demonstration_time_to_success_s"]) is not None and t >= 0]
    sources = Counter(row["demonstration_source"] for row in rows if row["demonstration_source"])
    out += [
        "",
        "## Validation",
        "",
        f"{sum(bool(row['passed']) for row in rows)} of {len(rows)} scenarios passed every stage on every harness build "
        f"({passed_builds} of {builds} builds); {sum(bool(row['certified']) for row in rows)} carry a certificate "
        "(`certificate.json`: every check, threshold and measured value; `scenarios verify` re-checks them).",
        "",
    ]
    if verdicts:
        stages = sorted({stage for stage, _ in verdicts})
        names = sorted({verdict for _, verdict in verdicts})
        out += _table(["stage", *names], [(stage, *(verdicts[(stage, name)] for name in names)) for stage in stages])
        out.append("")
    if steps:
        mean_time = f"{sum(times) / len(times):.2f} s" if times else "n/a"
        out.append(
            f"Demonstrations: {len(steps)}, {sum(steps) / len(steps):.0f} control steps on average, success after "
            f"{mean_time} on average; sources: " + ", ".join(f"{name} ({count})" for name, count in sorted(sources.items())) + "."
        )
        out.append("")
    out += ["## Withdrawn", ""]
    if withdrawals:
        out += _table(
            ["scenario", "withdrawn at", "reason"],
            [(record.scenario_id, record.withdrawn_at.isoformat(), record.reason) for record in withdrawals],
        )
    else:
        out.append("None.")
    authors = Counter(manifest_.author for manifest_ in readable)
    versions = Counter(
        ", ".join(f"{name} {value}" for name, value in sorted(manifest_.versions.items())) for manifest_ in readable
    )
    out += [
        "",
        "## How it was generated",
        "",
        "Each scenario is a build123d script written by the Scenario Architect (an LLM agent, or the offline template "
        "author), run in a sandbox, and validated across a randomisation harness of seeds and scales: geometry, MJCF "
        "assembly, stability and rest, the task, and solvability by a demonstration. Only scenarios that passed "
        "every stage were promoted into the benchmark.",
        "",
    ]
    out += _table(["author (provider:model)", "scenarios"], sorted(authors.items()))
    out.append("")
    out += _table(["tool versions", "scenarios"], sorted(versions.items()))
    out += [
        "",
        "## Load and evaluate",
        "",
        "```python",
        "import datasets",
        f'index = datasets.load_dataset("parquet", data_files="{INDEX_FILE}")["train"]  # from this folder',
        'splits = datasets.load_dataset(".")  # this folder, by the configs above: the train and test splits',
        "",
        "import mlcroissant",
        f'records = mlcroissant.Dataset(jsonld="{CROISSANT_FILE}").records("scenarios")',
        "",
        "from scenario_lib.envs import open_benchmark  # every scenario is a Gymnasium environment",
        f'env = open_benchmark("<store>/benchmarks/{dest}").make_env(index[0]["scenario_id"])',
        "```",
        "",
        "```bash",
        f"scenarios evaluate {dest} --policy my_policy:make_policy --episodes 10   # beside the zero, random and demo baselines",
        f"scenarios demos export {dest} --out ./minari                            # the demonstrations as Minari datasets",
        f"scenarios verify {dest}                                                  # re-check every certificate",
        "```",
        "",
        "See docs/evaluate.md (environments, policies, scores) and docs/publish.md (these files) of scenario-lib.",
        "",
        "## Files",
        "",
        f"- `{INDEX_FILE}` (SHA-256 `{index_sha256}`): one row per scenario, its columns described in the file's schema "
        f"and in `{CROISSANT_FILE}`;",
        f"- `{split_file(Split.TRAIN)}`, `{split_file(Split.TEST)}`: the rows of each split;",
        f"- `{CROISSANT_FILE}`: Croissant 1.0 metadata of the index and the scenario files;",
        "- `manifest.json`: every entry of the benchmark; `<scenario_id>/`: a scenario's folder (its own `manifest.json` "
        "lists every file with its SHA-256).",
        "",
        "## Licence",
        "",
        f"The scenarios and these files are released under {settings.license} (https://spdx.org/licenses/{settings.license}.html).",
    ]
    if release is not None:
        out += ["", "## Citation", "", "```bibtex", release.cite_as, "```"]
    return ("\n".join(out) + "\n").encode()


def build_documents(
    dest: str,
    manifest: BenchmarkManifest,
    records: Sequence[ScenarioRecord],
    withdrawals: Sequence[WithdrawalRecord],
    settings: CardSettings,
    *,
    release: Release | None = None,
    scenario_root: str = "",
) -> dict[str, bytes]:
    """Every derived file of the benchmark, by name relative to its folder, in the order they are written
    (the data first, the files that describe it last)."""
    rows = index_rows(records, settings.train_fraction)
    index = parquet_bytes(rows)
    index_sha256 = hashlib.sha256(index).hexdigest()
    documents = {split_file(split): parquet_bytes([row for row in rows if row["split"] == split.value]) for split in Split}
    documents[INDEX_FILE] = index
    documents[CROISSANT_FILE] = croissant_jsonld(
        dest, manifest, records, settings, index_sha256=index_sha256, release=release, scenario_root=scenario_root
    )
    documents[CARD_FILE] = card_markdown(
        dest, manifest, records, withdrawals, settings, index_sha256=index_sha256, release=release
    )
    return documents


__all__ = ["build_documents", "card_markdown"]
