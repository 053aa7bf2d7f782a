"""Hostile scripts and bad inputs: each is contained, named as a failure with its fix, and stores nothing else.

The hostile scripts go the whole way a coder's script goes: a scripted chat model writes them, the agent
validates them in the real bubblewrap sandbox pool, and `run_generation` commits each failed seed under
``failures/``. Sandbox-level behaviour (one attack, one `BuildOutcome`) is in test_sandbox.py; here the
question is what the *pipeline* makes of them: a failed stage with a clear message, a pool that serves the
next job, no secret in the store and nothing already stored changed.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scenario_lib.config import SandboxMode
from scenario_lib.contract import Scenario
from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.runs.generation import (
    GenerationContext,
    GenerationJob,
    RunSummary,
    finished_seeds,
    read_run_record,
)
from scenario_lib.runs.driver import run_generation
from scenario_lib.runs.promotion import promote, read_manifest
from scenario_lib.report import Verdict
from scenario_lib.sandbox.limits import SandboxLimits
from scenario_lib.sandbox.pool import BuildRequest, SandboxPool
from scenario_lib.store.commit import commit_scenario, list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.tiers import Tier
from scenario_lib.validation.pipeline import HarnessConfig, Validator
from tests.s3_server import MotoS3Server
from tests.scripted_model import APPROVE, ScriptedChatModel, fenced
from tests.store.test_store import make_scenario_folder
from tests.support import REPO, SCRIPTS

DUMMY_BOX = (SCRIPTS / "dummy_box.py").read_text()
PLAN = '{"family": "push_box", "summary": "push a cube", "verification_strategy": "goal away from the start"}'
BWRAP_WORKS = shutil.which("bwrap") is not None and shutil.which("setpriv") is not None
needs_bwrap = pytest.mark.skipif(not BWRAP_WORKS, reason="bubblewrap/setpriv not installed")

# Fake secrets the parent holds the way a deployment does: keys in the environment, a credentials file.
ENV_SECRETS = {
    "SCENARIOS_LLM__API_KEY": "FAKE-llm-api-key-3b9e1d",
    "SCENARIOS_STORE__SECRET_KEY": "FAKE-store-secret-key-77a0c4",
    "AWS_ACCESS_KEY_ID": "FAKEAKIA4HARDENING",
    "AWS_SECRET_ACCESS_KEY": "FAKE-aws-secret-access-key-5c2f80",
    "OPENAI_API_KEY": "FAKE-sk-openai-91d3aa",
}
CREDENTIALS_SECRET = "FAKE-credentials-file-secret-e41b07"
# Small limits keep the slow attacks short; wall_s is what a sleeping script runs into.
LIMITS = SandboxLimits(memory_mb=2048, cpu_s=2, wall_s=6.0, max_output_mb=16, max_processes=64)


# ---------------------------------------------------------------------------------------------------
# The scripts


# A write to the checkout is refused: by its read-only bind, or, for a checkout under a folder the sandbox
# user cannot enter (a `mktemp -d` clone), by the root-owned folder bound in its place.
WRITE_REFUSED = ("Read-only file system", "Permission denied")


@dataclass(frozen=True)
class Hostile:
    """A script as the coder could write it, and the failure the pipeline must turn it into."""

    name: str
    source: str
    stage: str = "code"  # the stage that fails
    # Each must appear in that stage's message (a tuple: one of them).
    fragments: tuple[str | tuple[str, ...], ...] = ()


def attack(body: str) -> str:
    """The dummy box script whose ``build`` first runs ``body``: an attack that goes unnoticed would pass."""
    honest = DUMMY_BOX.replace("def build(", "def _honest_build(")
    wrapper = "\n\ndef build(seed, scale):\n    import os, sys, time\n"
    return honest + wrapper + textwrap.indent(textwrap.dedent(body), "    ") + "\n    return _honest_build(seed, scale)\n"


# A forger computes real checks and meshes, tampers with them and writes the result file the worker
# passes on, then exits before the runner can write the honest one.
FORGE = """
import struct
from scenario_lib.scene.geometry import check_solid, export_stl
from scenario_lib.sandbox.protocol import encode_frame
from scenario_lib.sandbox.runner import RESULT_FILE
scenario = _honest_build(seed, scale)
bodies, meshes = [], []
for body in scenario.bodies:
    stl = bytearray(export_stl(body.part))
    {tamper}
    bodies.append({{"name": body.name, "check": check_solid(body.part).to_json(), "stl_bytes": len(stl)}})
    meshes.append(bytes(stl))
header = {{"failure": None, "scenario_json": scenario.model_dump_json(), "bodies": bodies, "timings_s": {{}}}}
{header}
for index in range(16):  # the build's place in its series (unknown to it): the worker reads that one
    with open(RESULT_FILE.format(index=index), "wb") as handle:
        handle.write(encode_frame(header, b"".join(meshes)))
