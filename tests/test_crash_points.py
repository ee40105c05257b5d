"""Crash between steps (docs/ARCHITECTURE.md, "The rule that makes crashes harmless"): the
daemon SIGKILLs itself at each test fault point (spoold/faults.py) on each route a job can
take, is restarted without the fault, and the job still ends in exactly one record.

A daemon armed with ``SPOOLD_FAULT=<point>[:<n>]`` dies the n-th time it passes the
point. Right after its death the spool is checked to be in the state that point leaves
(so a fault that fired somewhere else, or not at all, fails the test). After the restart
the job must be filed once, with the right status, nothing left in active/ (no
``*.to-*`` marker either), an ``interrupted`` attempt in its history exactly where the
crash came while the attempt could have been running (a claim or a launch, not a move
out of active/, not a claim on the way to scheduled/ for a ``run_at`` ahead, and never
for a rejected file), and it ran no more often than its history allows.

The routes and the passes through the points:

* ``succeeded``: Recorder -> done/.
* ``failed``: a job that always fails, max_retries 0 -> failed/ (status failed).
* ``retried``: fails once, then succeeds -> scheduled/ -> done/. Pass 1 is the first
  attempt and its move to scheduled/; pass 2 (``<point>:2``) is the claim from
  scheduled/, the second attempt and its move to done/.
* ``rejected``: a method not on the allowlist -> failed/ (status rejected). Nothing is
  run, so an interrupted attempt must never appear.
* ``run_at``: a run_at 8 s ahead -> scheduled/ -> done/. Pass 1 of ``after_claim`` and
  the move points is the way to scheduled/ (the job never ran: no interrupted attempt);
  pass 1 of ``after_launch`` and pass 2 of ``after_claim`` are when it is due.

On a filesystem without ``RENAME_NOREPLACE`` (bindfs, see tests/fusefs.py) every move is
a link and then an unlink, and ``in_rename_fallback:<n>`` kills the daemon between the two
in its n-th such move: a claim (both names hold the job; recovery undoes the claim, as
nothing was started) or a marker's move out of active/ (the marker and the record share
an inode; recovery finishes the move). Either way the history is the route's own, with
no interrupted attempt.

Skipped combination, checked rather than assumed: ``rejected`` x ``after_launch``. A
refused file is claimed and filed by ``Claims.reject``
(spoold/backends/files/claims.py), which never calls ``Dispatcher.launch``; the test
still runs the armed daemon, checks it files the rejection and stays alive, and only
then skips.

The 30 combinations run side by side (``PARALLEL`` at a time, each on its own spool):
each starts two daemons, and one after the other they took over a minute.

A ``run_at`` job cut short by ``after_claim`` on its way to scheduled/ never ran, even
if the restart comes after its run_at: recovery tells by the claim time (this test
found the bug when recovery still compared with the restart time).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fusefs import bindfs
from harness import Daemon, Spool, job, read_lines, stays_false, wait_for, write_config

JOB_ID = "crash-victim"
MOVE_POINTS = ("after_marker", "after_unlink", "after_move")
RUN_AT_AHEAD = 8.0  # seconds; the restart must be ready before the run_at comes
PARALLEL = 12  # cases run side by side


@dataclass(frozen=True)
class Case:
    route: str
    point: str
    n: int = 1

    @property
    def fault(self) -> str:
        return self.point if self.n == 1 else f"{self.point}:{self.n}"

    def __str__(self) -> str:
        return f"{self.route}-{self.fault}"


# Where the job is, and with which marker, right after the daemon died at each point.
# (route, pass) -> destination of the move that pass makes out of active/.
MOVE_DESTINATION = {
    ("succeeded", 1): "done",
    ("failed", 1): "failed",
    ("retried", 1): "scheduled",
    ("retried", 2): "done",
    ("rejected", 1): "failed",
    ("run_at", 1): "scheduled",
}

# The full history expected after the restart: outcomes in order. A tuple of options
# where an interrupted attempt may or may not have got as far as running the job (a kill
# right after the launch): a Flaky that really ran then counts that run as a failure.
EXPECTED: dict[str, tuple[tuple[str, ...], ...]] = {
    "succeeded": (("ok",),),
    "succeeded-after_claim": (("interrupted", "ok"),),
    "succeeded-after_launch": (("interrupted", "ok"),),
    "failed": (("error",),),
    "failed-after_claim": (("interrupted", "error"),),
    "failed-after_launch": (("interrupted", "error"),),
    "retried": (("error", "ok"),),
    "retried-after_claim": (("interrupted", "error", "ok"),),
    "retried-after_launch": (("interrupted", "error", "ok"), ("interrupted", "ok")),
    "retried-after_claim:2": (("error", "interrupted", "ok"),),
    "retried-after_launch:2": (("error", "interrupted", "ok"),),
    "rejected": ((),),
    "run_at": (("ok",),),
    "run_at-after_launch": (("interrupted", "ok"),),
    "run_at-after_claim:2": (("interrupted", "ok"),),
    "forged": (("ok",),),
}

# On bindfs, the n-th link + unlink move of each route: ("claim", source folder) or
# ("move", destination folder of the marker).
FALLBACK_MOVES: dict[tuple[str, int], tuple[str, str]] = {
    ("succeeded", 1): ("claim", "incoming"),
    ("succeeded", 2): ("move", "done"),
    ("failed", 1): ("claim", "incoming"),
    ("failed", 2): ("move", "failed"),
    ("retried", 1): ("claim", "incoming"),
    ("retried", 2): ("move", "scheduled"),
    ("retried", 3): ("claim", "scheduled"),
    ("retried", 4): ("move", "done"),
    ("rejected", 1): ("claim", "incoming"),
    ("rejected", 2): ("move", "failed"),
    ("run_at", 1): ("claim", "incoming"),
    ("run_at", 2): ("move", "scheduled"),
    ("run_at", 3): ("claim", "scheduled"),
    ("run_at", 4): ("move", "done"),
}

UNREACHED = {
    ("rejected", "after_launch"): "a rejected file is filed by Claims.reject, which never "
    "launches anything: after_launch is not on the rejected route",
}


def all_cases() -> list[Case]:
    found = []
    for route in ("succeeded", "failed", "retried", "rejected", "run_at"):
        found.extend(Case(route, point) for point in ("after_claim", "after_launch", *MOVE_POINTS))
    found.extend(
        Case("retried", point, 2) for point in ("after_claim", "after_launch", *MOVE_POINTS)
    )
    found.append(Case("run_at", "after_claim", 2))
    return found


def fallback_cases() -> list[Case]:
    return [Case(route, "in_rename_fallback", n) for route, n in FALLBACK_MOVES]


def job_document(route: str, tmp_path: Path) -> dict[str, Any]:
    runs = str(tmp_path / "runs.jsonl")
    if route == "succeeded":
        return job("Recorder", params=[runs, JOB_ID])
    if route == "failed":
        return job("Flaky", params=[runs, 1000], max_retries=0)
    if route == "retried":
        return job("Flaky", params=[runs, 1], max_retries=2, retry_delay=0.2)
    if route == "rejected":
        return job("Partial", "forbidden", params=[runs])  # would create the file if run
    if route == "forged":  # daemon-owned fields: the claim cleans the file (store.claim)
        forged_history = [{"attempt": 1, "outcome": "interrupted", "cause": "daemon_died"}] * 9
        return job("Recorder", params=[runs, JOB_ID], status="done", history=forged_history)
    assert route == "run_at"
    return job("Recorder", params=[runs, JOB_ID], run_at=time.time() + RUN_AT_AHEAD)


def expected_histories(case: Case) -> tuple[tuple[str, ...], ...]:
    return EXPECTED.get(f"{case.route}-{case.fault}", EXPECTED[case.route])


def state_at_death(case: Case) -> list[str]:
    """What the spool must hold (sorted entries of active/ plus where <id>.json is)."""
    if case.point in ("after_claim", "after_launch"):
        return ["active/" + JOB_ID + ".json"]
    if case.point == "in_cleaning_claim":
        return [f"active/{JOB_ID}.claiming", f"active/{JOB_ID}.json"]
    if case.point == "in_rename_fallback":
        kind, folder = FALLBACK_MOVES[(case.route, case.n)]
        active = f"active/{JOB_ID}.json" if kind == "claim" else f"active/{JOB_ID}.to-{folder}"
        return sorted([active, f"{folder}/{JOB_ID}.json"])
    destination = MOVE_DESTINATION[(case.route, case.n)]
    marker = f"active/{JOB_ID}.to-{destination}"
    if case.point == "after_marker":
        return sorted([f"active/{JOB_ID}.json", marker])
    if case.point == "after_unlink":
        return [marker]
    return [f"{destination}/{JOB_ID}.json"]


def spool_state(spool: Spool) -> list[str]:
    found = [f"active/{name}" for name in spool.names("active")]
    found += [f"{state}/{JOB_ID}.json" for state in spool.where(JOB_ID) if state != "active"]
    return sorted(found)


class Trial:
    """One combination, on its own spool with its own daemons (trials run side by side)."""

    def __init__(self, case: Case, root: Path, token: str, spool_root: Path | None = None) -> None:
        self.case = case
        self.root = root
        self.token = token
        root.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(spool_root or root / "spool").create()
        self.config = write_config(root / "config.toml", self.spool, {"worker": {"concurrency": 1}})
        self.daemons: list[Daemon] = []

    def start(self, env: dict[str, str] | None = None, *, ready: bool = True) -> Daemon:
        name = f"d{len(self.daemons) + 1}"
        daemon = Daemon(self.config, self.root, self.token, name, env=env)
        self.daemons.append(daemon)
        daemon.start()
        return daemon.wait_ready() if ready else daemon

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {d.name}:\n{d.log_text()[-6000:]}" for d in self.daemons)

    def drop(self) -> dict[str, Any]:
        document = job_document(self.case.route, self.root)
        self.spool.drop_job(JOB_ID, document)
        return document

    def run(self) -> None:
        """Crash at the point, restart, and check the job's one record and its runs."""
        case, spool = self.case, self.spool
        armed = self.start({"SPOOLD_FAULT": case.fault})
        document = self.drop()
        assert armed.wait_exit(15) == -9, f"{case}: the daemon did not die by its fault"
        assert spool_state(spool) == state_at_death(case), f"{case}: {spool.summary()}"
        if case.point == "in_rename_fallback":  # cut between the link and the unlink
            (active,) = spool.names("active")
            assert (spool.folder("active") / active).stat().st_nlink == 2, f"{case}: not linked"
        restarted = self.start()
        if case.route == "run_at" and case.n == 1 and case.point != "after_launch":
            assert time.time() < document["run_at"], "restart too slow: run_at already passed"
        folder, status = STATUS[case.route]
        record = spool.wait_record(JOB_ID, folder, timeout=20)
        wait_for(lambda: spool.names("active") == [], 10, spool.summary)
        self.check_record(record, folder, status)
        self.check_runs(record["history"])
        assert restarted.returncode() is None, f"{case}: the restarted daemon exited"

    def check_record(self, record: dict[str, Any], folder: str, status: str) -> None:
        """Exactly one record, in the right folder, nothing waiting or half-moved."""
        case, spool = self.case, self.spool
        assert spool.where(JOB_ID) == [folder], f"{case}: {spool.summary()}"
        assert spool.job_ids("done") + spool.job_ids("failed") == [JOB_ID], spool.summary()
        for state in ("incoming", "scheduled", "active", "tmp"):
            assert spool.names(state) == [], f"{case}: {state}/ holds {spool.names(state)}"
        assert record["id"] == JOB_ID
        assert record["status"] == status, f"{case}: {record}"
        history = record["history"]
        outcomes = tuple(entry["outcome"] for entry in history)
        assert outcomes in expected_histories(case), f"{case}: history {outcomes}"
        assert [entry["attempt"] for entry in history] == list(range(1, len(history) + 1))
        assert record["attempts"] == len(history), f"{case}: {record}"
        for entry in history:
            if entry["outcome"] == "interrupted":
                assert entry.get("cause") == "daemon_died", f"{case}: {entry}"
        if case.route == "rejected":
            assert "allow" in record["reason"], f"{case}: {record['reason']}"

    def check_runs(self, history: list[dict[str, Any]]) -> None:
        """Every reported attempt ran once; an interrupted one at most once; one that was
        only claimed (after_claim) never ran; a rejected job never runs at all."""
        case = self.case
        runs_log = self.root / "runs.jsonl"
        runs = int(runs_log.exists()) if case.route == "rejected" else len(read_lines(runs_log))
        interrupted = sum(entry["outcome"] == "interrupted" for entry in history)
        reported = len(history) - interrupted
        if case.point == "after_claim" or case.route == "rejected":
            assert runs == reported, f"{case}: ran {runs} times; history {history}"
        else:
            assert reported <= runs <= len(history), f"{case}: ran {runs} times; {history}"


