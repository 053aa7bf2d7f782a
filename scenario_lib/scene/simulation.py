"""Stability: does the scene sit still, or does it explode, sink or fall, when simulated untouched?

The model is stepped from its initial state with no control for ``duration_s``; the thresholds are the
ones that separated good from broken models on this project (see FIELD_NOTES).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import mujoco
import numpy as np
import numpy.typing as npt

from scenario_lib.report import Metric, Stage, StageResult
from scenario_lib.scene.limits import DEFAULT_THRESHOLDS, StabilityThresholds


_DIVERGED = (
    "the simulation diverged and MuJoCo reset it; look for overlapping bodies, tiny masses or a too-large timestep"
)
_WARNING_HINTS = {
    "mjWARN_INERTIA": "a body has a degenerate inertia; check that every moving part is a solid with volume",
    "mjWARN_CONTACTFULL": "contacts overflowed the arena memory; use fewer convex pieces or primitives",
    "mjWARN_CNSTRFULL": "constraints overflowed the arena memory; use fewer convex pieces or primitives",
    "mjWARN_BADQPOS": _DIVERGED,
    "mjWARN_BADQVEL": _DIVERGED,
    "mjWARN_BADQACC": _DIVERGED,
}


@dataclass
class _Worst:
    """The worst value of one quantity seen so far, with when and where."""

    value: float = 0.0
    time_s: float = 0.0
    where: str = ""

    def update(self, value: float, time_s: float, where: str) -> None:
        if value > self.value:
            self.value, self.time_s, self.where = value, time_s, where


def check_stability(
    model: mujoco.MjModel, duration_s: float = 1.0, thresholds: StabilityThresholds = DEFAULT_THRESHOLDS
) -> StageResult:
    """Simulate ``model`` passively for ``duration_s`` and check speeds, energy, penetration, warnings and rest."""
    return simulate_passive(model, duration_s, thresholds)[0]


def simulate_passive(
    model: mujoco.MjModel, duration_s: float = 1.0, thresholds: StabilityThresholds = DEFAULT_THRESHOLDS
) -> tuple[StageResult, npt.NDArray[np.float64]]:
    """`check_stability`, also returning the passive rollout's final ``qpos`` (for the negative control)."""
    started = time.perf_counter()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    body_names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, i) or f"body{i}" for i in range(model.nbody)]
    moving = np.array([model.body_weldid[i] != 0 for i in range(model.nbody)])
    start = _initial_contacts(model, data, body_names)
    rollout = _roll_out(model, data, max(1, round(duration_s / model.opt.timestep)))
    worst = _worst_of(model, rollout, body_names, moving, thresholds)
    drift = _Drift()
    if rollout.done > 0:
        settled = min(rollout.done - 1, round(thresholds.contact_settling_s / model.opt.timestep))
        drift = _worst_drift(
            model,
            data,
            body_names,
            moving,
            rollout.xpos0,
            rollout.xquat0,
            rollout.xpos[settled : rollout.done],
            rollout.xquat[settled : rollout.done],
            settled,
            thresholds,
        )
    warnings = {
        mujoco.mjtWarning(index).name: int(data.warning[index].number)
        for index in range(len(data.warning))
        if data.warning[index].number > 0
    }
    energy_scale_j = max(float(model.body_mass[moving].sum()) * abs(float(model.opt.gravity[2])) * float(model.stat.extent), 1e-9)
    metrics: dict[str, Metric] = {
        "steps": rollout.step,
        "sim_time_s": round(float(data.time), 6),
        "max_linear_speed_m_s": round(worst.linear.value, 6),
        "max_angular_speed_rad_s": round(worst.angular.value, 6),
        "energy_gain_j": round(rollout.energy_gain.value, 9),
        "energy_gain_fraction": round(rollout.energy_gain.value / energy_scale_j, 6),
        "penetration_t0_mm": round(start.penetration.value, 6),
        "penetration_after_settling_mm": round(worst.settling_penetration.value, 6),
        "penetration_at_rest_mm": round(worst.rest_penetration.value, 6),
        "max_drift_mm": round(drift.distance_mm, 4),
        "max_drift_deg": round(drift.angle_deg, 4),
        "warnings": sum(warnings.values()),
    }
    problems = _stability_problems(rollout, start, worst, drift, warnings, energy_scale_j, thresholds)
    duration = time.perf_counter() - started
    metrics["wall_s"] = round(duration, 4)
    final_qpos = data.qpos.copy()
    if problems:
        return StageResult.failing(Stage.STABILITY, "; ".join(problems), metrics, duration_s=duration), final_qpos
    return StageResult.passing(Stage.STABILITY, metrics, duration_s=duration), final_qpos


