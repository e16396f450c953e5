r"""A background worker on the sync API: threads price orders with cached reference data.

    python examples/worker.py                        # embedded SQLite L2 in a temporary directory
    DATAFERRY_URL=redis://localhost:6379/0 python examples/worker.py --threads 16 --jobs 600
    python examples/worker.py --json                 # the summary as JSON, for scripts

A worker (a queue consumer, a cron job, a Celery task) is threaded code, so it uses
:class:`dataferry.DataFerry`, the sync twin of ``AsyncDataFerry``. Each job prices an order
with reference data from three slow services, each read through the cache a different way:

- exchange rates through ``@cache.cached`` (the arguments of the function make the key);
- products through ``cache.loader``: the lookups of concurrent threads go out as one batch
  (one L2 read, one call of the catalogue for the keys the L2 lacks);
- customers through ``cache.get_or_set``.

Threads that need the same missing key at the same time share one call of the service
(single-flight), so each service is called at most once per key, however many threads ask.

Then the rates service goes down while the rates go stale (here: ``cache.expire``, as if their
ttl had run out). The cache is built with fail-safe options: jobs keep being priced with the
last rates it had, kept past their ttl, and the failing service is called once per rate (then
not again for ``fail_safe_throttle`` seconds), not once per job. ``factory_hard_timeout``
bounds how long a job waits for a service that hangs instead of failing.

The L2 is ``$DATAFERRY_URL`` (a URL as ``DataFerry.from_url`` reads it: ``redis://...``,
``sqlite:///path``...) or, by default, an embedded SQLite file in a temporary directory, so no
server is needed. Several workers on one Redis share the reference data: the first one that
needs a key fetches it, the others read it from Redis.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dataferry as df

#: Reference data the services answer from (what a real worker would fetch over the network).
RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.86, "CHF": 0.95, "JPY": 162.0}
PRODUCTS = 60
CUSTOMERS = 40

#: Fail-safe options for every call of the worker's cache.
OPTIONS = df.EntryOptions(
    ttl=600,
    fail_safe=True,  # keep values past their ttl, and serve them when a service fails
    fail_safe_throttle=30,  # after a failure, trust the stale value 30 s before asking again
    factory_hard_timeout=5,  # never wait more than 5 s for a service
)


class Service:
    """A stand-in for a slow remote service: each call takes ``latency`` s and is counted."""

    def __init__(self, name: str, latency: float) -> None:
        self.name = name
        self.latency = latency
        self.down = False
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def call(self, *keys: str) -> None:
        """Count one call for each of ``keys``; wait the latency, or fail while down."""
        with self._lock:
            self.calls.update(keys)
        if self.down:
            raise ConnectionError(f"{self.name} service is unavailable")
        time.sleep(self.latency)  # the network round trip


@dataclass(frozen=True)
class Order:
    """An order to price: a customer, lines of (product id, quantity), a currency."""

    id: int
    customer: int
    lines: tuple[tuple[int, int], ...]
    currency: str


def make_orders(count: int, seed: int, first_id: int = 1) -> list[Order]:
    """``count`` random orders (the same ones for the same ``seed``)."""
    rng = random.Random(seed)
    currencies = list(RATES)
    return [
        Order(
            id=first_id + i,
            customer=rng.randrange(CUSTOMERS),
            lines=tuple(
                (rng.randrange(PRODUCTS), rng.randint(1, 5)) for _ in range(rng.randint(1, 4))
            ),
            currency=rng.choice(currencies),
        )
        for i in range(count)
    ]


class Worker:
    """Prices orders on a thread pool; reference data comes through ``cache``."""

    def __init__(self, cache: df.DataFerry, latency: float = 0.02) -> None:
        self.cache = cache
        self.rates = Service("rates", latency)
        self.catalogue = Service("catalogue", latency)
        self.crm = Service("crm", latency)

        @cache.cached(key="rate:{currency}")
        def fx_rate(currency: str) -> float:
            self.rates.call(f"rate:{currency}")
            return RATES[currency]

        def load_products(keys: list[str]) -> dict[str, dict[str, Any]]:
            self.catalogue.call(*keys)
            return {key: product(int(key.split(":")[1])) for key in keys}

        self.fx_rate = fx_rate
        self.products = cache.loader(load_products)

    def customer(self, cid: int) -> dict[str, Any]:
        """The customer's record (its discount), from the cache or the CRM."""

        def fetch() -> dict[str, Any]:
            self.crm.call(f"customer:{cid}")
            return customer_record(cid)

        value: dict[str, Any] = self.cache.get_or_set(f"customer:{cid}", fetch)
        return value

    def price(self, order: Order) -> float:
        """The order's total in its currency, after the customer's discount."""
        customer = self.customer(order.customer)
        found = self.products.load_many([f"product:{pid}" for pid, _ in order.lines])
        net: float = sum(found[f"product:{pid}"]["price"] * qty for pid, qty in order.lines)
        discount: float = customer["discount"]
        return round(net * (1 - discount) * self.fx_rate(order.currency), 2)

    def run(self, orders: list[Order], threads: int) -> list[float]:
        """Price every order on ``threads`` threads; the totals, in order."""
        with ThreadPoolExecutor(threads, thread_name_prefix="worker") as pool:
            return list(pool.map(self.price, orders))

    def calls(self) -> dict[str, dict[str, int]]:
        """Calls of each service per key so far."""
        return {
            s.name: dict(sorted(s.calls.items())) for s in (self.rates, self.catalogue, self.crm)
        }


