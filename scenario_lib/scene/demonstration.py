"""A demonstration as data: the hand's actions at the control rate and the state after each.

`Demonstration` round-trips through JSON (``demonstration.json`` in a scenario folder); `replay` plays
its actions on a model from the initial state and reproduces the recorded states bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import mujoco

from scenario_lib.scene.actuation import Hand, HandAction

DEMONSTRATION_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Demonstration:
    """A demonstration as data: the actions at the control rate and the state after each."""

    source: str
    control_period_s: float
    bodies: tuple[str, ...]
    actions: tuple[tuple[float, ...], ...]
    qpos: tuple[tuple[float, ...], ...]  # qpos after each action
    format_version: int = DEMONSTRATION_FORMAT_VERSION

    def to_json(self) -> bytes:
        payload = {
            "format_version": self.format_version,
            "source": self.source,
            "control_period_s": self.control_period_s,
            "bodies": list(self.bodies),
            "actions": [list(action) for action in self.actions],
            "qpos": [list(state) for state in self.qpos],
        }
        return (json.dumps(payload, separators=(",", ":")) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Demonstration:
        payload = json.loads(data)
        if payload.get("format_version") != DEMONSTRATION_FORMAT_VERSION:
            raise ValueError(
                f"demonstration format_version {payload.get('format_version')!r} is not {DEMONSTRATION_FORMAT_VERSION}; "
                "re-validate the scenario with this version of scenario-lib"
            )
        return cls(
            source=str(payload["source"]),
            control_period_s=float(payload["control_period_s"]),
            bodies=tuple(str(name) for name in payload["bodies"]),
            actions=tuple(tuple(float(v) for v in action) for action in payload["actions"]),
            qpos=tuple(tuple(float(v) for v in state) for state in payload["qpos"]),
        )



def replay(model: mujoco.MjModel, demonstration: Demonstration) -> mujoco.MjData:
    """Play a stored demonstration's actions on ``model`` from its initial state; returns the final data."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    hand = Hand(model, data)
    names = tuple(body.name for body in hand.bodies)
    if names != demonstration.bodies:
        raise ValueError(f"the demonstration holds bodies {demonstration.bodies}, the scene {names}: it is not this scene's")
    for action in demonstration.actions:
        hand.act(HandAction.from_vector(action))
    return data


__all__ = ["DEMONSTRATION_FORMAT_VERSION", "Demonstration", "replay"]
