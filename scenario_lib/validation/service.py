"""A long-lived validator that flow runs share: warm sandbox and check workers behind a Unix socket.

Starting a validator costs seconds (each sandbox worker imports build123d, each check worker MuJoCo
and trimesh). A flow run that starts its own pays that every time; the stack instead starts one
`ValidationServer` per machine (``scenarios serve-validation``), and every flow run and CLI call with
``SCENARIOS_VALIDATION__SERVICE_SOCKET`` set validates through a `RemoteValidator`.

Only the same user can reach it: the socket lives in a folder of mode 0700 that the server creates
(or refuses when it exists with a looser mode or another owner), and the socket itself is 0600.
Requests and answers are pickled, which is safe between processes of one user; the untrusted script
travels as text and runs only in the server's sandbox. Each request carries the caller's harness
settings, so runs with different settings share one server. A server that dies or hangs gives the
caller a `SandboxError` (which the run drivers retry), never a hung run.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import socketserver
import stat
import struct
import threading
from pathlib import Path
from typing import Any

from scenario_lib.closing import Closing
from scenario_lib.errors import ConfigError, SandboxError, ScenarioError
from scenario_lib.report import ValidationReport
from scenario_lib.sandbox.pool import SandboxPool
from scenario_lib.validation.check_pool import CheckPool
from scenario_lib.validation.pipeline import HarnessConfig, SeedValidation, Validator

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("!Q")
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
# A validation of 8 seeds takes seconds; far beyond this the server is hung, not busy.
DEFAULT_TIMEOUT_S = 900.0
# Unix socket paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH_BYTES = 107


def _send(connection: socket.socket, message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    connection.sendall(_LENGTH.pack(len(data)) + data)


def _receive_exactly(connection: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = connection.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError(f"connection closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def _receive(connection: socket.socket) -> Any:
    (size,) = _LENGTH.unpack(_receive_exactly(connection, _LENGTH.size))
    if size > MAX_MESSAGE_BYTES:
        raise EOFError(f"a message of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    return pickle.loads(_receive_exactly(connection, size))


def prepare_socket_path(path: Path) -> Path:
    """Make ``path``'s folder private (0700, ours) and clear a stale socket; ConfigError naming the fix."""
    path = Path(path).absolute()
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(f"the socket path {path} is longer than {MAX_SOCKET_PATH_BYTES} bytes; choose a shorter one")
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"the socket folder {folder} must belong to you with mode 0700 (it is {stat.S_IMODE(info.st_mode):o}, "
            f"owner uid {info.st_uid}); other users could reach the validator: `chmod 700 {folder}` or pick another"
        )
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"{path} exists and is not a socket; remove it or choose another socket path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: its server is gone
        else:
            raise ConfigError(f"a validation service already listens on {path}; stop it first or use another path")
        finally:
            probe.close()
    return path


class _Handler(socketserver.BaseRequestHandler):
    server: ValidationServer

    def handle(self) -> None:
        connection: socket.socket = self.request
        try:
            request = _receive(connection)
        except (EOFError, OSError, pickle.UnpicklingError) as err:
            logger.warning("dropped a malformed request: %s", err)
            return
        try:
            if request.get("op") == "ping":
                answer: tuple[str, object] = ("ok", {"pid": os.getpid(), "sandbox": self.server.pool.mode.value})
            else:
                validator = Validator(self.server.pool, request["config"], self.server.checks)
                report, base = validator.validate_script(
                    request["source"], base_seed=request["base_seed"], render_preview=request["render_preview"]
                )
                logger.info(
                    "validated script %s at base seed %d over %d seed(s): %s in %.2f s",
                    report.script_sha256[:12], request["base_seed"], len(report.seeds),
                    "passed" if report.passed else "failed", report.duration_s,
                )  # fmt: skip
                answer = ("ok", (report, base))
        except ScenarioError as err:
            answer = ("error", err)
        except Exception as err:  # an unexpected failure: the caller gets it as a SandboxError, the log the traceback
            logger.exception("validation failed unexpectedly")
            answer = ("error", SandboxError(f"the validation service failed: {type(err).__name__}: {err}"))
        try:
            _send(connection, answer)
        except OSError as err:
            logger.warning("could not answer a client (it left?): %s", err)


class ValidationServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serves validations on ``socket_path`` with one warm sandbox pool and check pool; `serve_forever` to run."""

    daemon_threads = True

    def __init__(self, socket_path: Path, pool: SandboxPool, checks: CheckPool) -> None:
        self.socket_path = prepare_socket_path(socket_path)
        self.pool, self.checks = pool, checks
        previous = os.umask(0o177)  # the socket is created 0600
        try:
            super().__init__(str(self.socket_path), _Handler)
        finally:
            os.umask(previous)

    def warm_up(self) -> None:
        """Start every sandbox and check worker now (in parallel), so the first request is served warm."""
        checks = threading.Thread(target=self.checks.warm_up, name="check-warm-up")
        checks.start()
        self.pool.warm_up()
        checks.join()

    def server_close(self) -> None:
        super().server_close()
        self.socket_path.unlink(missing_ok=True)
        self.pool.close()
        self.checks.close()


class RemoteValidator(Closing):
    """A `ScriptValidator` that validates on a `ValidationServer`, with this caller's harness settings."""

    def __init__(self, socket_path: Path, config: HarnessConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = Path(socket_path)
        self.config = config
        self.timeout_s = timeout_s

    def close(self) -> None:
        """Nothing to stop: the server outlives its callers."""

    def _ask(self, request: dict[str, Any]) -> Any:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(self.timeout_s)
        try:
            try:
                connection.connect(str(self.socket_path))
            except OSError as err:
                raise SandboxError(
                    f"no validation service answers at {self.socket_path} ({err.strerror or err}): start it with "
                    "`scripts/stack.sh up` (or `scenarios serve-validation`), or unset "
                    "SCENARIOS_VALIDATION__SERVICE_SOCKET to validate in this process"
                ) from None
            try:
                _send(connection, request)
                status, payload = _receive(connection)
            except socket.timeout:
                raise SandboxError(
                    f"the validation service at {self.socket_path} gave no answer in {self.timeout_s:.0f} s; it is "
                    "hung: restart it (`scripts/stack.sh down && scripts/stack.sh up`); the seed is retried"
                ) from None
            except (EOFError, OSError, pickle.UnpicklingError) as err:
                raise SandboxError(
                    f"the validation service at {self.socket_path} dropped the connection mid-validation ({err}); "
                    "did it crash? see its log (.state/logs/validation.log in the local stack); the seed is retried"
                ) from None
        finally:
            connection.close()
        if status == "error":
            raise payload
        return payload

    def ping(self) -> dict[str, Any]:
        """The server's process id and sandbox mode; SandboxError when none answers."""
        answer: dict[str, Any] = self._ask({"op": "ping"})
        return answer

    def validate_script(
        self, source: str, *, base_seed: int = 0, render_preview: bool = False
    ) -> tuple[ValidationReport, SeedValidation]:
        """`Validator.validate_script`, run by the server."""
        result: tuple[ValidationReport, SeedValidation] = self._ask(
            {"op": "validate", "source": source, "base_seed": base_seed, "render_preview": render_preview, "config": self.config}
        )
        return result


__all__ = ["RemoteValidator", "ValidationServer", "prepare_socket_path"]
