"""The sandbox pool: real bubblewrap workers running real build123d scripts, benign and hostile."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scenario_lib.config import SandboxMode
from scenario_lib.contract import Scenario
from scenario_lib.errors import SandboxError
from scenario_lib.scene.geometry import check_mesh
from scenario_lib.report import Stage, Verdict
from scenario_lib.sandbox.command import resolve_mode
from scenario_lib.sandbox.limits import SandboxLimits
from scenario_lib.sandbox.outcome import BuildOutcome, outcome_from_worker
from scenario_lib.sandbox.pool import BuildRequest, SandboxPool
from scenario_lib.sandbox.protocol import BuildFailure, encode_frame
from tests.support import REPO, SCRIPTS

DUMMY_BOX = (SCRIPTS / "dummy_box.py").read_text()
FAKE_SECRET = "FAKE-aws-secret-do-not-leak-7f3c9a"
FAKE_CREDENTIAL = "FAKE-credential-file-contents-1b2d"
# Small limits keep hostile tests fast; wall_s is what a sleeping script runs into.
LIMITS = SandboxLimits(memory_mb=2048, cpu_s=3, wall_s=6.0, max_output_mb=16, max_processes=64)
NOMINAL = BuildRequest(seed=0, scale=(1.0, 1.0, 1.0))

BWRAP_WORKS = shutil.which("bwrap") is not None and shutil.which("setpriv") is not None
needs_bwrap = pytest.mark.skipif(not BWRAP_WORKS, reason="bubblewrap/setpriv not installed")

# A valid scenario to end hostile scripts with, so a "successful" attack would also look like success.
VALID_TAIL = """
    from build123d import Box as SolidBox
    from scenario_lib.contract import FREE, Body, InsideZone, Pose, Scenario, Zone
    return Scenario(
        family="hostile", objective="Push the cube.",
        bodies=(Body(name="cube", part=SolidBox(20, 20, 20), motion=FREE, pose=Pose(position_mm=(0, 0, 10))),),
        success=InsideZone(body="cube", zone=Zone(name="goal", center_mm=(100, 0, 10), half_extents_mm=(20, 20, 20))),
    )
