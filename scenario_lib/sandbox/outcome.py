"""What a sandboxed build gives back, turned into a `BuildOutcome`.

What comes back is untrusted data: a framed JSON header plus raw STL bytes, parsed here with size caps
and re-validated (the Scenario by pydantic, the meshes by `scenario_lib.scene.geometry.check_mesh` in the
geometry stage). Nothing from the sandbox is ever unpickled.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scenario_lib.errors import GeometryError
from scenario_lib.report import Metric, Stage, StageResult
from scenario_lib.sandbox.limits import SandboxLimits
from scenario_lib.sandbox.protocol import EXIT_RESULT_UNWRITABLE, OUTPUT_TAIL_BYTES, BuildFailure, decode_frame
from scenario_lib.scene.geometry import PartCheck


@dataclass(frozen=True)
class BuildOutcome:
    """What one sandboxed build produced: a scenario with meshes and part checks, or a failure."""

    failure: BuildFailure | None = None  # None: the build succeeded and `scenario_json` holds its Scenario
    message: str = ""
    scenario_json: str | None = None
    meshes: dict[str, bytes] = field(default_factory=dict)
    part_checks: dict[str, PartCheck] = field(default_factory=dict)
    output_tail: str = ""
    duration_s: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def code_stage(self) -> StageResult:
        """The CODE stage: the script imported, honoured the contract and returned a Scenario."""
        metrics: dict[str, Metric] = {"duration_s": round(self.duration_s, 4)}
        metrics.update({key: round(value, 4) for key, value in self.timings_s.items()})
        if self.ok:
            metrics["bodies"] = len(self.meshes)
            return StageResult.passing(Stage.CODE, metrics, self.duration_s)
        kind = self.failure.value if self.failure else "unknown"
        metrics["failure"] = kind
        message = f"{kind}: {self.message}"
        tail = self.output_tail.strip()
        if tail and self.failure is not BuildFailure.OUTPUT_LIMIT:
            message += f"\n--- last output of the script ---\n{tail[-1500:]}"
        return StageResult.failing(Stage.CODE, message, metrics, self.duration_s)

    @classmethod
    def failed(
        cls,
        failure: BuildFailure,
        message: str,
        *,
        output_tail: str = "",
        duration_s: float = 0.0,
        timings_s: Mapping[str, float] | None = None,
    ) -> BuildOutcome:
        return cls(failure, message, output_tail=output_tail, duration_s=duration_s, timings_s=dict(timings_s or {}))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _outcome_without_result(
    done: Mapping[str, Any], limits: SandboxLimits, tail: str, duration_s: float
) -> BuildOutcome:
    """Classify a job child that died or exited before writing its result."""
    exit_code = done.get("exit_code")
    number = done.get("signal")
    cpu_value = done.get("cpu_s")
    cpu_s = float(cpu_value) if isinstance(cpu_value, (int, float)) else 0.0

    def failed(failure: BuildFailure, message: str) -> BuildOutcome:
        return BuildOutcome.failed(failure, message, output_tail=tail, duration_s=duration_s)

    if isinstance(number, int) and number:
        name = _signal_name(number)
        if number == signal.SIGXCPU or (number == signal.SIGKILL and cpu_s >= limits.cpu_s - 0.5):
            return failed(
                BuildFailure.TIMEOUT,
                f"the script used {cpu_s:.1f} s of CPU, over the limit of {limits.cpu_s} s (killed by {name}); "
                "look for an endless loop or make the build cheaper",
            )
        if number == signal.SIGXFSZ:
            return failed(BuildFailure.OUTPUT_LIMIT, f"the script wrote a file over {limits.max_output_mb} MB")
        if "MemoryError" in tail or "bad_alloc" in tail:
            return failed(
                BuildFailure.MEMORY,
                f"the script ran out of memory (limit {limits.memory_mb} MB) and was killed by {name}",
            )
        return failed(
            BuildFailure.CRASH,
            f"the script's process was killed by {name} before build returned (a crash in native code such as "
            "OCCT, or the script killed itself); simplify the geometry operation on the last line it printed",
        )
    if exit_code == EXIT_RESULT_UNWRITABLE:
        return failed(
            BuildFailure.OUTPUT_LIMIT,
            f"the script filled its {limits.max_output_mb} MB of scratch space, so no result could be written",
        )
    return failed(
        BuildFailure.CRASH,
        f"the script's process exited with status {exit_code} before build returned a result "
        "(sys.exit/os._exit in the script?); return a Scenario from build instead of exiting",
    )


def _outcome_from_result(result: bytes, tail: str, duration_s: float, *, meshes: bool) -> BuildOutcome:
    """Parse and check the job child's framed result (untrusted: it may be forged by the script)."""
    from pydantic import ValidationError

    from scenario_lib.contract import Scenario

    try:
        header, payload = decode_frame(result)
        failure_value = header.get("failure")
        message = header.get("message", "")
        timings = header.get("timings_s", {})
        if not isinstance(message, str) or not isinstance(timings, dict):
            raise ValueError("message or timings_s has the wrong type")
        timings_s = {str(k): float(v) for k, v in timings.items() if type(v) in (int, float) and math.isfinite(v)}
        if failure_value is not None:
            return BuildOutcome.failed(
                BuildFailure(failure_value),
                message[:20_000],
                output_tail=tail,
                duration_s=duration_s,
                timings_s=timings_s,
            )
        scenario_json = header["scenario_json"]
        if not isinstance(scenario_json, str):
            raise ValueError("scenario_json has the wrong type")
        body_meshes, checks = _split_meshes(header["bodies"], payload)
    except (ValueError, KeyError, TypeError, GeometryError, UnicodeDecodeError, OverflowError, RecursionError) as err:
        # The script can write the result file itself: an integer too large for a float (OverflowError)
        # or JSON nested thousands deep (RecursionError) must fail the build, not the host.
        return BuildOutcome.failed(
            BuildFailure.CRASH,
            f"the sandbox returned a malformed result ({type(err).__name__}: {str(err)[:300]}); did the script "
            "tamper with stdout or its "
            "working folder?",
            output_tail=tail,
            duration_s=duration_s,
        )
    try:
        scenario = Scenario.model_validate_json(scenario_json)
    except ValidationError as err:
        return BuildOutcome.failed(
            BuildFailure.CONTRACT,
            f"build returned a Scenario that does not validate: {err}",
            output_tail=tail,
            duration_s=duration_s,
        )
    names = [body.name for body in scenario.bodies]
    if not meshes:  # none were asked for: whatever came with the result (a forgery) is dropped
        body_meshes, checks = {}, {}
    elif sorted(names) != sorted(body_meshes):
        return BuildOutcome.failed(
            BuildFailure.CRASH,
            f"the sandbox returned meshes for {sorted(body_meshes)} but the scenario has bodies {sorted(names)}",
            output_tail=tail,
            duration_s=duration_s,
        )
    return BuildOutcome(
        scenario_json=scenario_json,
        meshes=body_meshes,
        part_checks=checks,
        output_tail=tail,
        duration_s=duration_s,
        timings_s=timings_s,
    )


