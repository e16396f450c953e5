"""Settings of the example project: SQLite holds the data, DataFerry caches it.

Environment variables (all optional):

- ``DATAFERRY_URL``: the cache's L2, any URL ``DataFerryCache`` takes as ``LOCATION``
  (``redis://localhost:6379/0``, ``sqlite:///path``, ``memory://``). Default: an embedded SQLite
  file next to the database, so the project runs without a server. On Redis the backplane is
  on: the L1s of several processes (``gunicorn --workers 4``, several hosts) stay coherent.
- ``DJANGO_DATABASE``: the SQLite database file (default ``db.sqlite3`` in this directory).
- ``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG`` (``1`` or ``0``): as in any Django project. The cache
  stores JSON, so it does not depend on ``SECRET_KEY`` (pickled entries would be signed with a
  key derived from it).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Development defaults: set DJANGO_SECRET_KEY and DJANGO_DEBUG=0 anywhere else.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-dataferry-example-only")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = ["catalog"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DATABASE") or BASE_DIR / "db.sqlite3",
    }
}

CACHE_URL = os.environ.get("DATAFERRY_URL") or f"sqlite:///{BASE_DIR / 'cache.sqlite3'}"
CACHES = {
    "default": {
        "BACKEND": "dataferry.contrib.django.DataFerryCache",
        "LOCATION": CACHE_URL,
        "TIMEOUT": 300,
        "OPTIONS": {
            "namespace": "catalog",
            "max_entries": 10_000,  # L1 size, per process
            # JSON instead of Django's pickle: the views cache plain dicts and lists, and
            # other (non-Django) services can read the entries.
            "serializer": "json",
            # Redis: invalidations reach the L1 of every process. SQLite (one host) has no
            # backplane; there each process's L1 may lag until the entry's L1 ttl.
            "backplane": CACHE_URL.startswith(("redis://", "rediss://", "unix://")),
        },
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
