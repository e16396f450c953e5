"""Developer entry point: `python3 scripts/dev.py demo|test|check|bench`.

Needs only Python 3.10+: it creates `.venv/` next to the project, installs the project with its
test and benchmark tools (again only when pyproject.toml changes), then runs the command.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("DATAFERRY_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT)
    if code:
        raise SystemExit(code)


def make_venv(path: Path) -> None:
    """Create a virtualenv with pip at ``path``."""
    try:
        venv.EnvBuilder(with_pip=True).create(path)
    except (OSError, subprocess.CalledProcessError):
        # Debian's python3 without the python3-venv package has no ensurepip: use
        # virtualenv from PyPI instead (pip is all a fresh machine is assumed to have).
        run(sys.executable, "-m", "pip", "install", "--quiet", "--user", "virtualenv")
        run(sys.executable, "-m", "virtualenv", "--quiet", path)


def ensure_venv() -> None:
    stamp = VENV / ".dataferry-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        make_venv(VENV)
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # The package with every extra, and the tools of the dev dependency group (pyproject.toml).
    run(PY, "-m", "pip", "install", "--quiet", "-e", ".[all]", "--group", "dev")
    stamp.write_text(want)


def check() -> None:
    run(PY, "scripts/unasync.py", "--check")
    run(BIN / "ruff", "check", "src", "tests", "benchmarks", "scripts", "examples")
    run(BIN / "ruff", "format", "--check", "src", "tests", "benchmarks", "scripts", "examples")
    run(BIN / "mypy")
    # The typed usage file: what users' type checkers see of the public API. Its imports are
    # checked (and reported) by the run above. pyright runs on the Node.js of its PyPI wheel,
    # without asking PyPI for newer versions, against this venv's packages.
    run(BIN / "mypy", "--strict", "--follow-imports=silent", "tests/typing")
    os.environ["PYRIGHT_PYTHON_GLOBAL_NODE"] = "0"
    os.environ["PYRIGHT_PYTHON_IGNORE_WARNINGS"] = "1"
    run(BIN / "pyright", "--pythonpath", PY)


def bare_install() -> None:
    """Build the wheel, install it without extras in a fresh virtualenv, import it, run the demo.

    Catches what the project's own venv hides: a module that needs a dev-only package, a file
    missing from the wheel, an entry point that doesn't start.
    """
    with tempfile.TemporaryDirectory(prefix="dataferry-bare-") as tmp:
        dist, env = Path(tmp) / "dist", Path(tmp) / "venv"
        run(PY, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, ".")
        (wheel,) = dist.glob("dataferry-*.whl")
        make_venv(env)
        bare = env / BIN.name
        run(bare / "python", "-m", "pip", "install", "--quiet", wheel)
        run(bare / "python", "-c", "import dataferry; print('bare:', dataferry.__version__)")
        run(bare / "dataferry", "demo", "--duration", "1", "--baseline-seconds", "0.5",
            "--no-progress")  # fmt: skip


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "check", "bench"}:
        print(__doc__)
        return 2
    ensure_venv()
    cmd, rest = argv[0], argv[1:]
    if cmd == "demo":
        run(BIN / "dataferry", "demo", *rest)
    elif cmd == "check":
        check()
    elif cmd == "test":
        check()
        # The docs site, strict: a broken link or cross-reference, or a page left out of the
        # nav, fails the tests (tests/test_docs.py runs the pages' code blocks).
        # (NO_MKDOCS_2_WARNING: the theme's banner about a future MkDocs, not about our docs.)
        os.environ["NO_MKDOCS_2_WARNING"] = "1"
        run(BIN / "mkdocs", "build", "--strict", "--quiet", "--site-dir", ROOT / "site")
        # On up to 4 workers (pytest-xdist), unless told otherwise (-n, -p no:xdist): most of
        # the suite's time is spent waiting on servers (failovers, timeouts, restarts), so two
        # workers on two cores take about half the time of one.
        told = any(
            a.startswith(("-n", "--numprocesses", "--dist")) or a == "no:xdist" for a in rest
        )
        workers = [] if told else ["-n", str(min(4, os.cpu_count() or 1))]
        run(
            PY, "-m", "pytest", "-p", "no:cacheprovider", *workers,
            "--cov=dataferry", "--cov-report=term", "--cov-fail-under=90", *rest,
        )  # fmt: skip
        bare_install()
    else:
        for bench in rest or sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py")):
            run(PY, Path("benchmarks") / bench)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
