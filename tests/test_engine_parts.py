"""The engine's parts without processes: the run state machine (hypothesis), the queue's
reservation, the reactor's timers and the recorder's fencing against a real SQLite store."""
from __future__ import annotations

import sqlite3
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ensemble import CompositeRun, Ensemble, Step
from ensemble.engine.reactor import Reactor
from ensemble.engine.recorder import DiskFull, LeaseLost, PendingStart, Recorder
from ensemble.engine.runqueue import RunQueue
from ensemble.engine.runstate import BACKOFF_MAX, Action, KillReason, Outcome, RunState, after_step, outcome_of, retry_delay
from ensemble.providers.resources import Node, Placement, Pool
from ensemble.status import RunStatus
from ensemble.store import Store
from ensemble.store.lease import acquire


def state(steps: int = 2, step: int = 0, restarts: int = 0, shape: tuple[int, int] = (1, 1),
          run_id: int = 1) -> RunState:
    tasks, cores = shape
    steps_ = [Step(["true"], batch_script=False, tasks=tasks, cores_per_task=cores) for _ in range(steps)]
    return RunState(run_id, {}, steps_, "/tmp/r", step, restarts, 0)


# -- outcomes -----------------------------------------------------------------------------------------------
def test_an_exit_before_any_kill_keeps_its_real_outcome():
    assert outcome_of(0, None, ()) is Outcome.SUCCESS
    assert outcome_of(3, None, (3,)) is Outcome.ABORTED
    assert outcome_of(-9, None, (9,)) is Outcome.FAILURE, "a signal is not an exit code listed in abort_on"
    assert outcome_of(0, KillReason.TIMEOUT, ()) is Outcome.TIMEOUT, "a signalled step ends by its kill"
    assert outcome_of(0, KillReason.DEQUEUED, ()) is Outcome.KILLED
    assert outcome_of(-15, KillReason.INTERRUPTED, ()) is Outcome.INTERRUPTED


def test_instant_failures_back_off_and_long_runs_do_not():
    delays = [retry_delay(r, 0.01) for r in range(1, 15)]
    assert delays[0] == 0.0
    assert all(b >= a for a, b in zip(delays, delays[1:]))
    assert delays[-1] == BACKOFF_MAX
    assert retry_delay(10, 60.0) == 0.0


def test_unlimited_restarts_retry_with_growing_delay():
    run = state()
    decisions = [after_step(run, Outcome.FAILURE, 1, None, 0.0) for _ in range(6)]
    assert all(d.action is Action.RETRY for d in decisions)
    assert run.restarts == 6 and decisions[-1].delay > decisions[1].delay