"""


def script(body: str, *, valid_tail: bool = True) -> str:
    """A scenario script whose build runs ``body`` (then returns a valid scenario)."""
    code = "import os, sys, time\n\ndef build(seed, scale):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return code + (VALID_TAIL if valid_tail else "")


@pytest.fixture(scope="module")
def host_secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fake AWS key in the parent's environment and a fake ~/.aws/credentials under a temp HOME."""
    home = tmp_path_factory.mktemp("home")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {FAKE_CREDENTIAL}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
        patch.setenv("HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def pool(host_secrets: Path) -> Iterator[SandboxPool]:
    if not BWRAP_WORKS:
        pytest.skip("bubblewrap/setpriv not installed")
    with SandboxPool(workers=2, limits=LIMITS, mode=SandboxMode.BWRAP) as sandbox:
        yield sandbox


def sandbox_processes(sandbox: SandboxPool) -> list[int]:
    """Pids of every process inside the pool's sandboxes (seen from the host), workers included."""
    from scenario_lib.sandbox.pool import _children_by_parent

    tree = _children_by_parent()
    found: list[int] = []
    pending = [w.process.pid for w in sandbox._workers if w.process is not None]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(tree.get(pid, []))
    return found


def assert_pool_still_serves(sandbox: SandboxPool) -> None:
    outcome = sandbox.run_build(DUMMY_BOX, NOMINAL)
    assert outcome.ok, outcome.message


# ---------------------------------------------------------------------------------------------------
# Benign scripts


@needs_bwrap
def test_dummy_box_builds_with_meshes_and_checks(pool: SandboxPool) -> None:
    outcome = pool.run_build(DUMMY_BOX, BuildRequest(seed=3, scale=(1.5, 1.0, 0.5)))

    assert outcome.ok and outcome.failure is None, outcome.message
    scenario = Scenario.model_validate_json(outcome.scenario_json or "")
    side = scenario.parameters["side_mm"]
    assert set(outcome.meshes) == set(outcome.part_checks) == {"floor", "cube"}
    cube = outcome.part_checks["cube"]
    assert cube.n_solids == 1 and cube.is_valid and not cube.self_intersecting
    assert cube.volume_mm3 == pytest.approx(side**3 * 1.5 * 1.0 * 0.5, rel=1e-9)
    assert cube.bbox_max_mm[0] - cube.bbox_min_mm[0] == pytest.approx(side * 1.5)
    mesh = check_mesh(outcome.meshes["cube"])
    assert mesh.ok and mesh.triangles == 12 and mesh.volume_mm3 == pytest.approx(cube.volume_mm3, rel=1e-6)
    stage = outcome.code_stage()
    assert stage.stage is Stage.CODE and stage.passed and stage.metrics["bodies"] == 2
    assert 0 < outcome.duration_s < 5
    # Workers fork per job, so they must be single-threaded (no BLAS or jemalloc threads).
    pool.warm_up()
    assert [worker.threads for worker in pool._workers] == [1] * pool.workers


CURVED = """
import random
from build123d import Cylinder, fillet, Axis
from scenario_lib.contract import Body, InsideZone, Scenario, Zone

def build(seed, scale):
    rng = random.Random(seed)
    peg = Cylinder(rng.uniform(4, 9) * scale[0], 30 * scale[2])
    peg = fillet(peg.edges().filter_by(Axis.Z, reverse=True), radius=1.0)
    return Scenario(family="peg", objective="Hold the peg.", bodies=(Body(name="peg", part=peg),),
                    success=InsideZone(body="peg", zone=Zone(name="z", center_mm=(0, 0, 0), half_extents_mm=(9, 9, 9))))
"""

EXPORT_IN_FRESH_PROCESS = """
import importlib.util, sys
from scenario_lib.scene.geometry import export_stl
spec = importlib.util.spec_from_file_location("s", sys.argv[1])
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
built = module.build(11, (1.3, 1.0, 0.7))
sys.stdout.buffer.write(export_stl(built.bodies[0].part, 0.05, 0.2))
"""


@needs_bwrap
def test_stl_is_byte_identical_across_fresh_processes(pool: SandboxPool, tmp_path: Path) -> None:
    path = tmp_path / "curved.py"
    path.write_text(CURVED)
    command = [sys.executable, "-c", EXPORT_IN_FRESH_PROCESS, str(path)]
    fresh = [subprocess.Popen(command, stdout=subprocess.PIPE, cwd=REPO) for _ in range(2)]
    outputs = [process.communicate(timeout=120)[0] for process in fresh]
    sandboxed = pool.run_build(CURVED, BuildRequest(seed=11, scale=(1.3, 1.0, 0.7)))

    assert sandboxed.ok, sandboxed.message
    assert len(outputs[0]) > 10_000 and outputs[0] == outputs[1] == sandboxed.meshes["peg"]
    assert check_mesh(outputs[0]).ok


@needs_bwrap
def test_map_builds_keeps_order_and_is_thread_safe(pool: SandboxPool) -> None:
    requests = [BuildRequest(seed=seed, scale=(1.0, 1.0, 1.0)) for seed in range(5)]

    def run_from_thread(index: int) -> list[BuildOutcome]:
        return pool.map_builds(DUMMY_BOX, requests[index:] + requests[:index])

    with ThreadPoolExecutor(max_workers=4) as executor:
        results = list(executor.map(run_from_thread, range(4)))

    for index, outcomes in enumerate(results):
        assert all(outcome.ok for outcome in outcomes)
        sides = [Scenario.model_validate_json(o.scenario_json or "").parameters["side_mm"] for o in outcomes]
        expected = [
            Scenario.model_validate_json(o.scenario_json or "").parameters["side_mm"] for o in results[0]
        ]
        assert sides == expected[index:] + expected[:index]


# A script whose meshes depend on unseeded global randomness and on what earlier builds left behind: a
# series of builds in one child must give what fresh children give on any worker (no build sees the
# builds before it, and the generators start from one fixed state).
STATEFUL = """
import random
import numpy as np
from build123d import Box
from scenario_lib.contract import FREE, Body, InsideZone, Pose, Scenario, Zone

BUILDS_SO_FAR = []


def build(seed, scale):
    BUILDS_SO_FAR.append(seed)
    side = 10 + 10 * random.random() + np.random.random() + len(BUILDS_SO_FAR)
    return Scenario(
        family="stateful", objective="Push the cube.",
        bodies=(Body(name="cube", part=Box(side, side, side), motion=FREE, pose=Pose(position_mm=(0, 0, side / 2))),),
        success=InsideZone(body="cube", zone=Zone(name="goal", center_mm=(100, 0, 10), half_extents_mm=(20, 20, 20))),
        parameters={"side_mm": side},
    )
"""


@needs_bwrap
def test_a_series_builds_exactly_what_fresh_children_build(pool: SandboxPool) -> None:
    requests = [BuildRequest(seed=seed, scale=(1.0, 1.0, 1.0)) for seed in range(4)]

    one_by_one = [pool.run_build(STATEFUL, request) for request in requests]  # on either worker
    series = pool.run_series(STATEFUL, requests)

    assert all(outcome.ok for outcome in one_by_one + series), [o.message for o in one_by_one + series]
    assert [o.meshes for o in series] == [o.meshes for o in one_by_one]
    assert [o.scenario_json for o in series] == [o.scenario_json for o in one_by_one]
    assert series[0].timings_s["build_s"] > 0 and series[3].timings_s["checks_s"] > 0


@needs_bwrap
def test_a_failing_build_in_a_series_fails_alone(pool: SandboxPool) -> None:
    # Seed 1 exits its process, seed 3 spins until the CPU limit, seed 5 sleeps past the wall limit:
    # each fails with its own reason and the builds after it run in a fresh child.
    body = (
        "if seed == 1:\n    os._exit(3)\n"
        "if seed == 3:\n    while True:\n        pass\n"
        "if seed == 5:\n    time.sleep(600)\n"
        "print('building seed', seed)\n"
    )
    requests = [BuildRequest(seed=seed, scale=(1.0, 1.0, 1.0)) for seed in range(7)]

    outcomes = pool.run_series(script(body), requests)

    assert [outcome.failure for outcome in outcomes] == [
        None, BuildFailure.CRASH, None, BuildFailure.TIMEOUT, None, BuildFailure.TIMEOUT, None
    ]  # fmt: skip
    assert "status 3" in outcomes[1].message
    assert "CPU" in outcomes[3].message and outcomes[3].duration_s < LIMITS.wall_s
    assert "wall-clock" in outcomes[5].message and outcomes[5].duration_s >= LIMITS.wall_s
    assert [outcome.output_tail.strip() for outcome in outcomes if outcome.ok] == [
        f"building seed {seed}" for seed in (0, 2, 4, 6)
    ]
    assert_pool_still_serves(pool)


@needs_bwrap
def test_a_build_without_part_checks_returns_the_scenario_only(pool: SandboxPool) -> None:
    outcome = pool.run_build(DUMMY_BOX, BuildRequest(seed=0, scale=(1.0, 1.0, 1.0), check_parts=False))

    assert outcome.ok, outcome.message
    assert outcome.scenario_json and not outcome.meshes and not outcome.part_checks


# ---------------------------------------------------------------------------------------------------
# Scripts that break the contract


CONTRACT_CASES = {
    "syntax-error": ("def build(seed, scale)\n    return 1\n", BuildFailure.IMPORT, "SyntaxError"),
    "missing-module": ("import no_such_module_xyz\n", BuildFailure.IMPORT, "No module named 'no_such_module_xyz'"),
    "no-build": ("x = 1\n", BuildFailure.CONTRACT, "defines no build function"),
    "wrong-signature": ("def build(seed):\n    return None\n", BuildFailure.CONTRACT, "cannot be called as build"),
    "returns-dict": ("def build(seed, scale):\n    return {}\n", BuildFailure.CONTRACT, "returned dict"),
    "skips-validation": (
        "from scenario_lib.contract import Scenario\n"
        "def build(seed, scale):\n    return Scenario.model_construct(family='', objective='x')\n",
        BuildFailure.CONTRACT,
        "invalid Scenario",
    ),
    "part-missing": (
        script("pass", valid_tail=True).replace("part=SolidBox(20, 20, 20)", "part=None"),
        BuildFailure.CONTRACT,
        "body 'cube' has part=NoneType",
    ),
    "raises": (
        script("values = []\nvalues[3] = seed\n", valid_tail=False),
        BuildFailure.EXCEPTION,
        "IndexError: list assignment index out of range (script line 5: values[3] = seed)",
    ),
}


@needs_bwrap
@pytest.mark.parametrize("case", list(CONTRACT_CASES), ids=list(CONTRACT_CASES))
def test_contract_violations_are_failed_outcomes(pool: SandboxPool, case: str) -> None:
    source, failure, expected = CONTRACT_CASES[case]

    outcome = pool.run_build(source, NOMINAL)

    assert not outcome.ok and outcome.failure is failure
    assert expected in outcome.message
    stage = outcome.code_stage()
    assert stage.verdict is Verdict.FAIL and stage.message.startswith(failure.value)


# ---------------------------------------------------------------------------------------------------
# Hostile scripts: each becomes a failed (or harmless) outcome, and the pool keeps serving.


@needs_bwrap
def test_shell_commands_run_unprivileged_and_cannot_touch_the_host(pool: SandboxPool, tmp_path: Path) -> None:
    marker = tmp_path / "pwned-by-shell"
    source = script(
        f"""
        import subprocess
        os.system("id; touch {marker}")
        print(subprocess.run(["touch", "/pwned"], capture_output=True, text=True).stderr)
        """
    )

    outcome = pool.run_build(source, NOMINAL)

    assert "uid=65534" in outcome.output_tail and "Read-only file system" in outcome.output_tail
    assert not marker.exists() and not Path("/pwned").exists()
    assert_pool_still_serves(pool)


@needs_bwrap
def test_network_is_unreachable_even_on_loopback(pool: SandboxPool) -> None:
    connections: list[object] = []
    done = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.settimeout(0.1)

        def accept() -> None:
            while not done.is_set():
                try:
                    connections.append(listener.accept()[0])
                except OSError:
                    continue

        watcher = threading.Thread(target=accept)
        watcher.start()
        source = script(
            f"""
            import socket
            socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"stolen")
            """,
            valid_tail=False,
        )
        outcome = pool.run_build(source, NOMINAL)
        time.sleep(0.3)  # a connection that did get through would be accepted by now
        done.set()
        watcher.join()

    assert connections == []
    assert outcome.failure is BuildFailure.EXCEPTION and "ConnectionRefusedError" in outcome.message


@needs_bwrap
def test_secrets_of_the_host_are_invisible(pool: SandboxPool, host_secrets: Path) -> None:
    paths = [host_secrets / ".aws" / "credentials", Path("~/.aws/credentials"), Path("/root/.aws/credentials")]
    source = script(
        f"""
        print(sorted(os.environ))
        print(repr(dict(os.environ)))
        for path in {[str(p) for p in paths]!r} + ["/proc/1/environ", f"/proc/{{os.getppid()}}/environ"]:
            try:
                print(path, open(os.path.expanduser(path), "rb").read())
            except OSError as err:
                print(path, type(err).__name__)
        """
    )

    outcome = pool.run_build(source, NOMINAL)

    assert outcome.ok, outcome.message
    assert "AWS_SECRET_ACCESS_KEY" not in outcome.output_tail and FAKE_SECRET not in outcome.output_tail
    assert FAKE_CREDENTIAL not in outcome.output_tail
    assert outcome.output_tail.count("FileNotFoundError") == 3
    assert outcome.output_tail.count("PermissionError") == 2


@needs_bwrap
def test_writes_outside_the_job_folder_fail(pool: SandboxPool, tmp_path: Path, host_secrets: Path) -> None:
    targets = [Path("/pwned"), REPO / "pwned", tmp_path / "pwned", host_secrets / "pwned", Path("/var/tmp/pwned")]
    source = script(
        f"""
        for path in {[str(t) for t in targets]!r}:
            try:
                open(path, "w").write("x")
                print(path, "written")
            except OSError as err:
                print(path, type(err).__name__)
        open("inside-job-folder.txt", "w").write("fine")
        """
    )

    outcome = pool.run_build(source, NOMINAL)

    assert outcome.ok, outcome.message
    assert "written" not in outcome.output_tail
    assert not any(target.exists() for target in targets)


@needs_bwrap
def test_process_limit_holds_and_leftovers_are_killed(pool: SandboxPool) -> None:
    # Children that outlive the job (one of them detached with setsid) must not survive it.
    source = script(
        """
        started = 0
        for _ in range(500):
            try:
                if os.fork() == 0:
                    os.setsid()
                    time.sleep(60)
                    os._exit(0)
                started += 1
            except OSError as err:
                print("fork refused after", started, type(err).__name__)
                break
        """
    )

    outcome = pool.run_build(source, NOMINAL)

    assert outcome.ok, outcome.message
    assert "fork refused after" in outcome.output_tail
    refused_after = int(outcome.output_tail.split("fork refused after")[1].split()[0])
    assert refused_after < LIMITS.max_processes
    time.sleep(0.2)
    # Each worker: bwrap (outside), its namespace init, setpriv's python; nothing else is left.
    assert len(sandbox_processes(pool)) <= 3 * pool.workers
    assert_pool_still_serves(pool)


@needs_bwrap
def test_endless_loop_hits_the_cpu_limit(pool: SandboxPool) -> None:
    outcome = pool.run_build(script("while True:\n    pass\n", valid_tail=False), NOMINAL)

    assert outcome.failure is BuildFailure.TIMEOUT and "CPU" in outcome.message
    assert outcome.duration_s < LIMITS.wall_s
    assert_pool_still_serves(pool)


@needs_bwrap
def test_sleeping_script_hits_the_wall_limit_and_the_worker_is_replaced(pool: SandboxPool) -> None:
    outcome = pool.run_build(script("time.sleep(600)\n", valid_tail=False), NOMINAL)

    assert outcome.failure is BuildFailure.TIMEOUT and "wall-clock" in outcome.message
    assert LIMITS.wall_s <= outcome.duration_s < LIMITS.wall_s + 5
    assert_pool_still_serves(pool)


@needs_bwrap
def test_memory_bomb_is_a_memory_failure(pool: SandboxPool) -> None:
    outcome = pool.run_build(script("hoard = bytearray(8 * 1024**3)\n", valid_tail=False), NOMINAL)

    assert outcome.failure is BuildFailure.MEMORY and "MemoryError" in outcome.message


@needs_bwrap
@pytest.mark.parametrize(
    "body",
    [
        "with open('big.bin', 'wb') as f:\n    for _ in range(10 * 1024):\n        f.write(b'x' * 1024**2)\n",
        "for _ in range(10 * 1024):\n    sys.stdout.write('y' * 1024**2)\n",
    ],
    ids=["10GB-file", "huge-stdout"],
)
def test_huge_outputs_hit_the_output_limit(pool: SandboxPool, body: str) -> None:
    outcome = pool.run_build(script(body, valid_tail=False), NOMINAL)

    assert outcome.failure is BuildFailure.OUTPUT_LIMIT, outcome.message
    assert len(outcome.output_tail) <= 4096
    assert_pool_still_serves(pool)


@needs_bwrap
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("sys.exit(3)\n", "called sys.exit(3)"),
        ("os._exit(0)\n", "exited with status 0"),
        ("import signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "killed by SIGSEGV"),
    ],
    ids=["sys-exit", "os-exit", "segfault"],
)
def test_exits_and_crashes_are_crash_failures(pool: SandboxPool, body: str, expected: str) -> None:
    outcome = pool.run_build(script(body, valid_tail=False), NOMINAL)

    assert outcome.failure is BuildFailure.CRASH and expected in outcome.message


