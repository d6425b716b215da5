"""The REST API of the admin listener, under ``/api/v1/``: what a site uses to run Shoal
as its private tracker (users, passkeys, torrents, accounting) and to change the access
rules live, in public mode too.

JSON in and out; every error is ``{"error": "<message>"}`` with a 4xx status. Every call
but ``GET /api/v1/openapi.json`` needs ``Authorization: Bearer <admin.api_token>``; with no
token configured the API is off. A change is written to the database first (in a worker
thread) and then applied to the running tracker, so an announce sees it at once and a
restart keeps it. ``PUT /api/v1/access`` lasts until the next reload (SIGHUP), which reads
the config file's rules again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shoal.engine import passkeys
from shoal.engine.accounting import Tally, Torrent, User
from shoal.engine.rules import AccessRules, NetworkSet
from shoal.logic import TrackerLogic, resolved
from shoal.server.accounts import PrivateMode
from shoal.storage.accounts import AccountsError, Conflict, Totals
from shoal.storage.base import PeerStore
from shoal.storage.memory import MemoryStore

log = logging.getLogger("shoal.api")

PREFIX = "/api/v1/"
MAX_BODY = 32 << 20
MAX_PEERS_LISTED = 1000
_JSON = "application/json"

_T = TypeVar("_T")  # a user or a torrent
_K = TypeVar("_K")  # its key: a user id or an info_hash

Reply = tuple[int, bytes, str, str]
"""Status, body, content type, and extra header lines (each ending in CRLF)."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(status: int, value: Any, extra: str = "") -> Reply:
    return status, json.dumps(value, separators=(",", ":")).encode(), _JSON, extra


def error(status: int, message: str, extra: str = "") -> Reply:
    return _json(status, {"error": message}, extra)


# -- records as JSON -------------------------------------------------------------------


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "passkey": user.passkey, "enabled": user.enabled,
            "can_leech": user.can_leech, "upload_factor": user.upload_factor,
            "download_factor": user.download_factor, "peer_limit": user.peer_limit}


def torrent_json(torrent: Torrent) -> dict[str, Any]:
    return {"info_hash": torrent.info_hash.hex(),
            "info_hash2": None if torrent.info_hash2 is None else torrent.info_hash2.hex(),
            "upload_factor": torrent.upload_factor,
            "download_factor": torrent.download_factor}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _factor(name: str, value: Any) -> float:
    if not (_is_int(value) or isinstance(value, float)) or not 0 <= value <= 1000:
        raise ApiError(400, f"{name} must be a number from 0 to 1000")
    return float(value)


