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

import atexit
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
    """What `mujoco.Renderer` renders, on this thread's long-lived GL context (`_thread_gl_context`)."""
    if isinstance(target, str):
        camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, target)
        if camera_id == -1:
            raise ScenarioError(f"the model has no camera {target!r}; name one of its cameras or pass none")
        target = mujoco.MjvCamera()
        target.type = mujoco.mjtCamera.mjCAMERA_FIXED
        target.fixedcamid = camera_id
    _thread_gl_context().make_current()
    # The context's offscreen buffer is made the viewport's size, not the model's <global offwidth>
    # (1280x960 for the scenes, so that environments may render large): a multisampled buffer four times
    # the viewport cost ~half of a preview's ~45 ms on software GL, and the pixels are the same.
    global_ = model.vis.global_
    declared = (global_.offwidth, global_.offheight)
    global_.offwidth, global_.offheight = width, height
    try:
        context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
    finally:
        global_.offwidth, global_.offheight = declared
    try:
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, context)
        scene = mujoco.MjvScene(model, maxgeom=10_000)
        # Shadows and reflections off: on software GL they cost most of the frame time.
        scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        mujoco.mjv_updateScene(model, data, options, None, target, mujoco.mjtCatBit.mjCAT_ALL, scene)
        viewport = mujoco.MjrRect(0, 0, width, height)
        mujoco.mjr_render(viewport, scene, context)
        pixels = np.empty((height, width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(pixels, None, viewport, context)
    finally:
        context.free()
    return np.flipud(pixels)


_THREAD_STATE = threading.local()
# Every thread's context, freed at exit: later, a context's own __del__ finds its GL library half torn
# down and prints a traceback. (Appended under _RENDER_LOCK, which every caller holds.)
_GL_CONTEXTS: list[mujoco.GLContext] = []


def _thread_gl_context() -> mujoco.GLContext:
    """This thread's GL context, made once: a fresh context per preview (as `mujoco.Renderer` makes) cost
    ~35 of a preview's ~80 ms on software GL here (making it, and compiling its first frame's code).
    A context is current on one thread at a time, hence one per thread."""
    context = getattr(_THREAD_STATE, "gl_context", None)
    if context is None:
        context = mujoco.GLContext(640, 480)
        _THREAD_STATE.gl_context = context
        if not _GL_CONTEXTS:
            atexit.register(_free_gl_contexts)
        _GL_CONTEXTS.append(context)
    return context


def _free_gl_contexts() -> None:
    while _GL_CONTEXTS:
        _GL_CONTEXTS.pop().free()  # idempotent: the context's __del__ then finds nothing to free
