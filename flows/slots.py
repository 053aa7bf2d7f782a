"""Slots of the global generation limit that a flow run holds for its seed tasks, reused seed after seed.

Taking a slot of a global limit is a write on the Prefect server (the lease, then its first renewal),
and giving it back another. On the local stack's SQLite server those writes queue for the database
lock behind the run's own state, log and event writes: taking one slot per seed kept the median seed
task 1.4–2.0 s out of its slot, and the slots 40 % idle, through the deployment (count 60–150, 4 slots).

A `HeldSlots` instead takes at most ``lanes`` leases for one flow run, the first time its seeds need
them, and keeps each for the next seed when one finishes; it gives them all back when the run ends.
The global limit still caps the seeds that generate at once: a seed generates only while it holds one
of the run's leases, and a run holds at most ``lanes`` (``max_concurrency``) of the limit's slots. The
price is fairness at the grain of a run instead of a seed: while a run has seeds left it keeps its
slots, so a second run waits for them until the first one's last seeds (a Prefect server grants slots
to whoever polls first in either case, not in order).

Each lease is short (`LEASE_DURATION_S`) and renewed by a daemon thread: a flow-run process that dies
without giving its slots back frees them on the server within that time. A renewal that fails for
good (the server gone for longer than the lease) drops the lease: the seed running under it finishes,
and the next seed takes a fresh one.

The lease writes are this module's own requests, not Prefect's `concurrency()`: a server on SQLite answers a
write that loses a race for the database with 503, which Prefect's client meets with a fixed 2-s sleep; the
run's first lease requests race its task-run writes and met one nearly every time (four seeds held out of
their slots for ~2 s of a ~6-s count-10 run). `_post_retrying_busy` asks again after 50 ms instead.

Only seeds on the flow-run process's own threads use it; a Dask worker may outlive the run, so a seed
there takes and gives back a slot of its own (see `flows.seeds.generate_seed_task`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from uuid import UUID

import httpx
from prefect.client.base import PrefectHttpxSyncClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.logging.loggers import get_logger

from scenario_lib.errors import ConfigError

LEASE_DURATION_S = 60.0
RENEW_EVERY_S = 20.0  # a third of the lease: two renewals may fail before it lapses
# A busy server (503) is asked again after 50 ms, then 100, 200, ... up to 2 s apart, for 60 s in all.
RETRY_BUSY_FIRST_S = 0.05
RETRY_BUSY_MAX_S = 2.0
RETRY_BUSY_FOR_S = 60.0

logger = get_logger("flows.slots")


@dataclass
class HeldSlot:
    """One lease of one slot, renewed by its own thread until it is given back (or lapses)."""

    lease_id: UUID
    stopped: threading.Event = field(default_factory=threading.Event)
    lapsed: threading.Event = field(default_factory=threading.Event)
    _renewal: threading.Thread | None = field(default=None, init=False, repr=False)

    def keep_renewed(self) -> None:
        self._renewal = threading.Thread(target=self._renew, name=f"generation-slot-{self.lease_id}", daemon=True)
        self._renewal.start()

    def stop_renewing(self, *, wait_s: float = 0.0) -> None:
        self.stopped.set()
        if self._renewal is not None and wait_s > 0:
            self._renewal.join(timeout=wait_s)

    def _renew(self) -> None:
        failures = 0
        with get_client(sync_client=True) as client:
            while not self.stopped.wait(RENEW_EVERY_S):
                try:
                    client.renew_concurrency_lease(lease_id=self.lease_id, lease_duration=LEASE_DURATION_S)
                    failures = 0
                except Exception as err:  # the server is unreachable or forgot the lease: retry until it lapses
                    failures += 1
                    if failures * RENEW_EVERY_S >= LEASE_DURATION_S:
                        logger.warning(
                            "the generation slot lease %s could not be renewed for %.0f s (%s: %s); it has lapsed, "
                            "and the next seed takes a new one",
                            self.lease_id, failures * RENEW_EVERY_S, type(err).__name__, err,
                        )  # fmt: skip
                        self.lapsed.set()
                        return


class HeldSlots:
    """Up to ``lanes`` slots of the global limit ``limit_name``, held for one flow run's seeds (see the module doc).

    `take` hands a seed a held slot, taking a new lease (waiting on the global limit like Prefect's own
    `concurrency`) only while the run holds fewer than ``lanes``, else waiting for a seed to give one back;
    `give_back` returns it for the next seed; `close` gives the leases back to the server. Seed tasks on
    several threads share one.
    """

    def __init__(self, limit_name: str, lanes: int, *, flow_run_id: UUID | None = None) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes}")
        self.limit_name = limit_name
        self.lanes = lanes
        self._holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run_id) if flow_run_id else None
        self._changed = threading.Condition()
        self._free: list[HeldSlot] = []
        self._held: dict[UUID, HeldSlot] = {}
        self._acquiring = 0  # leases being asked for, not granted yet
        self._closed = False
        self.leases_taken = 0  # how many leases the server granted this run

    def take(self) -> HeldSlot:
        """A slot for one seed: a held one that is free, or a new lease (which may wait for the global limit)."""
        lapsed: list[HeldSlot] = []
        with self._changed:
            while True:
                if self._closed:
                    raise RuntimeError(f"the generation slots of {self.limit_name!r} were given back: the run has ended")
                while self._free:
                    slot = self._free.pop()
                    if not slot.lapsed.is_set():
                        return slot
                    if self._forget(slot):
                        lapsed.append(slot)
                if len(self._held) + self._acquiring < self.lanes:
                    self._acquiring += 1
                    break
                self._changed.wait()
        for slot in lapsed:
            self._release(slot)
        try:
            lease_id = self._acquire_lease()
        except BaseException:
            with self._changed:
                self._acquiring -= 1
                self._changed.notify()
            raise
        slot = HeldSlot(lease_id)
        slot.keep_renewed()
        with self._changed:
            self._acquiring -= 1
            self._held[slot.lease_id] = slot
            self.leases_taken += 1
        return slot

    def give_back(self, slot: HeldSlot) -> None:
        """Return a seed's slot for the next seed (a lapsed one is dropped, so a fresh lease replaces it)."""
        with self._changed:
            keep = not (slot.lapsed.is_set() or self._closed)
            if keep:
                self._free.append(slot)
            # After close the lease is given back already, unless it was granted while close ran.
            release = not keep and self._forget(slot)
            self._changed.notify()
        if release:
            self._release(slot)

    def close(self) -> None:
        """Give every held lease back to the server, a slot still handed to a seed included."""
        with self._changed:
            self._closed = True
            held = list(self._held.values())
            self._held.clear()
            self._free.clear()
            self._changed.notify_all()
        for slot in held:
            slot.stop_renewing(wait_s=5)
            self._release(slot)

    def _acquire_lease(self) -> UUID:
        """A new lease of one slot, waiting on the global limit (as long as it takes), that outlives the seed
        task asking for it: taken straight from the server, so no task run's `ConcurrencyContext` records it
        (Prefect releases what a task run's context holds when the task run ends)."""
        body: dict[str, Any] = {"names": [self.limit_name], "slots": 1, "mode": "concurrency", "lease_duration": LEASE_DURATION_S}
        if self._holder is not None:
            body["holder"] = self._holder.model_dump(mode="json")
        while True:
            try:
                response = _post_retrying_busy("/v2/concurrency_limits/increment-with-lease", body)
            except httpx.HTTPStatusError as err:
                if err.response.status_code != httpx.codes.LOCKED:
                    raise
                # Every slot is taken: the server says when to ask again (its slots' average occupancy, capped).
                time.sleep(float(err.response.headers.get("Retry-After", RETRY_BUSY_MAX_S)))
                continue
            granted = response.json()
            if not granted.get("limits"):  # strict: a missing or disabled limit must not let the seed run unlimited
                raise ConfigError(
                    f"the global concurrency limit {self.limit_name!r} is missing or disabled on the Prefect server; "
                    f"create it with `prefect gcl create {self.limit_name} --limit <slots>` (scripts/stack.sh up does)"
                )
            return UUID(granted["lease_id"])

    def _forget(self, slot: HeldSlot) -> bool:
        """Stop holding ``slot`` (the caller holds the lock); whether it was held, so its lease is the caller's
        to give back."""
        slot.stop_renewing()
        return self._held.pop(slot.lease_id, None) is not None

    @staticmethod
    def _release(slot: HeldSlot) -> None:
        """Give a lease back to the server; one that lapsed may be gone already, which is fine."""
        try:
            _post_retrying_busy("/v2/concurrency_limits/decrement-with-lease", {"lease_id": str(slot.lease_id)})
        except Exception as err:  # the server forgot it, or lets it lapse by itself
            if not slot.lapsed.is_set():
                logger.warning(
                    "could not give back generation slot lease %s (%s: %s); it lapses within %.0f s",
                    slot.lease_id, type(err).__name__, err, LEASE_DURATION_S,
                )  # fmt: skip

    def __enter__(self) -> HeldSlots:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


