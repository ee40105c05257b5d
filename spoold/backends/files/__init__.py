"""The file spool: everything that knows its folders and file names.

The client imports fsio from here, so this file stays free of imports.
"""
