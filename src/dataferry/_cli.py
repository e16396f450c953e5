"""The ``dataferry`` command line: ``demo``, ``inspect``, ``keygen`` and ``simulate``.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``handler`` to a function taking the parsed namespace and returning the exit status.
Adding a subcommand = writing that function and listing it in :data:`_SUBCOMMANDS`.

Exit statuses, the same for every subcommand: 0 success; 1 the L2 (Redis, SQLite) can't be
reached or read; 2 a bad argument (argparse's usage errors, a malformed URL, a SQLite file that
doesn't exist, a malformed keyring); 3 ``inspect`` found no entry; 130 Ctrl-C. Errors are one
line on stderr, ``dataferry <command>: <message>``, never a traceback; they never show a
password from a URL, key material or stored values.

Display (``dataferry._console``): with the ``dataferry[cli]`` extra (rich) and a terminal,
tables, progress bars and colour; otherwise plain text that fits the terminal, and, when rich
is not installed, one line on stderr saying how to get the full display. Every command works
either way. ``keygen`` prints only its key line, never decorated (it is meant for
``$(dataferry keygen)``).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = ["build_parser", "main"]

#: Exit statuses (see the module docstring).
EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3


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


def _fail(command: str, message: str, status: int) -> int:
    """Print ``dataferry <command>: <message>`` as one line on stderr; return ``status``."""
    one_line = " ".join(str(message).split())
    print(f"dataferry {command}: {one_line}", file=sys.stderr)
    return status


def _redis_url_problem(url: str) -> str | None:
    """Return what is wrong with a Redis URL, or None; never echoes the URL (passwords).

    redis-py accepts some malformed URLs silently (``redis://host:6379/abc`` uses database 0)
    and rejects others with a ``ValueError`` only at the first command: check up front.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" of an IPv6 address
        return "not a URL, e.g. redis://localhost:6379/0"
    if parts.scheme not in ("redis", "rediss", "unix"):
        expected = "a Redis URL starts with redis://, rediss:// or unix://"
        if parts.scheme and "://" in url:
            return f"{expected} (got {parts.scheme}://)"
        return f"{expected}, e.g. redis://localhost:6379/0"
    if parts.scheme == "unix":
        if not parts.path:
            return "a unix:// URL needs a socket path (unix:///path)"
        return _redis_py_url_problem(url)
    try:
        port = parts.port  # parsed lazily: "notaport" and 99999 raise ValueError
    except ValueError:
        port = 0
    if port == 0:
        return "the port must be an integer from 1 to 65535"
    db = parts.path.strip("/")
    if db and not (db.isascii() and db.isdigit()):
        return "the database (the path after the host) must be a number, e.g. /0"
    return _redis_py_url_problem(url)


def _redis_py_url_problem(url: str) -> str | None:
    """What redis-py would refuse in a URL's query options, or None.

    ``parse_url`` refuses bad values (``?db=x``); an unknown option (``?foo=1``) passes it and
    fails only at the first command, inside the connection's ``__init__``: check its names.
    """
    import inspect

    from redis.connection import Connection, parse_url

    try:
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:  # "Invalid value for 'db' in connection URL.": no password
        return str(exc).rstrip(".")
    connection_class = options.pop("connection_class", Connection)
    accepted: set[str] = set()
    for klass in connection_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and klass is not object:
            accepted.update(inspect.signature(init).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        return f"unknown option {unknown[0]!r} in the URL's query"
    return None


#: What the ``cli`` extra adds, in the hint printed without it.
_CLI_EXTRA_GIVES = "tables, progress bars and colour"


def _hint_plain_display() -> None:
    """Without rich, say on stderr (one line) that ``dataferry[cli]`` gives the full display.

    Called once by each command that draws tables or progress bars, just before its output.
    """
    from dataferry._console import hint_missing_extra, rich_available

    if not rich_available():
        hint_missing_extra("cli", _CLI_EXTRA_GIVES)


def _cause(exc: BaseException) -> str:
    """The driver's message behind a DistributedCacheError (the backend's when none)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return str(cause) or type(cause).__name__


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but words are never split at hyphens (``--keys-`` / ``env``).

    Texts with line breaks (the epilogs: tables, examples) are printed as written.
    """

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return textwrap.fill(
            " ".join(text.split()),
            width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
        )


# -- dataferry demo -------------------------------------------------------------------------------


def _add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from dataferry._demo import DemoConfig

    d = DemoConfig()
    p = subparsers.add_parser(
        "demo",
        formatter_class=_HelpFormatter,
        help="run a workload through the cache and show what it saves",
        description=(
            "Zipf-distributed product lookups from many concurrent tasks against a real SQLite "
            "database (plus simulated network latency), through an L1 MemoryCache in front of "
            "an embedded SQLiteCache L2 (or Redis with --redis), then the same workload "
            "without the cache. It says what it will run, draws a progress bar on stderr, then "
            "prints the cache's counters, p50/p95/p99 latency and throughput of both runs, and "
            "how they compare: each figure, a slower one said as slower. Tables, bars and "
            "colour come with the dataferry[cli] extra (rich); without it the output is plain "
            "text."
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
        help="stop the cached run after N requests, not --duration",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=d.concurrency,
        metavar="TASKS",
        help=f"concurrent tasks issuing requests (default: {d.concurrency})",
    )
    p.add_argument(
        "--keys",
        type=_positive_int,
        default=d.keys,
        metavar="N",
        help=f"number of products = distinct keys (default: {d.keys})",
    )
    p.add_argument(
        "--l1-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="L1 MemoryCache max entries (default: --keys / 4)",
    )
    p.add_argument(
        "--zipf-s",
        type=_non_negative_float,
        default=d.zipf_s,
        metavar="S",
        help=f"Zipf exponent of popularity, 0 = uniform (default: {d.zipf_s:g})",
    )
    p.add_argument(
        "--db-latency-ms",
        type=_non_negative_float,
        default=d.db_latency_ms,
        metavar="MS",
        help=f"simulated latency per database query (default: {d.db_latency_ms:g})",
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
    from dataferry._errors import ConfigurationError, DistributedCacheError

    if args.redis is not None:
        problem = _redis_url_problem(args.redis)
        if problem is not None:
            return _fail("demo", f"bad --redis URL: {problem}", EXIT_USAGE)
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
    _hint_plain_display()
    try:
        run_demo(config)
    except ConfigurationError as exc:  # e.g. a URL that redis-py refuses
        return _fail("demo", str(exc), EXIT_USAGE)
    except DistributedCacheError as exc:
        return _fail("demo", f"the L2 cache can't be reached: {_cause(exc)}", EXIT_UNREACHABLE)
    return EXIT_OK


# -- dataferry inspect ----------------------------------------------------------------------------


_INSPECT_EPILOG = """\
exit status:
  0  the entry was found (its value may still be undecodable: see "value")
  1  the L2 can't be reached or read (Redis down, unreadable SQLite file)
  2  a bad argument (malformed URL, missing SQLite file, bad --keys-env)
  3  no entry under this key (absent or expired)
"""


def _add_inspect(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="show an L2 entry: envelope, TTL and value (if it decodes)",
        description=(
            "Read one entry from Redis or a SQLite L2 and print its envelope (format version, "
            "flags, serializer, compressor, key id, created, logical expiry, tags), its stored "
            "size and TTL left and, when it can be decoded, its value (or why it can't be). "
            "Encrypted or signed entries are decoded only with --keys-env; encryption keys "
            "are never printed. Nothing is written: a SQLite file is opened read-only, never "
            "created."
        ),
        epilog=_INSPECT_EPILOG,
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "key", metavar="KEY", help="the cache key (or, with --raw-key, the full storage key)"
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--redis", metavar="URL", help="read from Redis at URL")
    where.add_argument("--sqlite", metavar="PATH", help="read from the SQLiteCache file PATH")
    p.add_argument("--cluster", action="store_true", help="URL is a Redis Cluster node")
    p.add_argument(
        "--namespace",
        metavar="NAME",
        default="dataferry",
        help="the cache's namespace (default: dataferry)",
    )
    p.add_argument(
        "--tenant", metavar="ID", default=None, help="the tenant id, for a tenant view's key"
    )
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


def _read_entry(
    args: argparse.Namespace, storage_key: str, records: list[str]
) -> tuple[bytes | None, float | None, list[bytes | None]]:
    """Read ``storage_key`` and the cache's ``records`` from the L2 the arguments name.

    Raises the errors of the backend.
    """
    if args.sqlite is not None:
        from dataferry._inspect import read_sqlite_entry

        data, ttl = read_sqlite_entry(args.sqlite, storage_key)
        return data, ttl, [read_sqlite_entry(args.sqlite, name)[0] for name in records]
    from dataferry._backends import RedisCache

    backend = RedisCache.from_url(args.redis, cluster=args.cluster)
    try:
        data = backend.get(storage_key)
        ttl = backend.ttl(storage_key) if data is not None else None
        return data, ttl, backend.get_many(records)
    finally:
        backend.close()


def _run_inspect(args: argparse.Namespace) -> int:
    import json

    from dataferry._codec import Keyring
    from dataferry._errors import ConfigurationError, DataFerryError, DistributedCacheError
    from dataferry._inspect import inspect_entry, tenant_of
    from dataferry._keys import check_key, check_namespace, check_tenant, key_prefix
    from dataferry._scopes import Scopes

    try:
        if args.raw_key:
            storage_key = check_key(args.key)
        else:
            tenant = None if args.tenant is None else check_tenant(args.tenant)
            prefix = key_prefix(check_namespace(args.namespace), tenant)
            storage_key = prefix + check_key(args.key)
        keyring = None if args.keys_env is None else Keyring.from_env(args.keys_env)
    except DataFerryError as exc:
        return _fail("inspect", str(exc), EXIT_USAGE)
    if args.redis is not None:
        problem = _redis_url_problem(args.redis)
        if problem is not None:
            return _fail("inspect", f"bad --redis URL: {problem}", EXIT_USAGE)
    elif args.cluster:
        return _fail("inspect", "--cluster goes with --redis, not --sqlite", EXIT_USAGE)
    # The clear records of the entry's namespace and tenant hold the epochs its key is
    # derived from (an encrypting cache's entries can't be decrypted without them).
    tenant = tenant_of(storage_key)
    scopes = Scopes(storage_key.split(":", 1)[0])
    records = list(scopes.clear_names(tenant))
    try:
        data, ttl, found_records = _read_entry(args, storage_key, records)
    except (FileNotFoundError, IsADirectoryError) as exc:  # read-only: nothing was created
        return _fail("inspect", f"--sqlite: {exc}", EXIT_USAGE)
    except ConfigurationError as exc:
        return _fail("inspect", str(exc), EXIT_USAGE)
    except DistributedCacheError as exc:
        # Redis: the driver's words (host, port, reason); SQLite: ours, which name the file.
        detail = _cause(exc) if args.redis is not None else str(exc)
        return _fail("inspect", f"the L2 cache can't be read: {detail}", EXIT_UNREACHABLE)
    for name, record in zip(records, found_records, strict=True):
        scopes.learn(name, record)
    found = inspect_entry(
        storage_key,
        data,
        ttl_left=ttl,
        keyring=keyring,
        show_value=not args.no_value,
        kdf_scope=scopes.kdf_scope(tenant),
    )
    if args.json:
        print(json.dumps(found.as_dict(), indent=2, default=repr, ensure_ascii=False))
    else:
        from dataferry._console import print_table

        _hint_plain_display()
        print_table("dataferry inspect", ["", ""], found.rows())
    return EXIT_OK if found.found else EXIT_NOT_FOUND


# -- dataferry keygen -----------------------------------------------------------------------------

_KEYGEN_EPILOG = """\
examples:
  dataferry keygen                      # 2026-11:<base64 key>
  export DATAFERRY_KEYS="$(dataferry keygen)"
  # rotate: the first entry is the primary (new writes); older ids still
  # decrypt until you drop them
  export DATAFERRY_KEYS="$(dataferry keygen),$DATAFERRY_KEYS"
  dataferry keygen --id billing-1 >> keys.txt   # for Keyring.from_file
"""


def _key_id(text: str) -> str:
    from dataferry._codec import Keyring
    from dataferry._errors import KeyringError

    try:
        Keyring({text: bytes(32)})  # the keyring's own rule for ids
    except KeyringError:
        # Not echoed: a malformed "id" may be a key pasted in the wrong place.
        raise argparse.ArgumentTypeError(
            "a key id is 1-255 characters of A-Z a-z 0-9 _ . : -"
        ) from None
    return text


def _add_keygen(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "keygen",
        help="print a new encryption key line for DATAFERRY_KEYS",
        description=(
            "Print a new random 256-bit key (Keyring.generate_key()) as one line, "
            "'id:base64key', the format of DATAFERRY_KEYS (Keyring.from_env) and of key files "
            "(Keyring.from_file). Only the line goes to stdout, so it can be piped or "
            "captured; keep it out of logs and shell history."
        ),
        epilog=_KEYGEN_EPILOG,
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--id",
        metavar="NAME",
        type=_key_id,
        default=None,
        help="the key id (default: the current year and month in UTC, e.g. 2026-11)",
    )
    p.set_defaults(handler=_run_keygen)


def _run_keygen(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from dataferry._codec import Keyring

    key_id = args.id if args.id is not None else datetime.now(timezone.utc).strftime("%Y-%m")
    print(f"{key_id}:{Keyring.generate_key()}")
    return EXIT_OK


# -- dataferry simulate (src/dataferry/_simulate.py) ----------------------------------------------


def _add_simulate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Imported here: _simulate uses this module's helpers (_fail, _HelpFormatter...).
    from dataferry._simulate import add_simulate_command

    add_simulate_command(subparsers)


# -- the parser -----------------------------------------------------------------------------------

#: One function per subcommand, in the order ``--help`` lists them.
_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_demo,
    _add_inspect,
    _add_keygen,
    _add_simulate,
)


_MAIN_EPILOG = """\
Run 'dataferry COMMAND --help' for the options of a command.

exit status: 0 success, 1 the L2 can't be reached or read, 2 a bad argument,
3 inspect found no entry, 130 interrupted (Ctrl-C)
"""


def build_parser() -> argparse.ArgumentParser:
    """Return the ``dataferry`` argument parser with every subcommand."""
    from dataferry import __version__

    parser = argparse.ArgumentParser(
        prog="dataferry",
        description="DataFerry: a hybrid (in-process L1 + distributed L2) cache for Python.",
        epilog=_MAIN_EPILOG,
        formatter_class=_HelpFormatter,
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
    the other errors are one line on stderr with the statuses in the module docstring; Ctrl-C
    exits with 130 without a traceback.
    """
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