os._exit(0)
"""


def forge(tamper: str = "pass", header: str = "") -> str:
    return attack(FORGE.format(tamper=tamper, header=header))


# Result files written by hand: JSON nested 200 000 levels deep, which Python's json module cannot parse.
DEEP_RESULT = """
from scenario_lib.sandbox.runner import RESULT_FILE
data = b'{"failure": null, "payload_bytes": 0, "deep": ' + b"[" * 200000 + b"]" * 200000 + b"}"
for index in range(16):
    with open(RESULT_FILE.format(index=index), "wb") as handle:
        handle.write(len(data).to_bytes(4, "big") + data)
os._exit(0)
"""

# Found by tests/test_fuzz.py: five triangles, some repeating a vertex, coordinates up to 8e34 mm. Handed
# to manifold3d as they were, they killed the whole process with SIGSEGV.
MANIFOLD3D_SEGFAULT_STL = bytes.fromhex(
    "e3a996b311fed277ec42217e149378673c08455a92717f77de8e94c32e004dbf30e6ee5c5e726c3dd4519dc17b651fce"
    "ada7098185df97e281d5e235593c1b94d5f4069c5f87ea7ef27a3947f0de5fbc05000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000005ea36657ba196e3fd5be"
    "4d0a60603fe368f80af6bb6f13ba44f99cf602cfb4a0996872791635b75f18395c0fe88e73d7d11f5ea36657ba196e3f"
    "d5be4d0a60603fe368f80af6bb6f13ba44f99cf602cfb4a0996872791635b75f18395c0fe88e73d7d11f5ea36657ba19"
    "6e3fd5be4d0a60603fe368f80af6bb6f13ba44f99cf602cfb4a0996872791635b75f18395c0fe88e73d7d11fae50a67d"
    "d3feb70d83d71a57d7857bb55b33de1959be0cdfe803974429fac1381d084ce7f92e42ec3160ada9013620e7ba6a"
)

# Tokens each script's source holds until the fixture knows the host's paths and ports.
HOSTILE = [
    Hostile(
        "shell-command",
        attack(
            "import subprocess\n"
            'subprocess.run("id; touch @TMP@/pwned-by-shell; cat @CREDENTIALS@", shell=True, check=True)\n'
        ),
        fragments=("exception: build(", "CalledProcessError", "uid=65534"),
    ),
    Hostile(
        "subprocess-exec",
        attack('import subprocess\nsubprocess.check_call(["/bin/sh", "-c", "echo x > @REPO@/pwned-by-script"])\n'),
        fragments=("CalledProcessError", "returned non-zero exit status", WRITE_REFUSED),
    ),
    Hostile(
        "socket-loopback-listener",
        attack('import socket\nsocket.create_connection(("127.0.0.1", @PORT@), timeout=3).sendall(b"stolen")\n'),
        fragments=("ConnectionRefusedError",),
    ),
    Hostile(
        "socket-dataset-store-server",
        attack('import urllib.request\nurllib.request.urlopen("@ENDPOINT@/", timeout=3).read()\n'),
        fragments=("URLError", "Connection refused"),
    ),
    Hostile(
        "socket-internet",
        attack('import socket\nsocket.create_connection(("1.1.1.1", 443), timeout=3)\n'),
        fragments=("Network is unreachable",),
    ),
    Hostile(
        "read-aws-credentials",
        attack("print(open('@CREDENTIALS@').read())\n"),
        fragments=("FileNotFoundError", ".aws/credentials"),
    ),
    Hostile(
        "read-env-secrets",
        attack(
            """
            found = {key: value for key, value in os.environ.items() if "FAKE" in value or "KEY" in key}
            for pid in [name for name in os.listdir("/proc") if name.isdigit()]:
                try:
                    environ = open(f"/proc/{pid}/environ", "rb").read()
                except OSError:
                    continue
                if b"FAKE" in environ:
                    found[pid] = environ
            if not found:
                raise LookupError("no secret in reach")
            print(found)
            """
        ),
        fragments=("LookupError: no secret in reach",),
    ),
    Hostile(
        "write-outside-work-folder",
        attack(
            # The store's path exists only in the sandbox's private /tmp; the repository is read-only.
            'os.makedirs("@STORE@/staging/evil_0", exist_ok=True)\n'
            'open("@STORE@/staging/evil_0/_COMMITTED", "w").write("{}")\n'
            'open("@REPO@/pwned-by-script", "w").write("x")\n'
        ),
        fragments=(("OSError", "PermissionError"), WRITE_REFUSED),
    ),
    Hostile("infinite-loop", attack("while True:\n    pass\n"), fragments=("timeout:",)),
    Hostile("allocate-8GB", attack("hoard = bytearray(8 * 1024**3)\n"), fragments=("memory:", "MemoryError")),
    Hostile(
        "write-10GB-file",
        attack("with open('big.bin', 'wb') as f:\n    for _ in range(10 * 1024):\n        f.write(b'x' * 1024**2)\n"),
        fragments=("output_limit:",),
    ),
    Hostile(
        "huge-stdout",
        attack("for _ in range(10 * 1024):\n    sys.stdout.write('y' * 1024**2)\n"),
        fragments=("output_limit:",),
    ),
    Hostile("sys-exit", attack("sys.exit(3)\n"), fragments=("crash:", "sys.exit(3)")),
    Hostile("os-exit", attack("os._exit(0)\n"), fragments=("crash:", "exited with status 0")),
    Hostile(
        "kill-parent",
        attack("import signal\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(5)\n"),
        fragments=("crash:", "worker died"),
    ),
    Hostile(
        "kill-every-process", attack("import signal\nos.kill(-1, signal.SIGKILL)\ntime.sleep(5)\n"), fragments=("crash:",)
    ),
    Hostile("huge-script", attack("pass\n") + "# " + "x" * (2 * 1024 * 1024) + "\n", fragments=("import:", "byte limit")),
    # Forged results: the script writes the result file the worker hands to the host.
    Hostile(
        "forged-result-huge-number",
        forge(header='header["timings_s"] = {"build_s": 10**400}'),
        fragments=("crash:", "malformed result", "OverflowError"),
    ),
    Hostile("forged-result-deep-nesting", attack(DEEP_RESULT), fragments=("crash:", "malformed result")),
    Hostile(
        "forged-result-nan-mesh",
        forge(tamper='struct.pack_into("<fff", stl, 84 + 12, float("nan"), float("nan"), float("nan"))'),
        stage="geometry",
        fragments=("open mesh (not watertight)",),
    ),
    Hostile(
        "forged-result-mesh-that-crashed-manifold3d",
        forge(tamper=f"stl[:] = bytes.fromhex({MANIFOLD3D_SEGFAULT_STL.hex()!r})"),
        stage="geometry",
        fragments=("beyond ±1e+09 mm",),
    ),
    Hostile(
        "forged-result-garbage-mesh",
        forge(tamper='stl[80:84] = struct.pack("<I", 2**32 - 1)'),
        stage="geometry",
        fragments=("unreadable mesh", "declares 4294967295 triangles"),
    ),
    # Scripts that break the contract without meaning harm.
    Hostile("no-build-function", "x = 1\n", fragments=("contract:", "defines no build function")),
    Hostile(
        "build-returns-wrong-type",
        "def build(seed, scale):\n    return {'bodies': []}\n",
        fragments=("contract:", "build returned dict, expected scenario_lib.contract.Scenario"),
    ),
    Hostile(
        "nan-in-scenario",
        DUMMY_BOX.replace("position_mm=(0, 0, -5)", "position_mm=(0, 0, float('nan'))"),
        fragments=("contract:", "Pose.position_mm.2", "expected a finite number"),
    ),
    Hostile(
        "unknown-parent",
        DUMMY_BOX.replace('Body(name="cube", part=cube, motion=FREE', 'Body(name="cube", part=cube, parent="nope"'),
        stage="mjcf",
        fragments=("names parent 'nope', which is not a body",),
    ),
    Hostile(
        "free-body-with-parent",
        DUMMY_BOX.replace("motion=FREE,", 'motion=FREE, parent="floor",'),
        stage="mjcf",
        fragments=("is FREE but has parent 'floor'", "drop the parent"),
    ),
]
SLOW_HOSTILE = [
    Hostile(
        "fork-bomb",
        attack("while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"),
        fragments=("timeout:",),
    ),
    Hostile("sleep-forever", attack("time.sleep(600)\n"), fragments=("timeout:", "wall-clock")),
]


@dataclass
class Host:
    """What the scripts aim at on the host."""

    tmp: Path
    store_root: Path
    credentials: Path
    listener_port: int
    s3_endpoint: str

    def fill(self, script: Hostile) -> Hostile:
        source = script.source
        for token, value in {
            "@TMP@": str(self.tmp),
            "@REPO@": str(REPO),
            "@STORE@": str(self.store_root),
            "@CREDENTIALS@": str(self.credentials),
            "@PORT@": str(self.listener_port),
            "@ENDPOINT@": self.s3_endpoint,
        }.items():
            source = source.replace(token, value)
        return Hostile(script.name, source, script.stage, script.fragments)

    def traces(self) -> list[Path]:
        """Files an escaped script would have left on the host."""
        return [self.tmp / "pwned-by-shell", REPO / "pwned-by-script"]


@dataclass
class HostileRun:
    run_id: str
    host: Host
    store: DatasetStore
    scripts: list[Hostile]
    summary: RunSummary
    before: dict[str, bytes]
    after: dict[str, bytes]

    def folder_of(self, name: str) -> str:
        seed = [script.name for script in self.scripts].index(name)
        return f"failures/{self.run_id}_{seed}_a1"


def snapshot(store: DatasetStore) -> dict[str, bytes]:
    """Every file of the store with its bytes."""
    return {key: store.read_bytes(key) for key in store.list_files("")}


def fill_store(store: DatasetStore, tmp: Path) -> None:
    """What a store already holds: staged scenarios, a promoted one and a run record."""
    for seed in (0, 1):
        commit_scenario(store, make_scenario_folder(tmp / f"old{seed}", tag=f"old{seed}"), f"staging/earlier_{seed}")
    promote(store, ["earlier_1"], dest="v1")
    store.write_bytes("runs/earlier.json", b'{"run_id": "earlier"}')


@pytest.fixture(scope="module")
def host_secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keys in the parent's environment and ``~/.aws/credentials`` under a temporary HOME."""
    home = tmp_path_factory.mktemp("home")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {CREDENTIALS_SECRET}\n")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ENV_SECRETS.items():
            patch.setenv(key, value)
        patch.setenv("HOME", str(home))
        yield home / ".aws" / "credentials"


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    accepted: list[socket.socket] = []
    done = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.1)

        def accept() -> None:
            while not done.is_set():
                try:
                    accepted.append(server.accept()[0])
                except OSError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield server.getsockname()[1], accepted
        done.set()
        thread.join()


