"""The catalogue's views: cached reads through ``django.core.cache``, invalidation on commit.

Reads go through ``caches["default"]``, a :class:`dataferry.contrib.django.DataFerryCache`:
``get_or_set`` computes a page once (concurrent requests of a process share the computation)
and keeps it in the process's L1 and the shared L2. Every response says in ``X-Cache``
whether this request computed it (``miss``) or the cache answered (``hit``).

A price change invalidates with :func:`~dataferry.contrib.django.invalidate_on_commit`: the
product's entry and, by tag, every list, once the transaction commits. Until then other
requests keep reading the cached values (the old rows are what other connections see); if the
transaction rolls back (here: the database refuses a negative price) nothing is invalidated.
"""

from collections.abc import Callable
from typing import Any

from django.core.cache import caches
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from catalog.models import Product
from dataferry.contrib.django import invalidate_on_commit

#: Seconds a cached page stays fresh.
TTL = 300
#: Tag of every cached list: any product change makes them stale.
LISTS = "product-lists"


def product_key(pk: int) -> str:
    """The cache key of a product's page."""
    return f"product:{pk}"


def cached(key: str, compute: Callable[[], Any], tags: list[str]) -> tuple[Any, bool]:
    """``compute()``'s value through the cache, and whether the cache answered (a hit)."""
    computed = False

    def build() -> Any:
        nonlocal computed
        computed = True
        return compute()

    # An exception in build() (Http404) propagates: nothing is cached.
    value = caches["default"].get_or_set(key, build, timeout=TTL, tags=tags)
    return value, not computed


def respond(value: Any, hit: bool) -> JsonResponse:
    """A JSON response saying whether the cache answered."""
    response = JsonResponse(value, safe=False)
    response["X-Cache"] = "hit" if hit else "miss"
    return response


@require_GET
def product_detail(request: HttpRequest, pk: int) -> JsonResponse:
    """``GET /products/<pk>/``: one product (404 for an unknown one, never cached)."""
    value, hit = cached(
        product_key(pk), lambda: get_object_or_404(Product, pk=pk).as_dict(), tags=[]
    )
    return respond(value, hit)


@require_GET
def product_list(request: HttpRequest) -> JsonResponse:
    """``GET /products/``: every product, cached under the ``product-lists`` tag."""
    value, hit = cached(
        "products", lambda: [p.as_dict() for p in Product.objects.all()], tags=[LISTS]
    )
    return respond(value, hit)


@require_POST
def update_price(request: HttpRequest, pk: int) -> JsonResponse:
    """``POST /products/<pk>/price/`` with ``price_cents``: change it, invalidate on commit."""
    try:
        price = int(request.POST["price_cents"])
    except (KeyError, ValueError):
        return JsonResponse({"error": "price_cents must be an integer"}, status=400)
    get_object_or_404(Product, pk=pk)
    try:
        with transaction.atomic():
            # Registered with the transaction: runs after COMMIT, never after a ROLLBACK.
            invalidate_on_commit(product_key(pk), tags=[LISTS])
            Product.objects.filter(pk=pk).update(price_cents=price)
    except IntegrityError:  # the CHECK (price_cents >= 0) refused it: rolled back
        return JsonResponse({"error": "price_cents must not be negative"}, status=400)
    return JsonResponse({"id": pk, "price_cents": price})


@require_GET
def cache_stats(request: HttpRequest) -> JsonResponse:
    """``GET /cache/stats/``: this process's DataFerry counters (hits per level, ...)."""
    return JsonResponse(caches["default"].dataferry.stats().as_dict())
