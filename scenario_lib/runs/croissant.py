"""Croissant 1.0 JSON-LD of a benchmark: the index as a ``cr:FileObject`` (with its SHA-256), the scenario
files as a ``cr:FileSet``, and a ``scenarios`` record set whose fields are the index's columns.
Validated with ``mlcroissant`` in the tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from scenario_lib.runs.benchmark_index import (
    CROISSANT_CONFORMS_TO,
    DRAFT_VERSION,
    INDEX_COLUMNS,
    CardSettings,
    Release,
    ScenarioRecord,
)
from scenario_lib.runs.promotion import BenchmarkManifest
from scenario_lib.store.layout import INDEX_FILE

_CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
# The files of a scenario folder, relative to the folder holding the scenario folders.
_SCENARIO_FILE_GLOBS = (
    "*/manifest.json",
    "*/scenario.py",
    "*/scene.xml",
    "*/meshes/*.stl",
    "*/task.json",
    "*/demonstration.json",
    "*/certificate.json",
    "*/validation.json",
    "*/preview.png",
)


def cite_as(dest: str, version: str, year: int) -> str:
    """A BibTeX entry for version `version` of the benchmark `dest`."""
    key = "".join(char if char.isalnum() else "_" for char in f"scenarios_{dest}_{version}")
    return (
        f"@misc{{{key},\n  title = {{Validated physics scenarios: benchmark {dest}, version {version}}},\n"
        f"  year = {{{year}}},\n  note = {{Generated and validated with scenario-lib}}\n}}"
    )


def croissant_jsonld(
    dest: str,
    manifest: BenchmarkManifest,
    records: Sequence[ScenarioRecord],
    settings: CardSettings,
    *,
    index_sha256: str,
    release: Release | None = None,
    scenario_root: str = "",
) -> bytes:
    """Croissant 1.0 metadata of the index and the scenario files; `scenario_root` is where the scenario folders
    lie relative to ``croissant.json`` ('' next to it; ``../../`` from a release folder)."""
    families = sorted({record.manifest.family for record in records if record.manifest is not None})
    fields = [
        {
            "@type": "cr:Field",
            "@id": f"scenarios/{column.name}",
            "name": column.name,
            "description": column.description,
            "dataType": column.croissant_type,
            "source": {"fileObject": {"@id": INDEX_FILE}, "extract": {"column": column.name}},
        }
        for column in INDEX_COLUMNS
    ]
    document: dict[str, Any] = {
        "@context": _CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CROISSANT_CONFORMS_TO,
        "name": f"scenarios-{dest}",
        "description": (
            f"Benchmark {dest}: {len(records)} validated physics scenarios (build123d geometry, MuJoCo scenes) in "
            f"{len(families)} families, each with a demonstration that solves it and a validation certificate."
        ),
        "license": f"https://spdx.org/licenses/{settings.license}.html",
        "version": release.version if release is not None else DRAFT_VERSION,
        "datePublished": manifest.updated_at.isoformat(),
        "citeAs": release.cite_as if release is not None else cite_as(dest, DRAFT_VERSION, manifest.updated_at.year),
        "keywords": ["physics", "simulation", "MuJoCo", "build123d", "robotics", "benchmark", *families],
        "isLiveDataset": release is None,
        "distribution": [
            {
                "@type": "cr:FileObject",
                "@id": INDEX_FILE,
                "name": INDEX_FILE,
                "description": "One row per scenario: tier, family, parameters, verdicts, demonstration, file hashes.",
                "contentUrl": INDEX_FILE,
                "encodingFormat": "application/x-parquet",
                "sha256": index_sha256,
            },
            {
                "@type": "cr:FileSet",
                "@id": "scenario-files",
                "name": "scenario-files",
                "description": "The files of every scenario folder <scenario_id>/ (its manifest.json lists each with its SHA-256).",
                "encodingFormat": ["application/json", "text/x-python", "application/xml", "model/stl", "image/png"],
                "includes": [scenario_root + pattern for pattern in _SCENARIO_FILE_GLOBS],
            },
        ],
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": "scenarios",
                "name": "scenarios",
                "description": "The scenarios of the benchmark, one record per row of index.parquet.",
                "key": {"@id": "scenarios/scenario_id"},
                "field": fields,
            }
        ],
    }
    return (json.dumps(document, indent=1, sort_keys=False, ensure_ascii=False) + "\n").encode()


__all__ = ["cite_as", "croissant_jsonld"]
