"""Policies for `scenario_lib.envs`: the built-in baselines and loading a user's ``module:callable``.

A policy is made by a factory from the environment of one episode, ``policy = factory(env)``, and then
maps each observation to an action, ``action = policy(observation)``. The factory is called at the start
of every episode (after ``env.reset``), so a policy may keep per-episode state.

The baselines: ``zero`` releases everything and lets the scene be (the negative control), ``random``
samples the action space (seeded per episode by the evaluation), ``demo`` replays the stored
demonstration and then holds its last action.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import numpy.typing as npt

from scenario_lib.errors import ConfigError

Action = npt.NDArray[np.float64]
Policy = Callable[[Any], Any]
PolicyFactory = Callable[[gymnasium.Env[Any, Any]], Policy]


class BuiltinPolicy(str, Enum):
    """The baselines `scenarios evaluate` prints beside a user's policy."""

    ZERO = "zero"
    RANDOM = "random"
    DEMO = "demo"


def zero_policy(env: gymnasium.Env[Any, Any]) -> Policy:
    """Release everything, every step: the scene left to itself."""
    space = env.action_space
    assert isinstance(space, gymnasium.spaces.Box)
    # All zeros means "release" (grasp 0); pulled into the bounds so the action is a member of the space.
    action = np.clip(np.zeros(space.shape), space.low, space.high)
    return lambda observation: action.copy()


def random_policy(env: gymnasium.Env[Any, Any]) -> Policy:
    """A uniform sample of the action space every step (seed it with ``env.action_space.seed``)."""
    return lambda observation: env.action_space.sample()


def demo_policy(env: gymnasium.Env[Any, Any]) -> Policy:
    """The stored demonstration's actions from the start of the episode, then its last action held."""
    from scenario_lib.envs.environment import ScenarioEnv

    scenario_env = env.unwrapped
    if not isinstance(scenario_env, ScenarioEnv):
        raise ConfigError(f"the demo policy replays a scenario's demonstration; {scenario_env!r} is not a ScenarioEnv")
    actions = np.asarray(scenario_env.demonstration.actions, dtype=np.float64)
    step = 0

    def policy(observation: Any) -> Action:
        nonlocal step
        action = actions[min(step, len(actions) - 1)].copy()
        step += 1
        return action

    return policy


BUILTIN_FACTORIES: dict[BuiltinPolicy, PolicyFactory] = {
    BuiltinPolicy.ZERO: zero_policy,
    BuiltinPolicy.RANDOM: random_policy,
    BuiltinPolicy.DEMO: demo_policy,
}


def load_policy(reference: str) -> tuple[str, PolicyFactory]:
    """``(name, factory)`` for a built-in name (zero, random, demo), ``package.module:callable`` or
    ``path/to/file.py:callable``; ConfigError naming the reference when it cannot be loaded.

    Like ``uvicorn module:app``, the current folder is importable, so a policy module beside the
    command line's working folder is found without installing it.
    """
    text = reference.strip()
    try:
        builtin = BuiltinPolicy(text)
    except ValueError:
        pass
    else:
        return builtin.value, BUILTIN_FACTORIES[builtin]
    module_name, colon, attribute = text.rpartition(":")
    if not colon or not module_name or not attribute:
        raise ConfigError(
            f"policy {reference!r} is neither a built-in ({', '.join(p.value for p in BuiltinPolicy)}) nor "
            "'module:callable' (e.g. 'my_policies:make_policy', or 'path/to/policy.py:make_policy')"
        )
    module = _import(module_name, reference)
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ConfigError(f"policy {reference!r}: module {module_name!r} has no attribute {attribute!r}")
    if not callable(factory):
        raise ConfigError(f"policy {reference!r}: {attribute!r} is a {type(factory).__name__}, not a callable factory(env)")
    return text, factory


def _import(module_name: str, reference: str) -> Any:
    try:
        if module_name.endswith(".py"):
            return _import_file(Path(module_name).expanduser(), reference)
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as err:
        # The user's module can fail in any way (a missing dependency, a syntax error, an exception on import).
        raise ConfigError(f"cannot import policy {reference!r}: {type(err).__name__}: {err}") from err


def _import_file(path: Path, reference: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"policy {reference!r}: no file {path}")
    spec = importlib.util.spec_from_file_location(f"scenario_policy_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"policy {reference!r}: {path} cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


__all__ = ["BUILTIN_FACTORIES", "BuiltinPolicy", "Policy", "PolicyFactory", "demo_policy", "load_policy", "random_policy", "zero_policy"]
