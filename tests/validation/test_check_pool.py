"""The trusted stages in worker processes: the same results as in the host, and a dead worker is a clear, retryable error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenario_lib.errors import ConfigError, SandboxError
from scenario_lib.sandbox.pool import SandboxPool
from scenario_lib.validation.check_pool import CheckPool, CheckWorkerError
from scenario_lib.validation.pipeline import HarnessConfig, Validator
from tests.support import REPO

PEG_IN_HOLE = (REPO / "examples" / "tier1_peg_in_hole.py").read_text(encoding="utf-8")
# Wall-clock timings, which no two runs share.
TIMING_METRICS = {"duration_s", "import_s", "build_s", "checks_s", "schema_s", "compile_s", "collision_s", "wall_s"}


@pytest.fixture(scope="module")
def checks() -> Iterator[CheckPool]:
    with CheckPool(2) as pool:
        yield pool


def _without_timings(validation: object) -> list[tuple[str, str, dict[str, object]]]:
    stages = validation.report.stages  # type: ignore[attr-defined]
    return [
        (stage.stage.value, stage.verdict.value, {k: v for k, v in stage.metrics.items() if k not in TIMING_METRICS})
        for stage in stages
    ]


def test_workers_check_a_script_exactly_as_the_host_does(
    sandbox_pool: SandboxPool, checks: CheckPool, decomposition_cache: Path
) -> None:
    config = HarnessConfig(seeds=3, decomposition_cache_dir=decomposition_cache)
    host_report, host_base = Validator(sandbox_pool, config).validate_script(PEG_IN_HOLE, base_seed=4, render_preview=True)
    pool_report, pool_base = Validator(sandbox_pool, config, checks).validate_script(
        PEG_IN_HOLE, base_seed=4, render_preview=True
    )

    assert pool_report.passed and host_report.passed
    assert [seed.seed for seed in pool_report.seeds] == [seed.seed for seed in host_report.seeds]
    for host_seed, pool_seed in zip(host_report.seeds, pool_report.seeds):
        assert [(s.stage, s.verdict) for s in pool_seed.stages] == [(s.stage, s.verdict) for s in host_seed.stages]
    assert _without_timings(pool_base) == _without_timings(host_base)
    # The stored files are byte-identical whichever process built them.
    assert pool_base.scene is not None and host_base.scene is not None
    assert pool_base.scene.scene_xml == host_base.scene.scene_xml
    assert pool_base.scene.files == host_base.scene.files
    assert pool_base.demonstration == host_base.demonstration
    assert pool_base.preview_png is not None and pool_base.preview_png.startswith(b"\x89PNG")


def test_the_work_is_spread_over_every_worker(checks: CheckPool) -> None:
    pids = checks.warm_up()
    assert len(pids) == 2 and os.getpid() not in pids
    seen = set(checks.map(_pid_after_a_pause, [(0.3,)] * 4, what="four pauses"))
    assert seen == set(pids)


def _pid_after_a_pause(seconds: float) -> int:
    import time

    time.sleep(seconds)
    return os.getpid()


def test_a_worker_that_dies_is_a_retryable_error_naming_the_job_and_the_next_job_gets_fresh_workers() -> None:
    with CheckPool(1) as pool:
        before = pool.warm_up()
        with pytest.raises(CheckWorkerError) as caught:
            pool.map(os._exit, [(3,)], what="the checks of seed 7")
        message = str(caught.value)
        assert "the checks of seed 7" in message and "retry the seed" in message
        assert isinstance(caught.value, SandboxError)  # an infrastructure error: drivers retry, never a verdict
        after = pool.warm_up()
        assert after and after != before
        assert pool.map(divmod, [(7, 2)], what="a division") == [(3, 1)]


def test_an_exception_in_a_check_propagates_unchanged(checks: CheckPool) -> None:
    with pytest.raises(ZeroDivisionError):
        checks.map(divmod, [(1, 0)], what="a division by zero")


def test_workers_exit_when_their_host_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    pids_file = tmp_path / "pids"
    host = subprocess.Popen(
        [sys.executable, "-c", (
            "import pathlib, time\n"
            "from scenario_lib.validation.check_pool import CheckPool\n"
            "pool = CheckPool(2)\n"
            f"pathlib.Path({str(pids_file)!r}).write_text(' '.join(map(str, pool.warm_up())))\n"
            "time.sleep(600)\n"
        )],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not pids_file.exists() and time.monotonic() < deadline and host.poll() is None:
        time.sleep(0.2)
    workers = [int(pid) for pid in pids_file.read_text().split()]
    assert len(workers) == 2
    host.send_signal(signal.SIGKILL)
    # The workers held the host's stderr: it reaches EOF only once they are all gone.
    _, stderr = host.communicate(timeout=30)
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.parametrize("workers", [0, 65, True, 1.5])
def test_a_bad_worker_count_is_refused_with_the_range(workers: object) -> None:
    with pytest.raises(ConfigError, match=r"1\.\.64"):
        CheckPool(workers)  # type: ignore[arg-type]


def test_a_closed_pool_says_so() -> None:
    pool = CheckPool(1)
    pool.close()
    with pytest.raises(SandboxError, match="closed"):
        pool.map(divmod, [(1, 1)], what="a division")
