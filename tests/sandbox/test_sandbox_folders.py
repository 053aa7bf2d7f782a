"""The sandbox from any folder a user may clone into, and its scratch cleaning around bind mounts."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenario_lib.sandbox.runner import mount_points_under, remove_job_files
from tests.sandbox.test_sandbox import needs_bwrap
from tests.support import REPO, SCRIPTS

DUMMY_BOX = (SCRIPTS / "dummy_box.py").read_text()

# Run in a fresh interpreter whose scenario_lib is the copy under test (cwd first on sys.path).
BUILD_IN_COPY = """
import json, sys
from scenario_lib.errors import SandboxError
from scenario_lib.sandbox.pool import BuildRequest, SandboxPool
import scenario_lib
try:
    with SandboxPool(workers=1, mode="bwrap") as pool:
        outcome = pool.run_build(sys.stdin.read(), BuildRequest(seed=0, scale=(1.0, 1.0, 1.0)))
    print(json.dumps({"package": scenario_lib.__file__, "failure": outcome.failure and outcome.failure.value,
                      "ok": outcome.ok, "message": outcome.message, "bodies": len(outcome.meshes)}))
except SandboxError as err:
    print(json.dumps({"package": scenario_lib.__file__, "refused": str(err)}))
"""


def test_mount_points_are_read_with_their_escapes(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / / ro,relatime - ext4 /dev/root ro\n"
        "30 22 0:30 / /tmp rw - tmpfs tmpfs rw\n"
        "31 30 0:31 /work/repo /tmp/my\\040clone/repo ro - ext4 /dev/root ro\n"
        "32 30 0:32 /venv /tmp/venv ro - ext4 /dev/root ro\n"
        "garbage\n"
    )
    points = mount_points_under(Path("/tmp"), mountinfo)
    assert points == {Path("/tmp/my clone/repo"), Path("/tmp/venv")}
    assert mount_points_under(Path("/tmp"), tmp_path / "missing") == frozenset()


def test_cleaning_removes_job_files_and_never_enters_a_mount_point(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    bound = scratch / "private" / "repo"  # stands for a read-only bind bubblewrap made under /tmp
    (bound / "scenario_lib").mkdir(parents=True)
    (bound / "scenario_lib" / "keep.py").write_text("x = 1\n")
    (scratch / "job7" / "deep").mkdir(parents=True)
    (scratch / "job7" / "deep" / "result.bin").write_bytes(b"\0" * 10)
    (scratch / "stray.txt").write_text("left by a job")
    (scratch / "private" / "beside-the-bind").write_text("left by a job")
    os.symlink(bound, scratch / "link-to-bind")

    remove_job_files(scratch, frozenset({bound}))

    assert sorted(p.name for p in scratch.iterdir()) == ["private"]
    assert sorted(p.name for p in (scratch / "private").iterdir()) == ["repo"]
    assert (bound / "scenario_lib" / "keep.py").read_text() == "x = 1\n"


@pytest.fixture
def home_folder() -> Iterator[Path]:
    """A private folder under the user's home (hidden in the sandbox), removed afterwards."""
    home = Path.home()
    if not os.access(home, os.W_OK):
        pytest.skip(f"home folder {home} is not writable")
    folder = Path(tempfile.mkdtemp(prefix="scenario-sandbox-test-", dir=home))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def closed_folder_outside_tmp() -> Iterator[Path]:
    """A mode-0700 folder beside the checkout (neither under /tmp nor under a hidden folder)."""
    state = REPO / ".state"  # git-ignored
    state.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="sandbox-test-", dir=state))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def copy_package(root: Path, umask: int = 0o022) -> Path:
    """A checkout of scenario_lib under ``root`` whose files get the modes ``umask`` leaves."""
    shutil.copytree(REPO / "scenario_lib", root / "scenario_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [root, *root.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
    return root


def build_in(checkout: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_IN_COPY], cwd=checkout, input=DUMMY_BOX, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert str(result["package"]).startswith(str(checkout)), result  # the copy under test was imported
    return result


@needs_bwrap
@pytest.mark.parametrize("where", ["private-temp-folder", "path with a space", "home-folder", "closed-folder"])
def test_a_checkout_in_any_user_folder_builds_in_the_sandbox(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if where == "home-folder":
        parent = request.getfixturevalue("home_folder")
    elif where == "closed-folder":
        parent = request.getfixturevalue("closed_folder_outside_tmp")
    else:
        parent = Path(tempfile.mkdtemp(dir=tmp_path))  # mode 0700, like `mktemp -d`
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    checkout = copy_package(parent / ("my clone" if where == "path with a space" else "clone"))

    result = build_in(checkout)

    assert result.get("ok") is True and result.get("bodies") == 2, result


@needs_bwrap
def test_a_clone_under_umask_077_is_refused_before_any_work_then_works_once_readable(tmp_path: Path) -> None:
    checkout = copy_package(Path(tempfile.mkdtemp(dir=tmp_path)) / "clone", umask=0o077)

    refused = build_in(checkout)

    message = str(refused.get("refused"))
    assert "uid 65534" in message and str(checkout / "scenario_lib") in message and "chmod -R o+rX" in message
    subprocess.run(["chmod", "-R", "o+rX", str(checkout / "scenario_lib")], check=True)
    assert build_in(checkout).get("ok") is True
