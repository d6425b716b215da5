"""Peer stores other than the in-memory one, and persistence."""
