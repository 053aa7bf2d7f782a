"""Where an environment's scenario comes from: a scenario folder (a path or a URL) or a benchmark in a store.

Whatever the source, the same files are read and checked against the hashes the folder's manifest
lists: ``scene.xml`` and its meshes (compiled by MuJoCo, every file confined to the folder),
``task.json`` (the success condition as data: the untrusted script is never run) and
``demonstration.json``. A folder validated before folders stored ``task.json`` is refused with the fix
(``scenarios revalidate``).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import mujoco
from pydantic import ValidationError

from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.envs.benchmark import open_benchmark, open_store, resolve_benchmark
from scenario_lib.scene.demonstration import Demonstration
from scenario_lib.scene.mjcf import compile_mjcf
from scenario_lib.store import DatasetStore, ObjectNotFoundError
from scenario_lib.store.layout import COMMIT_MARKER, benchmark_prefix, join_key, parse_scenario_id, validate_key
from scenario_lib.validation.artifacts import (
    DEMONSTRATION_FILE,
    MANIFEST_FILE,
    TASK_FILE,
    TASK_FORMAT_VERSION,
    ScenarioManifest,
    ScenarioTask,
    parse_scenario_manifest,
)
from scenario_lib.validation.pipeline import MESH_DIR, SCENE_FILE
from scenario_lib.validation.scene_file import check_confined


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario ready to simulate: its compiled model, task and stored demonstration."""

    scenario_id: str
    location: str  # the folder's URL, for messages
    manifest: ScenarioManifest
    task: ScenarioTask
    demonstration: Demonstration
    model: mujoco.MjModel
    benchmark: str | None = None  # the destination it was opened from, if any


def load_scenario(path: str | Path) -> LoadedScenario:
    """The scenario folder at ``path``: a local folder, ``file://...`` or ``s3://bucket/.../<scenario id>``
    (S3 endpoint and keys from the settings); ConfigError or StoreError naming the folder and the fix."""
    text = str(path).strip()
    if "://" not in text or text.lower().startswith("file://"):
        folder = Path(text[len("file://") :] if text.lower().startswith("file://") else text).expanduser().resolve()
        if not (folder / MANIFEST_FILE).is_file():
            raise ConfigError(
                f"no scenario folder at {text!r}: {folder} has no {MANIFEST_FILE}; pass a validated scenario's folder "
                "(e.g. <store>/benchmarks/<name>/<scenario id>)"
            )

        def read_local(name: str) -> bytes:
            try:
                return (folder / name).read_bytes()
            except OSError as err:
                raise StoreError(f"cannot read {folder / name} ({err.strerror or err}); restore the scenario folder") from err

        return _load(read_local, f"file://{folder}")
    parent, _, name = text.rstrip("/").rpartition("/")
    if not name or parent.endswith(":/"):
        raise ConfigError(f"{text!r} names no scenario folder: give its URL, e.g. s3://bucket/prefix/benchmarks/v1/run-1_0")
    store = open_store(parent)
    return _load_from_store(store, validate_key(name))


def load_benchmark_scenario(benchmark: str, scenario_id: str, *, store: str | DatasetStore | None = None) -> LoadedScenario:
    """Scenario ``scenario_id`` of a benchmark (a name in ``store`` or the configured store, or a folder URL)."""
    dataset, dest = resolve_benchmark(benchmark, store)
    parse_scenario_id(scenario_id)
    prefix = benchmark_prefix(dest, scenario_id)
    if not dataset.exists(join_key(prefix, COMMIT_MARKER)):
        known = open_benchmark(dest, store=dataset)  # ConfigError for an unknown benchmark
        known.env_kwargs(scenario_id)  # ConfigError listing the benchmark's scenarios
        raise StoreError(
            f"{dataset.url_for(prefix)} is listed in benchmark {dest!r} but is not a committed scenario folder; "
            "promote the scenario again"
        )
    return replace(_load_from_store(dataset, prefix), benchmark=dest)


def _load_from_store(store: DatasetStore, prefix: str) -> LoadedScenario:
    def read_key(name: str) -> bytes:
        try:
            return store.read_bytes(join_key(prefix, name))
        except ObjectNotFoundError:
            if name != MANIFEST_FILE:
                raise
            raise ConfigError(
                f"no scenario folder at {store.url_for(prefix)}: it has no {MANIFEST_FILE}; pass a validated scenario's "
                "folder (e.g. <store>/benchmarks/<name>/<scenario id>)"
            ) from None

    return _load(read_key, store.url_for(prefix))


def _load(read: Callable[[str], bytes], location: str) -> LoadedScenario:
    manifest = parse_scenario_manifest(read(MANIFEST_FILE), url=f"{location}/{MANIFEST_FILE}")
    if not manifest.passed:
        raise ConfigError(
            f"scenario {manifest.id} at {location} did not pass validation (it stopped at {manifest.stage_reached}): "
            "an environment needs a validated scenario, e.g. one promoted into a benchmark"
        )
    entries = {entry.path: entry for entry in manifest.files}
    missing = [name for name in (TASK_FILE, DEMONSTRATION_FILE) if name not in entries]
    if missing:
        raise ConfigError(
            f"scenario {manifest.id} at {location} has no {' or '.join(missing)}: it was validated before scenario "
            f"folders stored their task and demonstration; re-validate it with `scenarios revalidate {manifest.id}` "
            "(then promote it again)"
        )
    if SCENE_FILE not in entries:
        raise StoreError(f"scenario {manifest.id} at {location} lists no {SCENE_FILE}; restore the folder from a copy")
    names = [SCENE_FILE, TASK_FILE, DEMONSTRATION_FILE, *sorted(p for p in entries if p.startswith(f"{MESH_DIR}/"))]
    contents: dict[str, bytes] = {}
    for name in names:
        data = read(validate_key(name))
        if hashlib.sha256(data).hexdigest() != entries[name].sha256:
            raise StoreError(
                f"{location}/{name} does not match the hash in its manifest: the folder changed after it was validated; "
                "restore it from a copy or promote the scenario again"
            )
        contents[name] = data
    task = _parse_task(contents[TASK_FILE], f"{location}/{TASK_FILE}")
    try:
        demonstration = Demonstration.from_json(contents[DEMONSTRATION_FILE])
    except (ValueError, KeyError, TypeError) as err:
        raise StoreError(f"{location}/{DEMONSTRATION_FILE} is not a demonstration ({err}); re-validate the scenario") from err
    # MuJoCo reads meshes from files beside the model: materialize the checked bytes, compile, and let go.
    with tempfile.TemporaryDirectory(prefix="scenario-env-") as scratch:
        for name, data in contents.items():
            target = Path(scratch) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        xml_path = Path(scratch) / SCENE_FILE
        check_confined(xml_path)
        model = compile_mjcf(xml_path)
    return LoadedScenario(manifest.id, location, manifest, task, demonstration, model)


def _parse_task(data: bytes, url: str) -> ScenarioTask:
    try:
        task = ScenarioTask.model_validate_json(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise StoreError(f"{url} is not a scenario task ({first['msg']} at {first['loc']}); re-validate the scenario") from None
    if task.format_version > TASK_FORMAT_VERSION:
        raise StoreError(
            f"{url} has format_version {task.format_version}, newer than this scenario_lib understands "
            f"({TASK_FORMAT_VERSION}); upgrade scenario_lib"
        )
    return task


__all__ = ["LoadedScenario", "load_benchmark_scenario", "load_scenario"]
