"""The package works with only its core dependencies: no greenlet, no web framework."""

from __future__ import annotations

import subprocess
import sys

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