def _split_meshes(bodies: object, payload: bytes) -> tuple[dict[str, bytes], dict[str, PartCheck]]:
    """Each body's STL bytes and part check from the result's body list and payload; ValueError if they
    do not account for the payload exactly."""
    if not isinstance(bodies, list):
        raise ValueError("bodies has the wrong type")
    meshes: dict[str, bytes] = {}
    checks: dict[str, PartCheck] = {}
    offset = 0
    for body in bodies:
        name, check, size = body["name"], body["check"], body["stl_bytes"]
        if not isinstance(name, str) or not isinstance(check, str) or type(size) is not int or size < 0:
            raise ValueError(f"malformed body entry {body!r:.200}")
        if name in meshes:
            raise ValueError(f"body {name!r} appears twice")
        checks[name] = PartCheck.from_json(check)
        meshes[name] = payload[offset : offset + size]
        offset += size
    if offset != len(payload):
        raise ValueError(f"meshes take {offset} bytes of a {len(payload)}-byte payload")
    return meshes, checks


def outcome_from_worker(
    done: Mapping[str, Any], result: bytes, limits: SandboxLimits, duration_s: float, *, meshes: bool = True
) -> BuildOutcome:
    """Turn a worker's ``done`` message and the build's raw result into a `BuildOutcome`.

    ``meshes``: whether the build was asked for part checks and meshes (`BuildRequest.check_parts`)."""
    tail_value = done.get("output_tail", "")
    tail = tail_value[-OUTPUT_TAIL_BYTES:] if isinstance(tail_value, str) else ""
    if result:
        return _outcome_from_result(result, tail, duration_s, meshes=meshes)
    return _outcome_without_result(done, limits, tail, duration_s)


__all__ = ["BuildOutcome", "outcome_from_worker"]
