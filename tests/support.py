"""What many test modules share: where the test scripts and data are, and how to sandbox here."""

from __future__ import annotations

import shutil
from pathlib import Path

from scenario_lib.config import SandboxMode

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "tests" / "scripts"  # scenario scripts the tests build and validate
DATA = REPO / "tests" / "data"
BWRAP_WORKS = shutil.which("bwrap") is not None and shutil.which("setpriv") is not None
# bubblewrap where it is installed (CI and the dev machines), resource limits only elsewhere.
SANDBOX_MODE = SandboxMode.BWRAP if BWRAP_WORKS else SandboxMode.RLIMITS
