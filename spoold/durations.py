"""Durations and delays as log lines and messages print them.

Standard library only, and nothing of it: the launcher imports this module,
and every module it holds makes each fork of it dearer.
"""

from __future__ import annotations


def seconds(value: float) -> str:
    """``value`` seconds rounded to the millisecond, in its shortest form, with the unit.

    ``1.25s``, ``0.5s``, ``90s``, ``0.003s``; anything under half a
    millisecond is ``0s``. (``{:.1f}`` printed a 1.25 s retry delay as
    1.2s, and ``{:g}`` keeps six significant digits, not milliseconds.)
    """
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return ("0" if text == "-0" else text) + "s"


def age(value: float) -> str:
    """An age as a config writes it: ``7d``, ``12h``, ``30m``, ``1.5h``, ``45s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and (value / size) * 10 == int((value / size) * 10):
            return f"{value / size:g}{unit}"
    return seconds(value)
