"""Loaded for every test run from this folder: see tests/needs.py (no test hides in CI)."""

pytest_plugins = ["tests.needs"]
