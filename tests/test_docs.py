"""The docs stay true: every Python block of the docs pages and of the README runs.

A fenced block of a page is one of:

- ```` ```python ````: runs as pasted, as a script of its own: a fresh ``__main__`` module, in
  a temporary directory of its own. The blocks of one page share one interpreter and run one
  after another (an interpreter per block would cost the suite seconds); the pages run in
  parallel. A block that needs Redis reads its URL from ``$REDIS_URL``: each page that does
  gets a ``redis-server`` of its own, started here, never the machine's server.
- ```` ```py ````: a fragment (it uses names it doesn't define, or awaits at the top level).
  Compiled, and its ``df.<name>`` / ``from dataferry... import`` names checked against the
  package, but not run. Only a few are allowed (``MAX_FRAGMENTS``).
- any other language of ``LANGUAGES``: not Python. A fence without a language fails the test,
  so Python can't hide in one.

The README's first example also runs on its own, as on a fresh machine: no server, no
``$REDIS_URL``, an empty directory.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import dataferry
from tests.redis_servers import RedisBinaryNotFoundError, RedisServer, RedisStartError

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")] + ["README.md"]
)
LANGUAGES = {"python", "py", "sh", "text", "promql", "json", "toml", "yaml"}
#: Fragments allowed in all pages together, and as a share of the Python blocks.
MAX_FRAGMENTS = 10
MAX_FRAGMENT_SHARE = 0.2
#: Seconds one page's blocks may take together.
PAGE_TIMEOUT = 90

_FENCE = re.compile(
    r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)

# Runs the blocks of one page (JSON on stdin: [[where, code], ...]) one after another, each in
# a fresh __main__ module and an empty directory of its own (under argv[1]), and stops at the
# first failure. Warnings are errors, as in the rest of the suite.
_RUNNER = r"""
import json, os, sys, tempfile, traceback, types

base = sys.argv[1]
for where, code in json.load(sys.stdin):
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    sys.argv = [where]
    os.chdir(tempfile.mkdtemp(dir=base))
    print(f"--- {where}", flush=True)
    try:
        exec(compile(code, where, "exec"), module.__dict__)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            print(f"FAILED {where}: SystemExit({exc.code!r})", file=sys.stderr)
            sys.exit(1)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED {where}", file=sys.stderr)
        sys.exit(1)
"""


@dataclass(frozen=True)
class Block:
    page: str
    number: int
    line: int
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line} (block {self.number})"


def _blocks(page: str) -> list[Block]:
    text = (ROOT / page).read_text(encoding="utf-8")
    found = []
    for n, match in enumerate(_FENCE.finditer(text), 1):
        info = match.group("info").strip()
        language = info.split()[0] if info else ""
        body = match.group("body")
        indent = len(match.group("indent"))
        code = "".join(line[indent:] for line in body.splitlines(keepends=True))
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, n, line, language, code))
    return found


ALL = [b for page in PAGES for b in _blocks(page)]
RUNNABLE = [b for b in ALL if b.language == "python"]
FRAGMENTS = [b for b in ALL if b.language == "py"]
RUN_PAGES = sorted({b.page for b in RUNNABLE})


def _needs_redis(blocks: list[Block]) -> bool:
    return any("REDIS_URL" in b.code for b in blocks)


def _run_page(page: str, env: dict[str, str], base: Path) -> subprocess.CompletedProcess[str]:
    blocks = [[b.where, b.code] for b in RUNNABLE if b.page == page]
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", _RUNNER, str(base)],
        input=json.dumps(blocks),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT,
        check=False,
    )


def _clean_env() -> dict[str, str]:
    # The blocks see no DataFerry or Redis settings of the machine running the tests.
    return {k: v for k, v in os.environ.items() if not k.startswith(("DATAFERRY_", "REDIS_URL"))}


@pytest.fixture(scope="module")
def page_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """Every page's blocks, started at once (a few pages at a time) on the first use."""
    servers: list[RedisServer] = []
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            runs = {}
            for page in RUN_PAGES:
                env = _clean_env()
                if _needs_redis([b for b in RUNNABLE if b.page == page]):
                    try:
                        server = RedisServer(name="docs").start()
                    except (RedisBinaryNotFoundError, RedisStartError) as exc:
                        pytest.fail(f"cannot start Redis for {page}: {exc}", pytrace=False)
                    servers.append(server)
                    env["REDIS_URL"] = f"{server.url}/0"
                runs[page] = pool.submit(_run_page, page, env, tmp_path_factory.mktemp("docs"))
            yield runs
    finally:
        for server in servers:
            server.close()


