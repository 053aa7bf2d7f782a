"""The strict validation pipeline and its randomization harness.

One script is built in the sandbox for several (seed, scale) pairs; each build then passes, in the
trusted parent, through the stages code → geometry → mjcf → stability → task → solvability. The first failing stage
ends that seed's run; later stages are recorded as skipped.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scenario_lib.closing import Closing
from scenario_lib.contract import Collision, ScaleLimits, Scenario
from scenario_lib.errors import ConfigError, GeometryError, MjcfError, ScenarioError
from scenario_lib.report import STAGE_ORDER, SeedReport, Stage, StageResult, ValidationReport, Verdict
from scenario_lib.sandbox.outcome import BuildOutcome
from scenario_lib.sandbox.pool import BuildRequest, SandboxPool

if TYPE_CHECKING:
    import mujoco

    from scenario_lib.validation.check_pool import CheckPool

    from scenario_lib.scene.demonstration import Demonstration

logger = logging.getLogger(__name__)

NOMINAL_SCALE: tuple[float, float, float] = (1.0, 1.0, 1.0)
SCENE_FILE = "scene.xml"
MESH_DIR = "meshes"


@dataclass(frozen=True)
class HarnessConfig:
    """How many (seed, scale) pairs to validate and the stage settings they share."""

    seeds: int = 8
    scale_low: float = 0.5
    scale_high: float = 2.0
    sim_duration_s: float = 1.0
    mjcf_schema_path: Path | None = None
    decomposition_cache_dir: Path | None = None
    stl_tolerance_mm: float = 0.05
    stl_angular_tolerance_rad: float = 0.2
    # False measures the generic oracle alone: a script's own demonstration is not tried.
    script_demonstrations: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"the harness needs at least 1 seed, got seeds={self.seeds!r}")
        for name in ("scale_low", "scale_high", "sim_duration_s", "stl_tolerance_mm", "stl_angular_tolerance_rad"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
                raise ConfigError(f"harness {name} must be a finite number > 0, got {value!r}")
        if self.scale_low > self.scale_high:
            raise ConfigError(
                f"harness scale_low={self.scale_low} exceeds scale_high={self.scale_high}; swap them (e.g. 0.5 and 2.0)"
            )


@dataclass(frozen=True)
class SceneFiles:
    """A built scene in memory: the MJCF text and every mesh file, keyed by path relative to the scene."""

    scene_xml: str
    files: dict[str, bytes] = field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        """Write the scene into ``folder`` and return the path of the MJCF file."""
        for relative, data in sorted(self.files.items()):
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        scene_path = folder / SCENE_FILE
        scene_path.write_text(self.scene_xml, encoding="utf-8")
        return scene_path


@dataclass(frozen=True)
class SeedValidation:
    """One seed's report plus what a caller needs to store the scene when it passed."""

    report: SeedReport
    scenario: Scenario | None
    scene: SceneFiles | None
    preview_png: bytes | None = None
    demonstration: bytes | None = None  # the solvability stage's demonstration (JSON), when it passed


def script_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def plan_harness(
    base_seed: int, count: int, limits: ScaleLimits, *, scale_low: float = 0.5, scale_high: float = 2.0
) -> list[tuple[int, tuple[float, float, float]]]:
    """Pick ``count`` (seed, scale) pairs: the base seed first, one nominal scale, the rest random.

    Scales are drawn per axis, log-uniformly, within the script's declared limits intersected with
    [scale_low, scale_high]; the plan depends only on its arguments.
    """
    rng = random.Random(f"harness:{base_seed}")
    bounds = [
        (max(lo, scale_low), min(hi, scale_high)) if max(lo, scale_low) <= min(hi, scale_high) else (lo, hi)
        for lo, hi in zip(limits.low, limits.high)
    ]

    def draw_scale() -> tuple[float, float, float]:
        values = [lo * (hi / lo) ** rng.random() for lo, hi in bounds]
        return (round(values[0], 4), round(values[1], 4), round(values[2], 4))

    plan = [(base_seed, draw_scale())]
    for index in range(1, count):
        seed = base_seed + 1_000_003 * index
        scale = _clamp_nominal(bounds) if index == 1 else draw_scale()
        plan.append((seed, scale))
    return plan