def run_scripts(host: Host, scripts: list[Hostile], run_id: str) -> HostileRun:
    """One generation run whose coder writes ``scripts`` then a benign script; count=1, so the run goes
    through every script one seed at a time and ends with the benign one."""
    store = DatasetStore.from_url(f"file://{host.store_root}")
    fill_store(store, host.tmp / "existing")
    before = snapshot(store)
    coder = ScriptedChatModel(
        answers={
            "planner": [fenced("json", PLAN)],
            "coder": [fenced("python", script.source) for script in scripts] + [fenced("python", DUMMY_BOX)],
            "reviewer": [APPROVE],
        }
    )
    # The pool hides the store folder, as open_generation_context does for a local store.
    with SandboxPool(workers=2, limits=LIMITS, mode=SandboxMode.BWRAP, hidden_paths=[host.store_root]) as pool:
        context = GenerationContext(
            store=store,
            validator=Validator(pool, HarnessConfig(seeds=1)),
            chat_model=coder,
            provider="scripted",
            model=None,
            max_attempts=1,
            render_preview=False,
            secrets=[*ENV_SECRETS.values(), CREDENTIALS_SECRET],
        )
        job = GenerationJob(run_id=run_id, tier=Tier.TEST_DUMMY, count=1, headroom=len(scripts))
        summary = run_generation(context, job, max_concurrency=2)
    return HostileRun(run_id, host, store, scripts, summary, before, snapshot(store))


