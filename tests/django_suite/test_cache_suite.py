"""Django's own cache backend tests (``BaseCacheTests``) against ``DataFerryCache``.

Two configurations, as the issue asks: an L1 in front of Redis (a server of our own), and
SQLite alone (no L1). Django's ``tests/cache`` comes from the sdist of the installed Django
(:func:`tests.django_suite._setup.django_cache_tests`); if it can't be fetched, the test below
fails: it never skips.

Excluded (each has no meaning for this backend; Django skips them itself for its Redis backend,
whose settings leave out the same two aliases):

- ``test_cull``, ``test_zero_cull``, ``test_cull_delete_when_store_empty``: they count the keys
  left after overflowing ``MAX_ENTRIES`` with ``CULL_FREQUENCY``, Django's culling of its
  database, file and local-memory stores. DataFerry's L2 is Redis (whose memory policy evicts)
  or SQLite, and its L1 evicts by W-TinyLFU without losing anything the L2 holds: there is no
  cull to count. The ``cull`` / ``zero_cull`` aliases are left out of ``CACHES``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from typing import Any, ClassVar

import pytest

from tests.django_suite._setup import django_cache_tests, install_apps

BACKEND = "dataferry.contrib.django.DataFerryCache"

#: Django's tests left out, and why (see the module doc).
EXCLUDED = {
    "test_cull": "counts what Django's culling leaves: no culling here (L1 evicts, L2 keeps)",
    "test_zero_cull": "counts what Django's culling leaves: no culling here (L1 evicts, L2 keeps)",
    "test_cull_delete_when_store_empty": "sets Django's cull limit (_max_entries): no culling",
}
#: Aliases of Django's test settings that configure culling (omitted, as for Django's Redis).
CULL_ALIASES = {"cull", "zero_cull"}

try:
    SUITE = django_cache_tests()
except Exception as exc:  # a download that fails must fail the run
    _FETCH_ERROR = f"{type(exc).__name__}: {exc}"

    def test_django_cache_tests_are_available() -> None:
        pytest.fail(f"Django's cache tests could not be fetched: {_FETCH_ERROR}", pytrace=False)

else:
    if str(SUITE) not in sys.path:
        sys.path.insert(0, str(SUITE))
    install_apps("cache")  # Django's tests/cache: its Poll model and table

    from cache.tests import BaseCacheTests, caches_setting_for_tests
    from django.test import TestCase, override_settings

    from dataferry.contrib.django import shutdown_caches
    from tests.redis_servers import RedisServer

    class _Configured:
        """Points Django's cache settings at DataFerryCache for one test class."""

        location: ClassVar[str]
        options: ClassVar[dict[str, Any]] = {}
        _override: ClassVar[Any]

        @classmethod
        def start(cls) -> str:
            raise NotImplementedError

        @classmethod
        def stop(cls) -> None:
            pass

        @classmethod
        def setUpClass(cls) -> None:
            location = cls.start()
            try:
                caches = caches_setting_for_tests(
                    BACKEND=BACKEND, LOCATION=location, OPTIONS=cls.options, exclude=CULL_ALIASES
                )
                cls._override = override_settings(CACHES=caches)
                cls._override.enable()
                try:
                    super().setUpClass()  # the TestCase's, next in the MRO
                except BaseException:
                    cls._override.disable()
                    raise
            except BaseException:
                cls.stop()
                raise

        @classmethod
        def tearDownClass(cls) -> None:
            try:
                super().tearDownClass()
            finally:
                cls._override.disable()
                shutdown_caches()
                cls.stop()

    def _exclude(cls: type) -> type:
        for name in EXCLUDED:
            setattr(cls, name, None)  # not a test any more (unittest collects callables only)
        return cls

    @_exclude
    class TestL1AndRedis(_Configured, BaseCacheTests, TestCase):
        """An L1 (DataFerry's default MemoryCache) in front of a Redis of our own."""

        server: ClassVar[RedisServer]

        @classmethod
        def start(cls) -> str:
            cls.server = RedisServer(name="django-suite").start()
            return f"{cls.server.url}/0?namespace=djsuite"

        @classmethod
        def stop(cls) -> None:
            server = getattr(cls, "server", None)
            if server is not None:
                server.close()

    @_exclude
    class TestSQLiteOnly(_Configured, BaseCacheTests, TestCase):
        """SQLite as the only level: no L1 (``max_entries=0``)."""

        directory: ClassVar[str]

        @classmethod
        def start(cls) -> str:
            cls.directory = tempfile.mkdtemp(prefix="dataferry-django-")
            return f"sqlite:///{cls.directory}/cache.sqlite?max_entries=0"

        @classmethod
        def stop(cls) -> None:
            directory = getattr(cls, "directory", None)
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
