"""The viewer: a page people read the log with, beside ``GET /history/``.

Four files ship in the package (``static/``): the page, its script, its style and its icon. The page lists
entries with every filter, page numbers and cursor paging; shows an entry's before and after side
by side with the changed attributes marked; and an object's timeline, with its state after any
step. It reads the JSON endpoints beside it, so it sees exactly what they answer: the caller's
tenant's entries only.

Every mount serves it with the same headers: a Content-Security-Policy that allows nothing but
these files and requests to the same origin (no inline script, no CDN), and the script puts every
recorded value in the page as text. Sign-in is a form for a bearer token (kept in the tab's
session storage and sent as a header, never put in a URL), or the application's own sign-in
when the mount is given a ``caller``.
"""

from __future__ import annotations

import html
from importlib.resources import files
from typing import Literal

__all__ = ["SECURITY_HEADERS", "asset", "list_address"]

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
#: Sent with every file of the viewer.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

Auth = Literal["bearer", "session"]


def list_address(path: str) -> str:
    """Where ``GET path`` is, relative to the page at ``path/view/`` (so that it holds under any
    mount prefix): ``../`` for ``/history/``, ``../../history`` for ``/history``."""
    if path.endswith("/") or not path:
        return "../"
    return "../../" + path.rsplit("/", 1)[-1]


def asset(name: str, auth: Auth, path: str = "/history/") -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of one file of the viewer (``""`` is the page); 404 for
    anything else. ``auth`` says how the page signs in: a bearer token form, or the app's own
    session; ``path`` is the endpoint's, as mounted (the page sits at ``path/view/``)."""
    name = name or "index.html"
    if name not in _TYPES:
        return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found"
    body = files(__name__).joinpath("static").joinpath(name).read_bytes()
    if name == "index.html":
        listed = html.escape(list_address(path), quote=True)
        body = body.replace(b"{auth}", auth.encode()).replace(b"{list}", listed.encode())
    return 200, {"Content-Type": _TYPES[name], **SECURITY_HEADERS}, body
