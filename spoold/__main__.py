"""``python -m spoold``: the same as the ``spoold`` command."""

from spoold.cli.commands import main

raise SystemExit(main())
