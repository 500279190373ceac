"""Shared test setup: a numba cache private to the test session's machine user."""
