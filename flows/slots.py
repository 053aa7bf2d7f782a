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

Only seeds on the flow-run process's own threads use it; a Dask worker may outlive the run, so a seed
there takes and gives back a slot of its own (see `flows.seeds.generate_seed_task`).
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from types import TracebackType
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.context import ConcurrencyContext
from prefect.concurrency._sync import acquire_concurrency_slots_with_lease, release_concurrency_slots_with_lease
from prefect.logging.loggers import get_logger

LEASE_DURATION_S = 60.0
RENEW_EVERY_S = 20.0  # a third of the lease: two renewals may fail before it lapses

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
        """A new lease of one slot, waiting on the global limit, that outlives the seed task asking for it.

        Prefect records a lease taken inside a task run in that run's `ConcurrencyContext` and releases it
        when the task run ends; this one is the flow run's, so it is taken in a copy of the caller's context
        (its settings and client) without the task run's `ConcurrencyContext`.
        """

        def acquire() -> UUID:
            ConcurrencyContext.__var__.set(None)  # type: ignore[arg-type]  # None: get() finds no context
            response = acquire_concurrency_slots_with_lease(
                [self.limit_name], 1, lease_duration=LEASE_DURATION_S, strict=True, holder=self._holder
            )
            return response.lease_id

        return contextvars.copy_context().run(acquire)

    def _forget(self, slot: HeldSlot) -> bool:
        """Stop holding ``slot`` (the caller holds the lock); whether it was held, so its lease is the caller's
        to give back."""
        slot.stop_renewing()
        return self._held.pop(slot.lease_id, None) is not None

    @staticmethod
    def _release(slot: HeldSlot) -> None:
        """Give a lease back to the server; one that lapsed may be gone already, which is fine."""
        try:
            release_concurrency_slots_with_lease(slot.lease_id)
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


__all__ = ["LEASE_DURATION_S", "HeldSlot", "HeldSlots"]
