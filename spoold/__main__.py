"""``python -m spoold``: the same as the ``spoold`` command."""

from spoold.cli import main

raise SystemExit(main())
