r"""A product catalogue on FastAPI whose slow database is behind DataFerry.

    pip install 'dataferry[fastapi]' uvicorn
    uvicorn examples.fastapi_app:app              # from the repository's root directory

    curl -i localhost:8000/products/1             # 0.2 s the first time, then from the cache
    curl -i localhost:8000/products/1 -H 'If-None-Match: "<the ETag it sent>"'   # 304
    curl -i 'localhost:8000/products?category=kitchen' -H 'Accept-Language: fr'
    curl -i localhost:8000/categories/kitchen/stats
    curl -i -X PUT localhost:8000/products/1 -H 'content-type: application/json' \
        -d '{"name": "Teapot", "name_fr": "Théière", "category": "kitchen", "price": 25}'

The cache comes from the ``DATAFERRY_*`` environment variables (``AsyncDataFerry.from_env``):
in-process only by default; ``DATAFERRY_URL=redis://localhost:6379/0`` (and
``DATAFERRY_BACKPLANE=true``) shares it between the workers of ``uvicorn --workers 4``.

What it shows:

- ``GET /products/{id}`` and ``GET /products`` cache their rendered JSON with
  :func:`~dataferry.contrib.fastapi.cache_response`: a hit skips the database *and* the
  serialization, and carries an ``ETag`` and ``Cache-Control: max-age``. The list varies by
  ``Accept-Language`` (French names for ``fr``); its query string is part of the key, in any
  order. An unknown product is a 404, which is not cached.
- ``GET /categories/{name}/stats`` gets the cache by dependency injection (``CacheDep``) and
  caches a computed value with ``get_or_set``.
- ``PUT /products/{id}`` writes the database, then invalidates by tag: the product's own
  page and every list and statistic (on every node, with a backplane).
- ``create_app()`` builds a new application (with a new cache, or the one given): tests start
  one per test, since a closed cache is never reopened.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

from dataferry import AsyncDataFerry
from dataferry.contrib.fastapi import CacheDep, cache_lifespan, cache_response

#: Tag of every list and statistic: any product change makes them stale.
LISTS = "product-lists"


class Product(BaseModel):
    """A product as clients see it."""

    name: str
    name_fr: str
    category: str
    price: float


class ProductSummary(BaseModel):
    """One line of a product list, in the client's language."""

    id: int
    name: str
    price: float


class CategoryStats(BaseModel):
    """Figures about one category."""

    category: str
    products: int
    average_price: float


class Database:
    """A stand-in for a slow database: every query takes ``latency`` seconds and is counted."""

    def __init__(self, latency: float = 0.2) -> None:
        self.latency = latency
        self.queries = 0
        self.products: dict[int, Product] = {
            1: Product(name="Teapot", name_fr="Théière", category="kitchen", price=24.0),
            2: Product(name="Kettle", name_fr="Bouilloire", category="kitchen", price=39.5),
            3: Product(name="Lamp", name_fr="Lampe", category="living", price=55.0),
        }

    async def _query(self) -> None:
        self.queries += 1
        await asyncio.sleep(self.latency)

    async def load_product(self, product_id: int) -> Product | None:
        """The product, or None."""
        await self._query()
        return self.products.get(product_id)

    async def list_products(self, category: str | None) -> list[tuple[int, Product]]:
        """The products of a category (all of them without one), by id."""
        await self._query()
        return [
            (pid, p)
            for pid, p in sorted(self.products.items())
            if category is None or p.category == category
        ]

    async def save_product(self, product_id: int, product: Product) -> None:
        """Insert or replace a product."""
        await self._query()
        self.products[product_id] = product


def create_app(cache: AsyncDataFerry | None = None, db: Database | None = None) -> FastAPI:
    """Build the application around ``cache`` (default: from the environment) and ``db``."""
    database = db if db is not None else Database()
    the_cache = (
        cache
        if cache is not None
        else AsyncDataFerry.from_env(namespace="catalogue", default_ttl=300)
    )
    app = FastAPI(title="Catalogue", lifespan=cache_lifespan(the_cache))
    app.state.db = database

    @app.get("/products/{product_id}")
    @cache_response(ttl=60, tags=["product:{product_id}"])
    async def get_product(product_id: int) -> Product:
        product = await database.load_product(product_id)
        if product is None:
            raise HTTPException(status_code=404, detail=f"no product {product_id}")
        return product

    @app.get("/products")
    @cache_response(ttl=30, tags=[LISTS], vary=["Accept-Language"])
    async def list_products(
        accept_language: Annotated[str, Header()] = "en",
        category: str | None = None,
        max_price: float | None = None,
    ) -> list[ProductSummary]:
        french = accept_language.lower().startswith("fr")
        return [
            ProductSummary(id=pid, name=p.name_fr if french else p.name, price=p.price)
            for pid, p in await database.list_products(category)
            if max_price is None or p.price <= max_price
        ]

    @app.get("/categories/{category}/stats")
    async def category_stats(category: str, cache: CacheDep) -> CategoryStats:
        async def compute() -> CategoryStats:
            products = [p for _, p in await database.list_products(category)]
            if not products:
                raise HTTPException(status_code=404, detail=f"no category {category}")
            average = sum(p.price for p in products) / len(products)
            return CategoryStats(category=category, products=len(products), average_price=average)

        # A value, not a response: cached as JSON, decoded back into CategoryStats.
        return await cache.get_or_set(
            f"stats:{category}", compute, ttl=120, tags=[LISTS], type=CategoryStats
        )

    @app.put("/products/{product_id}")
    async def put_product(product_id: int, product: Product, cache: CacheDep) -> Product:
        await database.save_product(product_id, product)
        # After the write: a reader can't cache the old product again once this returns.
        await cache.remove_by_tag(f"product:{product_id}")
        await cache.remove_by_tag(LISTS)
        return product

    return app


app = create_app()
