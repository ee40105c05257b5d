"""Held filings: moves of claimed jobs that the daemon's own trouble held back.

Every way a claimed job goes on (an attempt's outcome, a rejection, a wait
for its ``run_at``, a put-back after a failed start, what recovery
decides) goes through ``attempt``. A filing is called with the time it is
made, which for a held one is later than its decision. If the filing
fails for want of a resource (a full disk, no descriptors), the job stays
claimed and the filing is kept here and tried again after a backoff, in
the same running daemon; no new attempt starts meanwhile (the dispatcher
asks). A round of retries keeps exactly the filings that failed again:
one filed in a round is never applied a second time (issue #10), and the
backend refuses a move by a claim that no longer holds its job
(``StaleClaim``) in any case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

from spoold.backoff import Backoff
from spoold.core.backend import Claim, Places, StaleClaim, Unavailable
from spoold.durations import seconds
from spoold.logs import job_logger


def wait_for_run_at(places: Places) -> str:
    """What a held deferral is, for the log lines."""
    return f"move to {places.waiting} to wait for its run_at"


@dataclass(frozen=True)
class Held:
    claim: Claim  # the job's, presented by the filing; renewed while it is held
    what: str  # for the log: "outcome", "rejection", ...
    filing: Callable[[float], None]  # called with the time the filing is made


class HeldFilings:
    def __init__(self, places: Places) -> None:
        self.places = places  # the backend's words, for the log lines
        self.waiting: list[Held] = []
        self.trouble = Backoff()

    def __len__(self) -> int:
        return len(self.waiting)

    def __bool__(self) -> bool:
        return bool(self.waiting)

    def attempt(self, claim: Claim, what: str, filing: Callable[[float], None], now: float) -> bool:
        """File now if it can be done; else hold it for later. True if filed."""
        held = Held(claim, what, filing)
        job_id = claim.job_id
        error = _file(held, now)
        if error is None:
            return True
        self.waiting.append(held)
        delay = self.trouble.hit(now, longest=_longest(error))
        job_logger(job_id).error(
            "job {}: cannot file its {} ({}); kept in {}, trying again in {}",
            job_id, what, error, self.places.claimed, seconds(delay),
        )  # fmt: skip
        return False

    def retry(self, now: float) -> None:
        """Try the held filings again once the backoff has passed; hold again what fails again."""
        if not self.waiting or self.trouble.waiting(now):
            return
        waiting, self.waiting = self.waiting, []
        error = None
        for held in waiting:
            failure = _file(held, now)
            if failure is not None:
                self.waiting.append(held)
                error = failure
        filed = len(waiting) - len(self.waiting)
        if error is None:
            began = self.trouble.clear()
            took = f" after {seconds(round(now - began, 1))}" if began is not None else ""
            logger.info("filing works again{}: {} held-back filing(s) done", took, filed)
            return
        delay = self.trouble.hit(now, longest=_longest(error))  # once a round, however many
        logger.log(self.trouble.loud(now, "ERROR"),
                   "{} held-back filing(s) done, {} still cannot be ({}); trying again in {}",
                   filed, len(self.waiting), error, seconds(delay))  # fmt: skip

    def claims(self) -> list[Claim]:
        """The claims of the held filings: their jobs stay this daemon's until filed."""
        return [held.claim for held in self.waiting]

    def next_wakeup(self) -> float | None:
        return self.trouble.until if self.waiting else None


def _longest(error: OSError) -> float | None:
    """A backend that cannot be reached is tried again sooner than a full disk."""
    return Unavailable.RETRY_LONGEST if isinstance(error, Unavailable) else None


def _file(held: Held, now: float) -> OSError | None:
    """Do one filing; the OSError that stopped it, if any (the job stays claimed)."""
    try:
        held.filing(now)
    except StaleClaim as exc:  # its lease lapsed and the job was claimed again: never file twice
        job_id = held.claim.job_id
        reason = str(exc).removeprefix(f"job {job_id}: ")
        job_logger(job_id).warning("job {}: its {} was not filed: {}; a job never gets two "
                                   "records", job_id, held.what, reason)  # fmt: skip
    except OSError as exc:
        return exc
    return None
