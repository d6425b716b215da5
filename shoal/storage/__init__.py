"""Where swarms live: the :class:`~shoal.storage.base.PeerStore` interface, the in-memory
store, and the SQLite persistence of the in-memory store."""
