"""What the launcher's interpreter loads: the standard library it needs, and no more.

Every attempt is a fork of the launcher, so every module it holds makes each
fork dearer (ARCHITECTURE.md, "The processes"). tests/test_layers.py reads the
imports written in exec/; this runs them, in a fresh interpreter started the
way the daemon starts the launcher, and looks at what they pulled in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Modules kept out on purpose, each for a reason (ARCHITECTURE.md). (``typing`` is in,
# on purpose too: nearly every job imports it, and the launcher's copy is free to each.)
KEPT_OUT = {
    "spoold.exec.messages": "the message shapes, for the type checker only",
    "inspect": "pulled in by dataclasses: the launcher's classes are plain",
    "dataclasses": "imports inspect",
    "loguru": "the daemon's logger: a fork must never hold its locks",
    "watchdog": "the daemon's watch on incoming/",
    "spoold.config": "the launcher is sent what it needs; it reads no config",
    "spoold.client": "a submitter's API",
}


def modules_after(statement: str) -> set[str]:
    """sys.modules of a fresh ``python -P`` (as the launcher is started) after ``statement``."""
    code = (
        f"import json, sys; sys.path.insert(0, sys.argv[1]); {statement}; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-P", "-c", code, str(ROOT)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return set(json.loads(result.stdout))


def launcher_modules() -> set[str]:
    """What importing the launcher adds to what the interpreter itself starts with
    (the site hooks of this venv, an editable install's finder among them)."""
    return modules_after("import spoold.exec.launcher") - modules_after("pass")


def test_the_launcher_loads_none_of_what_is_kept_out() -> None:
    loaded = launcher_modules()
    assert {name: why for name, why in KEPT_OUT.items() if name in loaded} == {}


def test_the_launcher_loads_only_the_standard_library_and_exec() -> None:
    outside = [
        name
        for name in sorted(launcher_modules())
        if name.split(".")[0] not in sys.stdlib_module_names
        and name not in ("spoold", "spoold.exec")
        and not name.startswith("spoold.exec.")
    ]
    assert outside == []
