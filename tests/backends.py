"""Where the test databases come from: environment variables, else containers, else skip (or fail in CI)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

BACKENDS = ("sqlite", "postgresql", "mariadb")
ENV_VARS = {
    "postgresql": "AUDITLOG_TEST_POSTGRESQL_URL",
    "mariadb": "AUDITLOG_TEST_MARIADB_URL",
}
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def selected_backends() -> tuple[str, ...]:
    """Backends named by AUDITLOG_TEST_BACKENDS (comma-separated), all three by default."""
    raw = os.environ.get("AUDITLOG_TEST_BACKENDS", "")
    names = tuple(n.strip() for n in raw.split(",") if n.strip()) or BACKENDS
    unknown = set(names) - set(BACKENDS)
    if unknown:
        raise pytest.UsageError(f"AUDITLOG_TEST_BACKENDS: unknown backend(s) {sorted(unknown)}")
    return names


def _docker_available() -> bool:
    if shutil.which("docker") is None and not os.environ.get("DOCKER_HOST"):
        return False
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


@contextmanager
def server_url(backend: str, stack: ExitStack) -> Iterator[str]:
    """Yield a SQLAlchemy URL for a server backend, starting a container when needed."""
    url = os.environ.get(ENV_VARS[backend])
    if url:
        yield url
        return
    if _docker_available():
        if backend == "postgresql":
            from testcontainers.postgres import PostgresContainer

            pg = stack.enter_context(PostgresContainer("postgres:16", driver="psycopg"))
            yield pg.get_connection_url()
        else:
            from testcontainers.mysql import MySqlContainer

            maria = stack.enter_context(MySqlContainer("mariadb:11", dialect="pymysql"))
            yield maria.get_connection_url().replace("mysql+pymysql://", "mariadb+pymysql://")
        return
    message = (
        f"{backend}: set {ENV_VARS[backend]} to a database URL, or make Docker available "
        "so the tests can start a container"
    )
    if IN_CI:
        pytest.fail(f"CI=true and no {backend} server is reachable. {message}", pytrace=False)
    pytest.skip(message)
