"""``str(stats())``: every counter in an aligned plain-text table; ``str()`` of the histogram."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

import dataferry as df

#: Every field of Stats, from the dataclass itself: a new counter can't be forgotten here.
FIELDS = [f.name for f in dataclasses.fields(df.Stats)]
INT_FIELDS = [f.name for f in dataclasses.fields(df.Stats) if f.type == "int"]

#: Fields that are a level at snapshot time (marked "(now)"), not counts since start.
LEVELS = {"memory_entries", "memory_weight", "recovery_pending"}


def rows(text: str) -> dict[str, str]:
    """Field rows of the table (indented, named by their first word) by name."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("  "):
            name = line.split()[0]
            assert name not in found, f"{name} listed twice"
            found[name] = line
    return found


def distinct_stats() -> df.Stats:
    """Stats whose every counter has a value of its own, most with a thousands separator."""
    histogram = df.LatencyHistogram(counts=(0, 90, 8, 0, 0, 0, 0, 1, 0, 0, 0, 1), total_ms=75.0)
    values = {name: 1_000 * (i + 1) + i for i, name in enumerate(INT_FIELDS)}
    values["memory_misses"] = 7  # one short number: right alignment is then visible
    return df.Stats(**values, backplane_latency=histogram)


def test_the_table_lists_every_field_once_with_its_value() -> None:
    stats = distinct_stats()
    text = str(stats)
    table = rows(text)
    assert set(table) == set(FIELDS)
    for name in INT_FIELDS:
        value = f"{getattr(stats, name):,}"
        assert re.fullmatch(rf"  {name} +{value}( +\(now\))?", table[name]), table[name]
        assert table[name].endswith("(now)") == (name in LEVELS), name
    assert table["backplane_latency"].endswith(str(stats.backplane_latency))
    # Plain text, a screenful at most.
    assert len(text.splitlines()) <= 40
    assert "\x1b" not in text
    assert all(line.isprintable() for line in text.splitlines())  # no control characters


def test_rows_are_aligned() -> None:
    table = rows(str(distinct_stats()))
    assert all(line == line.rstrip() for line in table.values())  # no trailing blanks
    numbers = {name: table[name].removesuffix("  (now)").rstrip() for name in INT_FIELDS}
    # Names start at one column; numbers end at one column (right-aligned).
    assert {len(line) - len(line.lstrip()) for line in table.values()} == {2}
    assert len({len(line) for line in numbers.values()}) == 1
    # The histogram's text starts where the widest number starts.
    number_start = min(len(line) - len(line.split()[-1]) for line in numbers.values())
    assert number_start > max(map(len, FIELDS)) + 2
    latency = table["backplane_latency"]
    assert latency[number_start:].startswith("count 100,")
    assert latency[:number_start].strip() == "backplane_latency"
    # The "(now)" marks line up too.
    assert len({table[name].index("(now)") for name in LEVELS}) == 1


def test_zero_counters_are_shown_under_their_headings() -> None:
    text = str(df.Stats())
    lines = text.splitlines()
    assert lines[0] == "DataFerry stats: hit ratio - (no lookups yet)"
    headings = [line for line in lines[1:] if not line.startswith(" ")]
    assert headings == [
        "L1 memory",
        "L2 distributed",
        "factory",
        "stampede / lock",
        "fail-safe / refresh",
        "resilience / recovery",
        "backplane",
        "errors",
    ]
    table = rows(text)
    assert all(table[name].split()[1] == "0" for name in INT_FIELDS)
    errors = lines[lines.index("errors") + 1 :]
    assert [line.split() for line in errors] == [
        ["distributed_errors", "0"],
        ["decode_errors", "0"],
        ["payload_too_large", "0"],
    ]


def test_empty_histogram_renders_dashes() -> None:
    empty = df.LatencyHistogram()
    assert str(empty) == "count 0, mean -, p50 -, p99 -"
    assert rows(str(df.Stats()))["backplane_latency"].split()[1:] == str(empty).split()


