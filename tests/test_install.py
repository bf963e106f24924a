"""The package works with only its core dependencies: no greenlet, no web framework."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
BLOCK = "import sys; sys.modules.update(dict.fromkeys(['greenlet', 'fastapi', 'flask'], None)); "


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=60
    )


def test_core_imports_and_captures_without_greenlet() -> None:
    result = run(
        "import sqlalchemy as sa, auditlog, auditlog.cli, auditlog.http\n"
        "from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column\n"
        "class Base(DeclarativeBase): pass\n"
        "@auditlog.register\n"
        "class Note(Base):\n"
        "    __tablename__ = 'note'\n"
        "    id: Mapped[int] = mapped_column(primary_key=True)\n"
        "e = sa.create_engine('sqlite://'); Base.metadata.create_all(e); auditlog.create_tables(e)\n"
        "auditlog.enable()\n"
        "with Session(e) as s: s.add(Note()); s.commit()\n"
        "with Session(e) as s: print(auditlog.query_history(s).count)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_the_fastapi_integration_names_its_extra_when_missing() -> None:
    result = run("import auditlog.integrations.fastapi")
    assert result.returncode != 0
    assert 'pip install "sqlalchemy-auditlog[fastapi]"' in result.stderr


def test_the_wheel_ships_the_viewer(tmp_path: Path) -> None:
    """Built as it is published and imported from nothing but the wheel, the package serves every
    file of the viewer: the page and what it links to."""
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("sqlalchemy_auditlog-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    code = (
        "import re, auditlog\n"
        "from auditlog.integrations.viewer import asset\n"
        "print(auditlog.__file__)\n"
        "status, headers, page = asset('', 'bearer')\n"
        "assert status == 200, status\n"
        "for name in re.findall(rb'(?:href|src)=\"([a-z.]+)\"', page):\n"
        "    status, headers, body = asset(name.decode(), 'bearer')\n"
        "    assert status == 200 and body, name\n"
        "    print(name.decode(), len(body))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0].startswith(str(tmp_path / "site"))
    assert sorted(lines[1::2]) == ["icon.svg", "viewer.css", "viewer.js"]
