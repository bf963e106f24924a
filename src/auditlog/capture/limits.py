"""What one entry may weigh, per database, checked before it is sent.

MySQL and MariaDB take no statement larger than ``max_allowed_packet`` (16 MiB by default on
MariaDB 10.11, 64 MiB on MySQL 8): a larger one makes the server drop the connection ("server
has gone away"). An update of a large value writes it twice (before and after), so an entry
can exceed the packet where the application's own statement did not. The drivers split a batch
into statements of their own size, so only a single entry can be too large: it is refused here,
before anything is sent, with an error that names the limit and the object, and the flush fails
as with any failed entry. PostgreSQL (``jsonb`` documents up to 255 MB, ``COPY`` streamed) and
SQLite (a value up to 1 GB by default) need no check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from ..exceptions import CaptureError

__all__ = ["check_packets"]

_PACKET = "auditlog.max_allowed_packet"
#: Room kept for the statement around one row's values, and the row's other columns.
_OVERHEAD = 4096
#: Characters the driver escapes in a string literal, each taking one byte more.
_ESCAPED = ("\\", "'", '"', "\x00", "\n", "\r", "\x1a")


def _max_packet(connection: Connection) -> int:
    """The server's ``max_allowed_packet``, read once per database connection."""
    found = connection.info.get(_PACKET)
    if found is None:
        found = connection.info[_PACKET] = int(
            connection.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one()
        )
    return int(found)


def _literal_size(text: str) -> int:
    """Bytes ``text`` takes as an escaped UTF-8 string literal."""
    return len(text.encode("utf-8", "surrogatepass")) + sum(text.count(c) for c in _ESCAPED)


def check_packets(
    connection: Connection, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Refuse, on MySQL and MariaDB, a row (values in ``columns`` order) that cannot fit in one
    packet."""
    if connection.dialect.name not in ("mysql", "mariadb"):
        return
    limit: int | None = None
    for values in rows:
        chars = sum(len(v) for v in values if isinstance(v, str))
        if chars * 8 + _OVERHEAD <= (limit or 1024 * 1024):  # cannot exceed even a 1 MiB limit
            continue
        limit = limit or _max_packet(connection)
        size = sum(_literal_size(v) for v in values if isinstance(v, str)) + _OVERHEAD
        if size > limit:
            row = dict(zip(columns, values, strict=True))
            raise CaptureError(
                f"the {row['action_type']} entry of object {row['object_id']!r} (content type "
                f"{row['content_type']}) takes {size:,} bytes, more than the database's "
                f"max_allowed_packet of {limit:,}: raise max_allowed_packet, or exclude or mask "
                "the large attribute (docs/limitations.md)"
            )
