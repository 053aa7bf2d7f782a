"""Prefect-side set-up and reporting for scripts/stack.sh, in one Python process (each `prefect` CLI call costs 2-3 s).

    python scripts/stack_admin.py setup --pool scenarios --template deployments/process-work-pool.json \
        --limit scenario-generation --slots 4
    python scripts/stack_admin.py report <flow run id> [--ui http://127.0.0.1:4200]

Talks to the server at PREFECT_API_URL; `report` reads the dataset store from the SCENARIOS_* settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from uuid import UUID


def setup(pool: str, template: Path, limit: str, slots: int) -> None:
    """Create or update the process work pool (with its base job template) and the global concurrency limit."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
        WorkPoolCreate,
        WorkPoolUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    base_job_template = json.loads(template.read_text(encoding="utf-8"))
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            client.update_work_pool(pool, WorkPoolUpdate(base_job_template=base_job_template))
            print(f"work pool {pool!r}: updated")
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=base_job_template))
            print(f"work pool {pool!r}: created")
        try:
            current = client.read_global_concurrency_limit_by_name(limit)
            if current.limit != slots or not current.active:
                client.update_global_concurrency_limit(limit, GlobalConcurrencyLimitUpdate(limit=slots, active=True))
                print(f"global concurrency limit {limit!r}: set to {slots} slots")
            else:
                print(f"global concurrency limit {limit!r}: {slots} slots")
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=slots))
            print(f"global concurrency limit {limit!r}: created with {slots} slots")


def report(flow_run_id: UUID, ui_url: str) -> int:
    """Print how a generate flow run ended, where its scenarios are and how to list them; 0 if it completed."""
    from prefect.client.orchestration import get_client

    from scenario_lib.config import load_settings
    from scenario_lib.store.commit import list_scenarios
    from scenario_lib.store.dataset import DatasetStore
    from scenario_lib.store.layout import STAGING_PREFIX, parse_scenario_id

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    state = flow_run.state
    run_id = flow_run.name  # the generate flow names its flow run after the run id
    settings = load_settings()
    store = DatasetStore.from_settings(settings.store)
    staged = [sid for sid in list_scenarios(store, STAGING_PREFIX) if parse_scenario_id(sid)[0] == run_id]
    print()
    print(f"flow run {flow_run.name}: {state.name if state else 'unknown'}{f' ({state.message})' if state and state.message else ''}")
    print(f"{len(staged)} scenarios staged in {store.url_for(STAGING_PREFIX)}/{run_id}_*  (S3 endpoint {store.endpoint_url or '-'})")
    print("list them:")
    print('  eval "$(scripts/stack.sh env)"; .venv/bin/scenarios list staging')
    print(f"  prefect deployment run list/default -p run_id={run_id} --watch   # a table in the UI")
    print(f"review / promote: prefect deployment run review/default -p run_id={run_id}")
    print(f"                  prefect deployment run promote/default -p run_id={run_id} --watch")
    print(f"Prefect UI: {ui_url}/runs/flow-run/{flow_run_id}  (dashboard {ui_url})")
    return 0 if state is not None and state.is_completed() else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    setup_parser = commands.add_parser("setup", help="create or update the work pool and the concurrency limit")
    setup_parser.add_argument("--pool", required=True)
    setup_parser.add_argument("--template", type=Path, required=True)
    setup_parser.add_argument("--limit", required=True)
    setup_parser.add_argument("--slots", type=int, required=True)
    report_parser = commands.add_parser("report", help="where a generate flow run put its scenarios")
    report_parser.add_argument("flow_run_id", type=UUID)
    report_parser.add_argument("--ui", default="http://127.0.0.1:4200")
    args = parser.parse_args(argv)
    if args.command == "setup":
        setup(args.pool, args.template, args.limit, args.slots)
        return 0
    return report(args.flow_run_id, args.ui.rstrip("/"))


if __name__ == "__main__":
    sys.exit(main())
