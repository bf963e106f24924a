"""The relay: every committed entry, once, in a safe order, to a stream or any other sink.

``source.py`` reads the committed entries not relayed yet and records what was relayed;
``horizon.py`` bounds, per database, the entries that can still commit; ``sinks.py`` is the
sink interface and the relay loop; ``jetstream.py`` the NATS JetStream sink (``[nats]`` extra);
``status.py`` the position and lag. The guide is docs/streaming.md.
"""

from __future__ import annotations

from .horizon import DEFAULT_MARGIN, SafeBound, safe_bound
from .messages import RelayedEntry
from .sinks import Recovery, RelayProgress, Sink, run_relay
from .source import BATCH_SIZE, DEFAULT_NAME, RelaySource, committed_entries
from .status import RelayStatus, relay_status
from .tables import relay_entry_table, relay_table

__all__ = [
    "BATCH_SIZE",
    "DEFAULT_MARGIN",
    "DEFAULT_NAME",
    "Recovery",
    "RelayProgress",
    "RelaySource",
    "RelayStatus",
    "RelayedEntry",
    "SafeBound",
    "Sink",
    "committed_entries",
    "relay_entry_table",
    "relay_status",
    "relay_table",
    "run_relay",
    "safe_bound",
]
