"""Who may submit: ``[spool] allowed_uids`` and ``allowed_gids`` (SPEC.md "Configuration").

A job file's owner is the submitter (it is read from the open file). When
either list is set, a file whose uid is not in allowed_uids and whose gid is
not in allowed_gids is rejected, unrun, with a reason naming the uid and the
setting; empty lists let anyone who can write incoming/ through. The tests
run as root and chown each file (as a submitter with that uid would own it)
before renaming it in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import Spool, job

NOBODY = 65534
LISTED_GID = 4242  # any number: the check compares numbers, the group need not exist

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def drop_owned_by(
    spool: Spool, job_id: str, document: dict[str, object], uid: int, gid: int
) -> str:
    """Write tmp/<id>.json, give it to uid:gid, rename it into incoming/."""
    temp = spool.folder("tmp") / f"{job_id}.json"
    temp.write_bytes(json.dumps(document).encode())
    os.chown(temp, uid, gid)
    os.rename(temp, spool.folder("incoming") / temp.name)
    return job_id


def test_only_listed_uids_and_gids_may_submit(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """An unlisted owner is rejected (reason: the uid and the setting) and its job never
    runs; a listed uid runs; a listed gid lets an unlisted uid through."""
    start_daemon(spool={"allowed_uids": [0], "allowed_gids": [LISTED_GID]})
    ran = tmp_path / "ran.jsonl"
    stranger = drop_owned_by(spool, "stranger", job("Recorder", params=[str(ran)]), NOBODY, NOBODY)
    by_uid = drop_owned_by(spool, "by-uid", job("Noop"), 0, 0)
    by_gid = drop_owned_by(spool, "by-gid", job("Noop"), NOBODY, LISTED_GID)
    state, record = spool.wait_finished(stranger)
    assert (state, record["status"]) == ("failed", "rejected"), record
    assert f"uid {NOBODY}" in record["reason"], record["reason"]
    assert "allowed_uids" in record["reason"], record["reason"]
    assert spool.wait_record(by_uid)["status"] == "done"
    assert spool.wait_record(by_gid)["status"] == "done"
    assert not ran.exists()
    assert spool.record(stranger, "done") is None


def test_empty_lists_let_anyone_submit(spool: Spool, start_daemon: StartDaemon) -> None:
    """With both lists empty (the default), a file owned by nobody:nogroup runs."""
    start_daemon(spool={"allowed_uids": [], "allowed_gids": []})
    anyone = drop_owned_by(spool, "anyone", job("Noop"), NOBODY, NOBODY)
    assert spool.wait_record(anyone)["status"] == "done"
