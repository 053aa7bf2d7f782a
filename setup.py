"""The compiled part of scenario-lib: the abstract hand's controller (`scenario_lib/scene/_hand.c`).

It includes MuJoCo's headers and links libmujoco from the `mujoco` wheel the build environment holds (the
same release the package depends on; the kernel refuses to start if the loaded MuJoCo differs). Built with
``-ffp-contract=off``: the controller's arithmetic must be the reference's, operation for operation.
"""

from pathlib import Path

import mujoco
from setuptools import Extension, setup

MUJOCO_DIR = Path(mujoco.__file__).parent
LIBRARY = sorted(MUJOCO_DIR.glob("libmujoco.so*"))[0]

setup(
    ext_modules=[
        Extension(
            "scenario_lib.scene._hand",
            sources=["scenario_lib/scene/_hand.c"],
            include_dirs=[str(MUJOCO_DIR / "include")],
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c11", "-Wall"],
            # By soname: `import mujoco` has loaded this library before the kernel is imported.
            extra_link_args=[f"-L{MUJOCO_DIR}", f"-l:{LIBRARY.name}"],
        )
    ]
)
