"""`scenarios serve-validation`: the long-lived validator that flow runs on this machine share."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scenario_lib.cli.app import app, fail, load_cli_settings, run_guarded
from scenario_lib.cli.output import console

if TYPE_CHECKING:
    from scenario_lib.validation.service import ValidationServer


@app.command("serve-validation")
def serve_validation(
    socket_path: Annotated[Path, typer.Option("--socket", help="Where to listen (its folder is made private, mode 0700).")],
) -> None:
    """Keep warm sandbox and check workers and validate for every flow run and CLI call that sets
    SCENARIOS_VALIDATION__SERVICE_SOCKET to --socket; stops on SIGTERM or Ctrl-C."""
    import logging

    settings = load_cli_settings()
    # One line per validation in the service's log (the stack keeps it in .state/logs/validation.log).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.validation.service_socket is not None:
        fail("SCENARIOS_VALIDATION__SERVICE_SOCKET is set in this environment: a service would forward to itself; unset it here")

    def start() -> ValidationServer:
        from scenario_lib.runs.generation import hidden_paths_of, make_sandbox_pool
        from scenario_lib.store.dataset import DatasetStore
        from scenario_lib.validation.check_pool import CheckPool
        from scenario_lib.validation.service import ValidationServer

        store = DatasetStore.from_settings(settings.store)
        # Its workers live as long as the service: they back their memory with huge pages at once.
        pool = make_sandbox_pool(settings, hidden_paths=hidden_paths_of(store), huge_pages_after_jobs=0)
        server = ValidationServer(socket_path, pool, CheckPool(settings.validation.check_workers))
        server.warm_up()
        return server

    server = run_guarded(start)
    stop = threading.Event()
    for sign in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sign, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, name="validation-service", daemon=True)
    serving.start()
    console.print(f"validation service ready on {server.socket_path}", highlight=False)
    stop.wait()
    server.shutdown()
    server.server_close()
    console.print("validation service stopped", highlight=False)
