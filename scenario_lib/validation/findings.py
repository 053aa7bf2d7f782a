"""What verification found: tolerances, the aspects a finding is about, and the findings of one scenario."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from scenario_lib.report import Metric

# The versions whose change can change a measured value: the physics engine and the stages' own code.
PHYSICS_VERSION_KEYS = ("mujoco", "scenario-lib")


@dataclass(frozen=True)
class Tolerance:
    """How far a re-measured value may lie from the certified one: ``absolute + relative·|certified|``."""

    absolute: float
    relative: float = 0.0

    def allows(self, certified: float, measured: float) -> bool:
        if not (math.isfinite(certified) and math.isfinite(measured)):
            return certified == measured
        return abs(measured - certified) <= self.absolute + self.relative * abs(certified)

    def describe(self) -> str:
        if self.absolute == 0 and self.relative == 0:
            return "exact"
        parts = [f"±{self.absolute:g}"] if self.absolute else []
        if self.relative:
            parts.append(f"{self.relative:.0e} relative")
        return " + ".join(parts)


EXACT = Tolerance(0.0)

# Same versions of MuJoCo and scenario-lib as the certificate's. MuJoCo is deterministic for one build: a
# re-run on the validating machine reproduces every stored metric to its rounding (6 decimals; drift 4).
# Another CPU may differ in the last bits of libm results, which one second of resting contacts does not
# amplify past that rounding: twice the rounding step, plus 1e-6 relative.
SAME_VERSION_TOLERANCES: Mapping[str, Tolerance] = {
    "mjcf.total_mass_kg": Tolerance(2e-6, 1e-9),
    "stability.max_linear_speed_m_s": Tolerance(2e-6, 1e-6),
    "stability.max_angular_speed_rad_s": Tolerance(2e-6, 1e-6),
    "stability.energy_gain_fraction": Tolerance(2e-6, 1e-6),
    "stability.penetration_t0_mm": Tolerance(2e-6, 1e-6),
    "stability.penetration_after_settling_mm": Tolerance(2e-6, 1e-6),
    "stability.penetration_at_rest_mm": Tolerance(2e-6, 1e-6),
    "at_rest.max_drift_mm": Tolerance(2e-4, 1e-6),
    "at_rest.max_drift_deg": Tolerance(2e-4, 1e-6),
    "task.goal_distance_t0": Tolerance(2e-6, 1e-9),
    # The replay reproduces the recorded states bit for bit (scene/demonstration.py); qpos mixes m and rad.
    "replay.final_qpos": Tolerance(1e-9),
}
# MuJoCo or scenario-lib differs from the certificate's: a new solver or contact model moves values a
# little. They are compared loosely, 5 % or a tenth of what the stage's threshold could notice, and the
# verdicts strictly: an upgrade that changes a verdict is always flagged. The scene's kinematics at t=0
# (the task's goal distance) does not depend on the solver and stays tight; mesh inertia has changed
# between MuJoCo releases, hence 0.1 % on the mass.
VERSION_CHANGE_TOLERANCES: Mapping[str, Tolerance] = {
    "mjcf.total_mass_kg": Tolerance(2e-6, 1e-3),
    "stability.max_linear_speed_m_s": Tolerance(0.01, 0.05),
    "stability.max_angular_speed_rad_s": Tolerance(0.1, 0.05),
    "stability.energy_gain_fraction": Tolerance(0.005, 0.05),
    "stability.penetration_t0_mm": Tolerance(0.02, 0.05),
    "stability.penetration_after_settling_mm": Tolerance(0.05, 0.05),
    "stability.penetration_at_rest_mm": Tolerance(0.05, 0.05),
    "at_rest.max_drift_mm": Tolerance(0.1, 0.05),
    "at_rest.max_drift_deg": Tolerance(0.15, 0.05),
    "task.goal_distance_t0": Tolerance(1e-5, 1e-6),
    # A manipulation replayed on another solver drifts: up to 5 mm (or 5 mrad) at the end, success required.
    "replay.final_qpos": Tolerance(5e-3),
}


class Aspect(StrEnum):
    """What a finding is about."""

    FILES = "files"
    CERTIFICATE = "certificate"
    GEOMETRY = "geometry"
    MJCF = "mjcf"
    STABILITY = "stability"
    AT_REST = "at_rest"
    TASK = "task"
    NEGATIVE_CONTROL = "negative_control"
    REPLAY = "replay"


class Finding(BaseModel):
    """One thing that no longer matches: which check, what the certificate (or manifest) says, what was found."""

    model_config = ConfigDict(frozen=True)

    aspect: Aspect
    check: str  # a file path, or "<aspect>.<metric>"
    expected: str
    measured: str
    tolerance: str = ""
    message: str


class Findings:
    """Findings as they are made, and how many comparisons were."""

    def __init__(self, tolerances: Mapping[str, Tolerance]) -> None:
        self.items: list[Finding] = []
        self.checks = 0
        self.tolerances = tolerances

    def add(
        self, aspect: Aspect, check: str, expected: object, measured: object, message: str, tolerance: str = ""
    ) -> None:
        finding = Finding(
            aspect=aspect, check=check, expected=str(expected), measured=str(measured), tolerance=tolerance, message=message
        )
        self.items.append(finding)

    def expect(self, aspect: Aspect, check: str, ok: bool, *, expected: object, measured: object, message: str) -> bool:
        """Count one verdict comparison; record a finding when it fails."""
        self.checks += 1
        if not ok:
            self.add(aspect, check, expected, measured, message)
        return ok

    def compare(self, aspect: Aspect, name: str, certified: Metric | None, measured: float, what: str) -> None:
        """Compare a re-measured value with the certified one, within the tolerance stated for ``name``."""
        if certified is None or isinstance(certified, (bool, str)):
            return
        self.checks += 1
        tolerance = self.tolerances.get(name, EXACT)
        if not tolerance.allows(float(certified), measured):
            self.add(
                aspect,
                name,
                certified,
                format_number(measured),
                f"{what} is {format_number(measured)}, the certificate says {certified} (tolerance {tolerance.describe()}): "
                "the stored scene no longer behaves as it did when validated",
                tolerance.describe(),
            )


def format_number(value: float) -> str:
    return f"{value:.9g}"


__all__ = [
    "EXACT",
    "PHYSICS_VERSION_KEYS",
    "SAME_VERSION_TOLERANCES",
    "VERSION_CHANGE_TOLERANCES",
    "Aspect",
    "Finding",
    "Findings",
    "Tolerance",
    "format_number",
]
