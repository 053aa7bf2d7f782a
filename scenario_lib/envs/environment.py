"""`ScenarioEnv`: one validated scenario as a Gymnasium environment, driven by the abstract hand.

The embodiment is an abstract hand, not a robot (`scenario_lib.scene.actuation`): an action grasps one
movable body (or releases) and gives it an absolute target pose, or a joint target for a hinged or
sliding body; the hand moves its set-point toward the target within the bounds the demonstrations were
made with (force, torque, speed) at the same control rate (`CONTROL_PERIOD_S`, one action per 20 ms).
A stored demonstration is therefore a valid action sequence, and nothing a policy does is physically
impossible: nothing is teleported, a blocked body stays blocked.

Reward per step: ``-d / d0`` plus `SUCCESS_BONUS` while the success condition holds, where ``d`` is the
goal distance the task stage computes (mm for zones and slides, degrees for hinges) and ``d0`` its value
in the validated initial state, so returns compare across scenarios. ``terminated`` once success has
held for `SUCCESS_HOLD_S`; ``truncated`` at the step limit, `STEP_LIMIT_FACTOR` times the stored
demonstration's length unless given.

``reset()`` restores the validated initial state exactly (``qpos0``, at rest). The only randomness is the
optional ``initial_position_noise_m`` (uniform horizontal offsets of the free bodies, off by default),
seeded by ``reset(seed=...)``; the same calls give byte-identical observations.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium
import mujoco
import numpy as np
import numpy.typing as npt

from scenario_lib.envs.sources import LoadedScenario, load_benchmark_scenario, load_scenario
from scenario_lib.envs.spaces import Observation, Observer, SceneSpaces, snap_body
from scenario_lib.errors import ConfigError, ScenarioError
from scenario_lib.scene.actuation import (
    ACTION_SIZE,
    CONTROL_PERIOD_S,
    Hand,
    HandLimits,
    JointKind,
    MovableBody,
    movable_bodies,
)
from scenario_lib.scene.demonstration import Demonstration
from scenario_lib.scene.render import HEADLESS_BACKENDS, gl_backend
from scenario_lib.scene.state import BodyStateReader
from scenario_lib.scene.task import compile_goal_distance

Action = npt.NDArray[np.float64]

SUCCESS_BONUS = 1.0  # added to the step's reward while the success condition holds
SUCCESS_HOLD_S = 0.2  # success must hold this long (10 control steps) to terminate the episode
STEP_LIMIT_FACTOR = 3  # truncate at this many times the stored demonstration's length
MIN_STEP_LIMIT = 50
ACTION_LAYOUT = "[body, grasp, x, y, z, rx, ry, rz, joint]"
# The previews' free camera (scenario_lib.scene.render.render_preview): framing from the compiled scene.
CAMERA_AZIMUTH_DEG = 135.0
CAMERA_ELEVATION_DEG = -30.0
CAMERA_DISTANCE_EXTENTS = 1.3


class ScenarioEnv(gymnasium.Env[Observation, Action]):
    """One validated scenario, stepped by the abstract hand (see the module doc).

    Give ``path`` (a scenario folder: a local path, ``file://`` or ``s3://`` URL), or ``benchmark`` (a
    destination name, or its folder URL) and ``scenario_id``, with ``store`` the store URL for a
    benchmark name (None: the configured store). ``step_limit`` overrides the truncation step count.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1 / CONTROL_PERIOD_S)}
    # The episode's state, set by _start_episode.
    _hand: Hand
    _steps: int
    _success_run: int  # consecutive steps with the success condition holding
    _grasping: bool
    _held: int  # the body the hand holds, or last held
    _target: list[float]  # the last action's position, rotation vector and joint

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        benchmark: str | None = None,
        scenario_id: str | None = None,
        store: str | None = None,
        render_mode: str | None = None,
        step_limit: int | None = None,
        initial_position_noise_m: float = 0.0,
        render_width: int = 640,
        render_height: int = 480,
    ) -> None:
        if (path is None) == (benchmark is None):
            raise ConfigError(
                "give either path=<scenario folder or URL> or benchmark=<name or folder URL> with scenario_id=<id>"
            )
        if benchmark is not None and scenario_id is None:
            raise ConfigError(f"benchmark={benchmark!r} needs scenario_id=<id> too: which of its scenarios to load")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        if not (isinstance(initial_position_noise_m, (int, float)) and 0 <= initial_position_noise_m < math.inf):
            raise ConfigError(f"initial_position_noise_m must be a finite number >= 0, got {initial_position_noise_m!r}")
        if path is not None:
            scenario = load_scenario(path)
        else:
            assert benchmark is not None and scenario_id is not None
            scenario = load_benchmark_scenario(benchmark, scenario_id, store=store)
        self.scenario: LoadedScenario = scenario
        self.model = scenario.model
        self.data = mujoco.MjData(self.model)
        self._limits = HandLimits.from_model(self.model)
        bodies = movable_bodies(self.model)  # the hand's bodies, in its order
        if not bodies:
            raise ConfigError(f"scenario {scenario.scenario_id} has no movable body for the hand to hold")
        names = tuple(body.name for body in bodies)
        if names != scenario.demonstration.bodies:
            raise ConfigError(
                f"the stored demonstration of {scenario.scenario_id} holds {scenario.demonstration.bodies}, the scene "
                f"{names}: re-validate it with `scenarios revalidate {scenario.scenario_id}`"
            )
        self._condition = scenario.task.success
        self._goal_distance = compile_goal_distance(self._condition, self.model)
        self._spaces = SceneSpaces.from_scene(self.model, bodies, self._condition, scenario.demonstration.actions)
        # Observations and rewards are read from the reader's kinematics data, not from `data` (whose derived
        # quantities lag its qpos after mj_step, and which the hand reads).
        self._state = BodyStateReader(self.model, self.data, bodies)
        self._observer = Observer(self._spaces)
        self.action_space = self._spaces.action_space  # type: ignore[assignment]  # a float64 Box
        self.observation_space = self._spaces.observation_space
        demonstration_steps = len(scenario.demonstration.actions)
        self.step_limit = int(step_limit) if step_limit is not None else max(MIN_STEP_LIMIT, STEP_LIMIT_FACTOR * demonstration_steps)
        if self.step_limit < 1:
            raise ConfigError(f"step_limit must be at least 1, got {step_limit!r}")
        self.success_hold_steps = max(1, round(SUCCESS_HOLD_S / CONTROL_PERIOD_S))
        self.render_mode = render_mode
        self.initial_position_noise_m = float(initial_position_noise_m)
        self._render_size = (int(render_width), int(render_height))
        self._renderer: mujoco.Renderer | None = None
        self._free_qpos = np.array([body.qpos for body in bodies if body.kind is JointKind.FREE], dtype=np.intp)
        # The action bounds as floats: `_checked` clips on floats, every step.
        self._action_low = self._spaces.action_low.tolist()
        self._action_high = self._spaces.action_high.tolist()
        mujoco.mj_forward(self.model, self.data)
        self._state.refresh()
        self._initial_distance = self._goal_distance(self._state.kinematics)
        if not 0 < self._initial_distance < math.inf:
            raise ConfigError(
                f"scenario {scenario.scenario_id}'s task starts at goal distance {self._initial_distance}: a validated "
                f"task starts unsolved; re-validate it with `scenarios revalidate {scenario.scenario_id}`"
            )
        self._start_episode()

    # -- what the scenario is

    @property
    def scenario_id(self) -> str:
        return self.scenario.scenario_id

    @property
    def bodies(self) -> tuple[MovableBody, ...]:
        """The movable bodies, in the order of the observation's rows and of the action's body index."""
        return self._spaces.bodies

    @property
    def demonstration(self) -> Demonstration:
        """The stored demonstration: its actions replayed from `reset()` reach success."""
        return self.scenario.demonstration

    @property
    def initial_goal_distance(self) -> float:
        """The goal distance of the validated initial state (the reward's normalizer)."""
        return self._initial_distance

    # -- the Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        """Restore the validated initial state (plus the optional seeded noise) and return its observation."""
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        if self.initial_position_noise_m > 0 and self._free_qpos.size:
            offsets = self.np_random.uniform(-self.initial_position_noise_m, self.initial_position_noise_m, (self._free_qpos.size, 2))
            self.data.qpos[self._free_qpos] += offsets[:, 0]
            self.data.qpos[self._free_qpos + 1] += offsets[:, 1]
        mujoco.mj_forward(self.model, self.data)
        self._start_episode()
        self._state.refresh()
        distance = self._goal_distance(self._state.kinematics)
        return self._observe(distance), self._info(distance)

    def step(self, action: Action) -> tuple[Observation, SupportsFloat, bool, bool, dict[str, Any]]:
        """Advance one control period under ``action`` (clipped into the action space)."""
        values = self._checked(action)  # the body index already snapped to a whole number
        self._hand.act_floats(values)
        self._steps += 1
        self._grasping = grasping = values[1] > 0.5
        if grasping:
            self._held = int(values[0])
        self._target = values[2:]
        self._state.refresh()
        distance = self._goal_distance(self._state.kinematics)
        success = distance <= 0.0
        self._success_run = self._success_run + 1 if success else 0
        terminated = self._success_run >= self.success_hold_steps
        truncated = not terminated and self._steps >= self.step_limit
        reward = -distance / self._initial_distance + (SUCCESS_BONUS if success else 0.0)
        return self._observe(distance), reward, terminated, truncated, self._info(distance)

    def render(self) -> npt.NDArray[np.uint8] | None:  # type: ignore[override]
        """An RGB frame of the current state with the previews' camera (``render_mode="rgb_array"``)."""
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = self._open_renderer()
        mujoco.mj_camlight(self.model, self._state.kinematics)
        camera = mujoco.MjvCamera()
        camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        camera.lookat[:] = self.model.stat.center
        camera.distance = CAMERA_DISTANCE_EXTENTS * float(self.model.stat.extent)
        camera.azimuth = CAMERA_AZIMUTH_DEG
        camera.elevation = CAMERA_ELEVATION_DEG
        self._renderer.update_scene(self._state.kinematics, camera=camera)
        return np.asarray(self._renderer.render(), dtype=np.uint8)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()

    # -- internals

    def _start_episode(self) -> None:
        """A fresh hand (its set-point and servo state) and episode counters."""
        self._hand = Hand(self.model, self.data, self._limits)
        self._steps = 0
        self._success_run = 0
        self._grasping = False
        self._held = 0
        self._target = [0.0] * (ACTION_SIZE - 2)

    def _checked(self, action: Action) -> list[float]:
        """The action as floats, clipped into the action space, its body index snapped to a body."""
        try:
            values = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"an action is {ACTION_SIZE} numbers {ACTION_LAYOUT}, got {type(action).__name__}: {err}") from None
        if values.shape != (ACTION_SIZE,):
            raise ConfigError(
                f"an action of scenario {self.scenario_id} has shape ({ACTION_SIZE},) {ACTION_LAYOUT}, got shape {values.shape}"
            )
        floats: list[float] = values.tolist()
        # A finite sum has finite terms; only a sum that overflowed needs the element-wise look.
        if not math.isfinite(sum(floats)) and not all(map(math.isfinite, floats)):
            raise ConfigError(f"an action must be finite numbers {ACTION_LAYOUT}, got {floats}")
        # Clipping as np.minimum(np.maximum(value, low), high) does, signed zeros included; within the bounds
        # it returns the same floats, so a stored demonstration passes unchanged.
        clipped = [
            low if value < low else high if value > high else value
            for value, low, high in zip(floats, self._action_low, self._action_high)
        ]
        clipped[0] = snap_body(clipped[0], len(self._spaces.bodies))
        return clipped

    def _observe(self, distance: float) -> Observation:
        return self._observer.observe(
            self._state.read(),
            grasping=self._grasping,
            held=self._held,
            target=self._target,
            goal_distance=distance / self._initial_distance,
        )

    def _info(self, distance: float) -> dict[str, Any]:
        return {"success": bool(distance <= 0.0), "goal_distance": float(distance)}

    def _open_renderer(self) -> mujoco.Renderer:
        backend = gl_backend()
        if backend not in HEADLESS_BACKENDS:
            raise ScenarioError(
                f"MuJoCo bound the OpenGL backend {backend!r}, which needs a display; set MUJOCO_GL=egl (or osmesa) "
                "before the first `import mujoco` in this process"
            )
        width, height = self._render_size
        limit = (self.model.vis.global_.offwidth, self.model.vis.global_.offheight)
        if width > limit[0] or height > limit[1]:
            raise ConfigError(f"render size {width}x{height} exceeds the scene's offscreen buffer {limit[0]}x{limit[1]}")
        renderer = mujoco.Renderer(self.model, height=height, width=width)
        # As for the previews: shadows and reflections off, they cost most of a software-GL frame.
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return renderer


__all__ = ["SUCCESS_BONUS", "SUCCESS_HOLD_S", "STEP_LIMIT_FACTOR", "ScenarioEnv"]
