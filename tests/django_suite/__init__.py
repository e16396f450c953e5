"""Django's own cache tests (``BaseCacheTests``) against ``dataferry.contrib.django``.

Django's tests are not copied here: :mod:`tests.django_suite._setup` downloads the source
distribution of the installed Django with pip at test time (cached outside the repository) and
extracts ``tests/cache/`` from it. It also configures Django once per test process, for these
tests and for ``tests/test_contrib_django.py``.
"""
