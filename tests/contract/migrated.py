"""The type of the contract tests' `migrated_url` fixture (conftest.py)."""

from collections.abc import Awaitable, Callable

MigratedUrl = Callable[[str, str], Awaitable[str]]
"""`(backend, name)` to the URL of a new database at the newest migration, on "sqlite" or "postgresql"."""
