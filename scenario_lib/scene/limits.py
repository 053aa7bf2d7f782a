"""The numbers a valid scene must keep to: the plausibility limits the MJCF stage checks, how far a goal
zone may reach, the passive simulation's stability thresholds and what the solvability stage accepts of a
demonstration; and the scale meshes are written at.

The checks (`mjcf`, `task`, `simulation`, `validation.solvability`), the certificate that quotes them and
the agent's prompts all read them here. This
module imports nothing heavy: the agent renders its prompts in the flow-run process, which never needs
MuJoCo, so taking a limit must not import it.
"""

from __future__ import annotations

from dataclasses import dataclass

MESH_SCALE = 0.001  # mm → m: the contract's parts are in mm, MuJoCo's meshes in m

# Plausibility limits the MuJoCo compiler does not enforce (see scenario_lib.scene.mjcf.check_model_rules).
MIN_MOVING_MASS_KG = 0.001
MAX_MOVING_MASS_KG = 500.0
MIN_BODY_EXTENT_M = 0.001
MAX_BODY_EXTENT_M = 5.0
MAX_TIMESTEP_S = 0.01

# How far (as a fraction of the scene size) a zone may reach outside the scene's bounding box.
ZONE_REACH_MARGIN = 0.25


@dataclass(frozen=True)
class StabilityThresholds:
    """Limits a passive simulation must stay within (SI units; penetration in mm)."""

    max_linear_speed_m_s: float = 5.0
    max_angular_speed_rad_s: float = 100.0
    # Relative to Σ(moving mass)·g·(scene extent): a passive scene may only lose energy.
    max_energy_gain_fraction: float = 0.05
    max_penetration_initial_mm: float = 0.2
    max_penetration_settling_mm: float = 5.0
    max_penetration_rest_mm: float = 0.5
    settling_time_s: float = 0.02
    rest_window_s: float = 0.1
    # At rest: how far a movable body may drift from its declared pose over the passive simulation,
    # measured relative to the body it rests on (so a stack's own sinking into soft contacts adds nothing).
    max_drift_mm: float = 1.0
    max_drift_deg: float = 1.5
    # Bodies bed into their soft contacts (and joint limits) over the first moments; drift counts after.
    contact_settling_s: float = 0.1


DEFAULT_THRESHOLDS = StabilityThresholds()

# Solvability: the passive rollout must end at least this far from success (mm for zones and slides,
# degrees for hinges), and a demonstration fails when the hand pushes a body deeper than MAX_PENETRATION_MM
# into the fixed scene for DEEP_STEPS_BLOCKED control steps in a row.
NEGATIVE_MARGIN = 1.0
MAX_PENETRATION_MM = 3.0
DEEP_STEPS_BLOCKED = 3

__all__ = [
    "DEEP_STEPS_BLOCKED",
    "DEFAULT_THRESHOLDS",
    "MAX_BODY_EXTENT_M",
    "MAX_MOVING_MASS_KG",
    "MAX_PENETRATION_MM",
    "MAX_TIMESTEP_S",
    "MESH_SCALE",
    "MIN_BODY_EXTENT_M",
    "MIN_MOVING_MASS_KG",
    "NEGATIVE_MARGIN",
    "ZONE_REACH_MARGIN",
    "StabilityThresholds",
]
