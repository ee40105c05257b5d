"""Print a results file as the Markdown table docs/PERFORMANCE.md carries.

``python -m bench.report [bench/results/latest.json]``: one row per figure,
with spoold's median and spread, the ceiling's, their ratio and the target.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT


def main(argv: list[str]) -> None:
    path = Path(argv[1]) if len(argv) > 1 else ROOT / "bench" / "results" / "latest.json"
    document = json.loads(path.read_text())
    print(f"`{document['command']}` at {document['git']}, {document['date']}, "
          f"{document['runs']} run(s) each, {document['seconds']:.0f} s")  # fmt: skip
    print()
    print("| workload | figure | spoold (median, min..max) | ceiling | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    for result in document["results"]:
        for row in _rows(result):
            print("| " + " | ".join(row) + " |")


def _rows(result: dict[str, Any]) -> list[list[str]]:
    name, unit = result["workload"], result.get("unit", "")
    target, met = result.get("target", ""), "yes" if result.get("met") else "**no**"
    if "error" in result or "skipped" in result:
        return [[name, "-", result.get("error") or result.get("skipped", ""), "", "", target, "-"]]
    spoold, ceiling = result.get("spoold"), result.get("ceiling")
    ratio = str(result.get("ratio", "-"))
    if isinstance(spoold, dict) and "median" in spoold:
        return [[name, unit, _spread(spoold), _spread(ceiling), ratio, target, met]]
    rows = []
    for key, figures in (spoold or {}).items():
        other = ceiling.get(key) if isinstance(ceiling, dict) else None
        rows.append([name, key, _spread(figures), _spread(other), ratio, target, met])
    return rows


def _spread(figures: Any) -> str:
    if not isinstance(figures, dict) or "median" not in figures:
        return "-"
    if figures["min"] == figures["max"]:
        return f"{figures['median']:g}"
    return f"{figures['median']:g} ({figures['min']:g}..{figures['max']:g})"


if __name__ == "__main__":
    main(sys.argv)