def parse_hash(text: Any, name: str = "info_hash") -> bytes:
    if not isinstance(text, str) or len(text) != 40:
        raise ApiError(400, f"{name} must be 40 hexadecimal characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, f"{name} must be 40 hexadecimal characters") from None


_USER_FIELDS = {"id", "passkey", "enabled", "can_leech", "upload_factor", "download_factor",
                "peer_limit"}
_TORRENT_FIELDS = {"info_hash", "info_hash2", "upload_factor", "download_factor"}


def user_changes(body: Any, creating: bool) -> dict[str, Any]:
    """Checked user fields of a JSON object (``id`` only when creating)."""
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object")
    allowed = _USER_FIELDS if creating else _USER_FIELDS - {"id"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name == "id":
            if not _is_int(value) or not 0 <= value < 2**63:
                raise ApiError(400, "id must be an integer from 0 to 2^63-1")
        elif name == "passkey":
            if not isinstance(value, str):
                raise ApiError(400, "passkey must be a string")
            problem = passkeys.problem(value)
            if problem:
                raise ApiError(400, problem)
        elif name in ("enabled", "can_leech"):
            if not isinstance(value, bool):
                raise ApiError(400, f"{name} must be true or false")
        elif name == "peer_limit":
            if value is not None and (not _is_int(value) or not 1 <= value <= 10_000):
                raise ApiError(400, "peer_limit must be null or an integer from 1 to 10000")
        else:
            value = _factor(name, value)
        out[name] = value
    if creating and "id" not in out:
        raise ApiError(400, "id is required")
    return out


def torrent_changes(body: Any, creating: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object")
    allowed = _TORRENT_FIELDS if creating else _TORRENT_FIELDS - {"info_hash"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name == "info_hash":
            out[name] = parse_hash(value)
        elif name == "info_hash2":
            out[name] = None if value is None else parse_hash(value, name)
        else:
            out[name] = _factor(name, value)
    if creating and "info_hash" not in out:
        raise ApiError(400, "info_hash is required")
    if out.get("info_hash2") is not None and out.get("info_hash2") == out.get("info_hash"):
        raise ApiError(409, "conflict: info_hash2 is the same hash as info_hash")
    return out


def totals_json(t: Totals | Tally) -> dict[str, int]:
    return {"uploaded": t.uploaded, "downloaded": t.downloaded,
            "raw_uploaded": t.raw_uploaded, "raw_downloaded": t.raw_downloaded,
            "seeding_seconds": t.seeding_seconds, "snatches": t.snatches,
            "announces": t.announces, "last_seen": t.last_seen}


def access_json(access: AccessRules) -> dict[str, Any]:
    listed = access.torrents
    clients = access.clients
    return {
        "torrents": "open" if listed is None else ("allow" if listed.allow else "deny"),
        "torrent_list": [] if listed is None else sorted(h.hex() for h in listed.hashes),
        "client_allow": [] if clients is None else [p.decode("latin-1") for p in clients.allow],
        "client_deny": [] if clients is None else [p.decode("latin-1") for p in clients.deny],
        "banned_networks": networks_of(access.banned),
    }


def networks_of(networks: NetworkSet) -> list[str]:
    """The networks of a :class:`NetworkSet` as CIDR text."""
    out = []
    for table, bits, version in ((networks.v4, 32, 4), (networks.v6, 128, 6)):
        for shift, nets in table:
            for value in sorted(nets):
                address = value << shift
                packed = address.to_bytes(bits // 8, "big")
                ip = ipaddress.IPv4Address(packed) if version == 4 else ipaddress.IPv6Address(
                    packed)
                out.append(f"{ip}/{bits - shift}")
    return out


def access_rules(body: Any) -> AccessRules:
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object")
    known = {"torrents", "torrent_list", "client_allow", "client_deny", "banned_networks"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
    mode = body.get("torrents", "open")
    lists: dict[str, list[str]] = {}
    for name in ("torrent_list", "client_allow", "client_deny", "banned_networks"):
        value = body.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ApiError(400, f"{name} must be a list of strings")
        lists[name] = value
    for name in ("client_allow", "client_deny"):
        for prefix in lists[name]:
            if not prefix or len(prefix) > 20 or not prefix.isascii():
                raise ApiError(400, f"{name}: a peer_id prefix is 1 to 20 ASCII characters")
    hashes = [parse_hash(h, "torrent_list entry") for h in lists["torrent_list"]]
    try:
        return AccessRules.build(mode if isinstance(mode, str) else repr(mode), hashes,
                                 lists["client_allow"], lists["client_deny"],
                                 lists["banned_networks"])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


# -- the handler -----------------------------------------------------------------------


Handler = Callable[[list[str], Any], Awaitable[Reply]]


class Api:
    """Answers ``/api/v1/`` requests for one tracker."""

    def __init__(self, token: str, logic: TrackerLogic, store: PeerStore,
                 private: PrivateMode | None, now: Callable[[], int]) -> None:
        self.token = token.encode()
        self.logic = logic
        self.store = store
        self.private = private
        self.now = now

    def authorized(self, header: str | None) -> bool:
        if header is None or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer "):].strip().encode(), self.token)

    async def handle(self, method: str, path: str, authorization: str | None,
                     body: bytes) -> Reply:
        """Status, JSON body and content type for one request."""
        if not path.startswith(PREFIX):
            return error(404, "not found: the API is under /api/v1/")
        parts = [p for p in path[len(PREFIX):].split("/") if p]
        if parts == ["openapi.json"] and method == "GET":
            return _json(200, openapi())
        if not self.authorized(authorization):
            return error(401, "missing or wrong bearer token (admin.api_token)")
        value: Any = None
        if body and parts != ["import"]:
            try:
                value = json.loads(body)
            except (ValueError, RecursionError):
                return error(400, "the body is not valid JSON")
        try:
            return await self._dispatch(method, parts, value, body)
        except ApiError as exc:
            return error(exc.status, exc.message)
        except Conflict as exc:
            return error(409, f"conflict: {exc}")
        except AccountsError as exc:
            log.error("api: %s", exc)
            return error(503, "the database is unavailable")

    async def _dispatch(self, method: str, parts: list[str], value: Any,
                        body: bytes) -> Reply:
        if parts == ["access"]:
            if method == "GET":
                return _json(200, access_json(self.logic.access))
            if method == "PUT":
                rules = access_rules(value)
                self.logic.configure(dataclasses.replace(self.logic.config, access=rules))
                log.info("api: access rules replaced: %s", rules.summary())
                return _json(200, access_json(rules))
            return self._not_allowed("GET, PUT")
        if not parts or parts[0] not in ("users", "torrents", "import"):
            return error(404, "not found: see /api/v1/openapi.json")
        private = self.private
        if private is None:
            return error(404, "users and torrents exist in private mode only "
                              "(tracker.mode = \"private\")")
        if parts[0] == "users":
            return await self._users(private, method, parts[1:], value)
        if parts[0] == "torrents":
            return await self._torrents(private, method, parts[1:], value)
        if parts == ["import"]:
            if method != "POST":
                return self._not_allowed("POST")
            return await self._import(private, body)
        return error(404, "not found: see /api/v1/openapi.json")

    def _not_allowed(self, allow: str) -> Reply:
        return error(405, f"method not allowed here (allowed: {allow})",
                     f"Allow: {allow}\r\n")

    async def _item(
        self, method: str, missing: str, key: _K,
        get: Callable[[], _T | None], update: Callable[[], _T | None],
        delete: Callable[[], bool], put: Callable[[_T], None], remove: Callable[[_K], None],
        to_json: Callable[[_T], dict[str, Any]],
    ) -> Reply:
        """GET, PATCH or DELETE of one user or torrent: the database first (in a worker
        thread), then the running tracker."""
        if method == "GET":
            shown = await asyncio.to_thread(get)
            return error(404, missing) if shown is None else _json(200, to_json(shown))
        if method == "PATCH":
            found = await asyncio.to_thread(update)
            if found is None:
                return error(404, missing)
            put(found)
            return _json(200, to_json(found))
        if method == "DELETE":
            if not await asyncio.to_thread(delete):
                return error(404, missing)
            remove(key)
            return 204, b"", _JSON, ""
        return self._not_allowed("GET, PATCH, DELETE")

    # users

    async def _users(self, private: PrivateMode, method: str, rest: list[str],
                     value: Any) -> Reply:
        db, registry = private.db, private.tracker
        if not rest:
            if method != "POST":
                return self._not_allowed("POST")
            fields = user_changes(value, creating=True)
            fields.setdefault("passkey", passkeys.generate())
            user = User(**fields)
            await asyncio.to_thread(db.add_user, user, self.now())
            registry.put_user(user)
            return _json(201, user_json(user))
        user_id = _user_id(rest[0])
        if len(rest) == 1:
            return await self._item(
                method, f"no user {user_id}", user_id,
                lambda: db.get_user(user_id),
                lambda: db.update_user(user_id, user_changes(value, creating=False)),
                lambda: db.delete_user(user_id),
                registry.put_user, registry.remove_user, user_json,
            )  # fmt: skip
        if rest[1:] == ["passkey"]:
            if method != "POST":
                return self._not_allowed("POST")
            given = user_changes(value or {}, creating=False)
            if set(given) - {"passkey"}:
                raise ApiError(400, "only passkey may be given (or nothing, to generate one)")
            new = given.get("passkey") or passkeys.generate()
            found = await asyncio.to_thread(db.update_user, user_id, {"passkey": new})
            if found is None:
                return error(404, f"no user {user_id}")
            registry.put_user(found)
            return _json(200, user_json(found))
        if rest[1:] == ["stats"]:
            if method != "GET":
                return self._not_allowed("GET")
            return _json(200, await self._stats(private, user_id))
        return error(404, "not found: see /api/v1/openapi.json")

    async def _stats(self, private: PrivateMode, user_id: int) -> dict[str, Any]:
        """The user's accounting: what the database holds plus what is not written yet."""
        if await asyncio.to_thread(private.db.get_user, user_id) is None:
            raise ApiError(404, f"no user {user_id}")
        _, per, flagged = await asyncio.to_thread(private.db.user_stats, user_id)
        merged: dict[bytes, dict[str, int]] = {h: totals_json(t) for h, t in per.items()}
        for (uid, info_hash), tally in private.tracker.pending.items():
            if uid != user_id:
                continue
            row = merged.setdefault(info_hash, totals_json(Totals()))
            for name, amount in totals_json(tally).items():
                row[name] = max(row[name], amount) if name == "last_seen" else row[name] + amount
        flagged += sum(1 for f in private.tracker.flags if f.user_id == user_id)
        total = {name: sum(row[name] for row in merged.values())
                 for name in totals_json(Totals())}
        total["last_seen"] = max((row["last_seen"] for row in merged.values()), default=0)
        peers = private.tracker.peers_of(user_id)
        return {
            "user_id": user_id,
            "totals": total,
            "flags": flagged,
            "torrents": [{"info_hash": h.hex(), "peers": peers.get(h, 0), **row}
                         for h, row in sorted(merged.items())],
        }

    # torrents

    async def _torrents(self, private: PrivateMode, method: str, rest: list[str],
                        value: Any) -> Reply:
        db, registry = private.db, private.tracker
        if not rest:
            if method != "POST":
                return self._not_allowed("POST")
            torrent = Torrent(**torrent_changes(value, creating=True))
            await asyncio.to_thread(db.add_torrent, torrent, self.now())
            registry.put_torrent(torrent)
            return _json(201, torrent_json(torrent))
        info_hash = parse_hash(rest[0])
        if len(rest) == 1:
            return await self._item(
                method, f"no torrent {rest[0]}", info_hash,
                lambda: db.get_torrent(info_hash),
                lambda: db.update_torrent(info_hash, torrent_changes(value, creating=False)),
                lambda: db.delete_torrent(info_hash),
                registry.put_torrent, registry.remove_torrent, torrent_json,
            )  # fmt: skip
        if rest[1:] == ["peers"]:
            if method != "GET":
                return self._not_allowed("GET")
            registered = registry.torrents.get(info_hash)
            if registered is None:
                return error(404, f"no torrent {rest[0]}")
            return _json(200, await self._peers(private, registered))
        return error(404, "not found: see /api/v1/openapi.json")

    async def _peers(self, private: PrivateMode, torrent: Torrent) -> dict[str, Any]:
        (counts,) = await resolved(self.store.scrape([torrent.info_hash]))
        owners = private.tracker.owners(torrent.info_hash)
        listed: list[dict[str, Any]] = []
        store = self.store
        swarm = store.swarms.get(torrent.info_hash) if isinstance(store, MemoryStore) else None
        if swarm is not None:
            for fam in (swarm.v4, swarm.v6):
                if fam is None:
                    continue
                for slot in range(len(fam)):
                    if len(listed) >= MAX_PEERS_LISTED:
                        break
                    addr = fam.addr(slot)
                    uploaded, downloaded = fam.reported(slot)
                    listed.append({
                        "address": str(ipaddress.ip_address(addr[:-2])),
                        "port": int.from_bytes(addr[-2:], "big"),
                        "peer_id": fam.peer_id(slot).decode("latin-1"),
                        "seeder": fam.is_seeder(slot),
                        "last_seen": fam.seen(slot),
                        "uploaded": uploaded,
                        "downloaded": downloaded,
                        "user_id": owners.get(addr),
                    })
        return {"info_hash": torrent.info_hash.hex(), "seeders": counts.complete,
                "leechers": counts.incomplete, "completed": counts.downloaded,
                "peers": listed, "truncated": len(listed) < counts.complete + counts.incomplete}

    # bulk import

    async def _import(self, private: PrivateMode, body: bytes) -> Reply:
        """JSON lines: ``{"type": "user", ...}`` or ``{"type": "torrent", ...}``; all or
        nothing."""
        if not body.strip():
            return error(400, "the body is empty: send JSON lines of users and torrents")
        new_users: list[User] = []
        new_torrents: list[Torrent] = []
        problems: list[str] = []
        for number, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ApiError(400, "expected a JSON object")
                kind = record.pop("type", None)
                if kind == "user":
                    fields = user_changes(record, creating=True)
                    fields.setdefault("passkey", passkeys.generate())
                    new_users.append(User(**fields))
                elif kind == "torrent":
                    new_torrents.append(Torrent(**torrent_changes(record, creating=True)))
                else:
                    raise ApiError(400, 'type must be "user" or "torrent"')
            except ApiError as exc:
                problems.append(f"line {number}: {exc.message}")
            except (ValueError, RecursionError):
                problems.append(f"line {number}: not valid JSON")
            if len(problems) >= 20:
                break
        if problems:
            return _json(400, {"error": "nothing imported: " + "; ".join(problems)})
        users_n, torrents_n = await asyncio.to_thread(
            private.db.import_records, new_users, new_torrents, self.now())
        for user in new_users:
            private.tracker.put_user(user)
        for torrent in new_torrents:
            private.tracker.put_torrent(torrent)
        return _json(200, {"users": users_n, "torrents": torrents_n})


def _user_id(text: str) -> int:
    if not text.isdigit() or len(text) > 19 or int(text) >= 2**63:
        raise ApiError(404, "a user id is an integer from 0 to 2^63-1")
    return int(text)


# -- the OpenAPI document --------------------------------------------------------------


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.0 description of this API."""
    hash_schema = {"type": "string", "pattern": "^[0-9a-fA-F]{40}$"}
    factor = {"type": "number", "minimum": 0, "maximum": 1000}
    user_fields: dict[str, Any] = {
        "passkey": {"type": "string", "pattern": "^[A-Za-z0-9._~-]{16,64}$"},
        "enabled": {"type": "boolean"},
        "can_leech": {"type": "boolean"},
        "upload_factor": factor,
        "download_factor": factor,
        "peer_limit": {"type": "integer", "minimum": 1, "maximum": 10000, "nullable": True},
    }
    user_id = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    torrent_fields: dict[str, Any] = {
        "info_hash2": {**hash_schema, "nullable": True},
        "upload_factor": factor,
        "download_factor": factor,
    }
    totals: dict[str, Any] = {"type": "object", "properties": {n: {"type": "integer"} for n in (
        "uploaded", "downloaded", "raw_uploaded", "raw_downloaded", "seeding_seconds",
        "snatches", "announces", "last_seen")}}
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"}}},
        "User": {"type": "object", "required": ["id", *user_fields],
                 "properties": {"id": user_id, **user_fields}},
        "NewUser": {"type": "object", "required": ["id"], "additionalProperties": False,
                    "properties": {"id": user_id, **user_fields}},
        "UserChanges": {"type": "object", "additionalProperties": False,
                        "properties": user_fields},
        "NewPasskey": {"type": "object", "additionalProperties": False,
                       "properties": {"passkey": user_fields["passkey"]}},
        "Torrent": {"type": "object", "required": ["info_hash", *torrent_fields],
                    "properties": {"info_hash": hash_schema, **torrent_fields}},
        "NewTorrent": {"type": "object", "required": ["info_hash"],
                       "additionalProperties": False,
                       "properties": {"info_hash": hash_schema, **torrent_fields}},
        "TorrentChanges": {"type": "object", "additionalProperties": False,
                           "properties": torrent_fields},
        "Totals": totals,
        "Stats": {"type": "object", "required": ["user_id", "totals", "flags", "torrents"],
                  "properties": {
                      "user_id": {"type": "integer"}, "totals": totals,
                      "flags": {"type": "integer"},
                      "torrents": {"type": "array", "items": {
                          "type": "object", "properties": {
                              "info_hash": hash_schema, "peers": {"type": "integer"},
                              **totals["properties"]}}}}},
        "Peers": {"type": "object",
                  "required": ["info_hash", "seeders", "leechers", "completed", "peers"],
                  "properties": {
                      "info_hash": hash_schema, "seeders": {"type": "integer"},
                      "leechers": {"type": "integer"}, "completed": {"type": "integer"},
                      "truncated": {"type": "boolean"},
                      "peers": {"type": "array", "items": {"type": "object", "properties": {
                          "address": {"type": "string"}, "port": {"type": "integer"},
                          "peer_id": {"type": "string"}, "seeder": {"type": "boolean"},
                          "last_seen": {"type": "integer"}, "uploaded": {"type": "integer"},
                          "downloaded": {"type": "integer"},
                          "user_id": {"type": "integer", "nullable": True}}}}}},
        "Access": {"type": "object", "additionalProperties": False, "properties": {
            "torrents": {"type": "string", "enum": ["open", "allow", "deny"]},
            "torrent_list": {"type": "array", "items": hash_schema},
            "client_allow": {"type": "array", "items": {"type": "string"}},
            "client_deny": {"type": "array", "items": {"type": "string"}},
            "banned_networks": {"type": "array", "items": {"type": "string"}}}},
        "ImportResult": {"type": "object", "required": ["users", "torrents"],
                         "properties": {"users": {"type": "integer"},
                                        "torrents": {"type": "integer"}}},
    }

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def answer(description: str, schema: str | None = None) -> dict[str, Any]:
        found: dict[str, Any] = {"description": description}
        if schema is not None:
            found["content"] = {_JSON: {"schema": ref(schema)}}
        return found

    def errors(*codes: int) -> dict[str, Any]:
        text = {400: "bad request", 401: "no or wrong token", 404: "not found",
                409: "conflict", 503: "database unavailable"}
        return {str(c): answer(text[c], "Error") for c in (401, 503, *codes)}

    def body(schema: str, required: bool = True) -> dict[str, Any]:
        return {"required": required, "content": {_JSON: {"schema": ref(schema)}}}

    uid = [{"name": "id", "in": "path", "required": True, "schema": user_id}]
    ih = [{"name": "info_hash", "in": "path", "required": True, "schema": hash_schema}]
    paths: dict[str, Any] = {
        "/api/v1/users": {"post": {
            "summary": "Create a user (the passkey is generated unless given)",
            "requestBody": body("NewUser"),
            "responses": {"201": answer("created", "User"), **errors(400, 409)}}},
        "/api/v1/users/{id}": {
            "parameters": uid,
            "get": {"summary": "A user", "responses": {
                "200": answer("the user", "User"), **errors(404)}},
            "patch": {"summary": "Change a user", "requestBody": body("UserChanges"),
                      "responses": {"200": answer("changed", "User"),
                                    **errors(400, 404, 409)}},
            "delete": {"summary": "Delete a user (its accounting rows stay)", "responses": {
                "204": answer("deleted"), **errors(404)}}},
        "/api/v1/users/{id}/passkey": {"parameters": uid, "post": {
            "summary": "Rotate the passkey: the old one stops working at once",
            "requestBody": body("NewPasskey", required=False),
            "responses": {"200": answer("the user with its new passkey", "User"),
                          **errors(400, 404, 409)}}},
        "/api/v1/users/{id}/stats": {"parameters": uid, "get": {
            "summary": "The user's accounting, in total and per torrent",
            "responses": {"200": answer("the stats", "Stats"), **errors(404)}}},
        "/api/v1/torrents": {"post": {
            "summary": "Register a torrent", "requestBody": body("NewTorrent"),
            "responses": {"201": answer("registered", "Torrent"), **errors(400, 409)}}},
        "/api/v1/torrents/{info_hash}": {
            "parameters": ih,
            "get": {"summary": "A torrent", "responses": {
                "200": answer("the torrent", "Torrent"), **errors(400, 404)}},
            "patch": {"summary": "Change a torrent", "requestBody": body("TorrentChanges"),
                      "responses": {"200": answer("changed", "Torrent"),
                                    **errors(400, 404, 409)}},
            "delete": {"summary": "Unregister a torrent", "responses": {
                "204": answer("deleted"), **errors(400, 404)}}},
        "/api/v1/torrents/{info_hash}/peers": {"parameters": ih, "get": {
            "summary": "The torrent's swarm and peers",
            "responses": {"200": answer("the peers", "Peers"), **errors(400, 404)}}},
        "/api/v1/access": {
            "get": {"summary": "The access rules", "responses": {
                "200": answer("the rules", "Access"), **errors()}},
            "put": {"summary": "Replace the access rules (live, until the next reload)",
                    "requestBody": body("Access"),
                    "responses": {"200": answer("the rules now", "Access"), **errors(400)}}},
        "/api/v1/import": {"post": {
            "summary": "Bulk import of users and torrents: JSON lines with a type field "
                       "(user or torrent); all or nothing",
            "requestBody": {"required": True, "content": {"application/x-ndjson": {
                "schema": {"type": "string"}}}},
            "responses": {"200": answer("imported", "ImportResult"), **errors(400, 409)}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Shoal tracker API", "version": "1"},
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
