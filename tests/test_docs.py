"""Every Python block of the docs pages listed here runs as pasted, as a script of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["docs/application.md"]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        for n, match in enumerate(_BLOCK.finditer(text), 1):
            found.append((f"{page}#{n}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[w for w, _ in _blocks()])
def test_the_block_runs_as_pasted(where: str, code: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr[-3000:]}"


def test_every_page_has_blocks() -> None:
    assert {w.split("#")[0] for w, _ in _blocks()} == set(PAGES)
