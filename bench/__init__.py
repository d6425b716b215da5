"""Shoal's benchmark: seeded workload, UDP and HTTP load generators, and a runner that
compares Shoal with opentracker (``python -m bench``) and measures how cost grows
(``python -m bench scaling``)."""
