"""Offscreen preview rendering with the headless GL backends available here."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mujoco
import numpy as np
import pytest
from PIL import Image

from conftest import BuiltScene
from scenario_lib.errors import ScenarioError
from scenario_lib.scene.mjcf import compile_mjcf
from scenario_lib.scene.render import HEADLESS_BACKENDS, gl_backend, render_preview

BuildScene = Callable[..., BuiltScene]


def _pixels(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.parametrize("camera", [None, "preview"], ids=["free-camera", "model-camera"])
def test_preview_shows_scene_and_goal_zone(build_scene: BuildScene, tmp_path: Path, camera: str | None) -> None:
    model = compile_mjcf(build_scene("dummy_box").xml_path)
    started = time.perf_counter()
    png = render_preview(model, camera=camera)
    elapsed = time.perf_counter() - started
    (tmp_path / "preview.png").write_bytes(png)
    pixels = _pixels(png).astype(int)
    assert pixels.shape == (480, 640, 3)
    lit = pixels.sum(axis=2) > 60
    # The floor fills a good part of the frame, but not all of it (the background shows around it).
    assert 0.05 < lit.mean() < 0.9
    # The translucent green goal zone is visible: green clearly dominates somewhere.
    green = (pixels[..., 1] > pixels[..., 0] + 40) & (pixels[..., 1] > pixels[..., 2] + 40)
    assert green.sum() > 100
    print(f"render 640x480 ({camera or 'free'}): {elapsed * 1000:.0f} ms")


def test_preview_size_and_bounds(build_scene: BuildScene) -> None:
    model = compile_mjcf(build_scene("dummy_box").xml_path)
    assert _pixels(render_preview(model, width=320, height=240)).shape == (240, 320, 3)
    with pytest.raises(ScenarioError, match="exceeds the model's offscreen buffer"):
        render_preview(model, width=4000, height=3000)


@pytest.mark.parametrize("camera", [None, "preview"], ids=["free-camera", "model-camera"])
def test_preview_pixels_are_mujoco_renderers_on_any_thread(build_scene: BuildScene, camera: str | None) -> None:
    # render_preview keeps one GL context per thread instead of making a mujoco.Renderer per preview.
    model = compile_mjcf(build_scene("dummy_box").xml_path)
    other = compile_mjcf(build_scene("dummy_box", scale=(1.5, 1.0, 1.0)).xml_path)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    view: mujoco.MjvCamera | str
    if camera is None:
        view = mujoco.MjvCamera()
        view.type = mujoco.mjtCamera.mjCAMERA_FREE
        view.lookat[:] = model.stat.center
        view.distance = 1.3 * float(model.stat.extent)
        view.azimuth, view.elevation = 135.0, -30.0
    else:
        view = camera
    with mujoco.Renderer(model, height=480, width=640) as renderer:
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        renderer.update_scene(data, camera=view)
        expected = renderer.render().copy()

    first = render_preview(model, camera=camera)
    between = render_preview(other, camera=camera)  # another model on the same context
    again = render_preview(model, camera=camera)
    with ThreadPoolExecutor(max_workers=2) as threads:
        on_threads = list(threads.map(lambda _: render_preview(model, camera=camera), range(4)))

    assert np.array_equal(_pixels(first), expected)
    assert between != first and again == first and on_threads == [first] * 4


def test_preview_names_a_missing_camera(build_scene: BuildScene) -> None:
    model = compile_mjcf(build_scene("dummy_box").xml_path)
    with pytest.raises(ScenarioError, match="no camera 'overhead'"):
        render_preview(model, camera="overhead")


def test_backend_is_headless() -> None:
    assert gl_backend() in HEADLESS_BACKENDS


def test_osmesa_backend_renders(build_scene: BuildScene) -> None:
    """The software fallback: the caller sets MUJOCO_GL=osmesa before mujoco is imported."""
    scene = build_scene("dummy_box")
    code = (
        "import sys; from pathlib import Path; from scenario_lib.scene.mjcf import compile_mjcf;"
        "from scenario_lib.scene.render import gl_backend, render_preview;"
        f"png = render_preview(compile_mjcf(Path({str(scene.xml_path)!r})));"
        "print(gl_backend(), len(png))"
    )
    # mujoco.egl (imported in this process) exported PYOPENGL_PLATFORM=egl; the child must not inherit it.
    env = {key: value for key, value in os.environ.items() if key != "PYOPENGL_PLATFORM"} | {"MUJOCO_GL": "osmesa"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    backend, size = result.stdout.split()
    assert backend == "mujoco.osmesa" and int(size) > 1000
