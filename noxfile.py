"""Development tasks: ``nox -s tests`` runs the suite the way CI does."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
SQLALCHEMY = {"2.0": "sqlalchemy[asyncio]>=2.0.30,<2.1", "2.1": "sqlalchemy[asyncio]>=2.1,<2.2"}
# Newest SQLAlchemy on every database, plus 2.0 on SQLite.
MATRIX = [
    ("2.1", "sqlite,postgresql,mariadb"),
    ("2.0", "sqlite"),
]


def _install(session: nox.Session, *groups: str) -> None:
    deps: list[str] = []
    for group in groups:
        deps += nox.project.dependency_groups(PYPROJECT, group)
    session.install("-e", ".", *deps)


@nox.session(tags=["quick"])
@nox.parametrize(("sqlalchemy", "databases"), MATRIX, ids=[f"sa{v}" for v, _ in MATRIX])
def tests(session: nox.Session, sqlalchemy: str, databases: str) -> None:
    """Run the test suite on the given SQLAlchemy version and databases."""
    _install(session, "test")
    session.install(SQLALCHEMY[sqlalchemy])
    env = {"AUDITLOG_TEST_BACKENDS": os.environ.get("AUDITLOG_TEST_BACKENDS", databases)}
    session.run("pytest", *session.posargs, env=env)


LINTED = ["src", "tests", "benchmarks", "docs/images/take.py", "noxfile.py"]


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check src/ with mypy in strict mode."""
    _install(session, "typecheck")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Run the examples of docs/ (they are also part of the test suite)."""
    _install(session, "test")
    session.run("pytest", "tests/test_docs.py", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Measure capture overhead and query latency, chart them (benchmarks/, docs/performance.md)."""
    # The compared libraries live in this environment only, never in the project's dependencies.
    session.install(
        "-e",
        ".[fast]",
        "sqlalchemy>=2.0.30,<2.1",
        "psycopg[binary]>=3.1",
        "pymysql>=1.1",
        "sqlalchemy-continuum==2.0.0",
        "sqlalchemy-audit-trail==0.2.0",
        "pyinstrument>=4.6",
        "matplotlib>=3.8",
    )
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """Run ``auditlog demo`` from a fresh install."""
    session.install(".")
    session.run("auditlog", "demo", *session.posargs)


@nox.session(default=False)
def screenshots(session: nox.Session) -> None:
    """Retake the viewer's screenshots of docs/images/ (needs Chromium at /usr/bin/chromium)."""
    _install(session, "test")
    session.run("python", "docs/images/take.py")
