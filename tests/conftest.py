"""Shared fixtures: build scenario scripts in-process and write MuJoCo scene folders from them."""

from __future__ import annotations

import os

# MuJoCo binds its OpenGL backend at first import; headless EGL must be chosen before any test module
# imports mujoco (osmesa also works here: MUJOCO_GL=osmesa pytest ...).
os.environ.setdefault("MUJOCO_GL", "egl")

import importlib.util  # noqa: E402
import itertools  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.s3_fixtures import dataset_store, moto_s3, s3_bucket_url, s3_store  # noqa: E402, F401
from tests.support import SANDBOX_MODE, SCRIPTS  # noqa: E402
# The packaged copy of MuJoCo's schema (from ../shared/data/, with its licence notice): CI has no ../shared.
SHARED_XSD = Path(__file__).parents[1] / "scenario_lib" / "data" / "mjcf.xsd"


@dataclass(frozen=True)
class BuiltScene:
    """A scenario as the trusted side sees it (parsed from JSON), its meshes and its scene folder."""

    scenario: object  # scenario_lib.contract.Scenario; typed loosely to keep conftest import-light
    meshes: dict[str, bytes]
    hulls: dict[str, list[bytes]]
    xml_path: Path


def export_meshes(built: object, folder: Path) -> dict[str, bytes]:
    """STL bytes per body, exported the way the sandbox does."""
    from build123d import export_stl

    folder.mkdir(parents=True, exist_ok=True)
    meshes: dict[str, bytes] = {}
    for body in built.bodies:  # type: ignore[attr-defined]
        path = folder / f"{body.name}.stl"
        export_stl(body.part, str(path), tolerance=0.05, angular_tolerance=0.2)
        meshes[body.name] = path.read_bytes()
    return meshes


def load_script(name: str) -> Callable[..., object]:
    """The ``build`` function of ``tests/scripts/<name>.py``."""
    spec = importlib.util.spec_from_file_location(f"scenario_script_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def decomposition_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CoACD cache per test session: each part is decomposed once."""
    return tmp_path_factory.mktemp("coacd-cache")


@pytest.fixture(scope="session")
def sandbox_pool() -> Iterator[object]:
    """One warm sandbox pool for the whole session (each pool's start costs seconds of build123d imports)."""
    from scenario_lib.sandbox.pool import SandboxPool

    with SandboxPool(workers=2, mode=SANDBOX_MODE) as pool:
        yield pool


@pytest.fixture(scope="session")
def validator(sandbox_pool: object, decomposition_cache: Path) -> object:
    """The validator of most tests: two harness seeds, on the session's pool."""
    from scenario_lib.validation.pipeline import HarnessConfig, Validator

    return Validator(sandbox_pool, HarnessConfig(seeds=2, decomposition_cache_dir=decomposition_cache))  # type: ignore[arg-type]


@pytest.fixture
def build_scene(tmp_path: Path, decomposition_cache: Path) -> Callable[..., BuiltScene]:
    """Build a script (by name) at (seed, scale), or take a built Scenario, and write its scene folder."""
    from scenario_lib.scene.collision import collision_meshes
    from scenario_lib.contract import Scenario
    from scenario_lib.scene.mjcf import assemble_mjcf, hull_mesh_file, visual_mesh_file

    counter = itertools.count()

    def build(
        script: object, seed: int = 0, scale: tuple[float, float, float] = (1.0, 1.0, 1.0), **kwargs: object
    ) -> BuiltScene:
        # A script name under tests/scripts, or a Scenario built in the test (its parts set).
        built = load_script(script)(seed, scale, **kwargs) if isinstance(script, str) else script
        folder = tmp_path / f"build{next(counter)}"  # each call in a test gets its own folder
        meshes = export_meshes(built, folder / "stl")
        scenario = Scenario.model_validate_json(built.model_dump_json())  # type: ignore[attr-defined]
        hulls = collision_meshes(scenario, meshes, decomposition_cache)
        scene = folder / "scene"
        (scene / "meshes").mkdir(parents=True, exist_ok=True)
        for body, data in meshes.items():
            (scene / visual_mesh_file(body)).write_bytes(data)
        for body, pieces in hulls.items():
            for index, piece in enumerate(pieces):
                (scene / hull_mesh_file(body, index)).write_bytes(piece)
        xml_path = scene / "scene.xml"
        xml_path.write_text(assemble_mjcf(scenario, {b: len(p) for b, p in hulls.items()}), encoding="utf-8")
        return BuiltScene(scenario, meshes, hulls, xml_path)

    return build
