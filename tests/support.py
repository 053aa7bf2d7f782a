"""What many test modules share: where the test scripts and data are, and how to sandbox here."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner, Result

from scenario_lib.config import SandboxMode

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "tests" / "scripts"  # scenario scripts the tests build and validate
DATA = REPO / "tests" / "data"
BWRAP_WORKS = shutil.which("bwrap") is not None and shutil.which("setpriv") is not None
# bubblewrap where it is installed (CI and the dev machines), resource limits only elsewhere.
SANDBOX_MODE = SandboxMode.BWRAP if BWRAP_WORKS else SandboxMode.RLIMITS


def invoke_cli(args: list[str], tmp_path: Path) -> Result:
    """``scenarios ARGS`` in this process with no settings file and no configured store."""
    from scenario_lib.cli import app

    env = {"SCENARIOS_CONFIG": str(tmp_path / "absent.toml"), "SCENARIOS_STORE__URL": None, "COLUMNS": "300"}
    return CliRunner().invoke(app, args, env=env, catch_exceptions=False)


def assert_one_line_error(result: Result, *needles: str) -> None:
    """The command failed with one line on stderr that holds every needle, and no traceback."""
    assert result.exit_code != 0, result.output
    error = result.stderr.strip()
    assert error.startswith("error:") and "\n" not in error and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in error, error
