"""`flows.slots.HeldSlots` against a real Prefect server (`prefect_test_harness`): a run's seeds reuse its leases,
the leases outlive the task runs that took them, the global limit still caps every run, and a lapsed lease is
replaced."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.testing.utilities import prefect_test_harness

from flows.slots import HeldSlot, HeldSlots
from scenario_lib.errors import ConfigError

LIMIT = "slots-test"
SLOTS = 3


def active_slots() -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(LIMIT).active_slots


def lease_is_live(slot: HeldSlot) -> bool:
    with get_client(sync_client=True) as client:
        try:
            client.renew_concurrency_lease(lease_id=slot.lease_id, lease_duration=60)
        except Exception:
            return False
    return True


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    saved = os.environ.get("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS")
    os.environ["PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS"] = "1"
    try:
        with prefect_test_harness(server_startup_timeout=120):
            with get_client(sync_client=True) as client:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=LIMIT, limit=SLOTS))
            yield
    finally:
        if saved is None:
            os.environ.pop("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS", None)
        else:
            os.environ["PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS"] = saved


def test_seeds_in_turn_reuse_one_lease_and_close_gives_it_back(prefect_api: None) -> None:
    with HeldSlots(LIMIT, 2) as slots:
        for _ in range(5):
            slot = slots.take()
            assert active_slots() == 1
            slots.give_back(slot)
        assert slots.leases_taken == 1
    assert active_slots() == 0
    with pytest.raises(RuntimeError, match="the run has ended"):
        slots.take()


def test_a_lease_taken_inside_a_task_run_outlives_it(prefect_api: None) -> None:
    # Prefect releases the leases a task run takes when the task run ends, unless they are taken outside its
    # ConcurrencyContext: the flow run's slots must survive the seed task that first needed them.
    slots = HeldSlots(LIMIT, 1)
    taken: list[HeldSlot] = []

    @task
    def seed() -> None:
        slot = slots.take()
        taken.append(slot)
        slots.give_back(slot)

    @flow
    def run() -> None:
        seed()
        seed()

    try:
        run()
        assert slots.leases_taken == 1 and taken[0] is taken[1]
        assert active_slots() == 1 and lease_is_live(taken[0])
    finally:
        slots.close()
    assert active_slots() == 0 and not lease_is_live(taken[0])


def test_runs_share_the_global_limit(prefect_api: None) -> None:
    first, second = HeldSlots(LIMIT, 2), HeldSlots(LIMIT, 2)
    try:
        held = [first.take(), first.take(), second.take()]
        assert active_slots() == SLOTS
        got: list[HeldSlot] = []
        waiter = threading.Thread(target=lambda: got.append(second.take()), daemon=True)
        waiter.start()
        time.sleep(3)  # several 1-s polls of the limit: the limit is full, the second run waits
        assert not got and waiter.is_alive()
        first.give_back(held[0])  # a slot given back to its run stays that run's
        time.sleep(2)
        assert not got
        first.close()  # the run ends: its slots go back to the server, and the waiting run gets one
        waiter.join(timeout=30)
        assert got and active_slots() == SLOTS - 1
        assert second.leases_taken == 2
    finally:
        first.close()
        second.close()
    assert active_slots() == 0


def test_a_run_never_holds_more_than_its_lanes(prefect_api: None) -> None:
    with HeldSlots(LIMIT, 1) as slots:
        slot = slots.take()
        got: list[HeldSlot] = []
        waiter = threading.Thread(target=lambda: got.append(slots.take()), daemon=True)
        waiter.start()
        time.sleep(1)
        assert not got and active_slots() == 1  # the second seed waits for the first one's slot
        slots.give_back(slot)
        waiter.join(timeout=10)
        assert got == [slot] and slots.leases_taken == 1


def test_a_lapsed_lease_is_replaced_by_a_fresh_one(prefect_api: None) -> None:
    with HeldSlots(LIMIT, 1) as slots:
        slot = slots.take()
        slot.lapsed.set()  # as when the renewals failed for longer than the lease
        slots.give_back(slot)
        fresh = slots.take()
        assert fresh is not slot and slots.leases_taken == 2
        slots.give_back(fresh)


def test_a_busy_server_is_asked_again_within_a_fraction_of_a_second(prefect_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # A local SQLite server answers 503 when a write loses a race for the database; Prefect's client would
    # sleep 2 s on each. Two 503s are injected in front of the real server's answer.
    send = httpx.Client.send
    busy_answers: list[float] = []

    def busy_twice(client: httpx.Client, request: httpx.Request, **kwargs: object) -> httpx.Response:
        if request.url.path.endswith("/increment-with-lease") and len(busy_answers) < 2:
            busy_answers.append(time.monotonic())
            return httpx.Response(503, json={"exception_message": "Service Unavailable"}, request=request)
        return send(client, request, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.Client, "send", busy_twice)
    with HeldSlots(LIMIT, 1) as slots:
        started = time.monotonic()
        slot = slots.take()
        waited_s = time.monotonic() - started
        assert len(busy_answers) == 2 and active_slots() == 1
        slots.give_back(slot)
    assert waited_s < 1.0, f"two busy answers held the seed {waited_s:.2f} s out of its slot"
    assert active_slots() == 0


def test_a_missing_limit_is_a_config_error_naming_the_fix(prefect_api: None) -> None:
    with HeldSlots("no-such-limit", 1) as slots:
        with pytest.raises(ConfigError, match="prefect gcl create no-such-limit"):
            slots.take()


def test_a_connection_the_server_closed_is_asked_again(prefect_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # A pooled keep-alive connection the server closed fails the next request with RemoteProtocolError;
    # Prefect's client retries it, and so must the lease writes that bypass its retries.
    send = httpx.Client.send
    dropped: list[str] = []

    def drop_once(client: httpx.Client, request: httpx.Request, **kwargs: object) -> httpx.Response:
        if request.url.path.endswith("-with-lease") and request.url.path not in dropped:
            dropped.append(request.url.path)
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return send(client, request, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.Client, "send", drop_once)
    with HeldSlots(LIMIT, 1) as slots:
        slots.give_back(slots.take())
        assert active_slots() == 1
    assert active_slots() == 0
    assert sorted(dropped) == ["/api/v2/concurrency_limits/decrement-with-lease", "/api/v2/concurrency_limits/increment-with-lease"]