@dataclass
class _InitialContacts:
    """The deepest overlap at t=0 and the soft layer it may sit in."""

    penetration: _Worst
    # A contact may start inside its soft layer (solimp width): MuJoCo's own scenes are baked at that
    # equilibrium. Only an overlap beyond it, or one that pushes bodies apart (drift), is a fault.
    equilibrium_depth_mm: float = 0.0
    pair: frozenset[str] = frozenset()


def _initial_contacts(model: mujoco.MjModel, data: mujoco.MjData, body_names: list[str]) -> _InitialContacts:
    start = _InitialContacts(penetration=_Worst())
    if data.ncon:
        depth_m, pair = _deepest_contact(data)
        start.penetration.update(depth_m * 1000, 0.0, _pair_name(model, body_names, pair))
        start.equilibrium_depth_mm = _soft_layer_mm(data)
        start.pair = frozenset(body_names[model.geom_bodyid[geom]] for geom in pair)
    return start


@dataclass
class _Rollout:
    """What the passive rollout recorded, per step, for the analysis after it."""

    cvel: npt.NDArray[np.float64]
    xipos: npt.NDArray[np.float64]
    xpos: npt.NDArray[np.float64]
    xquat: npt.NDArray[np.float64]
    subtree_com: npt.NDArray[np.float64]
    xpos0: npt.NDArray[np.float64]
    xquat0: npt.NDArray[np.float64]
    depth_per_step: npt.NDArray[np.float64]
    pair_per_step: list[tuple[int, int]]
    energy_gain: _Worst
    step: int = 0  # steps taken
    done: int = 0  # steps analysed (a non-finite step is not)
    fatal: str | None = None
    nonfinite_at: float | None = None


def _roll_out(model: mujoco.MjModel, data: mujoco.MjData, steps: int) -> _Rollout:
    # Per step only copy state into preallocated arrays (Python-level numpy calls cost more than
    # mj_step itself); speeds are computed for all steps at once afterwards.
    shape = (steps, model.nbody)
    run = _Rollout(
        cvel=np.zeros((*shape, 6)),
        xipos=np.zeros((*shape, 3)),
        xpos=np.zeros((*shape, 3)),
        xquat=np.zeros((*shape, 4)),
        subtree_com=np.zeros((*shape, 3)),
        xpos0=data.xpos.copy(),
        xquat0=data.xquat.copy(),
        depth_per_step=np.zeros(steps),
        pair_per_step=[(0, 0)] * steps,
        energy_gain=_Worst(),
    )
    energy_start = _total_energy(data)
    step = 0
    for step in range(1, steps + 1):
        try:
            mujoco.mj_step(model, data)
        except mujoco.FatalError as err:
            run.fatal = f"{' '.join(str(err).split())} at t={float(data.time):.3f} s"
            step -= 1
            break
        row = step - 1
        run.cvel[row], run.xipos[row], run.subtree_com[row] = data.cvel, data.xipos, data.subtree_com
        run.xpos[row], run.xquat[row] = data.xpos, data.xquat
        if data.ncon:
            run.depth_per_step[row], run.pair_per_step[row] = _deepest_contact(data)
        energy = _total_energy(data) - energy_start
        if not math.isfinite(energy):
            run.nonfinite_at = float(data.time)
            break
        run.energy_gain.update(energy, float(data.time), "")
    run.step = step
    run.done = step if run.nonfinite_at is None else step - 1
    return run


@dataclass
class _WorstOfRollout:
    linear: _Worst
    angular: _Worst
    settling_penetration: _Worst
    rest_penetration: _Worst