@pytest.mark.parametrize("page", RUN_PAGES)
def test_every_python_block_of_the_page_runs(
    page: str, page_runs: dict[str, Future[subprocess.CompletedProcess[str]]]
) -> None:
    proc = page_runs[page].result()
    assert proc.returncode == 0, (
        f"a block of {page} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    ran = [line[4:] for line in proc.stdout.splitlines() if line.startswith("--- ")]
    assert ran == [b.where for b in RUNNABLE if b.page == page]


def test_the_readme_first_example_runs_as_pasted_on_a_fresh_machine(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = _blocks("README.md")[0]
    assert first.language == "python"
    assert text.index("```python") < text.index("## Quick start")
    lines = [line for line in first.code.splitlines() if line.strip()]
    assert len(lines) <= 16, "keep the first example short"
    proc = subprocess.run(
        [sys.executable, "-c", first.code],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "the first example shows its result"


def test_the_readme_quick_start_is_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [b for b in ALL if b.page == "README.md" and b.code in section]
    assert len(commands) == 1
    assert commands[0].language == "sh"
    lines = [ln.split("#")[0].strip() for ln in commands[0].code.splitlines()]
    assert [ln for ln in lines if ln] == [
        "python3 scripts/dev.py demo",
        "python3 scripts/dev.py test",
    ]


def test_every_fence_names_a_known_language() -> None:
    unknown = [f"{b.where}: {b.language!r}" for b in ALL if b.language not in LANGUAGES]
    assert not unknown, "fences need one of " + ", ".join(sorted(LANGUAGES))
    assert len(RUNNABLE) >= 40  # the fence pattern still finds the blocks


_LOCAL_REDIS = re.compile(
    r"(?:rediss?|redis\+sentinel)://(?:[^@/]*@)?(?:localhost|127\.|\[::1\]|[:/])|unix://"
)


def _is_redis_url_fallback(node: ast.Call) -> bool:
    # os.environ.get("REDIS_URL", "<fallback>"): the one place a block may name a Redis URL.
    return (
        isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and ast.unparse(node.func.value) == "os.environ"
        and len(node.args) == 2
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "REDIS_URL"
    )


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_a_block_reaches_redis_only_through_redis_url(block: Block) -> None:
    # A block that named a local Redis URL of its own would reach the machine's server (port
    # 6379) from the tests: it must read $REDIS_URL, which the test points at a server it
    # started. (A URL of another host, such as Django settings naming "cache:6379", is data.)
    tree = ast.parse(block.code)
    allowed = {
        id(call.args[1])
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and _is_redis_url_fallback(call)
    }
    for node in ast.walk(tree):
        local = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if local and _LOCAL_REDIS.search(node.value):
            assert id(node) in allowed, f"{block.where}: {node.value!r}"


def test_fragments_are_few() -> None:
    assert len(FRAGMENTS) <= MAX_FRAGMENTS, [b.where for b in FRAGMENTS]
    assert len(FRAGMENTS) <= MAX_FRAGMENT_SHARE * (len(FRAGMENTS) + len(RUNNABLE))


@pytest.mark.parametrize("block", FRAGMENTS, ids=[b.where for b in FRAGMENTS])
def test_a_fragment_compiles_and_names_real_api(block: Block) -> None:
    # Compiled for real (not only parsed), so "return outside function" and the like fail too.
    compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for node in ast.walk(ast.parse(block.code)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "df":
                assert hasattr(dataferry, node.attr), f"{block.where}: no dataferry.{node.attr}"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dataferry"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{block.where}: no {node.module}.{alias.name}"


def test_the_api_reference_renders_every_public_name() -> None:
    reference = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "reference").glob("*.md")
    )
    rendered = set(re.findall(r"^::: ([\w.]+)", reference, re.M))
    missing = {f"dataferry.{n}" for n in dataferry.__all__ if n != "__version__"} - rendered
    assert not missing
    modules = {"events", "testing", "contrib.fastapi", "contrib.django"}
    assert {f"dataferry.{m}" for m in modules} <= rendered
