"""spoold: background jobs for one Linux host, from a JSON file spool.

The public API is the client: ``run_background_job`` (and its Laravel-style
alias ``runBackgroundJob``) writes one job file and returns its id. Importing
this package loads nothing heavier than the standard library.
"""

from spoold.client import run_background_job, runBackgroundJob

__all__ = ["__version__", "runBackgroundJob", "run_background_job"]
__version__ = "0.1.0"