def _post_retrying_busy(path: str, body: dict[str, Any]) -> httpx.Response:
    """POST ``body`` to the Prefect API at ``path``, asking again soon while the server answers 503 (busy);
    any other error status is raised as `httpx.HTTPStatusError`.

    A local server on SQLite answers 503 when a write transaction loses a race for the database (SQLITE_BUSY
    at once, whatever its busy timeout), and the lease writes race the run's own task-run writes at its
    start: measured on the local stack, the run's first lease request met one nearly every time. Prefect's
    client answers a 503 by sleeping 2 s (2**1, its fixed exponential base) before it asks again or, with
    no retries left, gives up, which held all four seeds of a count-10 run out of their slots for ~2 s.
    So each attempt is one plain httpx send on Prefect's own configured client (its base URL, auth headers
    and CSRF token), asked again after 50 ms, doubling up to `RETRY_BUSY_MAX_S`, for `RETRY_BUSY_FOR_S`.
    The transport errors Prefect's client retries are retried the same way: above all a pooled connection
    the server closed after its keep-alive (`RemoteProtocolError: Server disconnected`).
    """
    delay_s = RETRY_BUSY_FIRST_S
    deadline = time.monotonic() + RETRY_BUSY_FOR_S
    with get_client(sync_client=True) as client:
        http = client._client  # prefect 3.8's PrefectHttpxSyncClient (pinned in pyproject.toml)
        assert isinstance(http, PrefectHttpxSyncClient), f"unexpected Prefect client {type(http).__name__}"
        while True:
            request = http.build_request("POST", path, json=body)
            if http.enable_csrf_support:
                http._add_csrf_headers(request)
            try:
                response = httpx.Client.send(http, request)  # httpx's own send: one attempt, no 2-s sleep
            except _RETRIED_TRANSPORT_ERRORS:
                if time.monotonic() + delay_s > deadline:
                    raise
            else:
                if response.status_code != httpx.codes.SERVICE_UNAVAILABLE or time.monotonic() + delay_s > deadline:
                    return response.raise_for_status()
            time.sleep(delay_s)
            delay_s = min(2 * delay_s, RETRY_BUSY_MAX_S)


# What Prefect 3.8's client retries (prefect/client/base.py), ConnectError included: the lease writes only
# run once the run has reached the server.
_RETRIED_TRANSPORT_ERRORS = (
    httpx.ReadTimeout,
    httpx.PoolTimeout,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.LocalProtocolError,
    httpx.ConnectError,
)


__all__ = ["LEASE_DURATION_S", "HeldSlot", "HeldSlots"]
