"""Group commit: concurrent saves share one transaction.

Appending to the log takes the events table's lock until COMMIT (eventsourcing's way of making
positions commit in order), so saves are serialised and each pays its own WAL flush: one API
process tops out near one save per flush however many requests wait. Here, saves that arrive
while a transaction is in flight wait for it and then go together in the next one: one lock,
one flush for all of them.

Each save stays atomic on its own: if a shared transaction fails (one save conflicts with the
log, say), every save in it is retried alone, so only the one at fault sees the error."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# Writes a list of items in one transaction; returns one position per item.
WriteAll = Callable[[Sequence[T]], Sequence[int]]


class _Save(Generic[T]):
    __slots__ = ("done", "error", "items", "lead", "positions")

    def __init__(self, items: Sequence[T]) -> None:
        self.items = items
        self.done = threading.Event()
        self.lead = False  # woken to lead the next transaction rather than with a result
        self.positions: Sequence[int] = ()
        self.error: BaseException | None = None


class GroupCommit(Generic[T]):
    def __init__(self, write_all: WriteAll[T], *, max_items: int = 5_000) -> None:
        self._write_all = write_all
        self._max_items = max_items  # bounds one shared transaction (a bulk batch goes alone)
        self._lock = threading.Lock()
        self._queue: list[_Save[T]] = []
        self._busy = False

    def write(self, items: Sequence[T]) -> Sequence[int]:
        """Write ``items`` atomically (alone or with other saves); their positions."""
        if not items:
            return ()
        save = _Save(items)
        with self._lock:
            self._queue.append(save)
            lead = not self._busy
            self._busy = True
        try:
            while not lead:
                save.done.wait()
                if not save.lead:
                    break
                save.lead, lead = False, True
                save.done.clear()
        except BaseException:
            self._abandon(save, leading=lead)
            raise
        if lead:
            self._lead()
        if save.error is not None:
            raise save.error
        return save.positions

    def _abandon(self, save: _Save[T], *, leading: bool) -> None:
        """A waiting save's thread was interrupted: take its save out of the queue (it is
        not written), and pass the lead on if it had been handed to it."""
        with self._lock:
            if save in self._queue:
                self._queue.remove(save)
            if leading or save.lead:
                save.lead = False
                self._hand_over()

    def _hand_over(self) -> None:
        """Wake the next waiting save to lead, or mark the writer idle (lock held)."""
        if self._queue:
            nxt = self._queue[0]
            nxt.lead = True
            nxt.done.set()
        else:
            self._busy = False

    def _lead(self) -> None:
        """Write one group from the queue, then hand the lead to the next waiting save."""
        group: list[_Save[T]] = []
        try:
            with self._lock:
                size = 0
                while self._queue and (
                    not group or size + len(self._queue[0].items) <= self._max_items
                ):
                    size += len(self._queue[0].items)
                    group.append(self._queue.pop(0))
            self._write_group(group)
        finally:
            with self._lock:
                self._hand_over()
            for save in group:
                if not save.positions and save.error is None:
                    # Interrupted mid-write (a BaseException): never report "nothing saved".
                    save.error = RuntimeError("the save was interrupted; its outcome is unknown")
                save.done.set()

    def _write_group(self, group: list[_Save[T]]) -> None:
        if len(group) > 1:
            try:
                positions = self._write_all([item for save in group for item in save.items])
            except Exception:
                log.debug("a shared transaction failed; retrying its saves one by one")
            else:
                offset = 0
                for save in group:
                    save.positions = positions[offset : offset + len(save.items)]
                    offset += len(save.items)
                return
        for save in group:
            try:
                save.positions = self._write_all(save.items)
            except Exception as exc:  # handed to the thread that saved
                save.error = exc
