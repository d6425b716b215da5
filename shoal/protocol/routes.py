"""Request targets -> (endpoint, passkey), and passkeys masked for logs.

A target is what names the tracker endpoint: the HTTP request target (path, then an
optional ``?query``) or the BEP 41 URL data of a UDP announce. Private trackers put the
user's passkey in it, either as the path segment before the endpoint (``/<passkey>/announce``,
whose BEP 48 scrape URL is ``/<passkey>/scrape``) or as a query parameter
(``/announce?passkey=<passkey>``). The path form wins when both are given.

Pure functions of bytes: no IO, no configuration.
"""

from __future__ import annotations

ANNOUNCE = b"/announce"
SCRAPE = b"/scrape"
NOT_FOUND = b""
_ENDPOINTS = {b"announce": ANNOUNCE, b"scrape": SCRAPE}
_QUERY_KEY = b"passkey="
MASK_KEEP = 4
"""Characters of a passkey kept in logs (the rest become ``*``): enough to tell two users'
log lines apart, far too few to guess the rest (32 characters from 62 symbols)."""
MASK_SEGMENT = 8
"""A first path segment this long or longer is masked in logs as a possible passkey."""


def route(target: bytes) -> tuple[bytes, bytes]:
    """``(endpoint, passkey)`` for a request target.

    The endpoint is :data:`ANNOUNCE`, :data:`SCRAPE` or :data:`NOT_FOUND`; the passkey is
    the raw bytes of the path segment or the ``passkey`` query parameter (empty when there
    is none). Paths other than ``/announce``, ``/scrape``, ``/<passkey>/announce`` and
    ``/<passkey>/scrape`` are not tracker endpoints.
    """
    path, _, query = target.partition(b"?")
    if path in (ANNOUNCE, SCRAPE):
        return path, query_passkey(query) if query else b""
    # "/<passkey>/<endpoint>": exactly two non-empty segments.
    if path[:1] != b"/":
        return NOT_FOUND, b""
    passkey, slash, last = path[1:].partition(b"/")
    endpoint = _ENDPOINTS.get(last) if slash and passkey else None
    if endpoint is None:
        return NOT_FOUND, b""
    return endpoint, passkey


def query_passkey(query: bytes) -> bytes:
    """The value of the last ``passkey`` parameter of a query (empty when there is none)."""
    if _QUERY_KEY not in query:
        return b""
    found = b""
    for item in query.split(b"&"):
        name, _, value = item.partition(b"=")
        if name == b"passkey":
            found = value
    return found


def mask_passkey(passkey: bytes) -> bytes:
    """``passkey`` with all but its first :data:`MASK_KEEP` characters replaced by ``*``
    (a passkey of :data:`MASK_KEEP` characters or fewer is hidden whole)."""
    if len(passkey) <= MASK_KEEP:
        return b"*" * len(passkey)
    return passkey[:MASK_KEEP] + b"*" * (len(passkey) - MASK_KEEP)


def mask(target: bytes) -> bytes:
    """``target`` as logs may show it: the ``passkey`` query value masked, and the first
    path segment masked when it could be a passkey (a path of two or more segments whose
    first has at least :data:`MASK_SEGMENT` characters: ``/<passkey>/announce``, but also a
    mistyped ``/<passkey>/announce.php``)."""
    path, mark, query = target.partition(b"?")
    head, slash, rest = path[1:].partition(b"/")
    if slash and len(head) >= MASK_SEGMENT and path[:1] == b"/":
        path = b"/" + mask_passkey(head) + b"/" + rest
    if _QUERY_KEY in query:
        items = []
        for item in query.split(b"&"):
            name, eq, value = item.partition(b"=")
            items.append(name + eq + mask_passkey(value) if name == b"passkey" else item)
        query = b"&".join(items)
    return path + mark + query
