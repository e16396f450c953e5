"""`dataferry demo`: the workload, its database, its progress bar and its results table."""

from __future__ import annotations

import asyncio
import dataclasses
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
from dataferry._console import progress
from dataferry._demo import (
    WARM_UP,
    DemoConfig,
    DemoResult,
    ProductDatabase,
    RunResult,
    ZipfKeys,
    _drive,
    run_demo,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(autouse=True)
def plain_unless_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich draws on terminals only: a FORCE_COLOR of the caller's shell must not count."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "80")


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


def check_cached_run(result: DemoResult, *, both_levels: bool = True) -> None:
    """What every demo run must show, whatever its L2.

    ``both_levels``: the run was long enough to evict from the L1 and read products back
    from the L2 (a request budget of a few thousand; a run of fixed seconds holds however
    many requests the machine managed).
    """
    cached, warm, stats = result.cached, result.warm, result.stats
    assert cached.requests > 0
    assert cached.requests_per_second > 0
    assert 0 < cached.p50 <= cached.p95 <= cached.p99
    # Cold start, one load per product: the cache never queries a product twice.
    assert 0 < stats.factory_calls == cached.database_queries <= result.distinct_keys
    assert stats.factory_calls < cached.requests
    assert stats.factory_errors == stats.distributed_errors == stats.decode_errors == 0
    assert stats.memory_hits > 0
    assert 0 < cached.l1_hit_ratio <= cached.hit_ratio == stats.hit_ratio <= 1
    if both_levels:  # the L1 holds a part of the products: both levels answer
        assert stats.distributed_hits > 0
        assert cached.l1_hit_ratio < cached.hit_ratio
        assert 0 < cached.l2_hit_ratio <= 1
    # The warm part is the tail of the same run, counted on its own.
    assert 0 < warm.requests < cached.requests
    assert 0 < warm.seconds < cached.seconds
    assert warm.database_queries <= cached.database_queries
    assert warm.stats is not None
    # Counters and latencies split at one instant: requests in flight then fall on either side.
    lookups = warm.stats.memory_hits + warm.stats.memory_misses
    assert abs(lookups - warm.requests) <= result.config.concurrency


def check_stats_table(result: DemoResult, printed: str) -> None:
    """The report starts with the cache's own counters: every one, with the cached run's values."""
    stats = result.stats
    head, rest = printed.split("cache.stats() at the end of the cached run:\n")
    tail, results = rest.split("\n\nResults\n")
    assert tail == str(stats)
    assert "DataFerry stats" not in head + results
    values = {line.split()[0]: line.split()[1] for line in tail.splitlines() if line[:2] == "  "}
    assert values["factory_calls"] == f"{stats.factory_calls:,}"
    assert values["factory_calls"] == f"{result.cached.database_queries:,}"
    assert values["memory_hits"] == f"{stats.memory_hits:,}"
    assert values["distributed_hits"] == f"{stats.distributed_hits:,}"
    assert values["distributed_errors"] == values["decode_errors"] == "0"
    assert tail.splitlines()[0].startswith(f"DataFerry stats: hit ratio {stats.hit_ratio:.1%}")
    # The overall hit ratio of the results table and of the counters agree.
    assert f"{result.cached.hit_ratio:.1%}" in results


def test_embedded_demo_measures_both_runs(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    result = run_demo(tiny(), out=out)

    # 0.5 s: ~17,000 requests here, a few hundred on a loaded machine (too few to evict from
    # the L1). The budgeted runs below check that both levels answer.
    check_cached_run(result, both_levels=False)
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
    printed = out.getvalue()
    plan, report = printed.split("\n\n", 1)
    # What it will run, before it runs: workload, length, database, cache.
    assert plan.startswith("dataferry demo\n")
    for words in (
        "16 concurrent tasks",
        "Zipf s=1",
        "400 products (distinct keys)",
        "0.5 s through the cache, starting empty",
        "then 0.2 s of the same workload without the cache",
        "0.5 ms simulated network latency per query",
        "L1 MemoryCache(max_entries=100) + L2 SQLiteCache",
    ):
        assert words in " ".join(plan.split())
    assert report == result.table() + "\n"
    for header in (*HEADERS, "with DataFerry", "warm (last 75%)", "without cache", "extrapolated"):
        assert header in report
    assert f"{result.cached.requests:,}" in report
    assert "Verdict: " in report
    check_stats_table(result, report)
    assert max(len(line) for line in printed.splitlines()) <= 80
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
    assert "1,500 requests through the cache" in table
    assert "skipped (--no-baseline)" in table
    assert "requests/s" in table
    assert "without cache" not in table
    assert "extrapolated" not in table
    assert "Verdict" not in table  # nothing to compare with
    assert result.verdict() is None
    check_stats_table(result, table)


def test_demo_against_redis(redis_url: str) -> None:
    out = io.StringIO()
    # A request budget, not a duration: on a loaded machine 0.5 s once held only ~250 requests,
    # too few to evict from the L1 and read a product back from Redis.
    config = tiny(redis_url=redis_url, baseline=False, requests=2_000, l1_size=25)
    result = run_demo(config, out=out, err=io.StringIO())

    check_cached_run(result)
    assert result.l2_name == f"RedisCache(url='{redis_url}')"
    assert f"L2 RedisCache(url='{redis_url}')" in " ".join(out.getvalue().split())
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


async def slow_request(pid: int) -> None:
    await asyncio.sleep(0.001)  # a run long enough for the bar to be redrawn


def segments(text: str) -> list[str]:
    """What a terminal shows: each line and each state of a line redrawn with \\r."""
    return re.split(r"[\r\n]", ANSI.sub("", text))


@pytest.mark.parametrize("width", [40, 80])
async def test_plain_progress_bar_redraws_in_place_within_the_width(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # rich's own switch: draw without rich
    screen = _Terminal()
    with progress(0.3, "with cache   ", file=screen) as update:
        trace = await _drive(
            slow_request,
            ZipfKeys(10, 1.0, random.Random(0)),
            concurrency=4,
            seconds=0.3,
            budget=None,
            update=update,
        )
    assert trace.seconds >= 0.3
    text = screen.getvalue()
    assert text.startswith("\r")
    assert text.count("\r") >= 2  # redrawn while running, then the final state
    assert "\n" not in text[:-1]  # one line, redrawn in place
    assert text.endswith("\n")
    assert max(len(s) for s in segments(text)) <= width - 1
    final = text.rsplit("\r", 1)[1].rstrip()
    assert final.startswith("with cache")
    assert "100%" in final
    if width == 80:  # room for the bar and the counts
        assert "[" + "#" * 10 in final
        assert f"{len(trace.latencies):,} requests" in final


@pytest.mark.parametrize("width", [40, 80])
async def test_rich_progress_bar_fits_the_terminal(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    screen = _Terminal()  # rich draws on anything that says it is a terminal
    with progress(2_000, "without cache", file=screen) as update:
        await _drive(
            slow_request,
            ZipfKeys(10, 1.0, random.Random(0)),
            concurrency=8,
            seconds=None,
            budget=2_000,
            update=update,
        )
    text = screen.getvalue()
    assert "\x1b[" in text  # rich's cursor control, not the plain line
    shown = [s for s in segments(text) if s.strip()]
    assert max(len(s) for s in shown) <= width
    assert "100%" in shown[-1]
    assert shown[-1].startswith("without cache")


async def test_progress_prints_lines_when_not_a_terminal() -> None:
    log = io.StringIO()
    with progress(500, "baseline", file=log) as update:
        await _drive(
            slow_request,
            ZipfKeys(10, 1.0, random.Random(0)),
            concurrency=2,
            seconds=None,
            budget=500,
            update=update,
        )
    lines = log.getvalue().splitlines()
    # At most a line every 2 s: a short run logs its final state only.
    assert len(lines) == 1
    assert "\r" not in log.getvalue()
    assert lines[-1].startswith("baseline 100%")
    assert "500 requests" in lines[-1]


async def test_duration_bounds_a_run() -> None:
    async def request(pid: int) -> None:
        return None

    warmed: list[int] = []
    seen: list[tuple[float, str]] = []
    trace = await _drive(
        request,
        ZipfKeys(10, 1.0, random.Random(0)),
        concurrency=3,
        seconds=0.05,
        budget=None,
        update=lambda done, status="": seen.append((done, status)),
        on_warm=lambda: warmed.append(len(warmed)),
    )
    assert len(trace.latencies) > 0
    assert trace.seconds >= 0.05
    assert warmed == [0]  # called once
    assert 0 < trace.warm_index < len(trace.latencies)
    assert 0 < trace.warm_seconds < trace.seconds
    # The last report is the whole run: all its seconds, all its requests.
    assert seen[-1][0] == 0.05
    assert seen[-1][1].startswith(f"{len(trace.latencies):,} requests, ")


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
    # Units switch with the size: 3 significant digits in µs, then ms.
    assert rows["latency p50"][2:] == ["1.00", "µs", "1.00", "µs"]
    assert rows["latency p95"][2:] == ["2.00", "µs", "2.00", "µs"]
    assert rows["latency p99"][2:] == ["3.00", "ms", "3.00", "ms"]
    # The counters come first, the errors among them.
    assert table.startswith("cache.stats() at the end of the cached run:\n" + str(run.stats))
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


# -- the verdict: throughput and every percentile, said plainly ------------------------------------


def compared(
    cached: tuple[float, float, float], baseline: tuple[float, float, float], *, rps: float
) -> DemoResult:
    """A result whose cached run has latencies ``cached`` (p50, p95, p99) at ``rps`` x the
    baseline's 10,000 requests/s; the warm part is the same as the whole run."""
    run = RunResult(
        requests=int(10_000 * rps),
        seconds=1.0,
        database_queries=300,
        p50=cached[0],
        p95=cached[1],
        p99=cached[2],
        stats=Stats(memory_hits=2_700, memory_misses=300, factory_calls=300),
    )
    base = RunResult(
        requests=10_000,
        seconds=1.0,
        database_queries=10_000,
        p50=baseline[0],
        p95=baseline[1],
        p99=baseline[2],
    )
    return DemoResult(
        config=DemoConfig(),
        l1_size=5,
        l2_name="SQLiteCache",
        cached=run,
        warm=run,
        baseline=base,
        distinct_keys=300,
    )


def test_a_slower_percentile_is_said_plainly() -> None:
    # The case: more throughput, but p95 three times worse with the cache.
    result = compared((1.4e-6, 6.2e-3, 9e-3), (1.0e-3, 2.0e-3, 12e-3), rps=1.9)
    assert result.slower == ["p95"]
    verdict = result.verdict()
    assert verdict is not None
    assert verdict.startswith("Verdict: 1.9x more requests/s with the cache than without it")
    assert "p95 was 3.1x slower with the cache (6.20 ms vs 2.00 ms)" in verdict
    assert "p50 was 714x faster with the cache (1.40 µs vs 1.00 ms)" in verdict
    assert "p99 was 1.3x faster with the cache (9.00 ms vs 12.0 ms)" in verdict
    assert "Once warm (the last 75% of the run), p95 was still 3.1x slower." in verdict
    # The report says it too: the comparison table and the verdict, at the end.
    text = " ".join(result.table().split())
    assert "latency p95 3.1x slower 3.1x slower" in text
    assert "throughput 1.9x more requests/s 1.9x more requests/s" in text
    assert text.endswith(" ".join(verdict.split()))


def test_all_faster_and_about_the_same() -> None:
    result = compared((1e-6, 1.02e-3, 5e-3), (1e-3, 1e-3, 10e-3), rps=3.0)
    assert result.slower == []
    verdict = result.verdict()
    assert verdict is not None
    assert "slower" not in verdict
    assert "p95 was about the same with the cache (1.02 ms vs 1.00 ms)" in verdict
    assert "p99 was 2.0x faster" in verdict
    assert "Once warm" not in verdict


def test_lower_throughput_is_not_called_faster() -> None:
    result = compared((2e-3, 4e-3, 8e-3), (1e-3, 2e-3, 4e-3), rps=0.5)
    assert result.slower == ["p50", "p95", "p99"]
    verdict = result.verdict()
    assert verdict is not None
    assert verdict.startswith("Verdict: 2.0x fewer requests/s with the cache than without it")
    assert "faster" not in verdict
    assert verdict.count("2.0x slower with the cache") == 3


def test_only_the_cold_start_was_slower() -> None:
    result = compared((1e-6, 6e-3, 9e-3), (1e-3, 2e-3, 12e-3), rps=2.0)
    warm = dataclasses.replace(result.warm, p95=1e-4)
    verdict = dataclasses.replace(result, warm=warm).verdict()
    assert verdict is not None
    assert "p95 was 3.0x slower with the cache" in verdict
    assert "no percentile was slower with the cache" in verdict


def test_rich_report_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    result = compared((1.4e-6, 6.2e-3, 9e-3), (1.0e-3, 2.0e-3, 12e-3), rps=1.9)
    screen = _Terminal()
    result.report(screen)
    text = screen.getvalue()
    assert "\x1b[" in text  # colour: rich drew it
    shown = ANSI.sub("", text)
    assert "3.1x slower" in shown
    assert max(len(line) for line in shown.splitlines()) <= 80
