"""In-memory order (spoold/backends/files/queue.py): priority then age; due entries by time."""

from __future__ import annotations

from spoold.backends.files.queue import DueQueue, ReadyQueue


def drain(queue: ReadyQueue) -> list[str]:
    return [queue.pop().name for _ in range(len(queue))]


def test_higher_priority_runs_first() -> None:
    """Priority beats age: a newer high-priority job comes before older low ones."""
    queue = ReadyQueue()
    queue.push("incoming", "low.json", priority=0, enqueued_at=1.0, job=None, ready_since=0.0)
    queue.push("incoming", "high.json", priority=10, enqueued_at=3.0, job=None, ready_since=0.0)
    queue.push("incoming", "negative.json", priority=-1, enqueued_at=0.5, job=None, ready_since=0.0)
    queue.push("incoming", "mid.json", priority=5, enqueued_at=2.0, job=None, ready_since=0.0)
    assert drain(queue) == ["high.json", "mid.json", "low.json", "negative.json"]


def test_equal_priority_runs_oldest_first() -> None:
    """Within a priority, the smallest enqueued_at comes first."""
    queue = ReadyQueue()
    for name, enqueued_at in [("c", 3.0), ("a", 1.0), ("b", 2.0)]:
        queue.push(
            "incoming",
            f"{name}.json",
            priority=0,
            enqueued_at=enqueued_at,
            job=None,
            ready_since=0.0,
        )
    assert drain(queue) == ["a.json", "b.json", "c.json"]


def test_equal_priority_and_age_keep_push_order() -> None:
    """A full tie is broken by insertion order, not by name."""
    queue = ReadyQueue()
    for name in ["z", "a", "m"]:
        queue.push(
            "incoming", f"{name}.json", priority=1, enqueued_at=1.0, job=None, ready_since=0.0
        )
    assert drain(queue) == ["z.json", "a.json", "m.json"]


def test_a_location_is_queued_once() -> None:
    """Pushing the same (state, name) twice keeps one entry; after pop it can be pushed again."""
    queue = ReadyQueue()
    queue.push("incoming", "a.json", priority=0, enqueued_at=1.0, job=None, ready_since=0.0)
    queue.push("incoming", "a.json", priority=9, enqueued_at=0.0, job=None, ready_since=0.0)
    queue.push("scheduled", "a.json", priority=0, enqueued_at=1.0, job=None, ready_since=0.0)
    assert len(queue) == 2
    assert ("incoming", "a.json") in queue
    entry = queue.pop()
    assert (entry.state, entry.name) == ("incoming", "a.json")
    assert ("incoming", "a.json") not in queue
    queue.push("incoming", "a.json", priority=0, enqueued_at=1.0, job=None, ready_since=0.0)
    assert len(queue) == 2


def test_due_queue_pops_only_due_entries_in_time_order() -> None:
    """pop_due(now) returns every entry due at or before now, earliest first, and no other."""
    due = DueQueue()
    due.push("late.json", due_at=30.0, priority=0, enqueued_at=1.0)
    due.push("soon.json", due_at=10.0, priority=5, enqueued_at=2.0)
    due.push("now.json", due_at=20.0, priority=0, enqueued_at=3.0)
    assert due.next_due() == 10.0
    assert due.pop_due(5.0) == []
    popped = due.pop_due(20.0)
    assert [e.name for e in popped] == ["soon.json", "now.json"]
    assert popped[0].priority == 5
    assert popped[0].enqueued_at == 2.0
    assert "late.json" in due
    assert "now.json" not in due
    assert due.next_due() == 30.0
    assert [e.name for e in due.pop_due(100.0)] == ["late.json"]
    assert due.next_due() is None
    assert len(due) == 0


def test_due_queue_holds_a_name_once() -> None:
    """A name already waiting is not added a second time."""
    due = DueQueue()
    due.push("a.json", due_at=5.0, priority=0, enqueued_at=1.0)
    due.push("a.json", due_at=1.0, priority=0, enqueued_at=1.0)
    assert len(due) == 1
    assert "a.json" in due
    assert [e.due_at for e in due.pop_due(10.0)] == [5.0]
    assert "a.json" not in due


def test_a_ready_entry_tells_its_priority_and_age() -> None:
    """What a job that must wait again keeps: its place in the order."""
    queue = ReadyQueue()
    queue.push("scheduled", "a.json", 7, 123.5, None, 123.5)
    entry = queue.pop()
    assert (entry.priority, entry.enqueued_at) == (7, 123.5)


def test_due_queue_counts_the_entries_burst_mode_waits_for() -> None:
    """``again`` counts waiting retries, reruns and put-backs, not jobs waiting for a run_at."""
    due = DueQueue()
    due.push("retry.json", due_at=10.0, priority=0, enqueued_at=1.0, again=True)
    due.push("later.json", due_at=20.0, priority=0, enqueued_at=2.0)
    due.push("retry.json", due_at=5.0, priority=0, enqueued_at=1.0, again=True)  # held once
    assert due.again == 1
    assert [e.name for e in due.pop_due(15.0)] == ["retry.json"]
    assert due.again == 0
    assert len(due) == 1


def test_the_ready_queue_knows_when_its_longest_waiting_job_became_due() -> None:
    """Not the first in line (a high priority goes first) nor the first submitted (a retry
    keeps its place by age but became due only when its delay ran out)."""
    queue = ReadyQueue()
    assert queue.oldest_ready_since() is None
    queue.push("incoming", "urgent.json", priority=9, enqueued_at=30.0, job=None, ready_since=30.0)
    queue.push("scheduled", "retry.json", priority=0, enqueued_at=1.0, job=None, ready_since=25.0)
    queue.push("incoming", "plain.json", priority=0, enqueued_at=20.0, job=None, ready_since=20.0)
    assert queue.oldest_ready_since() == 20.0
    queue.pop()  # urgent
    queue.pop()  # retry (older by age)
    assert queue.oldest_ready_since() == 20.0
    queue.pop()
    assert queue.oldest_ready_since() is None
