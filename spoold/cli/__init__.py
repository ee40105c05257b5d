"""The ``spoold`` command: its handlers (commands.py), arguments, output and helpers."""