class RunMachine(RuleBasedStateMachine):
    """Any sequence of attempt outcomes keeps a run's step and restarts consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = 2
        self.run = state(steps=3)
        self.done = False

    @rule(outcome=st.sampled_from(list(Outcome)), code=st.integers(-15, 5))
    def step_ends(self, outcome: Outcome, code: int) -> None:
        if self.done:
            self.run, self.done = state(steps=3), False
        before = (self.run.step, self.run.restarts)
        decision = after_step(self.run, outcome, code, self.limit, 0.0, "why")
        if decision.action is Action.NEXT_STEP or decision.action is Action.FINISH:
            assert outcome is Outcome.SUCCESS and self.run.step == before[0] + 1
        elif decision.action is Action.RETRY:
            assert self.run.restarts == before[1] + 1 and self.run.step == before[0]
        else:
            assert (self.run.step, self.run.restarts) == before
        self.done = decision.action in (Action.FINISH, Action.FAIL, Action.ABORT, Action.RELEASE)
        if decision.action is Action.FINISH:
            assert self.run.finished_steps

    @invariant()
    def restarts_are_bounded(self) -> None:
        assert 0 <= self.run.restarts <= self.limit
        assert 0 <= self.run.step <= len(self.run.steps)


TestRunMachine = RunMachine.TestCase
TestRunMachine.settings = settings(max_examples=200, stateful_step_count=20, deadline=None)


# -- the queue ----------------------------------------------------------------------------------------------
def never(run: RunState) -> bool:
    return False


def test_a_wide_step_gets_a_reservation_and_is_not_starved():
    pool = Pool((Node("n", tuple(range(4))),))
    queue = RunQueue(pool)
    wide = state(steps=1, shape=(4, 1))
    small = [state(steps=1, run_id=i) for i in range(2, 40)]
    busy = pool.allocate(1, 1, 0)
    queue.waiting.extend([wide, *small])
    placed = []
    for _ in range(30):
        picked = queue.pick(None, never)
        placed += [r.id for r, _ in picked]
        if 1 in placed:
            break
        if busy is not None:
            pool.release(busy)
            busy = None
        for _, placement in picked:
            pool.release(placement)
    assert 1 in placed, "the wide run must start once the reservation has drained the pool"
    assert len(placed) <= queue.reserve_after + 4


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=30))
def test_pick_never_oversubscribes(shapes):
    pool = Pool((Node("a", tuple(range(4))), Node("b", tuple(range(3)))))
    queue = RunQueue(pool)
    for i, shape in enumerate(shapes, start=1):
        run = state(steps=1, shape=shape)
        run.id = i
        queue.waiting.append(run)
    picked = queue.pick(None, never)
    used = [c for _, p in picked for s in p.shares for c in ((s.node, core) for core in s.cores)]
    assert len(used) == len(set(used))
    assert len(used) + sum(len(c) for c in pool.free_cores.values()) == 7


# -- the reactor --------------------------------------------------------------------------------------------
def test_cancelled_timers_do_not_fire_and_the_heap_is_pruned():
    reactor = Reactor()
    try:
        fired = []
        timers = [reactor.call_later(0.0, lambda i=i: fired.append(i)) for i in range(200)]
        for timer in timers[:150]:
            reactor.cancel(timer)
        assert len(reactor.timers) < 200, "most cancelled timers were dropped from the heap"
        reactor.fire_timers()
        assert fired == list(range(150, 200))
    finally:
        reactor.close()


# -- the recorder -------------------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    ens = Ensemble.create(runs=[CompositeRun({"x": i}, [Step(["true"], batch_script=False)]) for i in range(3)],
                          setup_dir=str(tmp_path / "s"))
    ens.close()
    st_ = Store.open(tmp_path / "s")
    yield st_
    st_.close()


def lease_for(store: Store) -> str:
    with store.transaction():
        lease, _ = acquire(store, allow_multiple=True)
    return lease.manager


def test_a_manager_whose_lease_was_taken_writes_nothing(store):
    recorder = Recorder(store, lease_for(store))
    recorder.claim(1)
    recorder.flush()
    with store.transaction():
        store.drop_lease(recorder.manager)
    recorder.batch.complete(1, RunStatus.SUCCESS, 1, 0, None, None)
    recorder.record_start(PendingStart(2, 0, 1, time.time(), ["true"], None))
    with pytest.raises(LeaseLost):
        recorder.flush()
    assert store.runs([1])[0]["status"] is RunStatus.QUEUED
    assert store.attempts() == []


def test_writes_to_a_run_claimed_by_another_manager_are_ignored(store):
    mine, other = Recorder(store, lease_for(store)), Recorder(store, lease_for(store))
    other.claim(1)
    other.flush()
    mine.claim(1)
    assert mine.flush() == {1}, "the claim of a run another manager holds loses"
    mine.batch.complete(1, RunStatus.FAILURE, 0, 0, "not mine", None)
    mine.batch.unclaim(1, 0, 0)
    mine.flush()
    row = store.runs([1])[0]
    assert row["status"] is RunStatus.QUEUED and row["claimed_by"] == other.manager


def test_claims_of_one_flush_lose_exactly_the_runs_held_elsewhere_or_completed(tmp_path):
    ens = Ensemble.create(runs=[CompositeRun({"x": i}, [Step(["true"], batch_script=False)]) for i in range(2000)],
                          setup_dir=str(tmp_path / "s"))
    ens.close()
    store = Store.open(tmp_path / "s")
    mine, other = Recorder(store, lease_for(store)), Recorder(store, lease_for(store))
    for run_id in (5, 7, 950, 1999):
        other.claim(run_id)
    other.flush()
    other.batch.complete(7, RunStatus.SUCCESS, 1, 0, None, None)  # completed: no longer claimed, not queued
    other.flush()
    for run_id in range(1, 2001):  # more ids than one statement binds
        mine.claim(run_id)
    assert mine.flush() == {5, 7, 950, 1999}
    holders = dict(store.conn.execute("SELECT id, claimed_by FROM runs").fetchall())
    assert [i for i, m in holders.items() if m == other.manager] == [5, 950, 1999]
    assert holders[7] is None and sum(m == mine.manager for m in holders.values()) == 1996
    mine.claim(3)  # already held by this manager: not lost
    assert mine.flush() == set()
    store.close()


def test_the_starts_of_a_flush_are_recorded_in_order_with_their_own_commands_and_placements(store):
    recorder = Recorder(store, lease_for(store))
    pool = Pool((Node("n1", (0, 1)),))
    first, second = pool.allocate(1, 1, 0), pool.allocate(1, 1, 0)
    equal_to_first = Placement(first.shares)
    starts = [PendingStart(1, 0, 1, 10.0, ["app", "1"], first), PendingStart(2, 0, 1, 11.0, ["app", "2"], second),
              PendingStart(3, 0, 2, 12.0, ["app", "1"], equal_to_first, chained=True),
              PendingStart(2, 0, 1, 13.0, ["other"], None)]
    for run_id in (1, 2, 3):
        recorder.claim(run_id)
    for start in starts[:3]:
        recorder.record_start(start)
    recorder.flush()
    recorder.record_start(starts[3])  # a later flush: its id follows the others
    recorder.flush()
    assert [s.attempt_id for s in starts] == [1, 2, 3, 4]
    rows = {a["id"]: a for a in store.attempts()}
    assert [(rows[s.attempt_id]["run_id"], rows[s.attempt_id]["attempt"], rows[s.attempt_id]["start"],
             rows[s.attempt_id]["command"], rows[s.attempt_id]["placement"], rows[s.attempt_id]["outcome"])
            for s in starts] == [
        (1, 1, 10.0, ["app", "1"], first.to_list(), None), (2, 1, 11.0, ["app", "2"], second.to_list(), None),
        (3, 2, 12.0, ["app", "1"], first.to_list(), "chained"), (2, 1, 13.0, ["other"], None, None)]
    assert first.to_list() != second.to_list()


def test_managers_flushing_in_turn_get_distinct_attempt_ids(store):
    mine, other = Recorder(store, lease_for(store)), Recorder(store, lease_for(store))
    mine.claim(1)
    other.claim(2)
    starts = []
    for attempt in (1, 2, 3):
        for recorder, run_id in ((mine, 1), (other, 2)):
            start = PendingStart(run_id, 0, attempt, float(attempt), ["true"], None)
            recorder.record_start(start)
            recorder.flush()
            starts.append(start)
    rows = {a["id"]: (a["run_id"], a["attempt"], a["manager"]) for a in store.attempts()}
    assert len(rows) == 6 and sorted(rows) == sorted(s.attempt_id for s in starts)
    assert [rows[s.attempt_id] for s in starts] == [
        (s.run_id, s.attempt, (mine if s.run_id == 1 else other).manager) for s in starts]


def test_a_chained_attempt_gets_its_start_and_end_whether_they_come_in_one_flush_or_two(store):
    recorder = Recorder(store, lease_for(store))
    both, apart = PendingStart(1, 0, 1, 1.0, ["true"], None, chained=True), PendingStart(2, 0, 1, 1.0, ["true"], None,
                                                                                         chained=True)
    for start in (both, apart):
        recorder.claim(start.run_id)
        recorder.record_start(start)
    recorder.flush()
    recorder.batch.chained_start(both.attempt_id, 101, 5.0)
    recorder.batch.end_attempt(both.attempt_id, 6.0, 0, None, "success")
    recorder.batch.chained_start(apart.attempt_id, 102, 5.5)
    recorder.flush()
    recorder.batch.end_attempt(apart.attempt_id, 7.0, None, 9, "failure")
    recorder.flush()
    rows = {a["run_id"]: (a["pid"], a["start"], a["end"], a["exit_code"], a["signal"], a["outcome"])
            for a in store.attempts()}
    assert rows == {1: (101, 5.0, 6.0, 0, None, "success"), 2: (102, 5.5, 7.0, None, 9, "failure")}


def test_claim_next_gives_disjoint_batches(store):
    a, b = Recorder(store, lease_for(store)), Recorder(store, lease_for(store))
    first, second = a.claim_next(2, set()), b.claim_next(2, set())
    assert first == [1, 2] and second == [3]


def test_a_full_database_is_disk_full_not_a_traceback(store):
    recorder = Recorder(store, lease_for(store))
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count={pages}")
    for i in range(2000):
        recorder.batch.event(None, "filler", {"i": i, "pad": "x" * 200})
    with pytest.raises(DiskFull, match="file system full") as raised:
        recorder.flush()
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert store.conn.execute("SELECT COUNT(*) FROM events WHERE kind='filler'").fetchone()[0] == 0
