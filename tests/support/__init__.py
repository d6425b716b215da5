"""Helpers shared by the test directories (importable as ``support`` via tests/conftest.py)."""
