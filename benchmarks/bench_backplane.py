"""Backplane latency: publish on one node -> ``on_message`` on another, over loopback.

    .venv/bin/python benchmarks/bench_backplane.py [--rounds 6] [--messages 1000]

Two ``RedisBackplane`` objects on one private ``redis-server`` (started by the script) stand
for two nodes. One message at a time (no queueing): the latency of a message is the time from
just before the publish call to the receiver's ``on_message`` decoding it. Three variants,
interleaved round by round (A B C A B C ...):

- ``publish``: the sync publish, as ``DataFerry`` sends;
- ``apublish``: the asyncio publish, as ``AsyncDataFerry`` sends;
- ``raw redis-py``: the baseline, a bare redis-py publisher and a thread blocked in
  ``PubSub.get_message(timeout=None)``: the floor for Redis pub/sub through redis-py.

Prints p50/p99 per variant (over every message of every round) and the median ratio of the
per-round p50 against the baseline (and its range). Goal: p99 under 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable

import redis
from _redis import redis_server

from dataferry import RedisBackplane
from dataferry._backends._backplane import Action, decode_message, encode_message

CHANNEL = "{bench}:bp"
GOAL_P99_MS = 5.0


class Receiver:
    """Records, for each message, the time ``on_message`` decoded it."""

    def __init__(self) -> None:
        self.received_at: dict[int, int] = {}
        self.notify: Callable[[], None] = lambda: None

    def on_message(self, payload: bytes) -> None:
        now = time.perf_counter_ns()
        message = decode_message(payload)
        if message is not None:
            self.received_at[message.version] = now
            self.notify()

    def on_state(self, state: str) -> None:
        if state != "connected":
            print(f"  (backplane {state})")


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def run_sync(sender: RedisBackplane, receiver: Receiver, n: int, sender_id: bytes) -> list[int]:
    arrived = threading.Event()
    receiver.notify = arrived.set
    receiver.received_at.clear()
    sent: dict[int, int] = {}
    for seq in range(n):
        payload = encode_message(sender_id, Action.SET, f"user:{seq}", seq)
        arrived.clear()
        sent[seq] = time.perf_counter_ns()
        sender.publish(CHANNEL, payload)
        arrived.wait(5)
    return [receiver.received_at[seq] - sent[seq] for seq in range(n)]


def run_async(sender: RedisBackplane, receiver: Receiver, n: int, sender_id: bytes) -> list[int]:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        sent: dict[int, int] = {}
        receiver.received_at.clear()
        for seq in range(n):
            payload = encode_message(sender_id, Action.SET, f"user:{seq}", seq)
            arrived: asyncio.Future[None] = loop.create_future()

            def notify(future: asyncio.Future[None] = arrived) -> None:
                loop.call_soon_threadsafe(future.set_result, None)

            receiver.notify = notify
            sent[seq] = time.perf_counter_ns()
            await sender.apublish(CHANNEL, payload)
            await asyncio.wait_for(arrived, 5)
        await sender.aclose()
        return [receiver.received_at[seq] - sent[seq] for seq in range(n)]

    return asyncio.run(main())


def run_raw(url: str, n: int, sender_id: bytes) -> list[int]:
    publisher = redis.Redis.from_url(url)
    listener = redis.Redis.from_url(url).pubsub()  # type: ignore[no-untyped-call]
    listener.subscribe("{bench}:raw")
    listener.get_message(timeout=5)  # the confirmation
    receiver = Receiver()
    arrived = threading.Event()
    receiver.notify = arrived.set

    def listen() -> None:
        while True:
            message = listener.get_message(timeout=None)
            if message is None:
                continue
            if message["data"] == b"stop":
                return
            receiver.on_message(message["data"])

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    sent: dict[int, int] = {}
    for seq in range(n):
        payload = encode_message(sender_id, Action.SET, f"user:{seq}", seq)
        arrived.clear()
        sent[seq] = time.perf_counter_ns()
        publisher.publish("{bench}:raw", payload)
        arrived.wait(5)
    publisher.publish("{bench}:raw", b"stop")
    thread.join(5)
    listener.close()
    publisher.close()
    return [receiver.received_at[seq] - sent[seq] for seq in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    sender_id = b"bench-a"
    with redis_server() as url:
        sender = RedisBackplane.from_url(url)
        listener = RedisBackplane.from_url(url)
        receiver = Receiver()
        listener.start(CHANNEL, receiver.on_message, receiver.on_state)
        variants: dict[str, Callable[[], list[int]]] = {
            "publish": lambda: run_sync(sender, receiver, args.messages, sender_id),
            "apublish": lambda: run_async(sender, receiver, args.messages, sender_id),
            "raw redis-py": lambda: run_raw(url, args.messages, sender_id),
        }
        samples: dict[str, list[int]] = {name: [] for name in variants}
        round_p50: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                latencies = run()
                samples[name] += latencies
                round_p50[name].append(percentile(latencies, 0.5))
        listener.close()
        sender.close()
    total = args.rounds * args.messages
    print(f"publish -> on_message latency, loopback, {total} messages per variant")
    print(f"{'variant':<14} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  p50 ratio to raw (range)")
    base = round_p50["raw redis-py"]
    for name in variants:
        values = samples[name]
        ratios = [mine / theirs for mine, theirs in zip(round_p50[name], base, strict=True)]
        print(
            f"{name:<14} {percentile(values, 0.5):8.3f} {percentile(values, 0.99):8.3f} "
            f"{max(values) / 1e6:8.3f}  {statistics.median(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f})"
        )
    worst = max(percentile(samples[name], 0.99) for name in ("publish", "apublish"))
    verdict = "meets" if worst < GOAL_P99_MS else "MISSES"
    print(f"backplane p99 {worst:.3f} ms {verdict} the goal of {GOAL_P99_MS} ms")


if __name__ == "__main__":
    main()
