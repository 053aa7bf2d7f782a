"""The script-free re-run of verification: mesh checks, MJCF compilation, the passive simulation, the task at
t=0, the negative control and the demonstration's replay, on a stored folder's files, compared with the
certificate's stored seed (see `scenario_lib.validation.verify`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from scenario_lib.errors import MjcfError
from scenario_lib.report import Metric, Stage, Verdict
from scenario_lib.validation.artifacts import DEMONSTRATION_FILE, TASK_FILE, ScenarioTask
from scenario_lib.validation.certificate import ScenarioCertificate, SeedCertificate
from scenario_lib.validation.findings import Aspect, Findings, format_number
from scenario_lib.validation.pipeline import MESH_DIR, SCENE_FILE

if TYPE_CHECKING:
    import mujoco

    from scenario_lib.scene.demonstration import Demonstration

# A certificate is read from the store like any file: a forged one must not make the verifier simulate for hours.
MAX_PASSIVE_DURATION_S = 10.0
# Compared exactly under any version: the model's structure and the passive run's step count.
STRUCTURE_METRICS = ("nbody", "ngeom", "nmesh", "nv")


def rerun_stages(contents: Mapping[str, bytes], certificate: ScenarioCertificate, location: str, findings: Findings) -> None:
    """Re-run the script-free stages on the stored files and compare with the certificate's stored seed."""
    from scenario_lib.scene.demonstration import Demonstration

    reference = certificate.stored_seed
    _check_meshes(contents, reference, findings)
    model = _compile(contents, location, reference, findings)
    if model is None:
        return
    passive_qpos = _check_passive(model, certificate, reference, findings)
    task = _parse_task(contents.get(TASK_FILE), findings)
    if task is None or passive_qpos is None:
        return
    _check_task(model, task, reference, passive_qpos, findings)
    try:
        demonstration = Demonstration.from_json(contents[DEMONSTRATION_FILE])
    except (KeyError, ValueError, TypeError) as err:
        findings.add(
            Aspect.REPLAY, DEMONSTRATION_FILE, "a demonstration", "unreadable",
            f"the stored demonstration cannot be read ({err}): restore the folder from a copy",
        )
        return
    _check_replay(model, task, demonstration, certificate, findings)


def _metrics(seed: SeedCertificate, stage: Stage) -> dict[str, Metric]:
    found = seed.stage(stage)
    return dict(found.metrics) if found is not None else {}


def _check_meshes(contents: Mapping[str, bytes], reference: SeedCertificate, findings: Findings) -> None:
    """The visual meshes' trusted-side checks again: triangle count and watertightness per body."""
    from scenario_lib.scene.geometry import check_mesh

    metrics = _metrics(reference, Stage.GEOMETRY)
    for key in sorted(name for name in metrics if name.endswith(".triangles")):
        body = key.removesuffix(".triangles")
        path = f"{MESH_DIR}/{body}.stl"
        data = contents.get(path)
        if data is None:
            findings.expect(
                Aspect.GEOMETRY, path, False, expected="a mesh", measured="absent",
                message=f"the visual mesh of body {body!r} is not in the folder",
            )
            continue
        mesh = check_mesh(data)
        findings.expect(
            Aspect.GEOMETRY, f"geometry.{key}", mesh.triangles == metrics[key], expected=metrics[key], measured=mesh.triangles,
            message=f"{path} has {mesh.triangles} triangles, the certificate says {metrics[key]}: the mesh changed",
        )
        closed = metrics.get(f"{body}.watertight")
        if closed is not None:
            findings.expect(
                Aspect.GEOMETRY, f"geometry.{body}.watertight", mesh.watertight == closed,
                expected=closed, measured=mesh.watertight,
                message=f"{path} is {'now' if mesh.watertight else 'no longer'} watertight",
            )


