"""Type stub of the compiled hand controller (`_hand.c`)."""

from collections.abc import Sequence

import mujoco

class HandKernel:
    record: list[tuple[int, bytes, bytes]] | None
    def __init__(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        bodies: Sequence[tuple[int, int, int, int, float, float, float, float, float]],
        rides_freely: bytes,
        limits: tuple[float, float, float, float, float, float],
        constants: tuple[float, float, float],
        update_steps: Sequence[int],
        update_dt: float,
        steps_per_action: int,
    ) -> None: ...
    def act(self, body: int, grasp: bool, x: float, y: float, z: float, rx: float, ry: float, rz: float, joint: float) -> None: ...

def set_order(keys: Sequence[int]) -> list[int]: ...