@needs_bwrap
def test_killing_the_worker_is_a_crash_and_the_pool_recovers(pool: SandboxPool) -> None:
    outcome = pool.run_build(script("os.kill(os.getppid(), 9)\ntime.sleep(5)\n", valid_tail=False), NOMINAL)

    assert outcome.failure is BuildFailure.CRASH and "worker died" in outcome.message
    assert_pool_still_serves(pool)


# ---------------------------------------------------------------------------------------------------
# Untrusted results, modes


def test_malformed_or_forged_results_are_crash_failures() -> None:
    done = {"op": "done", "exit_code": 0, "signal": None, "cpu_s": 0.1, "output_tail": ""}
    header = {"failure": None, "scenario_json": "{}", "bodies": [{"name": "cube", "check": "{}", "stl_bytes": 99}]}
    cases = [
        b"\x00\x00\x00\x05{not json",
        b"\xff\xff\xff\xff",
        encode_frame(header, b"short"),
        encode_frame({"failure": "no-such-kind", "message": "x"}),
    ]
    for result in cases:
        outcome = outcome_from_worker(done, result, LIMITS, 0.1)
        assert outcome.failure is BuildFailure.CRASH and "malformed" in outcome.message


def test_dead_child_is_classified_by_signal_and_cpu_time() -> None:
    def classify(**done: object) -> BuildOutcome:
        return outcome_from_worker({"op": "done", "output_tail": "", **done}, b"", LIMITS, 1.0)

    assert classify(signal=24, cpu_s=3.0).failure is BuildFailure.TIMEOUT  # SIGXCPU
    assert classify(signal=9, cpu_s=3.9).failure is BuildFailure.TIMEOUT
    assert classify(signal=9, cpu_s=0.1).failure is BuildFailure.CRASH
    assert classify(signal=25, cpu_s=0.1).failure is BuildFailure.OUTPUT_LIMIT  # SIGXFSZ
    assert classify(exit_code=97, signal=None).failure is BuildFailure.OUTPUT_LIMIT


