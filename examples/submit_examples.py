"""Submit one of each example job to the spool named by a config file, and print their ids.

    python examples/submit_examples.py --config config/spoold.toml

``make run`` calls this before starting the daemon. The jobs come from
``examples/app/jobs.py``: a quick one of each class, a FlakyJob that fails
once and then succeeds on its retry, a job with priority 10 (run before the
others when they wait together) and one held back for 5 seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from spoold import run_background_job
from spoold.config import find_config_path, load_config

Example = tuple[str, str, str, Any, dict[str, Any]]  # label, class, method, params, options


def examples(flaky_key: str) -> list[Example]:
    return [
        ("quick, positional params", "app.jobs.SomeClass", "some_method", ["p1", "p2"], {}),
        ("quick, keyword params", "app.jobs.ExampleJob", "process_data", {"data": [1, 2, 3]}, {}),
        ("no params", "app.jobs.SimpleJob", "execute", None, {}),
        ("fails once, then succeeds", "app.jobs.FlakyJob", "run", [flaky_key, 1], {}),
        ("sleeps 2 s", "app.jobs.SlowJob", "run", [2], {}),
        ("priority 10", "app.jobs.SimpleJob", "execute", None, {"priority": 10}),
        ("held back 5 s", "app.jobs.SomeClass", "some_method", ["later"], {"delay": 5}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="PATH", help="spoold config (default: as spoold)")
    args = parser.parse_args()
    spool = load_config(find_config_path(args.config)).spool.dir
    jobs = examples(f"demo-{time.time_ns()}")  # a fresh key, so the FlakyJob fails once each run
    for label, class_path, method, params, options in jobs:
        job_id = run_background_job(class_path, method, params, spool=spool, **options)
        print(f"{job_id}  {class_path}.{method}  ({label})")
    print(f"submitted {len(jobs)} jobs to {Path(spool) / 'incoming'}")


if __name__ == "__main__":
    main()