@pytest.mark.parametrize(
    ("counts", "total_ms", "expected"),
    [
        # 90 within 0.5 ms, 8 within 1 ms, 1 within 50 ms, 1 beyond the last bound (1000 ms).
        (
            (0, 90, 8, 0, 0, 0, 0, 1, 0, 0, 0, 1),
            75.0,
            "count 100, mean 0.75 ms, p50 <= 0.5 ms, p99 <= 50 ms",
        ),
        # Everything past the last bound: the quantiles can only say "more than".
        ((0,) * 11 + (3,), 4_500.0, "count 3, mean 1,500 ms, p50 > 1000 ms, p99 > 1000 ms"),
        # One message within 0.25 ms.
        ((1,) + (0,) * 11, 0.1, "count 1, mean 0.10 ms, p50 <= 0.25 ms, p99 <= 0.25 ms"),
        # Thousands of messages, a mean over 10 ms.
        (
            (0,) * 6 + (2_000, 500) + (0,) * 4,
            40_000.0,
            "count 2,500, mean 16.0 ms, p50 <= 25 ms, p99 <= 50 ms",
        ),
    ],
)
def test_histogram_with_data_renders_its_quantiles(
    counts: tuple[int, ...], total_ms: float, expected: str
) -> None:
    histogram = df.LatencyHistogram(counts=counts, total_ms=total_ms)
    text = str(histogram)
    assert text == expected
    assert "\n" not in text
    # The expected figures agree with the histogram's own quantiles.
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        bound = histogram.quantile(q)
        assert (
            f"{label} > 1000 ms" if bound == float("inf") else f"{label} <= {bound:g} ms"
        ) in text
    assert rows(str(df.Stats(backplane_latency=histogram)))["backplane_latency"].endswith(text)


@pytest.mark.parametrize(
    ("counts", "line"),
    [
        ({"memory_hits": 3, "memory_misses": 1}, "hit ratio 75.0% (3 hits of 4 lookups, L1 or L2)"),
        # L1 missed twice, L2 answered one of them.
        (
            {"memory_hits": 6, "memory_misses": 2, "distributed_hits": 1, "distributed_misses": 1},
            "hit ratio 87.5% (7 hits of 8 lookups, L1 or L2)",
        ),
        # No L1: the lookups are L2's.
        (
            {"distributed_hits": 1_234, "distributed_misses": 766},
            "hit ratio 61.7% (1,234 hits of 2,000 lookups, L1 or L2)",
        ),
    ],
)
def test_first_line_gives_the_hit_ratio_as_a_percentage(counts: dict[str, Any], line: str) -> None:
    stats = df.Stats(**counts)
    assert str(stats).splitlines()[0] == f"DataFerry stats: {line}"
    assert f"{stats.hit_ratio:.1%}" in line


def test_repr_stays_the_dataclass_repr() -> None:
    stats = distinct_stats()
    assert repr(stats).startswith(f"Stats(memory_hits={stats.memory_hits}, ")
    assert "\n" not in repr(stats)
    assert eval(repr(stats), {"Stats": df.Stats, "LatencyHistogram": df.LatencyHistogram}) == stats
    assert f"{stats}" == str(stats)


def test_a_real_cache_renders_its_own_counters() -> None:
    calls: list[str] = []

    def load(key: str) -> str:
        calls.append(key)
        return key.upper()

    with df.DataFerry(memory=df.MemoryCache(max_entries=10)) as cache:
        for key in ("a", "b", "a", "a"):
            assert cache.get_or_set(key, lambda key=key: load(key)) == key.upper()
        stats = cache.stats()
    table = rows(str(stats))
    assert calls == ["a", "b"]
    assert table["factory_calls"].split()[1] == "2"
    assert table["memory_hits"].split()[1] == str(stats.memory_hits)
    assert table["memory_entries"].split()[1:] == ["2", "(now)"]
    assert (
        str(stats)
        .splitlines()[0]
        .startswith(f"DataFerry stats: hit ratio {stats.hit_ratio:.1%} ({stats.hits} hits of ")
    )
