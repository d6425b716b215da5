"""Thin asyncio servers: read bytes, call protocol, engine, protocol, write bytes."""
