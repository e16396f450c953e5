"""`dataferry demo`: the workload, its database, its progress bar and its results table."""

from __future__ import annotations

import io
import random
import re
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry import Stats
from dataferry._demo import (
    WARM_UP,
    DemoConfig,
    DemoResult,
    ProductDatabase,
    RunResult,
    ZipfKeys,
    _drive,
    _Progress,
    run_demo,
)

HEADERS = (
    "requests/s",
    "latency p50",
    "latency p95",
    "latency p99",
    "factory calls",
    "hit ratio L1",
    "hit ratio L2",
    "hit ratio overall",
)


def tiny(**changes: object) -> DemoConfig:
    """A demo small enough for a test: ~0.5 s cached, a short baseline, no progress bar."""
    base: dict[str, object] = {
        "duration": 0.5,
        "concurrency": 16,
        "keys": 400,
        "baseline_seconds": 0.2,
        "db_latency_ms": 0.5,
        "progress": False,
    }
    base.update(changes)
    return DemoConfig(**base)  # type: ignore[arg-type]


def check_cached_run(result: DemoResult) -> None:
    """What every demo run must show, whatever its L2."""
    cached, warm, stats = result.cached, result.warm, result.stats
    assert cached.requests > 0
    assert cached.requests_per_second > 0
    assert 0 < cached.p50 <= cached.p95 <= cached.p99
    # Cold start, one load per product: the cache never queries a product twice.
    assert 0 < stats.factory_calls == cached.database_queries <= result.distinct_keys
    assert stats.factory_calls < cached.requests
    assert stats.factory_errors == stats.distributed_errors == stats.decode_errors == 0
    # The L1 is a quarter of the products: both levels answer.
    assert stats.memory_hits > 0
    assert stats.distributed_hits > 0
    assert 0 < cached.l1_hit_ratio < 1
    assert 0 < cached.l2_hit_ratio <= 1
    assert cached.l1_hit_ratio < cached.hit_ratio == stats.hit_ratio <= 1
    # The warm part is the tail of the same run, counted on its own.
    assert 0 < warm.requests < cached.requests
    assert 0 < warm.seconds < cached.seconds
    assert warm.database_queries <= cached.database_queries
    assert warm.stats is not None
    # Counters and latencies split at one instant: requests in flight then fall on either side.
    lookups = warm.stats.memory_hits + warm.stats.memory_misses
    assert abs(lookups - warm.requests) <= result.config.concurrency


def check_stats_table(result: DemoResult, printed: str) -> None:
    """The output ends with the cache's own counters: every one, with the cached run's values."""
    stats = result.stats
    head, tail = printed.rstrip("\n").split("\ncache.stats() at the end of the cached run:\n")
    assert tail == str(stats)
    assert "DataFerry stats" not in head
    values = {line.split()[0]: line.split()[1] for line in tail.splitlines() if line[:2] == "  "}
    assert values["factory_calls"] == f"{stats.factory_calls:,}"
    assert values["factory_calls"] == f"{result.cached.database_queries:,}"
    assert values["memory_hits"] == f"{stats.memory_hits:,}"
    assert values["distributed_hits"] == f"{stats.distributed_hits:,}"
    assert values["distributed_errors"] == values["decode_errors"] == "0"
    assert tail.splitlines()[0].startswith(f"DataFerry stats: hit ratio {stats.hit_ratio:.1%}")
    # The overall hit ratio of the results table and of the counters agree.
    assert f"{result.cached.hit_ratio:.1%}" in head


