"""The store: where records go.

A volume through CloudFiles, the journal, the ``provenance`` view, the spool, and the one writer over them.
"""