STATUS = {
    "succeeded": ("done", "done"),
    "failed": ("failed", "failed"),
    "retried": ("done", "done"),
    "rejected": ("failed", "rejected"),
    "run_at": ("done", "done"),
    "forged": ("done", "done"),
}


def run_side_by_side(
    cases: list[Case], tmp_path: Path, token: str, spools_in: Path | None = None
) -> None:
    """Run each case as a Trial, ``PARALLEL`` at a time; fail with every broken case and its
    logs. (Each case starts two daemons; one after the other they would take a minute.)
    ``spools_in`` puts the spools in that folder (another filesystem) instead."""
    trials = [
        Trial(case, tmp_path / f"c{n}", token, spools_in / f"c{n}" if spools_in else None)
        for n, case in enumerate(cases)
    ]
    failures = []

    def run(trial: Trial) -> None:
        try:
            trial.run()
        except AssertionError as exc:
            failures.append(f"== {trial.case}: {exc}\n{trial.logs()}")
        finally:
            trial.stop()

    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(run, trials))
    if failures:
        pytest.fail("\n\n".join(sorted(failures)), pytrace=False)


def test_a_crash_at_each_step_loses_and_repeats_nothing(tmp_path: Path, leak_check: str) -> None:
    """Every fault point on every route (both passes for ``retried``), each in its own spool;
    the run_at cases go first, as they wait longest."""
    cases = [c for c in all_cases() if (c.route, c.point) not in UNREACHED]
    cases.sort(key=lambda c: c.route != "run_at")
    print(f"{len(cases)} cases: {', '.join(map(str, cases))}")
    run_side_by_side(cases, tmp_path, leak_check)


