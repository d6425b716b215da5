"""Shoal: a fast BitTorrent tracker (HTTP and UDP announce and scrape, IPv4 and IPv6)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
