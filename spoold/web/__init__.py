"""``spoold web``: the dashboard, a process of its own beside the daemon (``pip install
'spoold[web]'``, which brings Jinja2). ``app`` answers requests, ``pages`` and
``browse`` read the spool through the backend's ``Catalog``, ``auth`` and
``redact`` decide who sees what, ``charts`` draws, ``server`` listens."""
