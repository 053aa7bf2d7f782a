"""Offscreen preview rendering of a compiled model to PNG.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` once, when ``mujoco`` is first imported, and it
cannot be switched afterwards in the same process. The caller picks it: entry points (CLI, flow
workers, test conftest) set ``MUJOCO_GL`` to ``egl`` (preferred: Mesa EGL, works headless here) or
``osmesa`` (software fallback, libosmesa6) before anything imports ``mujoco``. As a safety net the
package's ``__init__`` sets ``egl`` when the variable is unset — the only environment access in the
library, effective whenever ``scenario_lib`` is imported before ``mujoco``. MuJoCo's backends also set
``PYOPENGL_PLATFORM`` to match; a child process that picks another backend must not inherit it.
"""

from __future__ import annotations

import io
import threading

import mujoco
import numpy as np

from scenario_lib.errors import ScenarioError

HEADLESS_BACKENDS = ("mujoco.egl", "mujoco.osmesa")
# One render at a time per process: GL contexts made current from several threads at once crashed the
# process once here (EGL on llvmpipe); a render takes ~50 ms, and seeds render one preview each.
_RENDER_LOCK = threading.Lock()


def gl_backend() -> str:
    """The module of the OpenGL context class MuJoCo bound at import, e.g. ``mujoco.egl``."""
    context = getattr(mujoco, "GLContext", None)
    return getattr(context, "__module__", "none")


def render_preview(
    model: mujoco.MjModel, *, width: int = 640, height: int = 480, camera: str | None = None
) -> bytes:
    """Render the initial state of ``model`` to PNG bytes, offscreen and without shadows.

    ``camera`` names a model camera (e.g. ``"preview"`` from `assemble_mjcf`); by default a free
    camera frames the compiled scene from ``model.stat`` (which accounts for mesh sizes).
    """
    from PIL import Image  # Pillow comes with matplotlib; imported here to keep import time low.

    backend = gl_backend()
    if backend not in HEADLESS_BACKENDS:
        raise ScenarioError(
            f"MuJoCo bound the OpenGL backend {backend!r}, which needs a display; set MUJOCO_GL=egl (or osmesa) "
            "before the first `import mujoco` in this process"
        )
    if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
        raise ScenarioError(
            f"preview {width}x{height} exceeds the model's offscreen buffer "
            f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}; render smaller or raise <global offwidth>"
        )
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    if camera is None:
        view = mujoco.MjvCamera()
        view.type = mujoco.mjtCamera.mjCAMERA_FREE
        view.lookat[:] = model.stat.center
        view.distance = 1.3 * float(model.stat.extent)
        view.azimuth = 135.0
        view.elevation = -30.0
        target: mujoco.MjvCamera | str = view
    else:
        target = camera
    options = mujoco.MjvOption()
    with _RENDER_LOCK:
        pixels = _render(model, data, target, options, width=width, height=height)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _render(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    target: mujoco.MjvCamera | str,
    options: mujoco.MjvOption,
    *,
    width: int,
    height: int,
) -> np.ndarray:
    renderer = mujoco.Renderer(model, height=height, width=width)
    try:
        # Shadows and reflections off: on software GL they cost most of the frame time.
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        renderer.update_scene(data, camera=target, scene_option=options)
        return np.asarray(renderer.render())
    finally:
        renderer.close()
