"""A benchmark's records and its index: one `ScenarioRecord` per listed scenario, one index row per record.

The index (``index.parquet``, and ``splits/<split>.parquet`` with the rows of each split) has plain
columns (`INDEX_COLUMNS`); nested values are JSON text. A scenario's split is a hash of its id against
the stated train fraction (`split_of`), so it keeps its split in every version.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scenario_lib.errors import ConfigError
from scenario_lib.runs.promotion import ManifestEntry
from scenario_lib.store.layout import SPLITS_FOLDER
from scenario_lib.validation.artifacts import ScenarioManifest
from scenario_lib.validation.certificate import ScenarioCertificate

CARD_FORMAT_VERSION = 1
DEFAULT_LICENSE = "CC-BY-4.0"
DEFAULT_TRAIN_FRACTION = 0.8
DRAFT_VERSION = "0.0.0-draft"  # the live files' Croissant version; a release carries its own
CROISSANT_CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
_HASH_SPACE = 2**64


class Split(StrEnum):
    """The deterministic splits of a benchmark (`split_of`)."""

    TRAIN = "train"
    TEST = "test"


def split_file(split: Split) -> str:
    """``splits/<split>.parquet``, relative to the benchmark folder."""
    return f"{SPLITS_FOLDER}/{split.value}.parquet"


class CardSettings(BaseModel):
    """How a benchmark is published (``benchmarks/<dest>/card.json``): read at every rebuild, so a promotion
    keeps the licence and split ratio `scenarios card` set."""

    model_config = ConfigDict(frozen=True)

    format_version: int = CARD_FORMAT_VERSION
    license: str = Field(default=DEFAULT_LICENSE, description="SPDX identifier, e.g. CC-BY-4.0, MIT, Apache-2.0")
    train_fraction: float = Field(default=DEFAULT_TRAIN_FRACTION, description="Share of scenario ids in the train split.")

    @field_validator("license")
    @classmethod
    def _check_license(cls, value: str) -> str:
        text = value.strip()
        if not text or any(char.isspace() for char in text) or len(text) > 64:
            raise ValueError(
                f"invalid licence {value!r}: give an SPDX identifier such as 'CC-BY-4.0', 'CC0-1.0' or 'MIT' "
                "(see https://spdx.org/licenses/)"
            )
        return text

    @field_validator("train_fraction")
    @classmethod
    def _check_fraction(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"invalid train fraction {value!r}: use a number strictly between 0 and 1, e.g. 0.8")
        return value

    @classmethod
    def from_options(cls, *, license: str = DEFAULT_LICENSE, train_fraction: float = DEFAULT_TRAIN_FRACTION) -> CardSettings:
        """Settings from user input; `ConfigError` naming the bad value and what to give instead."""
        try:
            return cls(license=license, train_fraction=train_fraction)
        except ValidationError as err:
            raise ConfigError(str(err.errors()[0]["msg"]).removeprefix("Value error, ")) from None


@dataclass(frozen=True)
class Release:
    """A frozen version: its semantic version and how to cite it."""

    version: str
    cite_as: str


@dataclass(frozen=True)
class HarnessBuild:
    """One harness build of a scenario: its seed, scale and each stage's verdict."""

    seed: int
    scale: tuple[float, float, float]
    passed: bool
    verdicts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScenarioRecord:
    """What a benchmark's committed folder says about one listed scenario.

    ``manifest`` is None when the folder's ``manifest.json`` could not be read as a scenario manifest;
    ``problem`` then says why, and the row carries only what the entry knows.
    """

    entry: ManifestEntry
    manifest: ScenarioManifest | None
    manifest_sha256: str | None = None
    certificate: ScenarioCertificate | None = None
    harness: tuple[HarnessBuild, ...] = ()
    problem: str = ""


def split_of(scenario_id: str, train_fraction: float = DEFAULT_TRAIN_FRACTION) -> Split:
    """The split of ``scenario_id``: train when the first 8 bytes of SHA-256(id), as a big-endian integer,
    are below ``train_fraction`` × 2^64. Stable across rebuilds, releases and machines."""
    value = int.from_bytes(hashlib.sha256(scenario_id.encode()).digest()[:8], "big")
    return Split.TRAIN if value < train_fraction * _HASH_SPACE else Split.TEST


# --- the index ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of the index: its name, Arrow type, Croissant data type and meaning."""

    name: str
    arrow: str  # "string", "int64", "float64" or "bool"
    description: str

    @property
    def croissant_type(self) -> str:
        return {"string": "sc:Text", "int64": "sc:Integer", "float64": "sc:Float", "bool": "sc:Boolean"}[self.arrow]


