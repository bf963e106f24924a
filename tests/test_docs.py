"""Every ```python block of README.md and docs/*.md runs, in order, one namespace per file.

Blocks fenced as ```python norun are shown but not run (for example, ones that start a server).
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```\s*$", re.DOTALL | re.MULTILINE)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        if match.group("info").strip() == "python":
            line = text.count("\n", 0, match.start()) + 2
            blocks.append((line, match.group("body")))
    return blocks


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_examples_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(path)
    if not blocks:
        pytest.skip(f"{path.name} has no python examples")
    monkeypatch.chdir(tmp_path)
    # a real module, so that annotations such as Mapped[int] resolve as in an application
    module = types.ModuleType(f"docs_{path.stem.lower()}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for line, body in blocks:
        code = compile("\n" * (line - 1) + body, str(path), "exec")
        exec(code, module.__dict__)
