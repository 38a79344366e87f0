"""The backends: SQLite, plain files, memory; :mod:`.locations` says which a location names.

Each backend subclasses :class:`statestore.store.Store` and implements its
backend interface (described there). Backends are imported on first use.
"""
