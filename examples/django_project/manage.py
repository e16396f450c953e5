#!/usr/bin/env python
r"""A Django project whose views cache through DataFerry: Django's command line for it.

    pip install 'dataferry[django]'
    cd examples/django_project
    python manage.py migrate                 # the SQLite database, with three products
    python manage.py runserver               # cache: an embedded SQLite file, no server needed
    DATAFERRY_URL=redis://localhost:6379/0 python manage.py runserver     # or Redis

    curl -i localhost:8000/products/1/       # X-Cache: miss, then X-Cache: hit
    curl -i localhost:8000/products/
    curl -i -X POST localhost:8000/products/1/price/ -d price_cents=2000  # invalidates on commit
    curl -i -X POST localhost:8000/products/1/price/ -d price_cents=-5    # 400, rolled back
    curl -s localhost:8000/cache/stats/      # this process's DataFerry counters

``project/settings.py`` configures ``CACHES`` with ``dataferry.contrib.django.DataFerryCache``
(and lists the environment variables it reads); ``catalog/views.py`` uses the cache through
``django.core.cache.caches`` and invalidates with ``invalidate_on_commit``.
"""

import os
import sys


def main() -> None:
    """Run a Django management command with this project's settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
