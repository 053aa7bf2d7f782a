"""scenario_lib: turn scenario scripts into validated, deterministic physics benchmark scenarios."""

import os as _os

# MuJoCo binds its OpenGL backend at its first import and cannot switch later; previews are rendered
# headless. setdefault keeps the caller's choice (e.g. MUJOCO_GL=osmesa). See scenario_lib.render.
_os.environ.setdefault("MUJOCO_GL", "egl")
