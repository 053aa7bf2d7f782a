"""The shared validation service: a real `scenarios serve-validation` process on a Unix socket."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenario_lib.errors import ConfigError, SandboxError
from scenario_lib.sandbox.pool import SandboxPool
from scenario_lib.validation.pipeline import HarnessConfig, Validator
from scenario_lib.validation.service import RemoteValidator, prepare_socket_path
from tests.support import REPO, SANDBOX_MODE, SCRIPTS

PEG_IN_HOLE = (REPO / "examples" / "tier1_peg_in_hole.py").read_text(encoding="utf-8")
BROKEN = "def build(seed, scale):\n    raise ValueError('no scenario today')\n"
SLEEPER = "import time\n\ndef build(seed, scale):\n    time.sleep(30)\n"


def _start_service(socket_path: Path, tmp_path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCENARIOS_", "PREFECT_"))}
    env |= {
        "SCENARIOS_CONFIG": str(tmp_path / "absent.toml"),
        "SCENARIOS_STORE__URL": f"file://{tmp_path / 'store'}",
        "SCENARIOS_SANDBOX__MODE": SANDBOX_MODE.value,
        "SCENARIOS_SANDBOX__WORKERS": "1",
        "SCENARIOS_VALIDATION__CHECK_WORKERS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "scenario_lib", "serve-validation", "--socket", str(socket_path)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if "validation service ready" in line:
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"the service did not start: {process.stdout.read()}")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    tmp = tmp_path_factory.mktemp("service")
    socket_path = tmp / "run" / "validation.sock"
    process = _start_service(socket_path, tmp)
    yield socket_path, process
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)


def test_the_service_validates_as_an_in_process_validator_does(
    service: tuple[Path, subprocess.Popen[str]], sandbox_pool: SandboxPool, decomposition_cache: Path
) -> None:
    config = HarnessConfig(seeds=2, decomposition_cache_dir=decomposition_cache)
    remote_report, remote_base = RemoteValidator(service[0], config).validate_script(PEG_IN_HOLE, base_seed=5)
    local_report, local_base = Validator(sandbox_pool, config).validate_script(PEG_IN_HOLE, base_seed=5)
    assert remote_report.passed and local_report.passed
    assert [(s.seed, s.scale) for s in remote_report.seeds] == [(s.seed, s.scale) for s in local_report.seeds]
    assert remote_base.scene is not None and local_base.scene is not None
    assert remote_base.scene.scene_xml == local_base.scene.scene_xml
    assert remote_base.scene.files == local_base.scene.files
    assert remote_base.demonstration == local_base.demonstration


def test_the_callers_harness_settings_travel_with_each_request(service: tuple[Path, subprocess.Popen[str]]) -> None:
    one = RemoteValidator(service[0], HarnessConfig(seeds=1)).validate_script((SCRIPTS / "dummy_box.py").read_text())[0]
    three = RemoteValidator(service[0], HarnessConfig(seeds=3)).validate_script((SCRIPTS / "dummy_box.py").read_text())[0]
    assert (len(one.seeds), len(three.seeds)) == (1, 3)


def test_a_broken_script_is_a_failed_report_not_an_error(service: tuple[Path, subprocess.Popen[str]]) -> None:
    report, _ = RemoteValidator(service[0], HarnessConfig(seeds=2)).validate_script(BROKEN)
    assert not report.passed
    assert "no scenario today" in report.seeds[0].stages[0].message


def test_its_socket_is_reachable_by_its_user_only(service: tuple[Path, subprocess.Popen[str]]) -> None:
    socket_path = service[0]
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(socket_path.stat().st_mode) & 0o077 == 0
    assert RemoteValidator(socket_path, HarnessConfig()).ping()["pid"] == service[1].pid


def test_no_service_is_a_sandbox_error_that_names_the_socket_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as caught:
        RemoteValidator(tmp_path / "absent.sock", HarnessConfig()).validate_script(BROKEN)
    assert "absent.sock" in str(caught.value) and "scripts/stack.sh up" in str(caught.value)


def test_a_service_that_dies_mid_validation_is_a_retryable_error_not_a_hang(tmp_path: Path) -> None:
    socket_path = tmp_path / "run" / "validation.sock"
    process = _start_service(socket_path, tmp_path)
    errors: list[BaseException] = []

    def validate() -> None:
        try:
            RemoteValidator(socket_path, HarnessConfig(seeds=1)).validate_script(SLEEPER)
        except BaseException as err:  # noqa: BLE001 - the test inspects it
            errors.append(err)

    caller = threading.Thread(target=validate)
    caller.start()
    time.sleep(2.0)  # the sleeper is building in the sandbox now
    process.kill()
    caller.join(timeout=60)
    assert not caller.is_alive()
    [error] = errors
    assert isinstance(error, SandboxError) and "dropped the connection" in str(error), error
    process.communicate(timeout=30)


def test_a_socket_folder_others_can_enter_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with pytest.raises(ConfigError, match="chmod 700"):
        prepare_socket_path(folder / "validation.sock")


def test_a_stale_socket_is_replaced_and_a_regular_file_is_not(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    stale = folder / "stale.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))
    listener.close()  # bound, never listening: what a killed server leaves behind
    assert prepare_socket_path(stale) == stale and not stale.exists()
    regular = folder / "notes.txt"
    regular.write_text("keep me")
    with pytest.raises(ConfigError, match="not a socket"):
        prepare_socket_path(regular)
    assert regular.read_text() == "keep me"