def make_host(tmp: Path, credentials: Path, port: int, endpoint: str) -> Host:
    tmp.mkdir(parents=True, exist_ok=True)
    return Host(tmp=tmp, store_root=tmp / "store", credentials=credentials, listener_port=port, s3_endpoint=endpoint)


@pytest.fixture(scope="module")
def hostile_run(
    tmp_path_factory: pytest.TempPathFactory,
    host_secrets: Path,
    listener: tuple[int, list[socket.socket]],
    moto_s3: MotoS3Server,
) -> HostileRun:
    if not BWRAP_WORKS:
        pytest.skip("bubblewrap/setpriv not installed")
    host = make_host(tmp_path_factory.mktemp("hostile"), host_secrets, listener[0], moto_s3.endpoint_url)
    return run_scripts(host, [host.fill(script) for script in HOSTILE], "hostile")


def stage_failures(store: DatasetStore, folder: str) -> dict[str, str]:
    """Per failed stage of every harness seed, its message, from the stored validation report."""
    report = json.loads(store.read_bytes(f"{folder}/validation.json"))
    return {
        result["stage"]: result["message"]
        for seed in report["seeds"]
        for result in seed["stages"]
        if result["verdict"] == Verdict.FAIL.value
    }


def assert_contained(run: HostileRun, script: Hostile) -> None:
    folder = run.folder_of(script.name)
    assert folder.removeprefix("failures/") in list_scenarios(run.store, "failures"), f"{script.name}: not stored"
    failures = stage_failures(run.store, folder)
    assert list(failures) == [script.stage], f"{script.name}: failed stages {failures}"
    for fragment in script.fragments:
        options = (fragment,) if isinstance(fragment, str) else fragment
        assert any(option in failures[script.stage] for option in options), (
            f"{script.name}: {fragment!r} not in {failures[script.stage]!r}"
        )
    manifest = json.loads(run.store.read_bytes(f"{folder}/manifest.json"))
    assert manifest["passed"] is False and manifest["stage_reached"] == script.stage
    assert run.store.read_bytes(f"{folder}/scenario.py").decode() == script.source.strip() + "\n"


# ---------------------------------------------------------------------------------------------------
# Hostile code through the pipeline


@needs_bwrap
@pytest.mark.parametrize("name", [script.name for script in HOSTILE])
def test_hostile_script_ends_as_a_failed_seed_with_a_clear_message(hostile_run: HostileRun, name: str) -> None:
    assert_contained(hostile_run, next(script for script in hostile_run.scripts if script.name == name))