def test_auto_mode_refuses_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    from scenario_lib.sandbox import command as sandbox

    monkeypatch.setenv("PATH", "/nonexistent")
    sandbox._probe_bwrap.cache_clear()
    try:
        with pytest.raises(SandboxError, match="apt-get install bubblewrap.*SCENARIOS_SANDBOX__MODE=rlimits"):
            resolve_mode(SandboxMode.AUTO)
    finally:
        sandbox._probe_bwrap.cache_clear()
    assert resolve_mode(SandboxMode.RLIMITS) is SandboxMode.RLIMITS


def test_rlimits_mode_still_limits_and_clears_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    with SandboxPool(workers=1, limits=LIMITS, mode=SandboxMode.RLIMITS) as sandbox:
        assert sandbox.mode is SandboxMode.RLIMITS
        leaky = sandbox.run_build(script("print(dict(os.environ))\n"), NOMINAL)
        spinning = sandbox.run_build(script("while True:\n    pass\n", valid_tail=False), NOMINAL)
        forking = sandbox.run_build(script("if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"), NOMINAL)
        worker_pid = sandbox._workers[0].process.pid  # type: ignore[union-attr]
        time.sleep(0.2)
        from scenario_lib.sandbox.pool import _children_by_parent

        leftovers = _children_by_parent().get(worker_pid, [])
        benign = sandbox.run_build(DUMMY_BOX, NOMINAL)

    assert leaky.ok and FAKE_SECRET not in leaky.output_tail
    assert spinning.failure is BuildFailure.TIMEOUT
    assert forking.ok and leftovers == []
    assert benign.ok


