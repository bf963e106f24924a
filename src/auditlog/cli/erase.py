"""``auditlog erase``: remove one data subject's values from the log, keeping it provable.

An actor (``--user-id``) or an object (``--content-type`` and ``--object-id``), as
``auditlog.erase`` does it. An erasure cannot be undone, so the command asks first on a
terminal, and elsewhere runs only with ``--yes``. Prints the erasure's id and how many entries
changed; exit status 0 when done, 1 when the erasure was refused (nothing changed), 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import SQLAlchemyError

from ..integrity.erase import ErasureError, erase
from .database import CommandError, first_line, open_database
from .history import terminal_safe

__all__ = ["add_erase_parser", "erase_command"]


def add_erase_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Register ``auditlog erase``."""
    parser = commands.add_parser(
        "erase",
        parents=parents,
        help="erase one person's values (an actor, or an object's key and states); verify still passes",
        description="Erase what the log holds about one data subject: an actor (--user-id: "
        "the user id, address, user agent and extra of every entry they made) or an object "
        "(--content-type and --object-id: the key and the states of every entry of it, under "
        "every key it had). Sealed entries "
        "stay provable: verify reports the fields as erased. The erasure is recorded (when, "
        "why, by whom) and cannot be undone.",
    )
    parser.add_argument("--user-id", metavar="ID", help="the actor to erase")
    parser.add_argument(
        "--content-type",
        metavar="MODEL",
        help="the object's model: its full name (app.models.Customer) or its content type id",
    )
    parser.add_argument(
        "--object-id", metavar="KEY", help='the object\'s key as entries show it (7, or ["acme",7])'
    )
    parser.add_argument("--reason", help="why (an erasure request's reference), recorded")
    parser.add_argument("--erased-by", metavar="NAME", help="who asked for it, recorded")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(handler=erase_command)


def _subject(args: argparse.Namespace) -> tuple[str, dict[str, object]]:
    """What to erase, as ``erase()``'s arguments and in words; a status-2 error otherwise."""
    is_object = args.content_type is not None or args.object_id is not None
    if (args.user_id is None) == (not is_object):
        raise CommandError(
            "give --user-id (an actor) or --content-type and --object-id (an object)", 2
        )
    if args.user_id is not None:
        if not args.user_id:
            raise CommandError("--user-id: must not be empty", 2)
        return f"actor {args.user_id!r}", {"user_id": args.user_id}
    if not args.content_type or args.object_id is None:
        raise CommandError("an object is named by both --content-type and --object-id", 2)
    model: object = args.content_type
    if args.content_type.isdecimal():
        if len(args.content_type) > 10:
            raise CommandError(
                f"--content-type: no audited model has the id {args.content_type[:20]}...", 2
            )
        model = int(args.content_type)
    return (
        f"object {args.object_id!r} of {args.content_type}",
        {"content_type": model, "object_id": args.object_id},
    )


def erase_command(args: argparse.Namespace) -> int:
    """Erase an actor or an object; print what was erased."""
    described, subject = _subject(args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError(f"erasing {described} cannot be undone: add --yes to go on", 2)
        answer = input(f"Erase {terminal_safe(described)} from the audit log for good? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("nothing erased", file=sys.stderr)
            return 1
    engine = open_database(args.database_url)
    try:
        result = erase(engine, reason=args.reason, erased_by=args.erased_by, **subject)  # type: ignore[arg-type]
    except ErasureError as exc:
        raise CommandError(f"erasure refused, nothing changed: {exc}") from None
    except ValueError as exc:
        raise CommandError(str(exc).removeprefix("erase(): "), 2) from None
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot erase: {first_line(exc)}") from None
    finally:
        engine.dispose()
    print(
        f"erased {', '.join(result.fields)} of {described} in {result.entries} entries; "
        f"erasure {result.erasure_id}"
    )
    return 0
