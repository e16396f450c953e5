"""Codec benchmark: encode/decode cost and stored size per pipeline, next to raw orjson.

Run:  .venv/bin/python benchmarks/bench_codec.py [--quick] [--no-redis]

Part 1 times every pipeline (serializer x compressor x encryption/signing) on realistic
JSON-ish values of 100 B .. 1 MB, with ``orjson.dumps``/``orjson.loads`` measured in the same
run as the baseline, then the JSON serializer's NaN check on values that hold ``None`` (the
only ones it walks). Part 2 measures an L2 hit (redis-py GET + decode) of a 1 KB value against a
redis-server this script starts on a free port: plain vs raw ``GET + orjson.loads`` (goal:
<= 1.2x) and AES-GCM vs plain (goal: encryption adds < 20%). Printed as markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import orjson
from _redis import redis_server

from dataferry import (
    AesGcmEncryptor,
    Codec,
    GzipCompressor,
    Keyring,
    Lz4Compressor,
    MsgpackSerializer,
    PickleSerializer,
    ZstdCompressor,
)

KEY = "bench:k:user:42"
KEYRING = Keyring({"bench": os.urandom(32)})
SIGNING_KEY = os.urandom(32)
SIZES = {"100 B": 100, "1 KB": 1_000, "10 KB": 10_000, "100 KB": 100_000, "1 MB": 1_000_000}


def make_value(target: int) -> Any:
    """A JSON-ish value (records of strings and numbers) whose orjson size is about ``target``."""

    def record(i: int) -> dict[str, Any]:
        return {
            "id": i,
            "name": f"user-{i:06d}",
            "email": f"user{i}@example.com",
            "score": round(i * 1.37 % 100, 2),
            "active": i % 3 != 0,
            "roles": ["reader", "writer"] if i % 2 else ["reader"],
            "city": ("Paris", "Oslo", "Lagos", "Lima", "Pune")[i % 5],
        }

    if target <= 150:
        return {"id": 1, "name": "Ada", "score": 9.5, "tags": ["a", "b"], "active": True}
    records: list[dict[str, Any]] = []
    while len(orjson.dumps({"page": 1, "items": records})) < target:
        records.append(record(len(records)))
    return {"page": 1, "items": records}


def pipelines() -> dict[str, Codec]:
    """The pipelines compared (no compressor threshold, so every size is compressed)."""
    aes = AesGcmEncryptor(KEYRING)
    return {
        "json": Codec(),
        "msgpack": Codec(serializer=MsgpackSerializer()),
        "pickle+hmac": Codec(serializer=PickleSerializer(), signing_key=SIGNING_KEY),
        "json+hmac": Codec(signing_key=SIGNING_KEY),
        "json+zstd": Codec(compressor=ZstdCompressor(min_size=0)),
        "json+gzip": Codec(compressor=GzipCompressor(min_size=0)),
        "json+lz4": Codec(compressor=Lz4Compressor(min_size=0)),
        "json+aes": Codec(encryptor=aes),
        "json+aes, encrypt=False (hmac)": Codec(encryptor=aes),
        "json+zstd+aes": Codec(compressor=ZstdCompressor(min_size=0), encryptor=aes),
        "msgpack+lz4+aes": Codec(
            serializer=MsgpackSerializer(), compressor=Lz4Compressor(min_size=0), encryptor=aes
        ),
    }


def per_call(fn: Callable[[], object], budget: float) -> float:
    """Seconds per call of ``fn``: best of 3 runs of about ``budget / 3`` seconds each."""
    timer = timeit.Timer(fn)
    number = 1
    while (elapsed := timer.timeit(number)) < 0.01:  # calibrate the loop count
        number *= 10
    number = max(1, int(number * budget / 3 / elapsed))
    return min(timer.repeat(repeat=3, number=number)) / number


def bench_pipelines(budget: float) -> None:
    print("## Codec pipelines (encode = value -> envelope, decode = envelope -> value)\n")
    print(
        "| size | pipeline | encode µs | decode µs | encode / orjson | decode / orjson "
        "| stored bytes | stored / JSON |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    codecs = pipelines()
    for label, target in SIZES.items():
        value = make_value(target)
        raw = orjson.dumps(value)
        base_enc = per_call(lambda value=value: orjson.dumps(value), budget)
        base_dec = per_call(lambda raw=raw: orjson.loads(raw), budget)
        print(
            f"| {label} | orjson.dumps/loads (baseline) | {base_enc * 1e6:.1f} "
            f"| {base_dec * 1e6:.1f} | 1.00 | 1.00 | {len(raw)} | 1.00 |"
        )
        for name, codec in codecs.items():
            enc = codec.encode
            encrypt = False if "encrypt=False" in name else None
            data = enc(value, key=KEY, created_at=0.0, logical_expiry=1.0, encrypt=encrypt)
            assert codec.decode(data, key=KEY).value == value
            t_enc = per_call(
                lambda enc=enc, value=value, encrypt=encrypt: enc(
                    value, key=KEY, created_at=0.0, logical_expiry=1.0, encrypt=encrypt
                ),
                budget,
            )
            dec = codec.decode
            t_dec = per_call(lambda dec=dec, data=data: dec(data, key=KEY), budget)
            print(
                f"| {label} | {name} | {t_enc * 1e6:.1f} | {t_dec * 1e6:.1f} "
                f"| {t_enc / base_enc:.2f} | {t_dec / base_dec:.2f} | {len(data)} "
                f"| {len(data) / len(raw):.2f} |"
            )
    print()
    bench_nan_check(budget)


def with_none(value: Any) -> Any:
    """``value`` with an optional field set to None in every record (JSON then holds null)."""
    if "items" not in value:
        return {**value, "note": None}
    return {**value, "items": [{**r, "note": None} for r in value["items"]]}


def bench_nan_check(budget: float) -> None:
    print("## JSON NaN check (refuses NaN/inf, which orjson would store as null)\n")
    print(
        "| size | value | orjson.dumps µs | JsonSerializer.dumps µs | ratio |\n"
        "|---|---|---:|---:|---:|"
    )
    dumps = Codec().serializer.dumps
    for label, target in SIZES.items():
        if target > 100_000:
            continue
        for kind, value in (("no None", make_value(target)), ("None in every record", None)):
            if value is None:
                value = with_none(make_value(target))
            base = per_call(lambda value=value: orjson.dumps(value), budget)
            ours = per_call(lambda value=value: dumps(value), budget)
            print(f"| {label} | {kind} | {base * 1e6:.1f} | {ours * 1e6:.1f} | {ours / base:.2f} |")
    print()


# -- part 2: an L2 hit on a real redis-server ---------------------------------------------------


def bench_redis_hit(rounds: int, calls: int) -> None:
    import redis

    with redis_server() as url:
        client = redis.Redis.from_url(url)
        value = make_value(1_000)
        plain_codec = Codec()
        aes_codec = Codec(encryptor=AesGcmEncryptor(KEYRING))
        client.set("raw", orjson.dumps(value))
        client.set(
            KEY + ":plain",
            plain_codec.encode(value, key=KEY + ":plain", created_at=0.0, logical_expiry=1.0),
        )
        client.set(
            KEY + ":aes",
            aes_codec.encode(value, key=KEY + ":aes", created_at=0.0, logical_expiry=1.0),
        )
        get = client.get
        loads = orjson.loads

        def raw() -> object:
            return loads(get("raw"))  # type: ignore[arg-type]

        def plain(k: str = KEY + ":plain", dec: Any = plain_codec.decode) -> object:
            return dec(get(k), key=k)

        def aes(k: str = KEY + ":aes", dec: Any = aes_codec.decode) -> object:
            return dec(get(k), key=k)

        variants = {
            "GET + orjson.loads (raw)": raw,
            "GET + Codec.decode (plain)": plain,
            "GET + Codec.decode (AES-GCM)": aes,
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for fn in variants.values():
            for _ in range(200):
                fn()  # warm up connection and caches
        # Interleave the variants round by round (rotating their order) so drift on a shared
        # machine hits all alike; ratios are taken within a round, then the median over rounds.
        names = list(variants)
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                fn = variants[name]
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn()
                samples[name].append((time.perf_counter() - t0) / calls)
        raw_s, plain_s, aes_s = (samples[n] for n in names)
        size = len(orjson.dumps(value))
        print(f"## L2 hit of a {size} B value on real Redis ({rounds} rounds x {calls} GETs)\n")
        print("| operation | median µs per hit | best round µs |")
        print("|---|---:|---:|")
        for name, s in samples.items():
            print(f"| {name} | {statistics.median(s) * 1e6:.1f} | {min(s) * 1e6:.1f} |")
        print()
        ratio_plain = statistics.median(p / b for p, b in zip(plain_s, raw_s, strict=True))
        ratio_aes = statistics.median(a / p for a, p in zip(aes_s, plain_s, strict=True))
        print(
            f"plain hit / raw GET+orjson.loads = {ratio_plain:.3f} median per round, "
            f"{min(plain_s) / min(raw_s):.3f} best rounds (goal <= 1.20)"
        )
        print(
            f"AES-GCM hit / plain hit          = {ratio_aes:.3f} median per round, "
            f"{min(aes_s) / min(plain_s):.3f} best rounds (goal < 1.20)"
        )
        client.close()


def bench_bomb() -> None:
    """A forged entry that would inflate to 400 MiB: how long and how much memory its miss takes."""
    import tracemalloc

    from dataferry._codec import DecodeError

    big = " " * (400 * 1024 * 1024)
    writer = Codec(compressor=ZstdCompressor(), max_value_bytes=1 << 30)
    data = writer.encode(big, key="k", created_at=0.0, logical_expiry=1e12, compress=True)
    del big
    reader = Codec()  # the default limit: 32 MiB
    print("\n### A forged zstd entry that inflates to 400 MiB (default Codec)\n")
    print(f"stored size: {len(data) / 1024:.1f} KiB")
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        reader.decode(data, key="k")
        outcome = "served (BUG)"
    except DecodeError:
        outcome = "miss"
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{outcome} in {elapsed * 1e3:.2f} ms, peak {peak / 2**20:.2f} MiB (goal: < 50 ms, < 50 MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter timings (noisier)")
    parser.add_argument("--no-redis", action="store_true", help="skip the real-Redis L2-hit part")
    args = parser.parse_args()
    start = time.monotonic()
    print(f"Python {sys.version.split()[0]}, orjson {orjson.__version__}\n")
    bench_pipelines(budget=0.06 if args.quick else 0.15)
    bench_bomb()
    if not args.no_redis:
        bench_redis_hit(rounds=5 if args.quick else 15, calls=1000 if args.quick else 2000)
    print(f"\n(total {time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    main()
