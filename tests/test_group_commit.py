"""Group commit: concurrent saves share transactions, each keeps its own positions and its
own errors. The transaction here is a list under a lock that sleeps like a WAL flush."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from pim.infra.group_commit import GroupCommit


class Log:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.transactions = 0
        self.lock = threading.Lock()

    def write_all(self, items: Sequence[str]) -> list[int]:
        with self.lock:
            if any(item.startswith("bad") for item in items):
                raise ValueError("conflict: " + ",".join(i for i in items if i.startswith("bad")))
            time.sleep(0.002)  # the flush every transaction waits for
            start = len(self.items)
            self.items.extend(items)
            self.transactions += 1
            return list(range(start + 1, start + len(items) + 1))


def _run_concurrently(group: GroupCommit[str], saves: list[list[str]]) -> list[object]:
    results: list[object] = [None] * len(saves)
    barrier = threading.Barrier(len(saves))

    def save(index: int) -> None:
        barrier.wait()
        try:
            results[index] = group.write(saves[index])
        except ValueError as exc:
            results[index] = exc

    threads = [threading.Thread(target=save, args=(i,)) for i in range(len(saves))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_concurrent_saves_share_transactions_and_keep_their_own_positions() -> None:
    log = Log()
    group = GroupCommit(log.write_all)
    saves = [[f"s{i}-a", f"s{i}-b"] for i in range(32)]
    results = _run_concurrently(group, saves)
    for items, positions in zip(saves, results, strict=True):
        assert isinstance(positions, list)
        assert [log.items[p - 1] for p in positions] == items  # each save's own positions
    assert len(log.items) == 64
    assert log.transactions < 32  # saves went together


def test_a_failing_save_fails_alone() -> None:
    log = Log()
    group = GroupCommit(log.write_all)
    saves = [[f"ok{i}"] for i in range(15)] + [["bad-one"]]
    results = _run_concurrently(group, saves)
    assert isinstance(results[-1], ValueError) and "bad-one" in str(results[-1])
    assert sorted(log.items) == sorted(f"ok{i}" for i in range(15))  # nobody else lost
    assert all(isinstance(r, list) for r in results[:-1])


def test_a_lone_save_raises_its_own_error() -> None:
    group = GroupCommit(Log().write_all)
    with pytest.raises(ValueError, match="bad-x"):
        group.write(["bad-x"])
    assert group.write(["fine"]) == [1]  # the writer is not left stuck