@needs_bwrap
def test_the_pool_served_every_next_job_and_the_benign_script_passed(hostile_run: HostileRun) -> None:
    summary = hostile_run.summary
    count = len(hostile_run.scripts)
    assert [outcome.seed for outcome in summary.outcomes] == list(range(count + 1))
    assert [outcome.passed for outcome in summary.outcomes] == [False] * count + [True]
    assert summary.complete and list_scenarios(hostile_run.store, "staging") == [
        "earlier_0",
        f"hostile_{count}",
    ]
    timings = ", ".join(
        f"{script.name} {outcome.duration_s:.1f} s" for script, outcome in zip(hostile_run.scripts, summary.outcomes)
    )
    print(f"\nhostile pipeline: {count} scripts tried, all contained, then a benign job passed; {timings}")


@needs_bwrap
def test_no_secret_reaches_the_store_or_the_outcomes(hostile_run: HostileRun) -> None:
    stored = b"\n".join(hostile_run.after.values())
    reported = hostile_run.summary.model_dump_json().encode()
    for secret in [*ENV_SECRETS.values(), CREDENTIALS_SECRET]:
        assert secret.encode() not in stored and secret.encode() not in reported


@needs_bwrap
def test_nothing_stored_before_changed_and_only_this_runs_folders_appeared(hostile_run: HostileRun) -> None:
    before, after = hostile_run.before, hostile_run.after
    assert {key: after.get(key) for key in before} == before
    added = sorted(set(after) - set(before))
    allowed = ("failures/hostile_", f"staging/hostile_{len(hostile_run.scripts)}/", "runs/hostile.json")
    assert added and all(key.startswith(allowed) for key in added), [k for k in added if not k.startswith(allowed)]
    assert hostile_run.store.list_files(".tmp") == []


@needs_bwrap
def test_attacks_left_no_trace_on_the_host(hostile_run: HostileRun, listener: tuple[int, list[socket.socket]]) -> None:
    assert [path for path in hostile_run.host.traces() if path.exists()] == []
    assert listener[1] == []  # no connection ever reached the loopback server


@needs_bwrap
@pytest.mark.slow
def test_fork_bomb_and_sleeper_through_the_pipeline(
    tmp_path: Path, host_secrets: Path, listener: tuple[int, list[socket.socket]], moto_s3: MotoS3Server
) -> None:
    host = make_host(tmp_path, host_secrets, listener[0], moto_s3.endpoint_url)
    run = run_scripts(host, [host.fill(script) for script in SLOW_HOSTILE], "slow-hostile")

    for script in run.scripts:
        assert_contained(run, script)
    assert run.summary.complete and run.summary.failed == len(SLOW_HOSTILE)


@needs_bwrap
def test_a_worker_replaced_inside_a_short_lived_thread_outlives_it() -> None:
    # bubblewrap's --die-with-parent fires when the *thread* that started it exits; map_builds runs each
    # build on a thread of its own, which ends with the call.
    killer = "import os, signal, time\ndef build(seed, scale):\n    os.kill(os.getppid(), signal.SIGKILL)\n"
    nominal = BuildRequest(seed=0, scale=(1.0, 1.0, 1.0))
    with SandboxPool(workers=1, limits=LIMITS, mode=SandboxMode.BWRAP) as pool:
        crashed = pool.map_builds(killer, [nominal])
        replacement = pool._workers[0].process
        time.sleep(1.0)

        assert crashed[0].failure is not None and "worker died" in crashed[0].message
        assert replacement is not None and replacement.poll() is None, "the replacement worker was killed"
        assert not pool.run_build("x = 1\n", nominal).ok
        assert pool._workers[0].process is replacement  # served by it, not by yet another start-up


# ---------------------------------------------------------------------------------------------------
# Bad input at the library's doors: an error naming the problem and the fix, and the store untouched


