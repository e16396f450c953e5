"""The ``dataferry`` command line: ``dataferry demo`` (and room for more subcommands).

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``handler`` to a function taking the parsed namespace and returning the exit status.
Adding a subcommand = writing that function and listing it in :data:`_SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


# -- dataferry demo -------------------------------------------------------------------------------


def _add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from dataferry._demo import DemoConfig

    d = DemoConfig()
    p = subparsers.add_parser(
        "demo",
        help="run a read-heavy workload through the hybrid cache and print what it saved",
        description=(
            "Zipf-distributed product lookups from many concurrent tasks against a real SQLite "
            "database (plus simulated network latency), through an L1 MemoryCache in front of "
            "an embedded SQLiteCache L2 (or Redis with --redis), then the same workload "
            "without the cache."
        ),
    )
    p.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="use RedisCache.from_url(URL) as L2 instead of the embedded SQLiteCache",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--duration",
        type=_positive_float,
        default=d.duration,
        metavar="SECONDS",
        help=f"how long the cached run lasts (default: {d.duration:g})",
    )
    length.add_argument(
        "--requests",
        type=_positive_int,
        default=None,
        metavar="N",
        help="stop the cached run after N requests instead of after --duration",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=d.concurrency,
        metavar="TASKS",
        help=f"concurrent asyncio tasks issuing requests (default: {d.concurrency})",
    )
    p.add_argument(
        "--keys",
        type=_positive_int,
        default=d.keys,
        metavar="N",
        help=f"products in the database, i.e. distinct keys (default: {d.keys})",
    )
    p.add_argument(
        "--l1-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="max entries of the L1 MemoryCache (default: a quarter of --keys)",
    )
    p.add_argument(
        "--zipf-s",
        type=_non_negative_float,
        default=d.zipf_s,
        metavar="S",
        help=f"Zipf exponent of key popularity; 0 = uniform (default: {d.zipf_s:g})",
    )
    p.add_argument(
        "--db-latency-ms",
        type=_non_negative_float,
        default=d.db_latency_ms,
        metavar="MS",
        help=f"simulated network latency per database query (default: {d.db_latency_ms:g})",
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    p.add_argument(
        "--baseline-seconds",
        type=_positive_float,
        default=d.baseline_seconds,
        metavar="SECONDS",
        help=f"how long the no-cache baseline runs (default: {d.baseline_seconds:g})",
    )
    p.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the run without the cache",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="don't draw the progress bar",
    )
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from dataferry._demo import DemoConfig, run_demo
    from dataferry._errors import DistributedCacheError

    config = DemoConfig(
        duration=args.duration,
        requests=args.requests,
        concurrency=args.concurrency,
        keys=args.keys,
        l1_size=args.l1_size,
        zipf_s=args.zipf_s,
        seed=args.seed,
        db_latency_ms=args.db_latency_ms,
        redis_url=args.redis,
        baseline=not args.no_baseline,
        baseline_seconds=args.baseline_seconds,
        progress=not args.no_progress,
    )
    try:
        run_demo(config)
    except DistributedCacheError as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        print(f"dataferry demo: the L2 cache can't be reached: {cause}", file=sys.stderr)
        return 1
    return 0


# -- dataferry inspect ----------------------------------------------------------------------------


def _add_inspect(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="show what an L2 entry holds: envelope metadata, TTL and (with keys) the value",
        description=(
            "Read one entry from Redis or a SQLite L2 and print its envelope (format version, "
            "flags, serializer, compressor, key id, created, logical expiry, tags), its stored "
            "size and TTL left and, when it can be decoded, its value. Encrypted or signed "
            "entries are decoded only with --keys-env. Keys are never printed."
        ),
    )
    p.add_argument("key", help="the cache key (or, with --raw-key, the full storage key)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--redis", metavar="URL", help="read from Redis at URL")
    where.add_argument("--sqlite", metavar="PATH", help="read from the SQLiteCache file PATH")
    p.add_argument("--cluster", action="store_true", help="URL is a Redis Cluster node")
    p.add_argument(
        "--namespace", default="dataferry", help="the cache's namespace (default: dataferry)"
    )
    p.add_argument("--tenant", default=None, help="the tenant id, for a tenant view's key")
    p.add_argument("--raw-key", action="store_true", help="KEY is the full storage key, used as is")
    p.add_argument(
        "--keys-env",
        metavar="NAME",
        default=None,
        help="environment variable holding the keyring (id:base64,...) to decode the value",
    )
    p.add_argument("--no-value", action="store_true", help="never decode or print the value")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    import json

    from dataferry._backends import RedisCache, SQLiteCache
    from dataferry._codec import Keyring
    from dataferry._errors import DataFerryError, DistributedCacheError
    from dataferry._inspect import inspect_entry
    from dataferry._keys import check_id, check_key, key_prefix

    try:
        if args.raw_key:
            storage_key = check_key(args.key)
        else:
            tenant = None if args.tenant is None else check_id(args.tenant, "tenant id")
            storage_key = key_prefix(check_id(args.namespace, "namespace"), tenant) + check_key(
                args.key
            )
        keyring = None if args.keys_env is None else Keyring.from_env(args.keys_env)
    except DataFerryError as exc:
        print(f"dataferry inspect: {exc}", file=sys.stderr)
        return 2
    backend = (
        RedisCache.from_url(args.redis, cluster=args.cluster)
        if args.redis is not None
        else SQLiteCache(args.sqlite)
    )
    try:
        data = backend.get(storage_key)
        ttl = backend.ttl(storage_key) if data is not None else None
    except DistributedCacheError as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        print(f"dataferry inspect: the L2 cache can't be read: {cause}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    found = inspect_entry(
        storage_key, data, ttl_left=ttl, keyring=keyring, show_value=not args.no_value
    )
    if args.json:
        print(json.dumps(found.as_dict(), indent=2, default=repr, ensure_ascii=False))
    else:
        print(found.render())
    return 0 if found.found else 3


# -- the parser -----------------------------------------------------------------------------------

#: One function per subcommand, in the order ``--help`` lists them.
_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_demo,
    _add_inspect,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``dataferry`` argument parser with every subcommand."""
    from dataferry import __version__

    parser = argparse.ArgumentParser(
        prog="dataferry",
        description="DataFerry: a hybrid (in-process L1 + distributed L2) cache for Python.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    subparsers.required = True
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dataferry`` command; return its exit status.

    Argument errors print usage and a message to stderr and exit with status 2 (argparse);
    Ctrl-C exits with 130 without a traceback.
    """
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
