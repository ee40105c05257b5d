"""The package's layers: which room each module of spoold/ lives in, and what it may import.

An AST walk, no dependency: every ``import`` and ``from ... import`` of every
.py file under spoold/ (module level, inside functions, under
``if TYPE_CHECKING:``; relative imports resolved; ``from spoold import x``
read as the module spoold.x when there is one), each checked against the
rule of the importing module's room. Dynamic imports (``importlib``, a
``python -c`` string) are not seen.

The rules are data, declared once below; adding a rule or a room is one line.
The checker takes the folder that holds spoold/, so the tests at the end run
it on small trees written into tmp_path to prove it can fail.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import NamedTuple

import pytest

PACKAGE = "spoold"
ROOT = Path(__file__).resolve().parent.parent

STDLIB = "the standard library"
THIRD_PARTY = "third-party packages"

# The modules at the top of the package that are neither the client nor an entry point.
LEAVES = (
    "config", "job", "ids", "identity", "logs", "systemd", "faults", "durations", "names",
    "errors", "live", "backoff", "snapshot", "prometheus", "atomic", "httpd", "schedules",
    "cron", "asking", "followups", "limits",
)  # fmt: skip

# Each room: the modules in it, as dotted names ("x.*" is everything under x).
# Every module under spoold/ must be in exactly one room: a module dropped at
# the top level or in a new folder fails the tests until it is given one.
ROOMS: dict[str, tuple[str, ...]] = {
    "package": ("spoold",),
    "main": ("spoold.__main__",),
    "client": ("spoold.client",),
    "leaf": tuple(f"spoold.{name}" for name in LEAVES),
    "exec": ("spoold.exec", "spoold.exec.*"),
    "backends": ("spoold.backends", "spoold.backends.*"),
    "core": ("spoold.core", "spoold.core.*"),
    "cli": ("spoold.cli", "spoold.cli.*"),
    "web": ("spoold.web", "spoold.web.*"),
}

# How each room is named in a message, as an importer and as a target.
WHO = {
    "package": "spoold/__init__.py",
    "main": "spoold/__main__.py",
    "client": "spoold.client",
    "leaf": "a leaf module",
    "exec": "exec/",
    "backends": "backends/",
    "core": "core/",
    "cli": "cli/",
    "web": "web/",
}
WHAT = {
    "package": "spoold itself",
    "main": "spoold.__main__",
    "client": "spoold.client",
    "leaf": "the leaf modules",
    "exec": "spoold.exec",
    "backends": "spoold.backends",
    "core": "spoold.core",
    "cli": "spoold.cli",
    "web": "spoold.web",
}


@dataclass(frozen=True)
class Rule:
    may_import: frozenset[str]  # rooms, STDLIB, THIRD_PARTY
    also: tuple[str, ...] = ()  # single modules beyond those rooms ("x.*" patterns)
    lazy: bool = False  # its spoold imports only inside a function or under TYPE_CHECKING


def rule(*may_import: str, also: tuple[str, ...] = (), lazy: bool = False) -> Rule:
    return Rule(frozenset(may_import), also, lazy)


EVERYTHING = (STDLIB, THIRD_PARTY, *ROOMS)

RULES: dict[str, Rule] = {
    # exec/ is the launcher's code: the launcher is forked for every job and must
    # start before any thread, and every module it holds makes each fork dearer.
    "exec": rule(STDLIB, "exec"),
    # Leaf modules are shared by the client, the backends, core/ and cli/: each of
    # them may import a leaf without pulling in a layer above it, so a leaf leans
    # only on other leaves and on the stdlib-only exec/ below.
    "leaf": rule(STDLIB, THIRD_PARTY, "leaf", "exec"),
    # The client runs inside users' applications: no third-party import (see
    # STDLIB_ONLY_CLOSURES) and nothing of the daemon; it writes the job file
    # with the files backend's submitter, or, when the config says so, hands it to
    # Redis with the Redis backend's (loaded lazily: see OPTIONAL). Of core/ it names
    # the seam alone, whose Submitter Protocol both submitters implement.
    "client": rule(
        STDLIB,
        "leaf",
        also=(
            "spoold.backends.files.*",
            "spoold.backends.redis.submitter",
            "spoold.core.backend",
        ),
    ),
    # `import spoold` happens in users' applications and in every launcher: it
    # loads nothing, and hands out the client only when asked.
    "package": rule(STDLIB, "client", lazy=True),
    # `python -m spoold` is the `spoold` command.
    "main": rule(STDLIB, "cli"),
    # A backend implements the seam (core/backend.py) and is handed the core's
    # judge: of core/ it may import the seam alone, so it cannot reach a decision
    # (policy, outcomes, the judge); it never needs the CLI.
    "backends": rule(
        STDLIB, THIRD_PARTY, "leaf", "exec", "backends", also=("spoold.core.backend",)
    ),
    # The daemon never needs the CLI (the command starts the daemon, not the reverse),
    # and talks to where jobs live only through core/backend.py: the command hands it
    # the backend, so any backend works with it.
    "core": rule(*(r for r in EVERYTHING if r not in ("cli", "backends"))),
    # The command is the top: it may use anything.
    "cli": rule(*EVERYTHING),
    # The dashboard reads and repairs jobs as the CLI does, through the seam's Catalog
    # (opened by backends/), and shares what `spoold top` reads and `spoold metrics`
    # scrapes; it never reaches a decision of the daemon's.
    "web": rule(
        STDLIB,
        THIRD_PARTY,
        "leaf",
        "web",
        also=(
            "spoold.backends",
            "spoold.backends.files.admin",
            "spoold.core.backend",
            "spoold.cli.view",
            "spoold.cli.metrics",
        ),
    ),
}

# Modules whose whole import closure over spoold (every spoold module they
# import, transitively, and each one's parent packages) imports no third-party
# package: the client runs inside users' applications, where loguru alone
# would cost each caller about 55 ms, and its dependencies are not theirs.
STDLIB_ONLY_CLOSURES = ("spoold.client",)

# Modules the client loads only when the config chooses them, inside a function:
# the closure walk does not follow such a lazy import (their third-party packages
# are an extra, `pip install 'spoold[redis]'`, or, for spoold.cron, cronsim, which
# only a config with a cron [[schedule]] loads), and an eager one is a violation.
OPTIONAL = ("spoold.backends.redis.*", "spoold.cron")

# Packages whose __init__.py holds at most a docstring: the launcher imports
# spoold.exec.* and importing the subpackage must not load anything.
EMPTY_INITS = ("spoold.exec",)


# -- the checker --


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # dotted; for spoold, the most precise module known
    lazy: bool  # inside a function, or only for the type checker


@dataclass
class Module:
    name: str
    path: str  # relative to the root, e.g. "spoold/exec/launcher.py"
    is_package: bool
    tree: ast.Module
    imports: list[Import] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Violation(NamedTuple):
    room: str  # whose rule: a room, or "closure", "rooms", "init"
    message: str


def scan(root: Path) -> dict[str, Module]:
    """Every module under root/spoold, with its imports resolved."""
    modules: dict[str, Module] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        relative = path.relative_to(root)
        parts = list(relative.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        tree = ast.parse(path.read_text(), filename=str(path))
        modules[name] = Module(name, relative.as_posix(), is_package, tree)
    for module in modules.values():
        _collect(module, module.tree, set(modules), lazy=False)
    return modules


def _collect(module: Module, node: ast.AST, known: set[str], *, lazy: bool) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            _collect(module, child, known, lazy=True)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.body:
                _collect(module, ast.Module([statement], []), known, lazy=True)
            for statement in child.orelse:
                _collect(module, ast.Module([statement], []), known, lazy=lazy)
        else:
            if isinstance(child, ast.Import | ast.ImportFrom):
                _add_import(module, child, known, lazy=lazy)
            _collect(module, child, known, lazy=lazy)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _add_import(
    module: Module, node: ast.Import | ast.ImportFrom, known: set[str], *, lazy: bool
) -> None:
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.name.split(".")
            if not module.is_package:
                package.pop()
            up = node.level - 1
            if up >= len(package):
                module.problems.append(
                    f"{module.path}:{node.lineno} has a relative import above the package"
                )
                return
            base = ".".join(package[: len(package) - up] + ([node.module] if node.module else []))
        # `from spoold import x` imports the module spoold.x when there is one.
        targets = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
            for alias in node.names
        ]
    for target in dict.fromkeys(targets):
        module.imports.append(Import(node.lineno, target, lazy))


def rooms_of(name: str) -> list[str]:
    return [room for room, patterns in ROOMS.items() if any(fnmatchcase(name, p) for p in patterns)]


def is_spoold(target: str) -> bool:
    return target == PACKAGE or target.startswith(PACKAGE + ".")


def kind_of(target: str) -> str | None:
    """The room of a spoold module (None if not exactly one), else STDLIB or THIRD_PARTY."""
    if is_spoold(target):
        rooms = rooms_of(target)
        return rooms[0] if len(rooms) == 1 else None
    return STDLIB if target.partition(".")[0] in sys.stdlib_module_names else THIRD_PARTY


def describe(room: str) -> str:
    """`exec/ may import only the standard library and spoold.exec`, from the data."""
    rule_ = RULES[room]
    if THIRD_PARTY in rule_.may_import and not rule_.also:
        banned = [WHAT[r] for r in ROOMS if r not in rule_.may_import]
        if not banned:
            return f"{WHO[room]} may import anything"
        return f"{WHO[room]} may not import {_and(banned, 'or')}"
    allowed = [WHAT.get(k, k) for k in EVERYTHING if k in rule_.may_import]
    allowed += [pattern.removesuffix(".*") for pattern in rule_.also]
    return f"{WHO[room]} may import only {_and(allowed, 'and')}"


def _and(words: list[str], conjunction: str) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def room_violations(modules: dict[str, Module]) -> Iterator[Violation]:
    for module in modules.values():
        rooms = rooms_of(module.name)
        if len(rooms) != 1:
            continue  # reported by classification_problems
        (room,) = rooms
        rule_ = RULES[room]
        for imp in module.imports:
            where = f"{module.path}:{imp.line} imports {imp.target}"
            kind = kind_of(imp.target)
            if kind is None:
                yield Violation(room, f"{where}, which is in no room (see ROOMS)")
            elif kind not in rule_.may_import and not any(
                fnmatchcase(imp.target, p) for p in rule_.also
            ):
                yield Violation(room, f"{where}: {describe(room)}")
            elif rule_.lazy and is_spoold(imp.target) and not imp.lazy:
                yield Violation(
                    room,
                    f"{where} at import time: {WHO[room]} may import spoold modules only"
                    " inside a function or under TYPE_CHECKING",
                )


def closure_violations(modules: dict[str, Module]) -> Iterator[Violation]:
    for start in STDLIB_ONLY_CLOSURES:
        for name, (chain, whole) in _closure(modules, start).items():
            for imp in _loaded(modules[name], whole):
                if _is_optional(imp.target) and not imp.lazy:
                    yield Violation(
                        "closure",
                        f"{modules[name].path}:{imp.line} imports {imp.target} at import time:"
                        f" {start} may load an optional backend only inside a function",
                    )
                if kind_of(imp.target) == THIRD_PARTY:
                    path = " -> ".join(chain)
                    yield Violation(
                        "closure",
                        f"{modules[name].path}:{imp.line} imports {imp.target}: {start} imports"
                        f" this module ({path}), and nothing it imports may import a"
                        " third-party package",
                    )


def _closure(modules: dict[str, Module], start: str) -> dict[str, tuple[list[str], bool]]:
    """Each spoold module that importing `start` may load: the chain that loads it, and
    whether all of it may run (False: it is only a parent package of a module loaded,
    whose functions nobody calls, so only its module-level imports load anything).
    """
    via: dict[str, tuple[list[str], bool]] = {}
    todo = [([start], True)]
    while todo:
        chain, whole = todo.pop(0)
        name = chain[-1]
        if name not in modules or (name in via and (via[name][1] or not whole)):
            continue
        via[name] = (chain, whole)
        for imp in _loaded(modules[name], whole):
            if is_spoold(imp.target) and not (imp.lazy and _is_optional(imp.target)):
                todo.append(([*chain, imp.target], True))
        for parent in _parents(name):
            todo.append(([*chain, parent], False))
    return via


def _is_optional(target: str) -> bool:
    return any(fnmatchcase(target, pattern) for pattern in OPTIONAL)


def _loaded(module: Module, whole: bool) -> list[Import]:
    return [imp for imp in module.imports if whole or not imp.lazy]


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def classification_problems(modules: dict[str, Module]) -> Iterator[Violation]:
    for module in modules.values():
        rooms = rooms_of(module.name)
        if not rooms:
            yield Violation(
                "rooms",
                f"{module.path}: {module.name} is in no room; give it one in ROOMS in"
                " tests/test_layers.py",
            )
        elif len(rooms) > 1:
            yield Violation(
                "rooms", f"{module.path}: {module.name} is in several rooms: {', '.join(rooms)}"
            )
        yield from (Violation("rooms", problem) for problem in module.problems)


def init_problems(modules: dict[str, Module]) -> Iterator[Violation]:
    for name in EMPTY_INITS:
        module = modules.get(name)
        if module is None:
            continue
        body = module.tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        if body:
            yield Violation(
                "init",
                f"{module.path}:{body[0].lineno}: must hold at most a docstring, since"
                " importing the subpackage must load nothing",
            )


def check(root: Path) -> list[Violation]:
    """Every violation of the rules in the tree root/spoold."""
    modules = scan(root)
    return [
        *classification_problems(modules),
        *room_violations(modules),
        *closure_violations(modules),
        *init_problems(modules),
    ]


def messages(violations: list[Violation], room: str | None = None) -> list[str]:
    return [v.message for v in violations if room is None or v.room == room]


# -- the real tree --


@pytest.fixture(scope="module")
def violations() -> list[Violation]:
    return check(ROOT)


def test_every_module_is_in_exactly_one_room(violations: list[Violation]) -> None:
    found = messages(violations, "rooms")
    assert not found, "\n".join(found)


def test_every_room_has_a_rule() -> None:
    assert set(RULES) == set(ROOMS) == set(WHO) == set(WHAT)
    for room, rule_ in RULES.items():
        assert rule_.may_import <= {STDLIB, THIRD_PARTY, *ROOMS}
        assert describe(room).startswith(WHO[room])


@pytest.mark.parametrize("room", RULES)
def test_the_rule_of(room: str, violations: list[Violation]) -> None:
    found = messages(violations, room)
    assert not found, "\n".join(found)


def test_the_client_pulls_in_no_third_party_package(violations: list[Violation]) -> None:
    found = messages(violations, "closure")
    assert not found, "\n".join(found)
    closure = _closure(scan(ROOT), "spoold.client")
    assert {"spoold.client", "spoold.backends.files.fsio", "spoold.config"} <= set(closure)


def test_the_exec_init_is_empty(violations: list[Violation]) -> None:
    assert (ROOT / "spoold" / "exec" / "__init__.py").exists()
    found = messages(violations, "init")
    assert not found, "\n".join(found)


def test_every_folder_of_the_package_is_a_package() -> None:
    """A folder without __init__.py is left out of the wheel by packages.find."""
    for folder in [ROOT / PACKAGE, *(ROOT / PACKAGE).rglob("*")]:
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
            assert (folder / "__init__.py").exists(), f"{folder.relative_to(ROOT)} has no __init__"


# -- the checker can fail: small trees in tmp_path --

SKELETON = {
    "spoold/__init__.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from spoold.client import run\n"
        "def __getattr__(name):\n"
        "    from spoold import client\n"
        "    return client.run\n"
    ),
    "spoold/__main__.py": "from spoold.cli.commands import main\n",
    "spoold/client.py": (
        "import json\nfrom spoold.backends.files import fsio\nfrom spoold.config import load\n"
    ),
    "spoold/config.py": "import tomllib\n",
    "spoold/ids.py": "import os\n",
    "spoold/logs.py": "from loguru import logger\nfrom spoold.config import load\n",
    "spoold/durations.py": "",
    "spoold/exec/__init__.py": '"""The launcher\'s code."""\n',
    "spoold/exec/launcher.py": "import os\nfrom spoold.exec import protocol\n",
    "spoold/exec/protocol.py": "import json\n",
    "spoold/backends/__init__.py": "",
    "spoold/backends/files/__init__.py": "",
    "spoold/backends/files/fsio.py": "import os\nfrom spoold import ids\n",
    "spoold/backends/files/store.py": (
        "from watchdog import observers\nfrom . import fsio\nfrom ...core import backend\n"
    ),
    "spoold/core/__init__.py": "",
    "spoold/core/policy.py": "",
    "spoold/core/backend.py": "",
    "spoold/core/daemon.py": "from loguru import logger\nfrom spoold.exec import launcher\n",
    "spoold/cli/__init__.py": "",
    "spoold/cli/output.py": "",
    "spoold/cli/commands.py": "from spoold.core.daemon import run\nfrom spoold.cli import output\n",
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in {**SKELETON, **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_skeleton_passes(tmp_path: Path) -> None:
    assert check(write(tmp_path, {})) == []


def test_the_client_may_load_the_redis_backend_lazily(tmp_path: Path) -> None:
    """run_background_job imports the Redis submitter (and so redis) only when the config
    says backend = "redis": a lazy import of an optional backend is not followed."""
    files = {
        "spoold/client.py": (
            "import json\ndef submitter():\n    from spoold.backends.redis import submitter\n"
        ),
        "spoold/backends/redis/__init__.py": "",
        "spoold/backends/redis/submitter.py": "import redis\n",
    }
    assert check(write(tmp_path, files)) == []


def test_a_parent_package_of_the_clients_modules_may_load_the_daemon_lazily(
    tmp_path: Path,
) -> None:
    """spoold/backends/__init__.py chooses a backend inside a function: the client, which
    only imports a module below it, never runs that function."""
    lazy = "def open_engine():\n    from spoold.backends.files import engine\n"
    files = {
        "spoold/backends/__init__.py": lazy,
        "spoold/backends/files/engine.py": "from loguru import logger\n",
    }
    assert check(write(tmp_path, files)) == []


CAUGHT = {
    "an exec module importing a leaf": (
        {"spoold/exec/bad.py": "import os\nfrom spoold.config import Config\n"},
        "spoold/exec/bad.py:2 imports spoold.config:"
        " exec/ may import only the standard library and spoold.exec",
    ),
    "an exec module importing a leaf inside a function": (
        {"spoold/exec/launcher.py": "def f():\n    from spoold import durations\n"},
        "spoold/exec/launcher.py:2 imports spoold.durations:"
        " exec/ may import only the standard library and spoold.exec",
    ),
    "an exec module importing a third-party package for the type checker": (
        {
            "spoold/exec/bad.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import loguru\n"
            )
        },
        "spoold/exec/bad.py:3 imports loguru:"
        " exec/ may import only the standard library and spoold.exec",
    ),
    "a leaf importing core": (
        {"spoold/ids.py": "import os\nimport spoold.core.daemon\n"},
        "spoold/ids.py:2 imports spoold.core.daemon: a leaf module may not import spoold itself,"
        " spoold.__main__, spoold.client, spoold.backends, spoold.core, spoold.cli or spoold.web",
    ),
    "a leaf importing cli as `from spoold import cli`": (
        {"spoold/durations.py": "from spoold import cli\n"},
        "spoold/durations.py:1 imports spoold.cli: a leaf module may not import",
    ),
    "a backend importing the cli": (
        {"spoold/backends/files/bad.py": "from spoold.cli.output import show\n"},
        "spoold/backends/files/bad.py:1 imports spoold.cli.output: backends/ may import only"
        " the standard library, third-party packages, the leaf modules, spoold.exec,"
        " spoold.backends and spoold.core.backend",
    ),
    "a backend importing the cli relatively": (
        {"spoold/backends/bad.py": "from ..cli import output\n"},
        "spoold/backends/bad.py:1 imports spoold.cli.output: backends/ may import only",
    ),
    "a backend importing the cli relatively, two levels down": (
        {"spoold/backends/files/bad.py": "from ...cli import output\n"},
        "spoold/backends/files/bad.py:1 imports spoold.cli.output: backends/ may import only",
    ),
    "a backend package's __init__ importing the cli relatively": (
        {"spoold/backends/__init__.py": "from ..cli import output\n"},
        "spoold/backends/__init__.py:1 imports spoold.cli.output: backends/ may import only",
    ),
    "the client importing the Redis backend at import time": (
        {
            "spoold/client.py": "import json\nfrom spoold.backends.redis.submitter import S\n",
            "spoold/backends/redis/__init__.py": "",
            "spoold/backends/redis/submitter.py": "import redis\n",
        },
        "spoold/client.py:2 imports spoold.backends.redis.submitter at import time:"
        " spoold.client may load an optional backend only inside a function",
    ),
    "the client importing loguru": (
        {"spoold/client.py": "import json\nfrom loguru import logger\n"},
        "spoold/client.py:2 imports loguru: spoold.client may import only the standard library,"
        " the leaf modules, spoold.backends.files, spoold.backends.redis.submitter"
        " and spoold.core.backend",
    ),
    "the client importing core": (
        {"spoold/client.py": "import spoold.core.policy\n"},
        "spoold/client.py:1 imports spoold.core.policy: spoold.client may import only",
    ),
    "the client importing a leaf that imports loguru": (
        {"spoold/client.py": "from spoold.logs import logger\n"},
        "spoold/logs.py:1 imports loguru: spoold.client imports this module"
        " (spoold.client -> spoold.logs), and nothing it imports may import a third-party"
        " package",
    ),
    "a package the client's module sits in importing a third-party package": (
        {"spoold/backends/files/__init__.py": "import watchdog\n"},
        "spoold/backends/files/__init__.py:1 imports watchdog: spoold.client imports this module"
        " (spoold.client -> spoold.backends.files.fsio -> spoold.backends.files)",
    ),
    "spoold/__init__.py importing the client at import time": (
        {"spoold/__init__.py": "from spoold.client import run\n"},
        "spoold/__init__.py:1 imports spoold.client at import time: spoold/__init__.py may"
        " import spoold modules only inside a function or under TYPE_CHECKING",
    ),
    "spoold/__init__.py importing core": (
        {"spoold/__init__.py": "def f():\n    from spoold.core import daemon\n"},
        "spoold/__init__.py:2 imports spoold.core.daemon: spoold/__init__.py may import only"
        " the standard library and spoold.client",
    ),
    "a backend importing a decision of the core": (
        {"spoold/backends/files/bad.py": "from spoold.core.policy import should_retry\n"},
        "spoold/backends/files/bad.py:1 imports spoold.core.policy: backends/ may import only"
        " the standard library, third-party packages, the leaf modules, spoold.exec,"
        " spoold.backends and spoold.core.backend",
    ),
    "core importing a backend": (
        {"spoold/core/bad.py": "from spoold.backends.files import fsio\n"},
        "spoold/core/bad.py:1 imports spoold.backends.files.fsio: core/ may not import"
        " spoold.backends or spoold.cli",
    ),
    "core importing the cli": (
        {"spoold/core/bad.py": "from spoold.cli import output\n"},
        "spoold/core/bad.py:1 imports spoold.cli.output: core/ may not import spoold.backends"
        " or spoold.cli",
    ),
    "an import of a spoold module in no room": (
        {"spoold/cli/bad.py": "import spoold.nowhere\n"},
        "spoold/cli/bad.py:1 imports spoold.nowhere, which is in no room (see ROOMS)",
    ),
    "a new module at the top": (
        {"spoold/newthing.py": ""},
        "spoold/newthing.py: spoold.newthing is in no room",
    ),
    "a new folder": (
        {"spoold/plugins/__init__.py": "", "spoold/plugins/x.py": "import spoold.cli\n"},
        "spoold/plugins/x.py: spoold.plugins.x is in no room",
    ),
    "a relative import above the package": (
        {"spoold/bad.py": "from .. import x\n"},
        "spoold/bad.py:1 has a relative import above the package",
    ),
    "code in exec/__init__.py": (
        {"spoold/exec/__init__.py": '"""Doc."""\nfrom spoold.exec import protocol\n'},
        "spoold/exec/__init__.py:2: must hold at most a docstring",
    ),
}


@pytest.mark.parametrize(("files", "expected"), CAUGHT.values(), ids=CAUGHT)
def test_the_checker_catches(files: dict[str, str], expected: str, tmp_path: Path) -> None:
    found = messages(check(write(tmp_path, files)))
    assert any(m.startswith(expected) for m in found), "\n".join(found) or "nothing reported"
