"""Exceptions raised by scenario_lib.

Hierarchy (a subclass exists only where a caller handles it differently)::

    ScenarioError
     ├── ScriptError        the scenario script could not be run or broke its contract
     ├── SandboxError       the sandbox itself could not be started or used
     │    └── CheckWorkerError   a check worker process died mid-job (scenario_lib.validation.check_pool)
     ├── GeometryError      a part is not a valid, closed, non-self-intersecting solid
     ├── MjcfError          the MJCF could not be assembled, validated or compiled
     ├── StoreError         the dataset store could not be read or written
     └── ConfigError        a setting or user input is invalid (also a ValueError)

Every exception carries only plain strings so it survives pickling across processes.
"""

from __future__ import annotations

from collections.abc import Sequence


class ScenarioError(Exception):
    """Base class of every error raised on purpose by scenario_lib."""

    def __reduce__(self) -> tuple[type, tuple[str, ...]]:
        # Subclasses take exactly one message argument, so pickling the message is enough.
        return (type(self), (str(self),))


class ScriptError(ScenarioError):
    """The scenario script failed to import, lacks `build`, or returned something invalid."""


class SandboxError(ScenarioError):
    """The sandbox could not start or lost its worker in a way a retry will not fix."""


class GeometryError(ScenarioError):
    """A part is empty, invalid, self-intersecting or not watertight."""


class MjcfError(ScenarioError):
    """The MJCF could not be assembled, failed the schema, or did not compile."""


class StoreError(ScenarioError):
    """The dataset store is unreachable or holds data that cannot be read."""


class ConfigError(ScenarioError, ValueError):
    """A setting, parameter or user input is invalid."""


def name_list(names: Sequence[str], most: int = 20) -> str:
    """Names for a message: the first ``most``, then how many more; "none" when there are none."""
    shown = ", ".join(names[:most])
    more = len(names) - most
    return (shown + (f", ... ({more} more)" if more > 0 else "")) or "none"
