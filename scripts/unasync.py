"""Generate the sync twin of the async modules: src/dataferry/_async/*.py -> _sync/*.py.

The httpcore approach: the async code is the source of truth, and token substitutions produce
the sync code. `python scripts/unasync.py` rewrites _sync/; `--check` fails (exit 1) when the
committed _sync/ differs from what would be generated (CI runs it).
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (async source dir, generated sync dir): the library's I/O code and its tests.
DIRS = [
    (ROOT / "src" / "dataferry" / "_async", ROOT / "src" / "dataferry" / "_sync"),
    (ROOT / "tests" / "_async", ROOT / "tests" / "_sync"),
]

# L2 / helper method names whose async form carries an "a" prefix.
_PREFIXED = (
    "aget_many|aget|aset_many|aset|acompare_and_set|areplace|adelete_many|adelete|aclose|acall|"
    "aping|attl|apublish_many|apublish|asubscribe|arun|aload|aload_many|asave|adelete_source|aseed|await_all|"
    "aacquire_lock|arelease_lock|aextend_lock"
)

SUBS: list[tuple[str, str]] = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncIterable\b", "Iterable"),
    (r"\bAsyncGenerator\b", "Generator"),
    (r"\bAwaitable\[([^\]]+)\]", r"\1"),
    # Awaitable is gone from the sync code: drop it from its import too.
    (r"^(from collections\.abc import .*)\bAwaitable, ", r"\1"),
    (r"^(from collections\.abc import .*), Awaitable$", r"\1"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\bfor asyncio code\b", "for synchronous (threaded) code"),
    (r"\bAsync([A-Z]\w*)", r"\1"),
    (r"\basync_([a-z]\w*)", r"sync_\1"),
    (r"\b_async\b", "_sync"),
    (r"\b_async_", "_sync_"),
    (r"\ba(sync|synchronous)ly\b", r"\1ly"),
    (rf"\b({_PREFIXED})\b", lambda m: m.group(1)[1:]),  # type: ignore[list-item]
]
_COMPILED = [(re.compile(p), r) for p, r in SUBS]
HEADER = "# GENERATED from {src} by scripts/unasync.py: do not edit.\n"


def transform(text: str) -> str:
    out = []
    skipping = False
    for line in text.splitlines(keepends=True):
        # Blocks between "unasync: begin async-only" and "unasync: end async-only" have no
        # sync form (e.g. overloads for awaitable factories) and are left out of _sync/.
        if "unasync: begin async-only" in line:
            skipping = True
        if skipping:
            if "unasync: end async-only" in line:
                skipping = False
            continue
        if "unasync: keep" not in line:
            for pattern, repl in _COMPILED:
                line = pattern.sub(repl, line)
        out.append(line)
    return "".join(out)


def generate() -> dict[Path, str]:
    result: dict[Path, str] = {}
    for src_dir, dst_dir in DIRS:
        for src in sorted(src_dir.glob("*.py")):
            header = HEADER.format(src=src.relative_to(ROOT).as_posix())
            result[dst_dir / src.name] = header + transform(src.read_text())
    return result


def main(argv: list[str]) -> int:
    check = "--check" in argv
    wanted = generate()
    stale = [p for _, dst in DIRS for p in dst.glob("*.py") if p not in wanted]
    bad = 0
    for path, text in wanted.items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        bad += 1
        if check:
            diff = difflib.unified_diff(
                (current or "").splitlines(keepends=True),
                text.splitlines(keepends=True),
                str(path),
                "generated",
            )
            sys.stdout.writelines(list(diff)[:40])
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        bad += 1
        if check:
            print(f"{path}: not generated from any _async module")
        else:
            path.unlink()
    if check and bad:
        print(f"{bad} sync module(s) out of date: run `python scripts/unasync.py`")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