def _worst_of(
    model: mujoco.MjModel, run: _Rollout, body_names: list[str], moving: npt.NDArray[np.bool_], thresholds: StabilityThresholds
) -> _WorstOfRollout:
    """The fastest body (linear, angular) and the deepest overlap after settling and at rest."""
    worst = _WorstOfRollout(_Worst(), _Worst(), _Worst(), _Worst())
    done = run.done
    if done <= 0:
        return worst
    speed_lin, speed_ang = _body_speeds(model, run.cvel[:done], run.xipos[:done], run.subtree_com[:done])
    speed_lin[:, ~moving] = 0.0
    speed_ang[:, ~moving] = 0.0
    for fastest, speeds in ((worst.linear, speed_lin), (worst.angular, speed_ang)):
        at_step, body = np.unravel_index(int(np.argmax(speeds)), speeds.shape)
        fastest.update(float(speeds[at_step, body]), (at_step + 1) * model.opt.timestep, body_names[body])
    times = np.arange(1, done + 1) * model.opt.timestep
    rest_from_step = len(run.depth_per_step) - max(1, round(thresholds.rest_window_s / model.opt.timestep))
    for deepest, window in (
        (worst.settling_penetration, times >= thresholds.settling_time_s - 1e-12),
        (worst.rest_penetration, np.arange(1, done + 1) > rest_from_step),
    ):
        if window.any():
            index = int(np.flatnonzero(window)[np.argmax(run.depth_per_step[:done][window])])
            where = _pair_name(model, body_names, run.pair_per_step[index])
            deepest.update(float(run.depth_per_step[index]) * 1000, float(times[index]), where)
    return worst


def _stability_problems(
    run: _Rollout,
    start: _InitialContacts,
    worst: _WorstOfRollout,
    drift: _Drift,
    warnings: dict[str, int],
    energy_scale_j: float,
    thresholds: StabilityThresholds,
) -> list[str]:
    """Each broken limit as an actionable sentence (the drift only when nothing else broke)."""
    problems: list[str] = []
    if run.fatal is not None:
        problems.append(
            f"MuJoCo stopped with a fatal error: {run.fatal}; usually far too many contacts (simplify collision "
            "geometry: fewer convex pieces, primitives) or a tampered <size memory>"
        )
    if run.nonfinite_at is not None:
        problems.append(
            f"the state became NaN/inf at t={run.nonfinite_at:.3f} s: the model is numerically unstable; look for "
            "overlapping bodies, tiny masses or a too-large timestep"
        )
    if warnings:
        hints = sorted({_WARNING_HINTS.get(name, "see the MuJoCo docs for this warning") for name in warnings})
        problems.append(f"MuJoCo raised warnings {warnings}: {'; '.join(hints)}")
    initial, linear, angular = start.penetration, worst.linear, worst.angular
    initial_limit_mm = max(thresholds.max_penetration_initial_mm, start.equilibrium_depth_mm)
    drifted = drift.distance_mm > thresholds.max_drift_mm or drift.angle_deg > thresholds.max_drift_deg
    pushed_apart = drifted and drift.body in start.pair
    if initial.value > initial_limit_mm or (initial.value > thresholds.max_penetration_initial_mm and pushed_apart):
        problems.append(
            f"{initial.where} interpenetrate by {initial.value:.3g} mm at t=0 "
            f"(limit {thresholds.max_penetration_initial_mm:g} mm, or the contact's {start.equilibrium_depth_mm:.2g} mm soft "
            "layer when nothing moves); move them apart, leaving a gap of ~0.05 mm"
        )
    if linear.value > thresholds.max_linear_speed_m_s:
        problems.append(
            f"body {linear.where!r} reached {linear.value:.3g} m/s at t={linear.time_s:.3f} s "
            f"(limit {thresholds.max_linear_speed_m_s:g} m/s): it is thrown out of an overlap or falls unsupported; "
            "place it resting on a support without overlap"
        )
    if angular.value > thresholds.max_angular_speed_rad_s:
        problems.append(
            f"body {angular.where!r} spun at {angular.value:.3g} rad/s at t={angular.time_s:.3f} s "
            f"(limit {thresholds.max_angular_speed_rad_s:g} rad/s); check overlaps and its mass/inertia"
        )
    gain = run.energy_gain
    gain_fraction = gain.value / energy_scale_j
    if gain_fraction > thresholds.max_energy_gain_fraction:
        problems.append(
            f"the scene gained {gain.value:.3g} J by t={gain.time_s:.3f} s, "
            f"{100 * gain_fraction:.1f}% of m·g·extent (limit {100 * thresholds.max_energy_gain_fraction:g}%): "
            "contacts are pushing bodies apart; remove overlaps between bodies"
        )
    settling, rest = worst.settling_penetration, worst.rest_penetration
    if settling.value > thresholds.max_penetration_settling_mm:
        problems.append(
            f"{settling.where} interpenetrate by {settling.value:.3g} mm at "
            f"t={settling.time_s:.3f} s (limit {thresholds.max_penetration_settling_mm:g} mm after "
            f"{thresholds.settling_time_s * 1000:g} ms): a body sinks into another; check its collision shapes"
        )
    if rest.value > thresholds.max_penetration_rest_mm:
        problems.append(
            f"{rest.where} still interpenetrate by {rest.value:.3g} mm at rest "
            f"(limit {thresholds.max_penetration_rest_mm:g} mm): a body is sunk into its support; "
            "check that collision shapes match the parts and that masses are realistic"
        )
    if drifted and not problems:
        problems.append(drift.describe(thresholds))
    return problems


