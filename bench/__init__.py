"""spoold's benchmark suite: five workloads against the real daemon, each beside its ceiling.

Run ``python -m bench.run`` (``make bench``) or ``python -m bench.run --quick``
(``make bench-quick``); see bench/README.md.
"""