@pytest.mark.parametrize(
    "fields",
    [
        {"scale": (math.nan, 1.0, 1.0)},
        {"scale": (-1.0, 1.0, 1.0)},
        {"scale": (0.0, 1.0, 1.0)},
        {"scale": (math.inf, 1.0, 1.0)},
        {"scale": (10**400, 1, 1)},
        {"scale": (1.0, 1.0)},
        {"scale": ("1", 1.0, 1.0)},
        {"seed": True},
        {"seed": 1.5},
        {"stl_tolerance_mm": 0.0},
        {"stl_angular_tolerance_rad": math.nan},
    ],
    ids=["nan-scale", "negative-scale", "zero-scale", "infinite-scale", "huge-int-scale", "two-axes", "text-scale",
         "bool-seed", "float-seed", "zero-tolerance", "nan-angle"],
)
def test_bad_build_requests_are_refused_before_reaching_a_worker(fields: dict[str, object]) -> None:
    arguments: dict[str, object] = {"seed": 0, "scale": (1.0, 1.0, 1.0)} | fields
    with pytest.raises(ConfigError, match=r"must be (3 finite numbers > 0|an integer|a finite number > 0)"):
        BuildRequest(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"seeds": 0}, "at least 1 seed"),
        ({"scale_low": 0.0}, "scale_low must be a finite number > 0"),
        ({"scale_high": math.nan}, "scale_high must be a finite number > 0"),
        ({"scale_low": -1.0}, "scale_low must be"),
        ({"scale_low": 3.0, "scale_high": 2.0}, "exceeds scale_high.*swap them"),
        ({"sim_duration_s": math.inf}, "sim_duration_s must be"),
    ],
    ids=["no-seeds", "zero-scale", "nan-scale", "negative-scale", "inverted-scales", "endless-simulation"],
)
def test_bad_harness_settings_are_refused(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        HarnessConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"tier": "tier9"}, r"unknown tier 'tier9': use one of tier1, tier2, test_dummy"),
        ({"base_seed": 1.5}, "base seed must be an integer"),
        ({"headroom": 2.5}, "headroom must be"),
        ({"count": True}, "count must be an integer"),
        ({"prompt": 42}, "the prompt must be text"),
    ],
    ids=["unknown-tier", "float-seed", "float-headroom", "bool-count", "number-prompt"],
)
def test_bad_generation_jobs_are_refused(fields: dict[str, object], problem: str) -> None:
    arguments: dict[str, object] = {"run_id": "run", "tier": "test_dummy", "count": 2} | fields
    with pytest.raises(ConfigError, match=problem):
        GenerationJob(**arguments)  # type: ignore[arg-type]


@pytest.fixture
def filled_store(tmp_path: Path) -> DatasetStore:
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    fill_store(store, tmp_path / "existing")
    return store


TRAVERSAL = ["../escape", "a/b", "/abs", "..", "a\\b", "", "x" * 65, "run\x00", ".hidden", "run/../../etc"]


@pytest.mark.parametrize("bad", TRAVERSAL, ids=repr)
def test_path_traversal_in_run_ids_scenario_ids_and_dest_is_refused(filled_store: DatasetStore, bad: str) -> None:
    before = snapshot(filled_store)
    calls = {
        "job": lambda: GenerationJob(run_id=bad, tier=Tier.TEST_DUMMY, count=1),
        "finished seeds": lambda: finished_seeds(filled_store, bad),
        "run record": lambda: read_run_record(filled_store, bad),
        "promote run": lambda: promote(filled_store, run_id=bad, dest="v1"),
        "promote ids": lambda: promote(filled_store, [f"{bad}_1"], dest="v1"),
        "promote dest": lambda: promote(filled_store, ["earlier_0"], dest=bad),
        "read manifest": lambda: read_manifest(filled_store, bad),
    }
    for what, call in calls.items():
        with pytest.raises(ConfigError, match=r"invalid (run id|scenario id|benchmark destination).*(use|expected)"):
            call()
            pytest.fail(f"{what} accepted {bad!r}")
    assert snapshot(filled_store) == before


def manifest_entry(**overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "format_version": 1,
        "scenario_id": "earlier_1",
        "run_id": "earlier",
        "seed": 1,
        "path": "benchmarks/v1/earlier_1",
        "files": ["scene.xml"],
        "promoted_at": "2026-01-01T00:00:00Z",
    }
    return entry | overrides


def benchmark_manifest(*entries: dict[str, object]) -> bytes:
    manifest = {"format_version": 1, "dest": "v1", "updated_at": "2026-01-01T00:00:00Z", "entries": list(entries)}
    return json.dumps(manifest).encode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00garbage", r"is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, r"is not valid JSON.*move the broken file aside"),
        (
            benchmark_manifest(manifest_entry(path="../../../etc/passwd")),
            r"does not match the manifest format: Value error, invalid store key",
        ),
        (benchmark_manifest(manifest_entry(scenario_id="../x_1")), r"invalid scenario id"),
        (benchmark_manifest(manifest_entry(files=["/etc/passwd"])), r"invalid store key"),
        (benchmark_manifest() .replace(b'"dest": "v1"', b'"dest": "../v1"'), r"invalid benchmark destination"),
        (benchmark_manifest(manifest_entry(seed="one")), r"does not match the manifest format"),
        (json.dumps({"format_version": 10**30, "dest": "v1"}).encode(), r"newer than .*upgrade scenario_lib"),
    ],
    ids=["not-utf8", "deep-nesting", "entry-path-traversal", "entry-id-traversal", "absolute-file", "dest-traversal",
         "wrong-type", "far-future-version"],
)
def test_a_corrupt_benchmark_manifest_is_named_and_left_alone(
    filled_store: DatasetStore, content: bytes, message: str
) -> None:
    filled_store.write_bytes("benchmarks/v1/manifest.json", content)
    before = snapshot(filled_store)
    for call in (lambda: read_manifest(filled_store, "v1"), lambda: promote(filled_store, ["earlier_0"], dest="v1")):
        with pytest.raises(StoreError, match=message) as info:
            call()
        assert "benchmarks/v1/manifest.json" in str(info.value)
    assert snapshot(filled_store) == before