def test_embedded_demo_measures_both_runs(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    result = run_demo(tiny(), out=out)

    check_cached_run(result)
    assert result.l2_name.startswith("SQLiteCache")
    assert result.l1_size == 100
    baseline = result.baseline
    assert baseline is not None
    assert baseline.requests > 0
    assert baseline.database_queries == baseline.requests  # no cache: every request queries
    assert baseline.stats is None
    assert baseline.hit_ratio == baseline.l1_hit_ratio == baseline.l2_hit_ratio == 0
    assert result.speedup == pytest.approx(
        result.cached.requests_per_second / baseline.requests_per_second
    )
    assert result.warm_speedup == pytest.approx(
        result.warm.requests_per_second / baseline.requests_per_second
    )
    table = out.getvalue()
    assert table == result.table() + "\n"
    for header in (*HEADERS, "with DataFerry", "warm (last 75%)", "without cache", "extrapolated"):
        assert header in table
    assert f"{result.cached.requests:,}" in table
    check_stats_table(result, table)
    # Progress off: stderr only says what is being prepared.
    assert "creating a SQLite database of 400 products" in capsys.readouterr().err


def test_request_budget_is_exact_and_baseline_optional() -> None:
    out = io.StringIO()
    result = run_demo(tiny(requests=1_500, baseline=False, l1_size=25), out=out, err=io.StringIO())

    check_cached_run(result)
    assert result.cached.requests == 1_500
    assert result.warm.requests == 1_500 - int(1_500 * WARM_UP)
    assert result.l1_size == 25
    assert result.baseline is None
    assert result.speedup is None
    assert result.warm_speedup is None
    table = out.getvalue()
    assert "requests/s" in table
    assert "without cache" not in table
    assert "extrapolated" not in table
    check_stats_table(result, table)


def test_demo_against_redis(redis_url: str) -> None:
    out = io.StringIO()
    result = run_demo(tiny(redis_url=redis_url, baseline=False), out=out, err=io.StringIO())

    check_cached_run(result)
    assert result.l2_name == f"RedisCache(url='{redis_url}')"
    assert f"L2 RedisCache(url='{redis_url}')" in out.getvalue()
    check_stats_table(result, out.getvalue())
    # The demo leaves the shared server as it found it.
    with redis.Redis.from_url(redis_url) as client:
        assert client.keys("dataferry-demo-*") == []


# -- the parts ---------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 500),
    s=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**32),
    k=st.integers(0, 200),
)
def test_zipf_keys_are_reproducible_product_ids(n: int, s: float, seed: int, k: int) -> None:
    first = ZipfKeys(n, s, random.Random(seed)).draw(k)
    again = ZipfKeys(n, s, random.Random(seed)).draw(k)
    assert first == again
    assert len(first) == k
    assert all(1 <= pid <= n for pid in first)


def test_zipf_popularity_follows_rank() -> None:
    keys = ZipfKeys(100, 1.2, random.Random(1))
    counts = Counter(keys.draw(50_000))
    ranked = [pid for pid, _ in counts.most_common()]
    # Rank 1 is drawn ~1/H(100, 1.2) ~ 27% of the time, rank 2 about 2**-1.2 of that.
    assert counts[ranked[0]] / 50_000 == pytest.approx(0.27, abs=0.03)
    assert counts[ranked[1]] / counts[ranked[0]] == pytest.approx(2**-1.2, abs=0.08)
    # Popularity is shuffled over the ids: the hottest product is not simply id 1.
    assert ranked[:5] != [1, 2, 3, 4, 5]


async def test_product_database_serves_json_rows(tmp_path: Path) -> None:
    db = ProductDatabase.create(tmp_path / "p.sqlite", products=50, seed=3, latency=0.0)
    try:
        product = await db.load_product(17)
        assert product["id"] == 17
        assert product["sku"] == "SKU-0000017"
        assert set(product) >= {"name", "category", "price", "attributes", "reviews"}
        assert orjson.loads(orjson.dumps(product)) == product  # JSON-able
        assert db.queries == 1
        with pytest.raises(LookupError, match="no product 51"):
            await db.load_product(51)
    finally:
        db.close()
    # Same seed, same data.
    twin = ProductDatabase.create(tmp_path / "q.sqlite", products=50, seed=3, latency=0.001)
    try:
        assert await twin.load_product(17) == product
    finally:
        twin.close()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    screen = _Terminal()
    seen: list[int] = []

    async def request(pid: int) -> None:
        seen.append(pid)

    trace = await _drive(
        request,
        ZipfKeys(10, 1.0, random.Random(0)),
        concurrency=4,
        seconds=None,
        budget=2_000,
        progress=_Progress(screen, "demo", interval=0.0),
    )
    assert len(trace.latencies) == len(seen) == 2_000
    assert trace.seconds > 0
    text = screen.getvalue()
    assert text.startswith("\r[")
    assert text.count("\r") >= 2  # redrawn while running, then the final state
    assert "\n" not in text[:-1]  # one line, redrawn in place
    final = text.rsplit("\r", 1)[1]
    assert final.startswith("[" + "#" * 30 + "] demo 100%")
    assert "2,000 requests" in final
    assert final.endswith("/s\n")


