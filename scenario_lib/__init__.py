"""scenario_lib: turn scenario scripts into validated, deterministic physics benchmark scenarios.

The names below are the public API. They load lazily (PEP 562) so that importing the package, as the
CLI does on every start, does not pull in build123d, MuJoCo or LangGraph.
"""

from __future__ import annotations

import os as _os

from scenario_lib.exports import lazy_exports

# MuJoCo binds its OpenGL backend at its first import and cannot switch later; previews are rendered
# headless. setdefault keeps the caller's choice (e.g. MUJOCO_GL=osmesa). See scenario_lib.scene.render.
_os.environ.setdefault("MUJOCO_GL", "egl")

_EXPORTS: dict[str, str] = {
    # the script contract
    "AllOf": "contract",
    "Body": "contract",
    "Box": "contract",
    "Collision": "contract",
    "Cylinder": "contract",
    "FIXED": "contract",
    "FREE": "contract",
    "Hinge": "contract",
    "InsideZone": "contract",
    "JointInRange": "contract",
    "ParameterRange": "contract",
    "Pose": "contract",
    "ScaleLimits": "contract",
    "Scenario": "contract",
    "Slide": "contract",
    "Sphere": "contract",
    "Zone": "contract",
    # errors
    "ConfigError": "errors",
    "GeometryError": "errors",
    "MjcfError": "errors",
    "SandboxError": "errors",
    "ScenarioError": "errors",
    "ScriptError": "errors",
    "StoreError": "errors",
    # settings
    "Settings": "config",
    "load_settings": "config",
    # validation
    "HarnessConfig": "validation.pipeline",
    "SandboxLimits": "sandbox.pool",
    "SandboxPool": "sandbox.pool",
    "Stage": "report",
    "ValidationReport": "report",
    "Validator": "validation.pipeline",
    "Verdict": "report",
    # authoring and tiers
    "TIER_PRESETS": "tiers",
    "Tier": "tiers",
    "author_script": "authoring.offline",
    "resolve_tier": "tiers",
    # the agent
    "GenerationRequest": "agent",
    "run_agent": "agent",
    # runs, the store and promotion
    "DatasetStore": "store.dataset",
    "GenerationJob": "runs.generation",
    "RunSummary": "runs.generation",
    "ScenarioManifest": "validation.artifacts",
    "open_generation_context": "runs.generation",
    "promote": "runs.promotion",
    "run_generation": "runs.driver",
    "write_scenario_folder": "validation.artifacts",
    # traces
    "configure_tracing": "tracing",
    "export_traces": "insight.trace_export",
}

__all__, __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
