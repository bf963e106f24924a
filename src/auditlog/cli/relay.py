"""``auditlog relay``: publish every committed entry to NATS JetStream, once, without gaps.

Runs until interrupted (SIGINT or SIGTERM stop it after the round in progress), logging a line
per ``--interval`` on stderr; ``--once`` stops when nothing is pending; ``--status`` prints
where the relay stands instead (text, or ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from sqlalchemy.exc import SQLAlchemyError

from ..exceptions import ConfigurationError
from ..relay.horizon import DEFAULT_MARGIN
from ..relay.jetstream import DEFAULT_STREAM, DEFAULT_SUBJECT, JetStreamSink, SubjectTemplate
from ..relay.sinks import RelayProgress, describe, run_relay
from ..relay.source import BATCH_SIZE, DEFAULT_NAME, RelaySource
from ..relay.status import RelayStatus, relay_status
from .database import CommandError, first_line, open_database

__all__ = ["add_relay_parser", "relay_command"]

_MAX_BATCH = 100_000


def _batch(value: str) -> int:
    if not value.isdecimal() or not 1 <= int(value) <= _MAX_BATCH:
        raise argparse.ArgumentTypeError(
            f"not a number of entries from 1 to {_MAX_BATCH:,}: {value!r}"
        )
    return int(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"not a number of seconds from 0 to 3600: {value!r}")
    return seconds


def add_relay_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    database: argparse.ArgumentParser,
) -> None:
    """Register ``auditlog relay``."""
    parser = commands.add_parser(
        "relay",
        parents=[database],
        help="publish every committed entry to NATS JetStream, once, without gaps",
        description="Publish every committed entry to a JetStream stream (created when "
        "missing), the entry id as message id, and record the position in the database after "
        "the broker acknowledged: a killed relay resumes where it was. See docs/streaming.md.",
    )
    parser.add_argument(
        "--nats", metavar="URL", help="NATS server, nats://HOST:PORT; comma-separated for a cluster"
    )
    parser.add_argument("--stream", default=DEFAULT_STREAM, help=f"stream name ({DEFAULT_STREAM})")
    parser.add_argument(
        "--subject",
        default=DEFAULT_SUBJECT,
        metavar="TEMPLATE",
        help=f"subject template with {{tenant}}, {{model}}, {{action}}, {{content_type}} "
        f"({DEFAULT_SUBJECT})",
    )
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help=f"relay name, one position each ({DEFAULT_NAME})"
    )
    parser.add_argument(
        "--batch",
        type=_batch,
        default=BATCH_SIZE,
        metavar="N",
        help=f"entries per round ({BATCH_SIZE:,})",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        choices=range(1, 6),
        metavar="N",
        help="replicas of the stream when it is created (1)",
    )
    parser.add_argument(
        "--margin",
        type=_seconds,
        default=DEFAULT_MARGIN,
        metavar="SECONDS",
        help=f"safety margin of the horizon: clock skew, SQLite busy timeout ({DEFAULT_MARGIN:g})",
    )
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds between two progress lines (10)",
    )
    parser.add_argument("--once", action="store_true", help="stop when nothing is pending")
    parser.add_argument(
        "--status", action="store_true", help="print the relay's position, backlog and lag"
    )
    parser.add_argument("--json", action="store_true", help="with --status: as JSON")
    parser.set_defaults(handler=relay_command)


def _status_text(status: RelayStatus) -> str:
    def show(value: object) -> str:
        return "-" if value is None else str(value)

    lines = [
        f"relay:        {status.name}",
        f"horizon:      {show(status.horizon)}",
        f"position:     {show(status.position)}",
        f"relayed:      {status.relayed:,}",
        f"pending:      {status.pending:,}",
        f"lag:          {status.lag:.1f} s",
        f"oldest:       {show(status.oldest_pending and status.oldest_pending.isoformat())}",
        f"started:      {show(status.started_at and status.started_at.isoformat())}",
        f"last round:   {show(status.updated_at and status.updated_at.isoformat())}",
    ]
    if status.note:
        lines.append(f"horizon held: {status.note}")
    return "\n".join(lines)


def relay_command(args: argparse.Namespace) -> int:
    """Relay, or print the status."""
    if args.status:
        engine = open_database(args.database_url)
        try:
            status = relay_status(engine, args.name)
        except SQLAlchemyError as exc:
            raise CommandError(f"cannot read the relay's status: {first_line(exc)}") from None
        finally:
            engine.dispose()
        if status is None:
            raise CommandError(f"relay {args.name!r} has never run on this database")
        print(json.dumps(status.as_json()) if args.json else _status_text(status))
        return 0
    if not args.nats:
        raise CommandError("--nats is required (nats://HOST:PORT)", 2)
    servers = [s.strip() for s in args.nats.split(",") if s.strip()]
    for server in servers:
        if not server.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise CommandError(f"--nats: {server!r} is not a NATS URL (nats://HOST:PORT)", 2)
    try:
        SubjectTemplate(args.subject)
        sink = JetStreamSink(
            servers,
            stream=args.stream,
            subject=args.subject,
            relay_name=args.name,
            replicas=args.replicas,
        )
    except ConfigurationError as exc:
        raise CommandError(f"--subject/--stream: {exc}", 2) from None
    engine = open_database(args.database_url)
    try:
        source = RelaySource(engine, name=args.name, batch_size=args.batch, margin=args.margin)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    def progress(item: RelayProgress) -> None:
        print(f"auditlog relay: {describe(item)}", file=sys.stderr, flush=True)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await sink.connect()
        except ConnectionError as exc:
            raise CommandError(str(exc)) from None
        try:
            return await run_relay(
                source, sink, stop=stop, once=args.once, interval=args.interval, progress=progress
            )
        finally:
            await sink.close()

    try:
        sent = asyncio.run(run())
    except SQLAlchemyError as exc:
        raise CommandError(f"database: {first_line(exc)}") from None
    except (TimeoutError, asyncio.TimeoutError):
        raise CommandError(
            "NATS did not acknowledge in time (is a stream holding the subjects?)"
        ) from None
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()
    print(f"relayed {sent} entries")
    return 0