async def test_progress_prints_lines_when_not_a_terminal() -> None:
    log = io.StringIO()

    async def request(pid: int) -> None:
        return None

    await _drive(
        request,
        ZipfKeys(10, 1.0, random.Random(0)),
        concurrency=2,
        seconds=None,
        budget=500,
        progress=_Progress(log, "baseline", interval=0.0),
    )
    lines = log.getvalue().splitlines()
    assert len(lines) >= 2
    assert "\r" not in log.getvalue()
    assert lines[-1].startswith("baseline 100%")
    assert "500 requests" in lines[-1]


async def test_duration_bounds_a_run() -> None:
    async def request(pid: int) -> None:
        return None

    warmed: list[int] = []
    log = io.StringIO()
    trace = await _drive(
        request,
        ZipfKeys(10, 1.0, random.Random(0)),
        concurrency=3,
        seconds=0.05,
        budget=None,
        progress=_Progress(log, "timed", interval=0.0),
        on_warm=lambda: warmed.append(len(warmed)),
    )
    assert len(trace.latencies) > 0
    assert trace.seconds >= 0.05
    assert warmed == [0]  # called once
    assert 0 < trace.warm_index < len(trace.latencies)
    assert 0 < trace.warm_seconds < trace.seconds
    assert log.getvalue().splitlines()[-1].startswith("timed 100%")


def test_table_warns_about_l2_errors() -> None:
    run = RunResult(
        requests=10,
        seconds=1.0,
        database_queries=10,
        p50=1e-6,
        p95=2e-6,
        p99=3e-3,
        stats=Stats(memory_misses=10, distributed_misses=3, distributed_errors=7, factory_calls=10),
    )
    result = DemoResult(
        config=DemoConfig(),
        l1_size=5,
        l2_name="RedisCache(url='redis://127.0.0.1:1/0')",
        cached=run,
        warm=run,
        baseline=None,
        distinct_keys=10,
    )
    table = result.table()
    assert "Warning: 7 L2 errors (answered by the factory)." in table
    rows = {
        line.split("  ")[1]: line.split()
        for line in table.splitlines()
        if line.startswith("  latency")
    }
    assert rows["latency p50"][2:] == ["1.0", "µs", "1.0", "µs"]  # µs, one decimal below 100
    assert rows["latency p99"][2:] == ["3,000", "µs", "3,000", "µs"]
    # The counters follow, the errors among them.
    assert table.endswith("\n" + str(run.stats))
    assert re.search(r"^  distributed_errors +7$", table, re.MULTILINE)
    assert re.search(r"^  decode_errors +0$", table, re.MULTILINE)


def test_short_extrapolation_keeps_a_decimal() -> None:
    cached = RunResult(
        requests=3_000,
        seconds=0.2,
        database_queries=300,
        p50=1e-6,
        p95=1e-6,
        p99=1e-6,
        stats=Stats(memory_hits=2_700, memory_misses=300, factory_calls=300),
    )
    baseline = RunResult(
        requests=1_400, seconds=0.2, database_queries=1_400, p50=2e-3, p95=3e-3, p99=4e-3
    )
    result = DemoResult(
        config=DemoConfig(),
        l1_size=5,
        l2_name="SQLiteCache",
        cached=cached,
        warm=cached,
        baseline=baseline,
        distinct_keys=300,
    )
    # 3,000 requests at 7,000/s: ~0.4 s, not "~0 s".
    assert "would take ~0.4 s instead of 0.2 s" in " ".join(result.table().split())
