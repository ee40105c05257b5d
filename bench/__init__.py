"""spoold's benchmark suite: five workloads against the real daemon, each beside its ceiling.

Run ``python -m bench.run`` (``make bench``) or ``python -m bench.run --quick``
(``make bench-quick``); ``--backend redis`` or ``both`` runs W1..W3 on the Redis
backend too, on a redis-server of the bench's own; see bench/README.md.
"""
