"""The daemon's decisions: its loop, what runs next, and where each job goes when it ends.

May import anything of spoold but the CLI (tests/test_layers.py).
"""
