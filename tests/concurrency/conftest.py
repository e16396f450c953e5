"""Concurrency tests run on the stdlib event loop and on uvloop (like the facade tests)."""

from tests._async.conftest import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]