def test_a_crash_inside_the_rename_fallback_loses_and_repeats_nothing(
    tmp_path: Path, leak_check: str
) -> None:
    """Every link + unlink move of every route, on bindfs, cut between its two steps."""
    with bindfs(tmp_path / "fs-source", tmp_path / "fs") as mount_point:
        cases = fallback_cases()
        cases.sort(key=lambda c: c.route != "run_at")
        run_side_by_side(cases, tmp_path, leak_check, spools_in=mount_point)


def test_a_crash_while_a_claim_cleans_a_forged_file_runs_it_once(
    tmp_path: Path, leak_check: str
) -> None:
    """A submitted file with daemon-owned fields (a forged status and history) is claimed
    as ``active/<id>.claiming`` and then replaced by its cleaned copy. Killed in between,
    the restart puts it back to wait: it runs once, and the forged fields stay dropped.
    (The rewrite used to be written beside the waiting file, which was unlinked after it:
    a crash in between left the job waiting and in active/, and it ran twice.)"""
    trial = Trial(Case("forged", "in_cleaning_claim"), tmp_path / "c0", leak_check)
    try:
        trial.run()
    finally:
        trial.stop()


@pytest.mark.parametrize(("route", "point"), sorted(UNREACHED))
def test_a_point_not_on_a_route_is_not_reached(
    tmp_path: Path, leak_check: str, route: str, point: str
) -> None:
    """Checked, then skipped: the armed daemon files the job and stays alive."""
    trial = Trial(Case(route, point), tmp_path / "c0", leak_check)
    try:
        armed = trial.start({"SPOOLD_FAULT": point})
        trial.drop()
        folder, status = STATUS[route]
        assert trial.spool.wait_record(JOB_ID, folder, timeout=10)["status"] == status
        assert stays_false(lambda: armed.returncode() is not None, 1.0), trial.logs()
    finally:
        trial.stop()
    pytest.skip(UNREACHED[(route, point)])


def test_a_run_at_job_cut_short_on_its_way_to_wait_never_counts_as_run(
    tmp_path: Path, leak_check: str
) -> None:
    """SPOOLD_FAULT=after_claim on the way to scheduled/, and the restart comes after the
    run_at: the job never ran, so its history must not show an interrupted attempt."""
    trial = Trial(Case("run_at", "after_claim"), tmp_path / "c0", leak_check)
    try:
        trial.start({"SPOOLD_FAULT": "after_claim"})
        runs = str(trial.root / "runs.jsonl")
        run_at = time.time() + 0.3
        trial.spool.drop_job(JOB_ID, job("Recorder", params=[runs, JOB_ID], run_at=run_at))
        assert trial.daemons[0].wait_exit(15) == -9
        wait_for(lambda: time.time() > run_at + 0.2, 5, "the run_at to pass")
        trial.start()
        record = trial.spool.wait_record(JOB_ID, timeout=20)
        assert len(read_lines(trial.root / "runs.jsonl")) == 1
        assert [entry["outcome"] for entry in record["history"]] == ["ok"], trial.logs()
    finally:
        trial.stop()
