"""Who is acting, for which tenant, from where: request context held in contextvars.

Every entry flushed inside :func:`audit_context` carries its values. The contextvar holds a small
*mutable* frame, so :func:`update_context` called from a copied context (a framework running a sync
dependency in a worker thread copies the request's context) still changes the frame the request's
own code sees: the late-known actor reaches every entry of that request.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ContextError

__all__ = [
    "UNSAFE_TEXT",
    "USER_AGENT_MAX_LENGTH",
    "AuditContext",
    "audit_context",
    "clean_text",
    "current_context",
    "ip_text",
    "update_context",
]

#: Longer user agents are cut to this many characters: they are client-controlled input.
USER_AGENT_MAX_LENGTH = 512

_KNOWN = ("user_id", "tenant_id", "ip_address", "user_agent")
#: Longest ids the audit_log columns hold; longer ones are an error, not a failed flush later.
_MAX_LENGTH = {"user_id": 255, "tenant_id": 64}


@dataclass(frozen=True)
class AuditContext(Mapping[str, Any]):
    """The values in force at one moment; also readable as a mapping (``ctx["user_id"]``)."""

    user_id: str | None = None
    tenant_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key in _KNOWN:
            return getattr(self, key)
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        yield from _KNOWN
        yield from self.extra

    def __len__(self) -> int:
        return len(_KNOWN) + len(self.extra)


class _Frame:
    """One active audit_context block: mutable, shared by every copy of the request's context."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values


_frame: ContextVar[_Frame | None] = ContextVar("auditlog_context", default=None)


#: C0 and C1 control characters and the bidirectional overrides and isolates that make text
#: display as something else (CVE-2021-42574): dropped from free text, refused in ids.
UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_text(value: str, max_length: int) -> str:
    """Free text from a client (a user agent) made safe to store and to show: unsafe characters
    dropped, surrounding blanks stripped, cut to ``max_length``. Only a bounded prefix is read:
    the text may be of any size."""
    return UNSAFE_TEXT.sub("", value[: max_length * 2]).strip()[:max_length]


def ip_text(value: Any) -> str:
    """A validated address as canonical text: no IPv6 zone, IPv4-mapped IPv6 as plain IPv4.

    The form entries store and queries compare against; raises :class:`ContextError`. Text is
    parsed once per distinct address (a server sees the same clients again and again); text
    longer than any address (with its zone) is refused before it reaches that cache."""
    if isinstance(value, str):
        if len(value) > _IP_MAX_LENGTH:
            raise ContextError(
                f"ip_address: {len(value)} characters, no address takes more than {_IP_MAX_LENGTH}"
            )
        return _ip_text_of(value)
    return _parse_ip(value)


#: an IPv6 address is at most 45 characters; with a zone (an interface name) and blanks, 100
_IP_MAX_LENGTH = 100


@functools.lru_cache(maxsize=4096)
def _ip_text_of(value: str) -> str:
    return _parse_ip(value)


def _parse_ip(value: Any) -> str:
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ContextError(f"ip_address: {value!r} is not a valid IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        address = ipaddress.IPv6Address(int(address))  # drops a %zone
    return str(address)


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise context values: ids become strings, the IP address is checked."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or key not in _KNOWN:
            out[key] = value
        elif key == "ip_address":
            out[key] = ip_text(value)
        elif key == "user_agent":
            if not isinstance(value, str):
                raise ContextError(f"user_agent: expected a string, got {type(value).__name__}")
            out[key] = clean_text(value, USER_AGENT_MAX_LENGTH)
        else:
            text = str(value)
            if len(text) > _MAX_LENGTH[key]:
                raise ContextError(
                    f"{key}: {len(text)} characters, at most {_MAX_LENGTH[key]} are stored"
                )
            unsafe = UNSAFE_TEXT.search(text)
            if unsafe:
                raise ContextError(
                    f"{key}: {text!r} holds the control or bidirectional character "
                    f"U+{ord(unsafe[0]):04X}; ids must be plain text"
                )
            out[key] = text
    return out


@contextmanager
def audit_context(
    *,
    user_id: Any = None,
    tenant_id: Any = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
    **extra: Any,
) -> Iterator[AuditContext]:
    """Attach actor, tenant and request details to every entry flushed inside the block.

    Nested blocks override only the keys they give (``None`` means "not given") and restore the
    outer values on exit. Ids may be any value with a meaningful ``str()`` (UUIDs, ints).
    """
    given = {"user_id": user_id, "tenant_id": tenant_id, "ip_address": ip_address}
    given["user_agent"] = user_agent
    given.update(extra)
    given = _clean({k: v for k, v in given.items() if v is not None})
    outer = _frame.get()
    values = dict(outer.values) if outer is not None else {}
    values.update(given)
    token = _frame.set(_Frame(values))
    try:
        yield current_context()
    finally:
        _frame.reset(token)


def current_context() -> AuditContext:
    """The values in force now (all ``None`` outside any :func:`audit_context`)."""
    frame = _frame.get()
    if frame is None:
        return _EMPTY
    values = frame.values
    return AuditContext(
        user_id=values.get("user_id"),
        tenant_id=values.get("tenant_id"),
        ip_address=values.get("ip_address"),
        user_agent=values.get("user_agent"),
        extra={k: v for k, v in values.items() if k not in _KNOWN},
    )


def update_context(**values: Any) -> AuditContext:
    """Change the innermost active context in place, e.g. with the actor known after authentication.

    The change is seen by every copy of the current context, so an endpoint or dependency run in a
    worker thread can set the actor for the whole request. Passing ``None`` clears a value.
    """
    frame = _frame.get()
    if frame is None:
        raise ContextError(
            "update_context() needs an active audit_context() (or the request middleware)"
        )
    cleaned = _clean({k: v for k, v in values.items() if v is not None})
    for key, value in values.items():
        if value is None:
            frame.values.pop(key, None)
    frame.values.update(cleaned)
    return current_context()


_EMPTY = AuditContext()
