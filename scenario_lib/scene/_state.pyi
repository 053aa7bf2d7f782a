"""Type stub of the compiled reader of the movable bodies' state (`_state.c`)."""

from collections.abc import Sequence

import mujoco
import numpy as np
import numpy.typing as npt

_Array = npt.NDArray[np.float64]

class StateKernel:
    def __init__(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        kinematics: mujoco.MjData,
        body_ids: Sequence[int],
        qpos: Sequence[int],
        dofs: Sequence[int],
        jointed: Sequence[bool],
    ) -> None: ...
    def refresh(self) -> None: ...
    def read(self) -> tuple[_Array, _Array, _Array, _Array, _Array, _Array]: ...
