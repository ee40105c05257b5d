"""The launcher's size when it forks: ``python -m bench.launcher [--runs N]``.

Every attempt is a fork of the launcher, so each page it holds makes each
fork dearer. This starts the real launcher (as the daemon does), waits for
its hello, and prints one JSON document: its VmRSS and VmData in kB
(median of ``--runs`` starts, each a fresh interpreter).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/launcher.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spoold.exec.launcher_client import LauncherClient


def measure_once() -> dict[str, int]:
    launcher = LauncherClient()
    try:
        if not launcher.wait_ready(10.0):
            raise SystemExit("the launcher sent no hello within 10 s")
        status = Path(f"/proc/{launcher.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmData")}
    finally:
        launcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.launcher", description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    runs = [measure_once() for _ in range(parser.parse_args().runs)]
    print(json.dumps({
        "launcher_rss_kb": {"median": statistics.median(r["VmRSS"] for r in runs),
                            "runs": [r["VmRSS"] for r in runs]},
        "launcher_data_kb": {"median": statistics.median(r["VmData"] for r in runs)},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
