"""The library's layers (docs/architecture.md): every import, lazy ones included, points down or at a leaf."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scenario_lib"
LEAVES = {"closing", "contract", "coverage", "errors", "config", "exports", "report", "tiers", "tracing", "store"}
# What each layer may import besides the leaves (and itself).
ALLOWED: dict[str, set[str]] = {
    "store": {"config", "errors"},
    "tracing": {"config", "errors"},
    "tiers": {"errors"},
    "report": set(),
    "contract": set(),
    "errors": set(),
    "config": set(),
    "exports": set(),
    "closing": set(),
    "coverage": {"tiers"},
    "scene": set(),
    "sandbox": {"scene"},
    "validation": {"scene", "sandbox"},
    "authoring": set(),
    "agent": {"scene", "sandbox", "validation", "authoring"},
    "runs": {"scene", "sandbox", "validation", "authoring", "agent"},
    "insight": {"scene", "validation", "runs"},
    "envs": {"scene", "validation", "runs"},
    "cli": {"scene", "sandbox", "validation", "authoring", "agent", "runs", "insight", "envs"},
}
IMPORT = re.compile(r"^\s*(?:from|import)\s+(scenario_lib(?:\.\w+)*|flows|prefect)\b(?:\s+import\s+(\w+))?", re.M)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def library_modules() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py")) if "families" not in path.parts]


@pytest.mark.parametrize("path", library_modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_every_import_points_down_a_layer_or_at_a_leaf(path: Path) -> None:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(part for part in relative.parts if part != "__init__")
    source = layer_of(module)
    if source in ("", "__main__"):
        return  # the package's lazy public API and `python -m scenario_lib` may name any layer
    for match in IMPORT.finditer(path.read_text(encoding="utf-8")):
        target, name = match.group(1), match.group(2)
        assert target not in ("flows", "prefect"), f"{module} imports {target}: the library knows nothing of orchestration"
        # `from scenario_lib import contract` names a module of the package.
        imported = f"scenario_lib.{name}" if target == "scenario_lib" and name else target
        destination = layer_of(imported)
        if destination in ("", source) or destination in LEAVES:
            continue
        assert destination in ALLOWED[source], f"{module} imports {imported}: {source}/ may not depend on {destination}/"


def test_the_layer_map_covers_every_subpackage() -> None:
    subpackages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    top_modules = {path.stem for path in PACKAGE.glob("*.py") if not path.stem.startswith("__")}
    assert subpackages | top_modules <= set(ALLOWED), sorted((subpackages | top_modules) - set(ALLOWED))
