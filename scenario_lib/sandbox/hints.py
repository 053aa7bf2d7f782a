"""Hints for the mistakes scenario scripts commonly make, added to the code stage's message.

Each hint is matched on the exception and the script line that raised it, and says what to write
instead. They were collected from scripts that models wrote against this contract: a contract class
confused with the build123d solid of the same name, a property called like a method, a guessed import.
"""

from __future__ import annotations

import re
from importlib import metadata

ALLOWED_IMPORTS = ("random", "math", "build123d", "scenario_lib.contract")
CONTRACT_NAMES = (
    "AllOf", "Body", "Box", "Collision", "Cylinder", "FIXED", "FREE", "Hinge", "InsideZone", "JointInRange",
    "ParameterRange", "Pose", "Scenario", "ScaleLimits", "Slide", "Sphere", "Zone",
)  # fmt: skip
_PRIMITIVES = ("Box", "Cylinder", "Sphere")


def _build123d_version() -> str:
    try:
        return metadata.version("build123d")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def hint_for(err: BaseException, line: str) -> str:
    """A sentence that says how to fix ``err`` raised at script ``line``, or "" when none is known."""
    message = str(err)
    if ".is_valid()" in line and isinstance(err, TypeError):
        return f"in build123d {_build123d_version()} `is_valid` is a property: write `part.is_valid`, not `part.is_valid()`"
    if isinstance(err, ImportError):
        name = getattr(err, "name", None) or ""
        wanted = re.search(r"cannot import name '(\w+)' from '([\w.]+)'", message)
        if wanted and wanted.group(2) == "scenario_lib.contract":
            return f"scenario_lib.contract exports {', '.join(CONTRACT_NAMES)}"
        if wanted and wanted.group(2).startswith("build123d"):
            return (
                f"build123d {_build123d_version()} has no {wanted.group(1)!r}; solids are Box, Cylinder, Sphere, Cone, "
                "Torus, Wedge, placed with Pos(x, y, z) * part and Rot(x, y, z) * part"
            )
        if name and name.split(".")[0] not in {allowed.split(".")[0] for allowed in ALLOWED_IMPORTS}:
            return f"the sandbox has only {', '.join(ALLOWED_IMPORTS)}: import nothing else"
    if isinstance(err, NameError):
        missing = getattr(err, "name", "") or ""
        if missing.startswith("Solid") and missing[5:] in _PRIMITIVES:
            return f"import the build123d solid under that name: `from build123d import {missing[5:]} as {missing}`"
        if missing in CONTRACT_NAMES:
            return f"import it: `from scenario_lib.contract import {missing}`"
    if isinstance(err, TypeError) and any(f"{name}(" in line for name in _PRIMITIVES):
        if "half_size_mm" in message or "radius_mm" in message or "keyword arguments only" in message or "unexpected keyword" in message:
            return (
                "Box, Cylinder and Sphere exist in both libraries: import build123d's solids as SolidBox, "
                "SolidCylinder, SolidSphere (`from build123d import Box as SolidBox`) and keep the contract's "
                "names for collision primitives (Box(half_size_mm=...))"
            )
    if "Null TopoDS_Shape" in message or "StdFail_NotDone" in message or "command not done" in message.lower():
        if "fillet" in line or "chamfer" in line:
            return "the fillet or chamfer failed: use a smaller radius than the shortest edge it touches, or drop it"
        return "a boolean or construction produced no shape: check that cutting/fusing tools overlap the part and sizes are positive"
    if isinstance(err, AttributeError) and "'tuple' object has no attribute" in message and "scale" in line:
        return "scale is a plain tuple (sx, sy, sz): unpack it with `sx, sy, sz = scale`"
    return ""