def _compile(
    contents: Mapping[str, bytes], location: str, reference: SeedCertificate, findings: Findings
) -> mujoco.MjModel | None:
    """Compile the stored scene from its listed files alone (confined to the folder); compare the structure."""
    from scenario_lib.scene.limits import MAX_TIMESTEP_S
    from scenario_lib.scene.mjcf import compile_mjcf
    from scenario_lib.validation.scene_file import check_confined

    if SCENE_FILE not in contents:
        findings.expect(
            Aspect.MJCF, SCENE_FILE, False, expected="listed", measured="absent", message=f"{location} lists no {SCENE_FILE}"
        )
        return None
    # MuJoCo reads meshes from files beside the model: only the listed (hashed) files are materialized.
    with tempfile.TemporaryDirectory(prefix="scenario-verify-") as scratch:
        for name, data in contents.items():
            if name == SCENE_FILE or name.startswith(f"{MESH_DIR}/"):
                target = Path(scratch) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        try:
            check_confined(Path(scratch) / SCENE_FILE)
            model = compile_mjcf(Path(scratch) / SCENE_FILE)
        except MjcfError as err:
            findings.expect(
                Aspect.MJCF, "mjcf.compile", False, expected="compiles", measured="refused",
                message=f"the stored scene does not compile: {err}",
            )
            return None
    findings.checks += 1  # it compiled
    metrics = _metrics(reference, Stage.MJCF)
    structure = {"nbody": model.nbody, "ngeom": model.ngeom, "nmesh": model.nmesh, "nv": model.nv}
    for name in STRUCTURE_METRICS:
        if name in metrics:
            findings.expect(
                Aspect.MJCF, f"mjcf.{name}", int(structure[name]) == metrics[name], expected=metrics[name],
                measured=structure[name],
                message=f"the stored scene's model has {name}={structure[name]}, the certificate says {metrics[name]}",
            )
    findings.compare(
        Aspect.MJCF, "mjcf.total_mass_kg", metrics.get("total_mass_kg"), round(float(model.body_mass.sum()), 6),
        "the model's total mass (kg)",
    )
    timestep = float(model.opt.timestep)
    findings.expect(
        Aspect.MJCF, "mjcf.timestep_s", 0 < timestep <= MAX_TIMESTEP_S,
        expected=f"(0, {MAX_TIMESTEP_S:g}] s", measured=f"{timestep:g} s",
        message=f"the stored scene's timestep is {timestep:g} s, outside (0, {MAX_TIMESTEP_S:g}] s",
    )
    return model


def _check_passive(
    model: mujoco.MjModel, certificate: ScenarioCertificate, reference: SeedCertificate, findings: Findings
) -> Sequence[float] | None:
    """The passive simulation again: the stability verdict, its metrics, and at rest; returns the final qpos."""
    from scenario_lib.scene.simulation import simulate_passive

    duration_s = certificate.passive_duration_s
    if not 0 < duration_s <= MAX_PASSIVE_DURATION_S:
        findings.expect(
            Aspect.CERTIFICATE, "passive_duration_s", False,
            expected=f"(0, {MAX_PASSIVE_DURATION_S:g}] s", measured=f"{duration_s:g} s",
            message=f"the certificate asks for a {duration_s:g} s passive simulation: it was edited",
        )
        return None
    result, final_qpos = simulate_passive(model, duration_s=duration_s)
    certified = reference.stage(Stage.STABILITY)
    verdict = certified.verdict if certified is not None else Verdict.PASS
    findings.expect(
        Aspect.STABILITY, "stability.verdict", result.verdict is verdict, expected=verdict.value,
        measured=result.verdict.value,
        message=(
            f"left alone, the stored scene now fails stability: {result.message}"
            if not result.passed
            else "the stored scene now passes a stability check it failed"
        ),
    )
    metrics = _metrics(reference, Stage.STABILITY)
    for name, what in (("steps", "steps the passive simulation ran"), ("warnings", "warnings MuJoCo raised")):
        if name in metrics:
            findings.expect(
                Aspect.STABILITY, f"stability.{name}", result.metrics[name] == metrics[name],
                expected=metrics[name], measured=result.metrics[name],
                message=f"the {what}: {result.metrics[name]}, the certificate says {metrics[name]}",
            )
    for name in (
        "max_linear_speed_m_s",
        "max_angular_speed_rad_s",
        "energy_gain_fraction",
        "penetration_t0_mm",
        "penetration_after_settling_mm",
        "penetration_at_rest_mm",
    ):
        findings.compare(Aspect.STABILITY, f"stability.{name}", metrics.get(name), float(result.metrics[name]), name)
    for name in ("max_drift_mm", "max_drift_deg"):
        findings.compare(
            Aspect.AT_REST, f"at_rest.{name}", metrics.get(name), float(result.metrics[name]), f"the largest drift ({name})"
        )
    return [float(value) for value in final_qpos]


