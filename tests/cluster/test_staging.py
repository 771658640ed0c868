"""Staging and the commits ledger without a broker: apply order, dead batches, restart skips."""

from __future__ import annotations

from cluster.commits import Ledger, encode_offsets
from cluster.record import BATCH, KIND, VIEW, LogRecord
from cluster.staging import Staging

R = "rickhouse-router-x"


def _data(p: int, off: int, batch: str | None = None) -> LogRecord:
    headers = {VIEW: b"v", KIND: b"data"}
    if batch is not None:
        headers[BATCH] = batch.encode()
    return LogRecord(p, off, headers, b"")


def _commit(batch: str, offsets: dict[int, int], off: int = 0) -> LogRecord:
    return LogRecord(0, off, {KIND: b"commit", BATCH: batch.encode()}, encode_offsets(offsets))


def _session(session: str) -> LogRecord:
    return LogRecord(0, 0, {KIND: b"session", BATCH: f"{R}/{session}".encode()}, b"")


def _drain(s: Staging, ledger: Ledger) -> list[tuple[int, str | None]]:
    out = []
    while (r := s.next_ready(ledger)) is not None:
        out.append((r.seq, r.batch))
    return out


def test_batches_apply_in_the_order_they_end_once_nothing_undecided_precedes() -> None:
    a, b = f"{R}/s1/0", "other-router/s9/0"
    ledger, s = Ledger([0]), Staging(0)
    ledger.add(_session("s1"), {})
    for off, batch in [(10, a), (11, b), (12, a), (13, b), (14, a)]:
        s.add(_data(0, off, batch), batch)
    ledger.add(_commit(b, {0: 13}), {})
    assert _drain(s, ledger) == []  # a is undecided and starts below b's end
    ledger.add(_commit(a, {0: 14}), {})
    assert _drain(s, ledger) == [(14, b), (15, a)]
    assert s.first_offset() is None and not ledger.committed


def test_a_batch_is_dead_after_a_later_batch_or_session_and_never_applied() -> None:
    ledger, s = Ledger([0, 1]), Staging(0)
    ledger.add(_session("s1"), {})
    s.add(_data(0, 5, f"{R}/s1/0"), f"{R}/s1/0")
    s.add(_data(0, 6), None)  # a plain record waits behind the undecided batch
    assert _drain(s, ledger) == [] and s.drop_dead(ledger) == []
    ledger.add(_commit(f"{R}/s1/1", {1: 3}), {})  # a later batch of the session: 0 is dead
    assert s.drop_dead(ledger) == [f"{R}/s1/0"]
    assert _drain(s, ledger) == [(7, None)]

    s.add(_data(0, 8, f"{R}/s1/2"), f"{R}/s1/2")
    assert s.drop_dead(ledger) == []
    ledger.add(_session("s2"), {})  # the router restarted: its earlier session is over
    assert s.drop_dead(ledger) == [f"{R}/s1/2"]


def test_commits_of_batches_applied_before_a_restart_are_not_kept() -> None:
    ledger, s = Ledger([0]), Staging(0)
    ledger.add(_commit(f"{R}/s1/0", {0: 4}), {0: 5})  # applied: the tablet's next seq is 5
    ledger.add(_commit(f"{R}/s1/1", {0: 9, 3: 2}), {0: 5})
    assert ledger.committed == {f"{R}/s1/1": {0: 9}}  # partition 3 is not this node's
    s.add(_data(0, 4, f"{R}/s1/0"), f"{R}/s1/0")
    s.add(_data(0, 9, f"{R}/s1/1"), f"{R}/s1/1")
    assert s.drop_dead(ledger) == [f"{R}/s1/0"]
    assert _drain(s, ledger) == [(10, f"{R}/s1/1")]


def test_a_batch_applied_in_one_partition_before_a_restart_does_not_block_it() -> None:
    b = f"{R}/s1/0"
    ledger, s = Ledger([0, 1]), Staging(0)
    ledger.add(_commit(b, {0: 4, 1: 7}), {0: 5, 1: 0})  # applied in 0, not yet in 1
    s.add(_data(0, 4, b), b)
    assert s.drop_dead(ledger) == [b]
    assert ledger.committed == {b: {1: 7}}
