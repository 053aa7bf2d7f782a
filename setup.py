"""The compiled parts of scenario-lib: the abstract hand's controller (`scenario_lib/scene/_hand.c`) and the
reader of the movable bodies' state (`scenario_lib/scene/_state.c`).

Both include MuJoCo's headers and link libmujoco from the `mujoco` wheel the build environment holds (the
same release the package depends on; each kernel refuses to start if the loaded MuJoCo differs); the state
reader makes numpy arrays through numpy's C API. Built with ``-ffp-contract=off``: the controller's
arithmetic must be the reference's, operation for operation.
"""

from pathlib import Path

import mujoco
import numpy
from setuptools import Extension, setup

MUJOCO_DIR = Path(mujoco.__file__).parent
LIBRARY = sorted(MUJOCO_DIR.glob("libmujoco.so*"))[0]
COMPILE_ARGS = ["-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c11", "-Wall"]
# By soname: `import mujoco` has loaded this library before a kernel is imported.
LINK_ARGS = [f"-L{MUJOCO_DIR}", f"-l:{LIBRARY.name}"]


def mujoco_extension(name: str, *include_dirs: str) -> Extension:
    return Extension(
        f"scenario_lib.scene.{name}",
        sources=[f"scenario_lib/scene/{name}.c"],
        depends=["scenario_lib/scene/_kernel.h"],
        include_dirs=[str(MUJOCO_DIR / "include"), *include_dirs],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS,
    )


setup(ext_modules=[mujoco_extension("_hand"), mujoco_extension("_state", numpy.get_include())])