def _parse_task(data: bytes | None, findings: Findings) -> ScenarioTask | None:
    if data is None:
        findings.expect(
            Aspect.TASK, TASK_FILE, False, expected="present", measured="absent", message=f"the folder has no {TASK_FILE}"
        )
        return None
    try:
        return ScenarioTask.model_validate_json(data)
    except ValidationError as err:
        findings.expect(
            Aspect.TASK, TASK_FILE, False, expected="a scenario task", measured="unreadable",
            message=f"{TASK_FILE} is not a task ({err.errors()[0]['msg']}): restore the folder from a copy",
        )
        return None


def _check_task(
    model: mujoco.MjModel, task: ScenarioTask, reference: SeedCertificate, passive_qpos: Sequence[float], findings: Findings
) -> None:
    """The task's goal distance at t=0 (not solved), and the negative control (left alone, clearly unsolved)."""
    import mujoco

    from scenario_lib.scene.task import goal_distance
    from scenario_lib.scene.limits import NEGATIVE_MARGIN

    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    distance = goal_distance(task.success, model, data)
    findings.expect(
        Aspect.TASK, "task.unsolved_at_t0", distance > 0, expected="> 0", measured=format_number(distance),
        message="the success condition holds at t=0 in the stored scene: the task is solved without doing anything",
    )
    certified = _metrics(reference, Stage.TASK).get("goal_distance_t0")
    findings.compare(Aspect.TASK, "task.goal_distance_t0", certified, round(distance, 6), "the goal distance at t=0")
    # The same measure as solvability's negative control, on the passive rollout's end state.
    data.qpos[:] = passive_qpos
    mujoco.mj_kinematics(model, data)
    passive = goal_distance(task.success, model, data)
    findings.expect(
        Aspect.NEGATIVE_CONTROL, "negative_control.passive_goal_distance", passive >= NEGATIVE_MARGIN,
        expected=f">= {NEGATIVE_MARGIN:g}", measured=format_number(passive),
        message=f"left alone, the stored scene ends {passive:.3g} from success (margin {NEGATIVE_MARGIN:g}): it is no "
        "longer a task",
    )


def _check_replay(
    model: mujoco.MjModel,
    task: ScenarioTask,
    demonstration: Demonstration,
    certificate: ScenarioCertificate,
    findings: Findings,
) -> None:
    """Replay the stored demonstration: it must reach success and end where it was recorded to."""
    import mujoco
    import numpy as np

    from scenario_lib.scene.demonstration import replay
    from scenario_lib.scene.task import goal_distance

    steps = len(demonstration.actions)
    findings.expect(
        Aspect.REPLAY, "replay.steps", steps == certificate.demonstration.steps,
        expected=certificate.demonstration.steps, measured=steps,
        message="the demonstration's length is not the certified one",
    )
    try:
        data = replay(model, demonstration)
    except (ValueError, IndexError, TypeError, mujoco.FatalError) as err:
        # A demonstration for other bodies, or actions of the wrong length: not this scene's.
        findings.expect(
            Aspect.REPLAY, "replay.run", False, expected="replays", measured="refused",
            message=f"the stored demonstration does not replay on the stored scene: {err}",
        )
        return
    distance = goal_distance(task.success, model, data)
    findings.expect(
        Aspect.REPLAY, "replay.success", distance <= 0, expected="success", measured=f"{format_number(distance)} from success",
        message=f"the replayed demonstration ends {distance:.3g} from success: it no longer solves the stored scene",
    )
    if not demonstration.qpos:
        return
    recorded = np.asarray(demonstration.qpos[-1])
    if recorded.shape != data.qpos.shape:
        findings.expect(
            Aspect.REPLAY, "replay.final_qpos", False, expected=f"{recorded.size} coordinates",
            measured=f"{data.qpos.size} coordinates",
            message="the demonstration was recorded on a scene with other degrees of freedom",
        )
        return
    deviation = float(np.max(np.abs(data.qpos - recorded)))
    findings.compare(
        Aspect.REPLAY, "replay.final_qpos", 0.0, deviation, "the replay's largest deviation from the recorded final state"
    )


__all__ = ["MAX_PASSIVE_DURATION_S", "STRUCTURE_METRICS", "rerun_stages"]
