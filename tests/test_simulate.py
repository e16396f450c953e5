"""`dataferry simulate`: trace readers, Bélády's OPT, policy replays, the command's output."""

from __future__ import annotations

import bz2
import functools
import gzip
import lzma
import random
import struct
import sys
from collections import OrderedDict, deque
from collections.abc import Sequence
from pathlib import Path

import pytest

from dataferry._cli import main
from dataferry._errors import ConfigurationError
from dataferry._simulate import (
    OPT,
    POLICIES,
    Simulation,
    ceiling,
    next_uses,
    opt_hits,
    parse_sizes,
    policy_hits,
    recommend,
    resolve_sizes,
    simulate,
)
from dataferry._traces import detect_format, load_trace, read_keys, trace_name

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_trace(seed: int = 3, n: int = 3000, universe: int = 300) -> list[int]:
    """Zipf-like popularity with a scan in the middle: recency and frequency both matter."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(universe)]
    keys = rng.choices(range(universe), weights, k=n)
    scan = list(range(universe, universe + 120)) * 2
    return keys[: n // 2] + scan + keys[n // 2 :]


TRACE = make_trace()
KEYS = [str(k) for k in TRACE]


def write_plain(path: Path, keys: Sequence[str]) -> Path:
    path.write_text("".join(f"{k}\n" for k in keys), encoding="utf-8")
    return path


def write_lirs(path: Path, keys: Sequence[int], opener: object = open) -> Path:
    # "*" marker lines (between phases in the LIRS traces), CRLF line ends and a blank line.
    lines = [str(k) for k in keys]
    lines.insert(len(lines) // 3, "*")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with opener(path, "wb") as f:  # type: ignore[operator]
        f.write(data)
    return path


def write_cache2k(path: Path, keys: Sequence[int], opener: object = open) -> Path:
    with opener(path, "wb") as f:  # type: ignore[operator]
        f.write(struct.pack(f">{len(keys)}I", *keys))
    return path


def lru_reference(keys: Sequence[str], capacity: int) -> int:
    data: OrderedDict[str, None] = OrderedDict()
    hits = 0
    for k in keys:
        if k in data:
            data.move_to_end(k)
            hits += 1
        else:
            data[k] = None
            if len(data) > capacity:
                data.popitem(last=False)
    return hits


def fifo_reference(keys: Sequence[str], capacity: int) -> int:
    order: deque[str] = deque()
    held: set[str] = set()
    hits = 0
    for k in keys:
        if k in held:
            hits += 1
        else:
            held.add(k)
            order.append(k)
            if len(held) > capacity:
                held.remove(order.popleft())
    return hits


def brute_force_hits(keys: Sequence[object], capacity: int) -> int:
    """The most hits of any policy: on every miss try every choice (leave the key out, or
    take it in and evict any cached key), by exhaustive search."""

    @functools.cache
    def best(i: int, cached: frozenset[object]) -> int:
        if i == len(keys):
            return 0
        key = keys[i]
        if key in cached:
            return 1 + best(i + 1, cached)
        options = [best(i + 1, cached)]
        if len(cached) < capacity:
            options.append(best(i + 1, cached | {key}))
        else:
            options += [best(i + 1, (cached - {victim}) | {key}) for victim in cached]
        return max(options)

    return best(0, frozenset())


# -- trace readers --------------------------------------------------------------------------------


def test_the_three_formats_read_the_same_requests(tmp_path: Path) -> None:
    files = {
        "plain": write_plain(tmp_path / "a.txt", KEYS),
        "lirs": write_lirs(tmp_path / "b.trace", TRACE),
        "cache2k": write_cache2k(tmp_path / "c.trace", TRACE),
    }
    for written, path in files.items():
        trace = load_trace(path, written)
        assert trace.keys == KEYS, written
        assert trace.distinct == len(set(KEYS))
        assert trace.format == written
        # Integer keys one per line are LIRS by content: the same requests either way.
        assert detect_format(path) == ("lirs" if written == "plain" else written)
        assert load_trace(path).keys == KEYS
    words = write_plain(tmp_path / "words.txt", [f"user:{k}" for k in TRACE])
    assert detect_format(words) == "plain"
    assert read_keys(words) == [f"user:{k}" for k in KEYS]


@pytest.mark.parametrize(
    ("opener", "suffix"),
    [(gzip.open, ".gz"), (lzma.open, ".xz"), (bz2.open, ".bz2")],
    ids=["gzip", "xz", "bzip2"],
)
def test_compression_is_recognised_by_content(opener: object, suffix: str, tmp_path: Path) -> None:
    # The names don't say it's compressed: the magic bytes do.
    lirs = write_lirs(tmp_path / "lirs", TRACE, opener)
    binary = write_cache2k(tmp_path / "binary", TRACE, opener)
    assert (detect_format(lirs), detect_format(binary)) == ("lirs", "cache2k")
    assert read_keys(lirs) == KEYS
    assert read_keys(binary) == KEYS
    assert trace_name(tmp_path / f"multi2.trace{suffix}") == "multi2"


def test_plain_keys_are_any_text_and_equal_keys_share_one_object(tmp_path: Path) -> None:
    path = write_plain(tmp_path / "keys", ["user:1", "  user:2 ", "", "user:1", "é ü"])
    keys = read_keys(path)
    assert keys == ["user:1", "user:2", "user:1", "é ü"]
    assert keys[0] is keys[2]
    assert detect_format(path) == "plain"


def test_limit_reads_only_the_first_requests(tmp_path: Path) -> None:
    for path in (
        write_plain(tmp_path / "p", KEYS),
        write_lirs(tmp_path / "l", TRACE),
        write_cache2k(tmp_path / "c", TRACE),
    ):
        assert read_keys(path, limit=100) == KEYS[:100]
        assert read_keys(path, limit=0) == []


def test_the_format_can_be_forced_and_a_mismatch_is_an_error(tmp_path: Path) -> None:
    digits = write_plain(tmp_path / "digits", ["007", "7", "8"])
    assert read_keys(digits, "plain") == ["007", "7", "8"]
    assert read_keys(digits, "lirs") == ["7", "7", "8"]  # the same block number
    words = write_plain(tmp_path / "words", ["1", "2", "user:3"])
    with pytest.raises(ConfigurationError, match=r"line 3 .*'user:3'"):
        read_keys(words, "lirs")
    with pytest.raises(ConfigurationError, match="unknown trace format 'csv'"):
        read_keys(words, "csv")
    # A name says lirs or cache2k before the content is looked at.
    named = write_cache2k(tmp_path / "keys.lirs.gz", [1, 2], gzip.open)
    assert detect_format(named) == "lirs"


def test_malformed_files_raise_configuration_errors(tmp_path: Path) -> None:
    truncated = tmp_path / "t.cache2k"
    truncated.write_bytes(struct.pack(">2I", 1, 2) + b"\0\0")
    with pytest.raises(ConfigurationError, match="10 bytes is not a whole number"):
        read_keys(truncated)
    damaged = tmp_path / "d.gz"
    damaged.write_bytes(gzip.compress(b"1\n2\n3\n" * 1000)[:-30])
    with pytest.raises(ConfigurationError, match="damaged compressed file"):
        read_keys(damaged)
    binary = tmp_path / "b"
    binary.write_bytes(b"1\n\xff\xfe\n")
    with pytest.raises(ConfigurationError, match="line 2 is not UTF-8"):
        read_keys(binary, "plain")
    with pytest.raises(FileNotFoundError):
        read_keys(tmp_path / "absent")


# -- OPT ------------------------------------------------------------------------------------------


def test_next_uses() -> None:
    assert next_uses(["a", "b", "a", "c", "b"]) == [2, 4, 5, 5, 5]


def test_opt_leaves_out_a_key_used_later_than_everything_cached() -> None:
    # Demand paging (always take the new key in) gets 0 hits here; leaving "b" out gets 1.
    assert opt_hits(["a", "b", "a"], 1) == 1
    assert brute_force_hits(["a", "b", "a"], 1) == 1


def test_opt_is_exact_against_a_brute_force() -> None:
    rng = random.Random(11)
    for _ in range(300):
        n = rng.randint(1, 12)
        keys = [rng.randrange(rng.randint(1, 6)) for _ in range(n)]
        capacity = rng.randint(1, 4)
        assert opt_hits(keys, capacity) == brute_force_hits(keys, capacity), (keys, capacity)


def test_opt_on_a_scan_and_with_room_for_every_key() -> None:
    loop = [str(k) for k in range(100)] * 20
    # At most `capacity` hits per pass after the first (a hit's key was cached a pass ago):
    # keeping 10 keys for good gets them all; LRU gets none.
    assert opt_hits(loop, 10) == 19 * 10
    assert policy_hits(loop, 10, "lru") == 0
    assert opt_hits(KEYS, len(set(KEYS))) == len(KEYS) - len(set(KEYS))
    assert opt_hits(KEYS, 10 * len(KEYS)) == len(KEYS) - len(set(KEYS))
    with pytest.raises(ConfigurationError):
        opt_hits(KEYS, 0)


# -- policies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 7, 30, 120, 500])
def test_lru_replay_equals_a_reference_lru(capacity: int) -> None:
    assert policy_hits(KEYS, capacity, "lru") == lru_reference(KEYS, capacity)


@pytest.mark.parametrize("capacity", [1, 30, 120])
def test_ttl_replay_is_fifo_without_ttls(capacity: int) -> None:
    assert policy_hits(KEYS, capacity, "ttl") == fifo_reference(KEYS, capacity)


def test_opt_beats_or_ties_every_policy_at_every_size() -> None:
    sizes = resolve_sizes(None, len(set(KEYS)))
    result = simulate(KEYS, sizes)
    assert result.columns == (*POLICIES, OPT)
    assert result.sizes == tuple(sizes)
    for i in range(len(sizes)):
        for policy in POLICIES:
            assert result.hits[OPT][i] >= result.hits[policy][i], (policy, sizes[i])
    # The trace mixes recency and frequency: some policy is short of OPT somewhere.
    assert any(result.hits[OPT][i] > result.hits["lru"][i] for i in range(len(sizes)))
    assert result.hits["lru"] == tuple(lru_reference(KEYS, s) for s in sizes)
    assert result.requests == len(KEYS)
    assert result.distinct == len(set(KEYS))


def test_worker_processes_give_the_same_figures() -> None:
    policies = ("lru", "ttl")  # deterministic (tinylfu's sketch hashes with a salted hash())
    sizes = [5, 50, 200]
    seen: list[tuple[int, str]] = []
    serial = simulate(KEYS, sizes, policies)
    parallel = simulate(
        KEYS, sizes, policies, jobs=2, progress=lambda done, status: seen.append((done, status))
    )
    assert parallel.hits == serial.hits
    assert seen[-1][0] == len(KEYS) * len(sizes) * (len(policies) + 1)


def test_simulate_rejects_unknown_policies_and_sizes() -> None:
    with pytest.raises(ConfigurationError, match="unknown policy 'fifo'"):
        simulate(KEYS, [10], ["fifo"])
    with pytest.raises(ConfigurationError):
        simulate(KEYS, [0])


# -- sizes and the recommendation ----------------------------------------------------------------


def test_sizes_are_absolute_or_relative() -> None:
    specs = parse_sizes("100, 5%,0.5%,100")
    assert specs == [(100, False), (5.0, True), (0.5, True), (100, False)]
    assert resolve_sizes(specs, 1000) == [5, 50, 100]
    assert resolve_sizes(None, 1000) == [10, 20, 50, 100, 200, 500]
    assert resolve_sizes(None, 3) == [1, 2]  # tiny traces: at least 1 entry, no repeats
    for bad in ("0", "-5", "abc", "150%", "0%", "x%", ","):
        with pytest.raises(ConfigurationError):
            parse_sizes(bad)


def _simulation(ratios: dict[str, list[float]], sizes: Sequence[int]) -> Simulation:
    # 1000 requests of 200 distinct keys: an unbounded cache gets 80%.
    return Simulation(
        requests=1000,
        distinct=200,
        sizes=tuple(sizes),
        columns=tuple(ratios),
        hits={c: tuple(round(r * 10) for r in rs) for c, rs in ratios.items()},
    )


def test_recommendation_is_the_smallest_size_reaching_the_target() -> None:
    sim = _simulation(
        {"lru": [40, 60, 71, 79], "lfu": [50, 72, 73, 79], OPT: [60, 75, 78, 80]}, [10, 20, 50, 100]
    )
    assert ceiling(1000, 200) == 80.0
    rec = recommend(sim)  # 90% of 80% = 72%: lfu gets it at 20 entries
    assert rec is not None
    assert (rec.policy, rec.size, rec.hit_ratio, rec.opt_hit_ratio) == ("lfu", 20, 72.0, 75.0)
    assert rec.reached
    rec = recommend(sim, target=98)  # 78.4%: at 100 entries, where lru and lfu tie
    assert rec is not None
    assert (rec.policy, rec.size) == ("lru", 100)


def test_recommendation_short_of_the_target_is_the_best_cell() -> None:
    sim = _simulation({"tinylfu": [10, 30, 5], "lru": [0, 0, 0], OPT: [20, 40, 60]}, [1, 2, 3])
    rec = recommend(sim)
    assert rec is not None
    assert (rec.policy, rec.size, rec.reached) == ("tinylfu", 2, False)
    assert any("try larger --sizes" in line for line in rec.lines())


def test_no_recommendation_when_every_request_is_a_first() -> None:
    sim = Simulation(10, 10, (1,), ("lru", OPT), {"lru": (0,), OPT: (0,)})
    assert recommend(sim) is None


# -- the command ----------------------------------------------------------------------------------


@pytest.fixture
def plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain-text tables (what a pipe gets), whatever the environment of the test run."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "100")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        status = main(["simulate", *argv])
    except SystemExit as exc:  # argparse's usage errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def table_rows(out: str) -> dict[int, list[str]]:
    """Size -> cells of each row of the plain table."""
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) > 2 and cells[0].replace(",", "").isdigit() and cells[1].endswith("%"):
            rows[int(cells[0].replace(",", ""))] = cells
    return rows


@pytest.mark.usefixtures("plain_output")
def test_command_prints_the_table_and_the_recommendation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lirs(tmp_path / "mixed.trace.gz", TRACE, gzip.open)
    status, out, err = run([str(path), "--no-progress"], capsys)
    assert status == 0, err
    assert err == ""
    distinct = len(set(KEYS))
    assert f"mixed (lirs: {len(KEYS):,} requests, {distinct:,} distinct keys)" in out
    header = next(line.split() for line in out.splitlines() if line.split()[:1] == ["entries"])
    assert header == ["entries", "%", "of", "keys", *POLICIES, "OPT"]
    rows = table_rows(out)
    sizes = resolve_sizes(None, distinct)
    assert sorted(rows) == sizes
    expected = simulate(KEYS, sizes, ["lru"])
    for i, size in enumerate(sizes):
        cells = rows[size]
        assert float(cells[1].rstrip("%")) == pytest.approx(100 * size / distinct, rel=0.05)
        assert cells[3] == f"{expected.ratio('lru', i):.2f}"  # lru
        assert cells[-1] == f"{expected.ratio(OPT, i):.2f}"  # OPT
        assert max(float(c) for c in cells[2:-1]) <= float(cells[-1])
    assert f"An unbounded cache would get {ceiling(len(KEYS), distinct):.2f}%" in out
    rec = next(line for line in out.splitlines() if line.startswith("Recommendation:"))
    assert rec.startswith("Recommendation: MemoryCache(max_entries=")
    assert "rule: the smallest size simulated" in out
    assert "runs in" in out


@pytest.mark.usefixtures("plain_output")
def test_command_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_cache2k(tmp_path / "web.trace.xz", TRACE, lzma.open)
    argv = [str(path), "--sizes", "10,20%", "--policies", "lru,ttl", "--limit", "1000"]
    status, out, err = run([*argv, "--target", "50", "--jobs", "1", "--no-progress"], capsys)
    assert status == 0, err
    keys = KEYS[:1000]
    distinct = len(set(keys))
    assert "(cache2k: 1,000 requests" in out
    assert sorted(table_rows(out)) == [10, round(distinct / 5)]
    header = next(line.split() for line in out.splitlines() if line.split()[:1] == ["entries"])
    assert header[-3:] == ["lru", "ttl", "OPT"]
    assert "gets 50% of the hit ratio" in " ".join(out.split())
    # A plain file read as plain: keys are any text.
    plain = write_plain(tmp_path / "keys.txt", [f"user:{k}" for k in TRACE])
    status, out, _ = run([str(plain), "--format", "plain", "--no-progress"], capsys)
    assert status == 0
    assert "keys (plain: 3,240 requests" in out


@pytest.mark.usefixtures("plain_output")
def test_command_says_when_nothing_can_hit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_plain(tmp_path / "unique", [f"k{i}" for i in range(50)])
    status, out, _ = run([str(path), "--no-progress"], capsys)
    assert status == 0
    assert "Recommendation: none. Every request is a key's first" in out


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_plain(tmp_path / "t", KEYS)
    png = tmp_path / "curves.png"
    status, out, err = run([str(trace), "--plot", str(png), "--sizes", "5,50"], capsys)
    assert status == 0, err
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1000
    assert f"Plot: {png}" in out


def test_plot_without_matplotlib_fails_before_replaying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "import matplotlib" fails
    trace = write_plain(tmp_path / "t", KEYS)
    status, out, err = run([str(trace), "--plot", str(tmp_path / "x.png")], capsys)
    assert status == 2
    assert out == ""  # nothing replayed
    assert err.count("\n") == 1
    assert err.startswith("dataferry simulate: ")
    assert "pip install 'dataferry[plot]'" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        (None, [], "can't read"),
        ("dir", [], "can't read"),
        ("empty", [], "no requests in the trace"),
        ("words", ["--format", "lirs"], "line 1 is not an integer key"),
        ("damaged", [], "damaged compressed file"),
        ("ok", ["--plot", "no/such/dir/out.png"], "no such directory"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(
    make: str | None,
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "trace"
    if make == "dir":
        path.mkdir()
    elif make == "empty":
        path.write_bytes(b"\n\n")
    elif make == "words":
        write_plain(path, ["user:1", "user:2"])
    elif make == "damaged":
        path.write_bytes(gzip.compress(b"1\n" * 5000)[:40])
    elif make == "ok":
        write_plain(path, KEYS)
    status, out, err = run([str(path), *argv], capsys)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("dataferry simulate: ")
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--sizes", "0"],
        ["--sizes", "150%"],
        ["--sizes", "ten"],
        ["--policies", "fifo"],
        ["--policies", "opt"],
        ["--limit", "0"],
        ["--target", "0"],
        ["--format", "csv"],
        ["--jobs", "0"],
    ],
)
def test_bad_options_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_plain(tmp_path / "t", KEYS)
    status, out, err = run([str(trace), *argv], capsys)
    assert status == 2
    assert out == ""
    assert "dataferry simulate: error:" in err


def test_help_fits_80_columns_and_lists_the_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    for flag in ("--format", "--sizes", "--policies", "--limit", "--target", "--plot", "--jobs"):
        assert flag in out
    status, out, _ = run([], capsys)  # TRACE is required
    assert status == 2