@dataclass
class _Drift:
    """The largest drift of a movable body from its declared pose, relative to what supports it."""

    distance_mm: float = 0.0
    angle_deg: float = 0.0
    body: str = ""
    support: str = ""
    time_s: float = 0.0
    displacement_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def describe(self, thresholds: StabilityThresholds) -> str:
        relative = f", relative to {self.support!r}" if self.support else ""
        moved = f"moved {self.distance_mm:.3g} mm from its declared pose ({_direction(self.displacement_mm)}{relative})"
        if self.angle_deg > thresholds.max_drift_deg:
            moved += f" and turned {self.angle_deg:.3g}°"
        return (
            f"body {self.body!r} does not start at rest: it {moved} by "
            f"t={self.time_s:.3f} s (limits {thresholds.max_drift_mm:g} mm, {thresholds.max_drift_deg:g}°). Lower it onto "
            "its support (a 0.05 mm gap), support it under its centre of mass, widen its footprint, or raise the "
            "friction where it would slide"
        )


def _direction(vector_mm: tuple[float, float, float]) -> str:
    axis = int(np.argmax(np.abs(vector_mm)))
    sign = "+" if vector_mm[axis] >= 0 else "−"
    words = {(2, "−"): ": down", (2, "+"): ": up"}.get((axis, sign), "")
    return f"mostly {sign}{'xyz'[axis]}{words}"


def _soft_layer_mm(data: mujoco.MjData) -> float:
    """The widest soft layer (solimp width) among the contacts at the current state, in mm."""
    contacts = data.contact
    active = contacts.exclude == 0
    if not active.any():
        return 0.0
    return float(np.max(contacts.solimp[active, 2])) * 1000


def _supports(model: mujoco.MjModel, data: mujoco.MjData, moving: npt.NDArray[np.bool_]) -> dict[int, int]:
    """For each movable body in contact, the body that pushes it up hardest (its support) at this state."""
    best: dict[int, tuple[float, int]] = {}
    force = np.zeros(6)
    for index in range(data.ncon):
        contact = data.contact[index]
        if contact.exclude != 0:
            continue
        first, second = int(model.geom_bodyid[contact.geom1]), int(model.geom_bodyid[contact.geom2])
        mujoco.mj_contactForce(model, data, index, force)
        # The contact frame's x axis is the normal, pointing from geom1 to geom2.
        upward = float(force[0] * contact.frame[2])  # the normal force's z component on geom2's body
        for body, other, lift in ((second, first, upward), (first, second, -upward)):
            if moving[body] and lift > best.get(body, (0.0, 0))[0]:
                best[body] = (lift, other)
    return {body: other for body, (_, other) in best.items()}