def product(pid: int) -> dict[str, Any]:
    """What the catalogue knows of product ``pid``."""
    return {"id": pid, "price": 5 + (pid * 37) % 200 / 2}


def customer_record(cid: int) -> dict[str, Any]:
    """What the CRM knows of customer ``cid``."""
    return {"id": cid, "discount": (cid % 4) * 0.05}


def delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Service calls per key between two snapshots of :meth:`Worker.calls`."""
    out: dict[str, Any] = {}
    for name, counts in after.items():
        diff = {k: n - before[name].get(k, 0) for k, n in counts.items()}
        out[name] = {k: n for k, n in sorted(diff.items()) if n}
    return out


def open_cache(url: str | None, directory: Path) -> tuple[df.DataFerry, str]:
    """The worker's cache on ``url``, or on a SQLite file in ``directory``; and its L2 URL."""
    url = url or f"sqlite:///{directory / 'worker-cache.sqlite'}"
    return df.DataFerry.from_url(url, namespace="worker", default_options=OPTIONS), url


def describe(calls: dict[str, dict[str, int]]) -> str:
    """``rates 5 calls for 5 keys, ...`` for the report."""
    return ", ".join(
        f"{name} {sum(c.values())} calls for {len(c)} keys" for name, c in calls.items()
    )


def main(argv: list[str] | None = None) -> int:
    """Run the worker: a batch of jobs, then a batch while the rates service is down."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=300, help="orders per batch (default 300)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the orders")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    # DataFerry logs to the "dataferry" logger: here, the fail-safe warning of batch 2.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="dataferry-worker-") as tmp:
        cache, url = open_cache(os.environ.get("DATAFERRY_URL"), Path(tmp))
        with cache:
            worker = Worker(cache)
            say = (lambda *_: None) if args.json else print
            say(f"worker: {args.jobs} orders per batch on {args.threads} threads, L2 {url}")

            # 1. A batch of jobs: every service is called once per key, whatever the threads.
            started = time.perf_counter()
            totals = worker.run(make_orders(args.jobs, args.seed), args.threads)
            elapsed = time.perf_counter() - started
            first = worker.calls()
            say(f"batch 1: {len(totals)} orders priced in {elapsed:.2f} s; {describe(first)}")

            # 2. The rates service goes down just as the rates go stale: fail-safe keeps the
            # jobs going with the last rates, and asks the service once per rate.
            worker.rates.down = True
            for currency in RATES:
                cache.expire(worker.fx_rate.key(currency))
            orders = make_orders(args.jobs, args.seed + 1, first_id=args.jobs + 1)
            outage_totals = worker.run(orders, args.threads)
            outage = delta(worker.calls(), first)
            say(
                f"batch 2, rates service down: {len(outage_totals)} orders priced with stale "
                f"rates; {describe(outage)}"
            )
            stats = cache.stats()
            summary = {
                "l2": url,
                "threads": args.threads,
                "batches": [
                    {"orders": len(totals), "revenue": round(sum(totals), 2), "calls": first},
                    {
                        "orders": len(outage_totals),
                        "revenue": round(sum(outage_totals), 2),
                        "calls": outage,
                    },
                ],
                "stats": stats.as_dict(),
            }
            if args.json:
                print(json.dumps(summary, indent=2))
            else:
                print(stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
