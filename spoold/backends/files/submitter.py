"""The file spool as a ``Submitter``: the caller's side of the Maildir protocol.

Write ``tmp/<id>.json``, fsync, rename it into ``incoming/`` without
replacing anything, fsync ``incoming/``. It never talks to the daemon and
never blocks on it. It runs inside users' applications (``spoold.client``),
so it imports the standard library, ``fsio`` and leaf modules only: no
loguru, no watchdog (tests/test_layers.py).
"""

from __future__ import annotations

import os

from spoold.backends.files.fsio import fsync_dir, rename_noreplace
from spoold.ids import new_job_id


class FileSubmitter:
    """Hands job documents in to the spool at ``root``; ``durable=False`` skips the fsyncs."""

    def __init__(self, root: str, *, durable: bool) -> None:
        self.root = root
        self.durable = durable

    def submit(self, payload: bytes, *, now: float) -> str:
        """Write tmp/<id>.json then move it to incoming/; a taken id gets a fresh one.

        Plain string paths: pathlib would cost this call a tenth of its time.
        """
        root, durable = self.root, self.durable
        temp_folder, incoming = os.path.join(root, "tmp"), os.path.join(root, "incoming")
        while True:
            job_id = new_job_id(now)
            temp = f"{temp_folder}/{job_id}.json"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
            try:
                os.write(fd, payload)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                rename_noreplace(temp, f"{incoming}/{job_id}.json")
            except FileExistsError:
                os.unlink(temp)
                continue
            except OSError:
                os.unlink(temp)  # no incoming/ (or no room): leave nothing behind in tmp/
                raise
            if durable:
                fsync_dir(incoming)
            return job_id