@pytest.mark.parametrize(
    "content",
    [
        json.dumps(manifest_entry(format_version=2)).encode(),
        b"[" * 100_000,
        json.dumps(manifest_entry(path="/etc")).encode(),
    ],
    ids=["future-entry", "deep-entry", "entry-path-traversal"],
)
def test_a_corrupt_entry_file_is_named_and_left_alone(filled_store: DatasetStore, content: bytes) -> None:
    filled_store.delete("benchmarks/v1/manifest.json")  # the manifest is rebuilt from the entries
    filled_store.write_bytes("benchmarks/v1/entries/earlier_1.json", content)
    before = snapshot(filled_store)
    with pytest.raises(StoreError, match=r"benchmark entry .*earlier_1.json (is corrupt|has format_version 2).*"):
        promote(filled_store, ["earlier_0"], dest="v1")
    assert snapshot(filled_store) == before


def scenario_manifest(**overrides: object) -> bytes:
    manifest: dict[str, object] = {
        "id": "resumed_0",
        "tier": "test_dummy",
        "family": "push_box",
        "prompt": "p",
        "author": "offline:default",
        "seed": 0,
        "scale": [1.0, 1.0, 1.0],
        "objective": "o",
        "passed": True,
        "stage_reached": "task",
        "script_sha256": "0" * 64,
    }
    return json.dumps(manifest | overrides).encode()


GOOD_REPORT = json.dumps({"script_sha256": "0" * 64, "seeds": []}).encode()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"manifest.json": b"{not json"}, r"scenario manifest .*manifest.json is not valid JSON.*delete it"),
        ({"manifest.json": b"[" * 100_000}, r"scenario manifest .*is not valid JSON"),
        ({"manifest.json": scenario_manifest(seed="zero")}, r"does not match the manifest format.*delete it"),
        ({"manifest.json": scenario_manifest(format_version=2)}, r"format_version 2, newer .*upgrade scenario_lib"),
        ({"manifest.json": None}, r"committed scenario folder .*staging/resumed_0 is incomplete.*delete it"),
        ({"validation.json": b"{}"}, r"validation report .*validation.json is corrupt.*delete it"),
    ],
    ids=["not-json", "deep-nesting", "wrong-type", "future-version", "missing-manifest", "corrupt-report"],
)
def test_a_corrupt_scenario_folder_stops_a_resume_with_the_fix(
    filled_store: DatasetStore, tmp_path: Path, files: dict[str, bytes | None], message: str
) -> None:
    folder = make_scenario_folder(
        tmp_path / "resumed", extra={"manifest.json": scenario_manifest(), "validation.json": GOOD_REPORT}
    )
    for name, data in files.items():
        if data is None:
            (folder / name).unlink()
        else:
            (folder / name).write_bytes(data)
    commit_scenario(filled_store, folder, "staging/resumed_0")
    before = snapshot(filled_store)
    # Neither the validator nor the model is reached: the run stops while it looks for finished seeds.
    context = GenerationContext(
        store=filled_store, validator=None, chat_model=None, provider="none", model=None  # type: ignore[arg-type]
    )

    with pytest.raises(StoreError, match=message):
        run_generation(context, GenerationJob(run_id="resumed", tier=Tier.TEST_DUMMY, count=2))
    if "manifest.json" in files:
        with pytest.raises(StoreError, match=message.split(".*")[0] if files["manifest.json"] else "manifest.json"):
            read_scenario_folder_manifest(filled_store, tmp_path / "downloaded")
    assert snapshot(filled_store) == before


def read_scenario_folder_manifest(store: DatasetStore, local: Path) -> object:
    """`artifacts.read_manifest` on a downloaded copy of the folder."""
    from scenario_lib.validation.artifacts import read_manifest as read_folder_manifest

    store.get_prefix("staging/resumed_0", local)
    return read_folder_manifest(local)


def test_a_scenario_folder_manifest_round_trips_and_refuses_newer_formats(tmp_path: Path) -> None:
    from scenario_lib.validation.artifacts import parse_scenario_manifest

    assert parse_scenario_manifest(scenario_manifest(), url="x").id == "resumed_0"
    with pytest.raises(StoreError, match=r"format_version 7, newer"):
        parse_scenario_manifest(scenario_manifest(format_version=7), url="x")


def box_stl() -> bytes:
    import io

    import trimesh

    buffer = io.BytesIO()
    trimesh.creation.box(extents=(20, 20, 20)).export(buffer, file_type="stl")
    return buffer.getvalue()


def with_first_vertex(stl: bytes, x: float, y: float, z: float) -> bytes:
    import struct

    data = bytearray(stl)
    struct.pack_into("<fff", data, 84 + 12, x, y, z)
    return bytes(data)


