"""Where jobs wait and where their records go; today one backend, the file spool (files/)."""
