"""The library and the flows type-check (STYLE 14: type everything, ship py.typed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_mypy_finds_no_errors_in_the_library_and_flows() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "scenario_lib", "flows"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_ships_its_type_marker() -> None:
    assert (ROOT / "scenario_lib" / "py.typed").is_file()
