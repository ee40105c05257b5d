"""The launcher's process: it forks, watches and reaps the job processes (see launcher.py).

Standard library only, and nothing of spoold outside this folder
(tests/test_layers.py): every module the launcher holds makes each fork of
it dearer. Keep this file free of code, so that importing the subpackage
loads nothing.
"""