@needs_bwrap
@pytest.mark.slow
def test_true_fork_bomb_is_contained(pool: SandboxPool) -> None:
    source = script("while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", valid_tail=False)

    outcome = pool.run_build(source, NOMINAL)

    assert outcome.failure is BuildFailure.TIMEOUT
    assert_pool_still_serves(pool)
    assert len(sandbox_processes(pool)) <= 3 * pool.workers


def anon_huge_pages_kb(sandbox: SandboxPool) -> int:
    """The AnonHugePages of the pool's processes, summed (the worker's python holds them)."""
    total = 0
    for pid in sandbox_processes(sandbox):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # bubblewrap's own processes may not let us read theirs
        total += sum(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("AnonHugePages:"))
    return total


@needs_bwrap
def test_a_long_lived_pool_backs_its_workers_with_huge_pages_at_once(host_secrets: Path) -> None:
    # The validation service's workers (huge_pages_after_jobs=0) collapse their ~250 MB of anonymous memory
    # into 2 MiB pages before their first job, so every fork of the first runs they serve is as cheap as a
    # later one's; a run's own pool waits for its 8th job, which a one-scenario run never reaches.
    if Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip().startswith("[never]"):
        pytest.skip("transparent huge pages are disabled on this kernel")
    with SandboxPool(workers=1, limits=LIMITS, mode=SandboxMode.BWRAP, huge_pages_after_jobs=0) as long_lived:
        long_lived.warm_up()
        collapsed_kb = anon_huge_pages_kb(long_lived)
        assert_pool_still_serves(long_lived)
    with SandboxPool(workers=1, limits=LIMITS, mode=SandboxMode.BWRAP) as per_run:
        per_run.warm_up()
        waiting_kb = anon_huge_pages_kb(per_run)
    assert collapsed_kb >= 64 * 1024, f"only {collapsed_kb} kB in huge pages after warm-up"
    assert waiting_kb < collapsed_kb / 4