def one_cube() -> Scenario:
    from scenario_lib.contract import FREE, Body, Box, InsideZone, Zone

    return Scenario(
        family="x",
        objective="o",
        bodies=(Body(name="cube", motion=FREE, primitives=(Box(half_size_mm=(10, 10, 10)),)),),
        success=InsideZone(body="cube", zone=Zone(name="g", center_mm=(100, 0, 0), half_extents_mm=(10, 10, 10))),
    )


MALFORMED_STL = {
    "empty": (b"", "fewer than a binary STL header"),
    "ascii-stl": (b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\n" * 2, "declares"),
    "garbage": (b"\xff" * 1000, "declares 4294967295 triangles"),
    "truncated": (box_stl()[:-10], "declares 12 triangles"),
    "nan-vertex": (with_first_vertex(box_stl(), math.nan, math.nan, math.nan), "not watertight"),
    "infinite-vertex": (with_first_vertex(box_stl(), math.inf, 0, 0), "not watertight"),
    "huge-vertex": (with_first_vertex(box_stl(), 3e38, 0, 0), "beyond ±1e+09 mm"),
    "one-degenerate-triangle": (box_stl()[:80] + (1).to_bytes(4, "little") + bytes(50), "degenerate triangles"),
    "no-triangles": (box_stl()[:80] + bytes(4), "empty mesh (0 triangles)"),
}


@pytest.mark.parametrize("case", list(MALFORMED_STL), ids=list(MALFORMED_STL))
def test_malformed_stl_fails_the_geometry_stage_naming_the_body(case: str) -> None:
    from scenario_lib.scene.geometry import PartCheck, geometry_stage

    data, problem = MALFORMED_STL[case]
    honest_check = PartCheck(1, True, 8000.0, False, (-10.0, -10.0, -10.0), (10.0, 10.0, 10.0))

    stage = geometry_stage({"cube": honest_check}, {"cube": data})

    assert stage.verdict is Verdict.FAIL and "body 'cube'" in stage.message and problem in stage.message


MALFORMED_MJCF: dict[str, tuple[bytes | str, bytes | None, str]] = {
    "nul-and-garbage": ("\x00\ufffd garbage", None, "XML syntax error"),
    "truncated": (b"<mujoco><worldbody><body name=", None, "XML syntax error"),
    "wrong-root": (b"<robot/>", None, "No matching global declaration"),
    "external-entity": (
        b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY e SYSTEM "file:///etc/passwd">]><mujoco model="&e;"/>',
        None,
        "Entity 'e' not defined",
    ),
    "entity-expansion-bomb": (
        b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            f'<!ENTITY {n} "{("&" + p + ";") * 10}">'.encode() for p, n in zip("abcdef", "bcdefg")
        )
        + b']><mujoco model="&g;"/>',
        None,
        "amplification",
    ),
    "nan-timestep": ("timestep", None, "'nan' is not a valid value"),
    "garbage-mesh": ("scene", b"\xff" * 200, "stl_decoder"),
    "missing-mesh": ("scene", b"", "Error opening file 'meshes/cube.stl'"),
    "nan-mesh": ("scene", with_first_vertex(box_stl(), math.nan, 0, 0), "not finite"),
}


@pytest.mark.parametrize("case", list(MALFORMED_MJCF), ids=list(MALFORMED_MJCF))
def test_malformed_mjcf_fails_the_mjcf_stage_with_the_reason(case: str, tmp_path: Path) -> None:
    from scenario_lib.config import PACKAGED_MJCF_SCHEMA
    from scenario_lib.scene.mjcf import assemble_mjcf, mjcf_stage

    xml, mesh, problem = MALFORMED_MJCF[case]
    scenario = one_cube()
    scene = assemble_mjcf(scenario, {})
    if xml == "timestep":
        xml = scene.replace('timestep="0.002"', 'timestep="nan"').encode()
    elif xml == "scene":
        xml = scene.encode()
    mesh = box_stl() if mesh is None else mesh
    assets = {"meshes/cube.stl": mesh} if mesh else {}
    text = xml if isinstance(xml, str) else xml.decode("utf-8")

    stage, model = mjcf_stage(text, assets, scenario, PACKAGED_MJCF_SCHEMA)

    assert stage.verdict is Verdict.FAIL and model is None
    assert problem in stage.message


def test_a_mesh_that_crashed_manifold3d_is_a_failed_check_not_a_dead_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "crash.stl").write_bytes(MANIFOLD3D_SEGFAULT_STL)
    probe = "import sys; from scenario_lib.scene.geometry import check_mesh; print(check_mesh(open(sys.argv[1], 'rb').read()))"
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "crash.stl")], capture_output=True, text=True, cwd=REPO, timeout=120
    )

    assert done.returncode == 0, f"check_mesh died with {done.returncode}: {done.stderr[-500:]}"
    assert "beyond ±1e+09 mm" in done.stdout and "manifold_status='NotChecked'" in done.stdout
