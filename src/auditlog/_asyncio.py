"""SQLAlchemy's asyncio classes, or stand-ins when greenlet is not installed.

SQLAlchemy 2.1 no longer installs greenlet, and ``sqlalchemy.ext.asyncio`` refuses to import
without it. auditlog supports asyncio (``pip install "sqlalchemy-auditlog[asyncio]"``) but must
import and work without it: then no async object can exist, and the stand-ins below only serve
``isinstance`` checks that are always false.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["AVAILABLE", "AsyncEngine", "AsyncSession", "async_sessionmaker"]

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    AVAILABLE = True
else:
    try:
        from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
    except ImportError:  # greenlet missing
        AVAILABLE = False

        class AsyncEngine:
            """Stand-in: asyncio support is not installed."""

        class AsyncSession:
            """Stand-in: asyncio support is not installed."""

            sync_session_class = None

        class async_sessionmaker:
            """Stand-in: asyncio support is not installed."""

    else:
        AVAILABLE = True