def _worst_drift(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    body_names: list[str],
    moving: npt.NDArray[np.bool_],
    xpos0: npt.NDArray[np.float64],
    xquat0: npt.NDArray[np.float64],
    xpos: npt.NDArray[np.float64],
    xquat: npt.NDArray[np.float64],
    first_step: int,
    thresholds: StabilityThresholds,
) -> _Drift:
    """Each movable body's largest displacement and rotation from its start over the rollout, measured
    against the body supporting it at the end (a stack's boxes each sink a little into the one below)."""
    supports = _supports(model, data, moving)
    worst, worst_ratio = _Drift(), 0.0
    for body in np.flatnonzero(moving):
        if model.body_parentid[body] != 0 and moving[model.body_parentid[body]]:
            continue  # a child of a moving body moves with its parent: the parent is measured
        support = supports.get(int(body), 0)
        # Positions and rotations in the support's frame: a load on a beam that gives a little at its
        # joint stop moves with the beam, and that is not a drift of the load.
        start = _in_frame(xpos0[support], xquat0[support], xpos0[body][None])[0]
        path = _in_frames(xpos[:, support], xquat[:, support], xpos[:, body])
        shift = path - start
        distances = np.linalg.norm(shift, axis=1) * 1000
        angles = _relative_rotation_deg(xquat0[support], xquat0[body], xquat[:, support], xquat[:, body])
        # The body's worst moment, by whichever limit it comes closest to breaking.
        ratio = np.maximum(distances / thresholds.max_drift_mm, angles / thresholds.max_drift_deg)
        step = int(np.argmax(ratio))
        if float(ratio[step]) > worst_ratio:
            worst_ratio = float(ratio[step])
            worst = _Drift(
                distance_mm=float(distances[step]),
                angle_deg=float(angles[step]),
                body=body_names[body],
                support=body_names[support] if support else "",
                time_s=(first_step + step + 1) * float(model.opt.timestep),
                displacement_mm=tuple(float(v) * 1000 for v in shift[step]),  # type: ignore[arg-type]
            )
    return worst


def _matrices(quats: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rotation matrices of unit quaternions (w, x, y, z), shape (..., 3, 3)."""
    w, x, y, z = (quats[..., i] for i in range(4))
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _in_frame(
    origin: npt.NDArray[np.float64], quat: npt.NDArray[np.float64], points: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    return np.einsum("ji,nj->ni", _matrices(quat), points - origin)


def _in_frames(
    origins: npt.NDArray[np.float64], quats: npt.NDArray[np.float64], points: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Each point expressed in the frame (origin, quat) of the same row."""
    return np.einsum("nji,nj->ni", _matrices(quats), points - origins)


def _relative_rotation_deg(
    support0: npt.NDArray[np.float64], body0: npt.NDArray[np.float64], supports: npt.NDArray[np.float64], bodies: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """How far (degrees) the body turned relative to its support since the start, per row."""
    start = _matrices(support0).T @ _matrices(body0)
    now = np.einsum("nji,njk->nik", _matrices(supports), _matrices(bodies))
    change = np.einsum("ij,njk->nik", start.T, now)
    cos = np.clip((np.trace(change, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def _total_energy(data: mujoco.MjData) -> float:
    return float(data.energy[0] + data.energy[1])


def _body_speeds(
    model: mujoco.MjModel,
    cvel: npt.NDArray[np.float64],
    xipos: npt.NDArray[np.float64],
    subtree_com: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per step and body: linear speed of the centre of mass and angular speed (world frame)."""
    # cvel is [angular, linear] about the centre of mass of the body's kinematic-tree root subtree;
    # shift the linear part to the body's own centre of mass: v = v_ref + ω × (x_com - x_ref).
    angular = cvel[..., :3]
    offset = xipos - subtree_com[:, model.body_rootid]
    linear = cvel[..., 3:] + np.cross(angular, offset)
    return np.linalg.norm(linear, axis=-1), np.linalg.norm(angular, axis=-1)


def _deepest_contact(data: mujoco.MjData) -> tuple[float, tuple[int, int]]:
    """Deepest penetration (m, ≥ 0) over active contacts and the geom pair it is between."""
    contacts = data.contact
    depths = np.where(contacts.exclude == 0, -contacts.dist, 0.0)
    worst = int(np.argmax(depths))
    if depths[worst] <= 0:
        return 0.0, (0, 0)
    return float(depths[worst]), (int(contacts.geom1[worst]), int(contacts.geom2[worst]))


def _pair_name(model: mujoco.MjModel, body_names: list[str], pair: tuple[int, int]) -> str:
    first, second = (body_names[model.geom_bodyid[geom]] for geom in pair)
    return f"bodies {first!r} and {second!r}"
