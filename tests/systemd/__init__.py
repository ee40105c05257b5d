"""spoold under a real systemd, in a container: ``make test-systemd``."""
