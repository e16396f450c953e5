"""The engine of ``CacheWarmer.run()`` (the sync twin, for ``run_sync()``, is generated).

The seeders are read one after another, in the calling task; each item becomes a job of an
:class:`AsyncTaskPool` (a write, a load and a write, or one ``get_or_set_many`` for a batch of
keys), at most ``concurrency`` at once. Every job counts its own outcome in the
:class:`Tally` and never raises: one bad item, loader error or broken seeder never stops the
run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from dataferry._errors import CacheClosedError, ConfigurationError, DataFerryError
from dataferry._warming import (
    AsyncTaskPool,
    KeySeeder,
    Tally,
    WarmPlan,
    WarmReport,
    async_items,
    describe,
    key_of,
    pair_of,
    unwrap,
)

if TYPE_CHECKING:
    from dataferry._async._facade import AsyncDataFerry

__all__ = ["warm"]


async def warm(cache: AsyncDataFerry, plan: WarmPlan) -> WarmReport:
    """Warm ``cache`` as ``plan`` says; return the report."""
    if cache.closed:
        raise CacheClosedError("this cache is closed; create a new one")
    tally = Tally(plan)
    async with AsyncTaskPool(plan.concurrency) as pool:
        for index, seeder in enumerate(plan.seeders):
            try:
                if isinstance(seeder, KeySeeder):
                    await _feed_keys(cache, plan, tally, pool, seeder)
                else:
                    await _feed_pairs(cache, plan, tally, pool, seeder)
            except Exception as exc:  # the seeder broke off: the next ones go on
                tally.fail(f"seeders[{index}]", exc)
    return tally.report()


async def _feed_pairs(
    cache: AsyncDataFerry, plan: WarmPlan, tally: Tally, pool: AsyncTaskPool, seeder: Any
) -> None:
    items = seeder.items() if isinstance(seeder, Mapping) else seeder
    async for item in async_items(items):
        try:
            key, value = pair_of(item)
        except DataFerryError as exc:
            tally.fail(describe(item), exc)
            continue
        await pool.submit(_put, cache, plan, tally, key, partial(_given, value))


async def _given(value: Any) -> Any:
    """A pair's value, as a job's producer (see :func:`_put`)."""
    return value


async def _put(
    cache: AsyncDataFerry,
    plan: WarmPlan,
    tally: Tally,
    key: str,
    produce: Callable[[], Awaitable[Any]],
) -> None:
    """Write ``produce()``'s value under ``key``; without ``overwrite``, only if not fresh."""
    try:
        if plan.overwrite:
            value, ttl, tags, options = unwrap(await produce(), plan)
            await cache.set(key, value, ttl=ttl, tags=tags, options=options)
            tally.add(loaded=1)
            return
        called = False

        async def factory() -> Any:
            nonlocal called
            called = True
            return await produce()

        await cache.get_or_set(key, factory, ttl=plan.ttl, tags=plan.tags, options=plan.options)
    except Exception as exc:
        tally.fail(key, exc)
        return
    if called:
        tally.add(loaded=1)
    else:
        tally.add(skipped=1)


async def _feed_keys(
    cache: AsyncDataFerry, plan: WarmPlan, tally: Tally, pool: AsyncTaskPool, seeder: KeySeeder
) -> None:
    load = seeder.load
    load_many = seeder.load_many
    batch: dict[str, None] = {}  # an ordered set: a key given twice is loaded once
    error: Exception | None = None
    try:
        async for item in async_items(seeder.keys):
            try:
                key = key_of(item)
            except DataFerryError as exc:
                tally.fail(describe(item), exc)
                continue
            if load is not None:
                produce = partial(cache._runtime.call, partial(load, key))
                await pool.submit(_put, cache, plan, tally, key, produce)
            elif key in batch:
                tally.add(skipped=1)
            else:
                batch[key] = None
                if len(batch) >= seeder.batch_size:
                    await pool.submit(_load_batch, cache, plan, tally, load_many, list(batch))
                    batch = {}
    except Exception as exc:  # the keys read before the seeder broke off are still warmed
        error = exc
    if batch:
        await pool.submit(_load_batch, cache, plan, tally, load_many, list(batch))
    if error is not None:
        raise error


async def _load_batch(
    cache: AsyncDataFerry,
    plan: WarmPlan,
    tally: Tally,
    load_many: Callable[[list[str]], Any],
    keys: list[str],
) -> None:
    runtime = cache._runtime
    asked: dict[str, None] = {}  # keys handed to load_many (the others were fresh: skipped)
    got: set[str] = set()

    async def loader(wanted: list[str]) -> Mapping[str, Any]:
        asked.update(dict.fromkeys(wanted))
        loaded = await runtime.call(lambda: load_many(list(wanted)))
        if not isinstance(loaded, Mapping):
            raise ConfigurationError(
                f"load_many must return a mapping, got {loaded.__class__.__name__}"
            )
        got.update(k for k in wanted if k in loaded)
        return loaded

    try:
        if plan.overwrite:
            values = await loader(keys)
            await cache.set_many(
                {k: values[k] for k in keys if k in values},
                ttl=plan.ttl,
                tags=plan.tags,
                options=plan.options,
            )
        else:
            await cache.get_or_set_many(
                keys, loader, ttl=plan.ttl, tags=plan.tags, options=plan.options
            )
    except Exception as exc:
        # The keys being loaded failed (all of them if it failed before the load).
        failed = len(asked) or len(keys)
        tally.fail(f"{failed} keys from {keys[0]!r}", exc, count=failed)
        tally.add(skipped=len(keys) - failed)
        return
    for key in asked:
        if key not in got:
            tally.fail(key, KeyError(f"load_many returned no value for {key!r}"))
    tally.add(loaded=len(got), skipped=len(keys) - len(asked))
