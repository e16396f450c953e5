"""Django for the tests: settings configured once per process, and Django's own cache tests.

:func:`configure_django` configures settings (an in-memory SQLite database, no apps) and
``django.setup()``, once; :func:`install_apps` adds test apps afterwards, as Django's own
``runtests.py`` does, and creates their tables. :func:`django_cache_tests` returns a directory
holding Django's ``tests/cache`` package (importable as ``cache``), taken from the source
distribution of the installed Django version, which ``pip download`` fetches from PyPI the first
time (it is kept in ``$XDG_CACHE_HOME/dataferry-tests``, default ``~/.cache/dataferry-tests``;
``$DATAFERRY_TEST_CACHE`` overrides the directory). A failed download raises: the tests fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import django
from django.apps import apps
from django.conf import settings
from django.core.management import call_command

__all__ = ["configure_django", "django_cache_tests", "install_apps"]

SECRET_KEY = "dataferry-tests-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


def configure_django() -> None:
    """Configure Django's settings for the tests and set Django up (once per process)."""
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=[],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        MIDDLEWARE=[],
        USE_TZ=True,
    )
    django.setup()


def install_apps(*names: str) -> None:
    """Add apps to ``INSTALLED_APPS`` (as Django's runtests.py does) and create their tables."""
    configure_django()
    missing = [name for name in names if name not in settings.INSTALLED_APPS]
    if not missing:
        return
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, *missing]
    apps.set_installed_apps(settings.INSTALLED_APPS)
    # Apps without migrations: their tables are created as "syncdb" did.
    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)


def _cache_root() -> Path:
    configured = os.environ.get("DATAFERRY_TEST_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dataferry-tests"


def _download(version: str, into: Path) -> Path:
    """Return the sdist of Django ``version`` in ``into``, downloading it with pip if needed."""
    for name in (f"django-{version}.tar.gz", f"Django-{version}.tar.gz"):
        if (into / name).is_file():
            return into / name
    into.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"django=={version}",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "--dest",
        str(into),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"pip could not download Django {version}'s sdist:\n{tail}")
    for name in (f"django-{version}.tar.gz", f"Django-{version}.tar.gz"):
        if (into / name).is_file():
            return into / name
    raise RuntimeError(f"pip download left no sdist of Django {version} in {into}")


def django_cache_tests() -> Path:
    """Return a directory holding Django's ``tests/cache`` as the package ``cache``.

    Raises:
        RuntimeError: The sdist could not be downloaded, or holds no ``tests/cache``.

    """
    version = django.__version__
    root = _cache_root() / f"django-{version}"
    suite = root / "suite"
    if (suite / "cache" / "tests.py").is_file():
        return suite
    tarball = _download(version, root)
    staging = Path(tempfile.mkdtemp(prefix="suite.", dir=root))
    try:
        package = staging / "cache"
        package.mkdir()
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                parts = PurePosixPath(member.name).parts
                # django-X.Y/tests/cache/<file>: plain files only, never a path of our own making
                if len(parts) != 4 or parts[1:3] != ("tests", "cache") or not member.isfile():
                    continue
                source = archive.extractfile(member)
                if source is None or not parts[3].endswith(".py"):
                    continue
                (package / parts[3]).write_bytes(source.read())
        if not (package / "tests.py").is_file():
            raise RuntimeError(f"{tarball.name} holds no tests/cache/tests.py")
        try:
            staging.rename(suite)  # atomic: a concurrent run may have won, which is as good
        except OSError:
            if not (suite / "cache" / "tests.py").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return suite
