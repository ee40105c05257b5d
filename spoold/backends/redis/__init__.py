"""The Redis backend: jobs, claims and records in one Redis, changed only by library.lua."""