def _clamp_nominal(bounds: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    clamped = [min(max(1.0, lo), hi) for lo, hi in bounds]
    return (clamped[0], clamped[1], clamped[2])


def _skipped(after: Stage) -> list[StageResult]:
    later = STAGE_ORDER[STAGE_ORDER.index(after) + 1 :]
    return [
        StageResult(stage=stage, verdict=Verdict.SKIPPED, message=f"skipped: {after.value} failed") for stage in later
    ]


class Validator(Closing):
    """Validates scenario scripts with a sandbox pool and a harness configuration."""

    def __init__(self, pool: SandboxPool, config: HarnessConfig = HarnessConfig(), checks: CheckPool | None = None) -> None:
        """``checks``: worker processes for the trusted stages; None runs them in the calling thread."""
        self.pool = pool
        self.config = config
        self.checks = checks

    def close(self) -> None:
        """Stop the sandbox workers and the check workers."""
        try:
            self.pool.close()
        finally:
            if self.checks is not None:
                self.checks.close()

    def _request(self, seed: int, scale: tuple[float, float, float], *, check_parts: bool = True) -> BuildRequest:
        return BuildRequest(
            seed=seed,
            scale=scale,
            stl_tolerance_mm=self.config.stl_tolerance_mm,
            stl_angular_tolerance_rad=self.config.stl_angular_tolerance_rad,
            check_parts=check_parts,
        )

    def validate_script(self, source: str, *, base_seed: int = 0, render_preview: bool = False) -> tuple[
        ValidationReport, SeedValidation
    ]:
        """Validate ``source`` over the harness; return the report and the base seed's full result.

        The base seed's scale is drawn from the script's declared limits, which are only known after a
        first build, so that build runs first (at nominal scale, without part checks and meshes: the
        harness builds make those). The harness builds then run as one series in one sandbox child: a
        later build of a series costs about half of a build in a fresh child, and the parallelism comes
        from validating several scripts at once (and from the check workers).
        """
        started = time.perf_counter()
        probe = self.pool.run_build(source, self._request(base_seed, NOMINAL_SCALE, check_parts=False))
        if not probe.ok:
            # A script that cannot even build at nominal scale fails the code stage; building it at
            # every harness seed would only repeat the failure (a sleeper would cost seeds × wall limit).
            result = self.check_outcome(probe, base_seed, NOMINAL_SCALE)
            report = ValidationReport(
                script_sha256=script_sha256(source),
                seeds=[result.report],
                versions=library_versions(),
                duration_s=round(time.perf_counter() - started, 4),
            )
            return report, result
        limits = _declared_limits(probe)
        plan = plan_harness(
            base_seed,
            self.config.seeds,
            limits,
            scale_low=self.config.scale_low,
            scale_high=self.config.scale_high,
        )
        outcomes = self.pool.run_series(source, [self._request(seed, scale) for seed, scale in plan])
        # Only the base seed's scene is stored: the other seeds send back their reports alone.
        jobs = [
            (self.config, outcome, seed, scale, render_preview and index == 0, index == 0)
            for index, (outcome, (seed, scale)) in enumerate(zip(outcomes, plan))
        ]
        if self.checks is None:
            results = [check_build(*job) for job in jobs]
        else:
            results = self.checks.map(check_build, jobs, what=f"the checks of seeds {plan[0][0]}..{plan[-1][0]}")
        report = ValidationReport(
            script_sha256=script_sha256(source),
            seeds=[result.report for result in results],
            versions=library_versions(),
            duration_s=round(time.perf_counter() - started, 4),
        )
        return report, results[0]

    def check_outcome(
        self,
        outcome: BuildOutcome,
        seed: int,
        scale: tuple[float, float, float],
        *,
        render_preview: bool = False,
    ) -> SeedValidation:
        """Run the trusted stages on one sandbox build, in the calling thread."""
        return check_build(self.config, outcome, seed, scale, render_preview)


def check_build(
    config: HarnessConfig,
    outcome: BuildOutcome,
    seed: int,
    scale: tuple[float, float, float],
    render_preview: bool = False,
    keep_scene: bool = True,
) -> SeedValidation:
    """The trusted stages on one sandbox build: geometry, mjcf, stability, task, solvability (a `CheckPool` job).

    ``keep_scene=False`` (a harness seed whose scene is not stored): the scene files and the
    demonstration are neither encoded nor sent back, only the report and the scenario.
    """
    # Imported here: mujoco, trimesh and coacd are heavy and the CLI must start fast.
    from scenario_lib.scene.geometry import geometry_stage
    from scenario_lib.scene.mjcf import mjcf_stage

    stages: list[StageResult] = []

    def finish(
        scenario: Scenario | None = None, scene: SceneFiles | None = None, demonstration: Demonstration | None = None
    ) -> SeedValidation:
        if stages[-1].verdict is Verdict.FAIL:
            stages.extend(_skipped(stages[-1].stage))
        report = SeedReport(seed=seed, scale=scale, stages=stages)
        if not keep_scene:
            return SeedValidation(report, scenario, None)
        return SeedValidation(report, scenario, scene, demonstration=demonstration.to_json() if demonstration else None)

    stages.append(outcome.code_stage())
    if not outcome.ok or outcome.scenario_json is None:
        return finish()
    scenario = Scenario.model_validate_json(outcome.scenario_json)

    stages.append(geometry_stage(outcome.part_checks, outcome.meshes))
    if not stages[-1].passed:
        return finish(scenario)

    started = time.perf_counter()
    scene = _assemble_scene(config, scenario, outcome.meshes, started)
    if isinstance(scene, StageResult):
        stages.append(scene)
        return finish(scenario)
    mjcf_result, model = mjcf_stage(scene.scene_xml, scene.files, scenario, config.mjcf_schema_path)
    decompose_s = time.perf_counter() - started
    stages.append(
        mjcf_result.model_copy(update={"metrics": {**mjcf_result.metrics, "collision_s": round(decompose_s, 4)}})
    )
    if model is None or not stages[-1].passed:
        return finish(scenario, scene)

    result = finish(scenario, scene, _physics_stages(config, scenario, model, stages))
    if render_preview and result.report.passed:
        return _with_preview(result, model)
    return result


def _assemble_scene(
    config: HarnessConfig, scenario: Scenario, meshes: dict[str, bytes], started: float
) -> SceneFiles | StageResult:
    """The scene files (MJCF, visual meshes, collision hulls), or the failing MJCF stage."""
    from scenario_lib.scene.collision import collision_meshes
    from scenario_lib.scene.mjcf import assemble_mjcf

    try:
        hull_failure = _hull_misuse(scenario, meshes)
        if hull_failure is not None:
            return StageResult.failing(Stage.MJCF, hull_failure)
        hulls = collision_meshes(scenario, meshes, config.decomposition_cache_dir)
        scene_xml = assemble_mjcf(scenario, {name: len(pieces) for name, pieces in hulls.items()})
    except (MjcfError, GeometryError) as err:
        # A scenario from untrusted code: a parent that is no body, a parent cycle, a FREE child or
        # a mesh nothing can be decomposed from is the script's failure, not the validator's.
        return StageResult.failing(Stage.MJCF, str(err), duration_s=time.perf_counter() - started)
    files = {f"{MESH_DIR}/{name}.stl": data for name, data in meshes.items()}
    for name, pieces in hulls.items():
        for index, piece in enumerate(pieces):
            files[f"{MESH_DIR}/{name}_hull{index}.stl"] = piece
    return SceneFiles(scene_xml=scene_xml, files=files)


def _physics_stages(
    config: HarnessConfig, scenario: Scenario, model: mujoco.MjModel, stages: list[StageResult]
) -> Demonstration | None:
    """Stability, task and solvability in order, appended to ``stages`` up to the first failure;
    returns the solvability stage's demonstration."""
    from scenario_lib.scene.simulation import simulate_passive
    from scenario_lib.scene.task import check_task
    from scenario_lib.validation.solvability import check_solvability

    stability, passive_qpos = simulate_passive(model, duration_s=config.sim_duration_s)
    stages.append(stability)
    if not stability.passed:
        return None
    stages.append(check_task(scenario, model))
    if not stages[-1].passed:
        return None
    solvability, demonstration = check_solvability(
        scenario, model, passive_qpos, script_demonstrations=config.script_demonstrations
    )
    stages.append(solvability)
    return demonstration


def _with_preview(result: SeedValidation, model: mujoco.MjModel) -> SeedValidation:
    from scenario_lib.scene.render import render_preview

    try:
        preview = render_preview(model)
    except ScenarioError as err:
        # A preview is a convenience: a machine without headless OpenGL still validates.
        logger.warning("no preview rendered: %s", err)
        return result
    return SeedValidation(result.report, result.scenario, result.scene, preview_png=preview, demonstration=result.demonstration)


def _declared_limits(probe: BuildOutcome) -> ScaleLimits:
    if probe.ok and probe.scenario_json is not None:
        return Scenario.model_validate_json(probe.scenario_json).scale_limits
    return ScaleLimits()


def _hull_misuse(scenario: Scenario, meshes: dict[str, bytes]) -> str | None:
    """A body declared HULL must be convex, else it collides as a solid lump (a peg rests on its hole)."""
    from scenario_lib.scene.collision import convexity_ratio

    for body in scenario.bodies:
        if body.collision is Collision.HULL and body.name in meshes:
            ratio = convexity_ratio(meshes[body.name])
            if ratio < 0.98:
                return (
                    f"body {body.name!r} is declared Collision.HULL but is not convex (volume/hull volume = "
                    f"{ratio:.3f} < 0.98): it would collide as one solid lump. Declare primitives that follow its "
                    "shape or use Collision.DECOMPOSE"
                )
    return None


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose output a scenario depends on."""
    return dict(_library_versions())


@functools.cache
def _library_versions() -> tuple[tuple[str, str], ...]:
    # Read once per process: importlib.metadata scans site-packages (~8 ms a call, once per seed).
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str] = {}
    # OCP is published as cadquery-ocp and, without VTK, as cadquery-ocp-novtk: either is "cadquery-ocp".
    for key, packages in (
        ("build123d", ("build123d",)),
        ("cadquery-ocp", ("cadquery-ocp", "cadquery-ocp-novtk")),
        ("mujoco", ("mujoco",)),
        ("scenario-lib", ("scenario-lib",)),
    ):
        for package in packages:
            try:
                versions[key] = version(package)
                break
            except PackageNotFoundError:
                continue
    return tuple(versions.items())