INDEX_COLUMNS: tuple[Column, ...] = (
    Column("scenario_id", "string", "The scenario id, {run_id}_{seed}; its folder is <scenario_id>/"),
    Column("split", "string", "train or test, by a hash of the scenario id (see the card)"),
    Column("run_id", "string", "The generation run it came from"),
    Column("seed", "int64", "The run's seed for it, and the base seed of its harness"),
    Column("tier", "string", "Difficulty tier"),
    Column("family", "string", "Scenario family (the template it follows)"),
    Column("objective", "string", "What the task asks, in words"),
    Column("prompt", "string", "The prompt it was generated from"),
    Column("author", "string", "provider:model that wrote the script"),
    Column("scale_x", "float64", "Scale of the stored scene along x"),
    Column("scale_y", "float64", "Scale of the stored scene along y"),
    Column("scale_z", "float64", "Scale of the stored scene along z"),
    Column("parameters", "string", "JSON object: the family's drawn parameters (name -> value)"),
    Column("passed", "bool", "Whether every harness build passed every stage"),
    Column("stage_reached", "string", "The last stage the stored seed reached"),
    Column("harness_builds", "int64", "Harness builds (seed x scale) validated"),
    Column("harness_passed", "int64", "Harness builds that passed"),
    Column("verdicts", "string", "JSON list: per harness build, its seed, scale, passed and each stage's verdict"),
    Column("certified", "bool", "Whether the folder holds a validation certificate (certificate.json)"),
    Column("demonstration_source", "string", "Where the stored demonstration came from (oracle or script)"),
    Column("demonstration_steps", "int64", "Control steps of the stored demonstration"),
    Column("demonstration_time_to_success_s", "float64", "Simulated seconds until the demonstration succeeded (-1: never)"),
    Column("demonstration_metrics", "string", "JSON object: the solvability stage's metrics of the demonstration"),
    Column("script_sha256", "string", "SHA-256 of scenario.py"),
    Column("demonstration_sha256", "string", "SHA-256 of demonstration.json"),
    Column("manifest_sha256", "string", "SHA-256 of the folder's manifest.json"),
    Column("file_sha256", "string", "JSON object: every file of the folder (path -> SHA-256), as its manifest lists"),
    Column("file_count", "int64", "Files in the folder, manifest.json included"),
    Column("size_bytes", "int64", "Bytes of the files the manifest lists"),
    Column("folder", "string", "The scenario's folder, relative to the benchmark folder"),
    Column("promoted_at", "string", "When it entered the benchmark (ISO 8601, UTC)"),
    Column("versions", "string", "JSON object: library versions it was validated with"),
    Column("problem", "string", "Why the folder's facts could not be read (empty when they could)"),
)


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def index_rows(records: Sequence[ScenarioRecord], train_fraction: float = DEFAULT_TRAIN_FRACTION) -> list[dict[str, Any]]:
    """One row per record, sorted by scenario id, with the columns of `INDEX_COLUMNS`."""
    rows = []
    for record in sorted(records, key=lambda item: item.entry.scenario_id):
        entry, manifest, certificate = record.entry, record.manifest, record.certificate
        demo = certificate.demonstration if certificate is not None else None
        row: dict[str, Any] = {column.name: None for column in INDEX_COLUMNS}
        row.update(
            scenario_id=entry.scenario_id,
            split=split_of(entry.scenario_id, train_fraction).value,
            run_id=entry.run_id,
            seed=entry.seed,
            folder=entry.path.rsplit("/", 1)[-1],
            promoted_at=entry.promoted_at.isoformat(),
            file_count=len(entry.files),
            harness_builds=len(record.harness),
            harness_passed=sum(build.passed for build in record.harness),
            verdicts=_json(
                [
                    {"seed": build.seed, "scale": list(build.scale), "passed": build.passed, "stages": dict(build.verdicts)}
                    for build in record.harness
                ]
            ),
            certified=certificate is not None,
            problem=record.problem,
        )
        if manifest is not None:
            row.update(
                tier=manifest.tier,
                family=manifest.family,
                objective=manifest.objective,
                prompt=manifest.prompt,
                author=manifest.author,
                scale_x=float(manifest.scale[0]),
                scale_y=float(manifest.scale[1]),
                scale_z=float(manifest.scale[2]),
                parameters=_json(dict(manifest.parameters)),
                passed=manifest.passed,
                stage_reached=manifest.stage_reached,
                script_sha256=manifest.script_sha256,
                demonstration_sha256=manifest.demonstration_sha256,
                manifest_sha256=record.manifest_sha256,
                file_sha256=_json({item.path: item.sha256 for item in manifest.files}),
                size_bytes=manifest.total_size_bytes(),
                versions=_json(dict(manifest.versions)),
            )
        if demo is not None:
            time_to_success = _number(demo.metrics.get("time_to_success_s"))
            row.update(
                demonstration_source=demo.source,
                demonstration_steps=demo.steps,
                demonstration_time_to_success_s=time_to_success,
                demonstration_metrics=_json(dict(demo.metrics)),
            )
        rows.append(row)
    return rows


def parquet_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The rows as a Parquet file with the `INDEX_COLUMNS` schema (deterministic for the same rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema(
        [pa.field(column.name, types[column.arrow], metadata={"description": column.description}) for column in INDEX_COLUMNS]
    )
    table = pa.table({column.name: [row[column.name] for row in rows] for column in INDEX_COLUMNS}, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


__all__ = [
    "CARD_FORMAT_VERSION",
    "CROISSANT_CONFORMS_TO",
    "DEFAULT_LICENSE",
    "DEFAULT_TRAIN_FRACTION",
    "DRAFT_VERSION",
    "INDEX_COLUMNS",
    "CardSettings",
    "Column",
    "HarnessBuild",
    "Release",
    "ScenarioRecord",
    "Split",
    "index_rows",
    "parquet_bytes",
    "split_file",
    "split_of",
]
