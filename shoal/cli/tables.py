"""The `shoal stats` tables: a /stats document as plain text, the same figures as the
dashboard page."""

from __future__ import annotations

from typing import Any


def _count(n: float) -> str:
    return f"{n:,.0f}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f} us"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


def _uptime(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {s}s" if minutes else f"{s}s"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _table(headers: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """Columns padded to their widest cell; ``align`` has an ``l`` or ``r`` per column (by
    default the first is left-aligned and the others right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if a == "l" else c.rjust(w)
                 for c, w, a in zip(cells, widths, align, strict=True)]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def format_stats(stats: dict[str, Any], source: str = "") -> str:
    """A /stats document as readable text tables."""
    out: list[str] = []
    health = "healthy" if stats["healthy"] else "NOT HEALTHY (a listener is down)"
    where = f" at {source}" if source else ""
    out.append(f"Shoal {stats['version']}{where}: up {_uptime(stats['uptime_seconds'])}, "
               f"{health}")

    t = stats["totals"]
    out += ["", "Swarms"]
    out += _table(["", "count"], [
        ["torrents", _count(t["torrents"])],
        ["peers", _count(t["peers"])],
        ["seeders", _count(t["seeders"])],
        ["leechers", _count(t["leechers"])],
        ["completed", _count(t["completed"])],
    ])

    r = stats["requests"]
    kinds = ["announce", "scrape", "connect", "error"]
    kinds += sorted(k for k in r["by_kind"] if k not in kinds)
    cell: dict[tuple[str, str], int] = {}
    for entry in r["detail"]:
        key = (entry["kind"], entry["protocol"])
        cell[key] = cell.get(key, 0) + entry["count"]
    protocols = list(r["by_protocol"])
    rows = [[kind, *(_count(cell.get((kind, p), 0)) for p in protocols),
             _count(r["by_kind"].get(kind, 0))] for kind in kinds]
    rows.append(["all", *(_count(r["by_protocol"][p]) for p in protocols), _count(r["total"])])
    out += ["", "Requests"]
    out += _table(["", *protocols, "total"], rows)
    families = r["by_family"]
    total = sum(families.values())
    out.append("  " + ", ".join(f"{f} {_count(n)} ({_share(n, total)})"
                                for f, n in families.items()))

    lat = stats["latency"]
    received = sum(stats["bytes"]["received"].values())
    sent = sum(stats["bytes"]["sent"].values())
    conns = stats["http_connections"]
    sweep = stats["sweep"]
    out += ["", "Service"]
    out += _table(["", "value"], [
        ["received", _bytes(received)],
        ["sent", _bytes(sent)],
        ["HTTP connections open", _count(conns["open"])],
        ["HTTP connections total", _count(conns["total"])],
        ["reply time, median (<=)", _seconds(lat["p50_seconds"])],
        ["reply time, p99 (<=)", _seconds(lat["p99_seconds"])],
        ["reply time, mean", _seconds(lat["mean_seconds"])],
        ["sweeps", _count(sweep["count"])],
        ["last sweep", _seconds(sweep["last_seconds"]) if sweep["count"] else "-"],
        ["internal errors", _count(stats["internal_errors"])],
    ])

    out += ["", "Listeners"]
    out += _table(["", "address", "state"], align="lll", rows=[
        [x["kind"], x["address"], "serving" if x["serving"] else "DOWN"]
        for x in stats["listeners"]
    ])

    if stats["top_swarms"]:
        out += ["", "Top swarms"]
        out += _table(["info_hash", "peers", "seeders", "leechers", "completed"], [
            [s["info_hash"], _count(s["peers"]), _count(s["seeders"]), _count(s["leechers"]),
             _count(s["completed"])]
            for s in stats["top_swarms"]
        ])

    clients = stats["clients"]
    if clients["mix"]:
        sampled = clients["sampled_peers"]
        out += ["", f"Clients ({_count(sampled)} peers sampled)"]
        out += _table(["client", "peers", "share", "versions"], align="lrrl", rows=[
            [c["client"], _count(c["peers"]), _share(c["peers"], sampled),
             ", ".join(v["version"] for v in c["versions"][:4] if v["version"]) or "-"]
            for c in clients["mix"]
        ])

    if stats["failures"]:
        out += ["", "Failures"]
        out += _table(["reason", "count"],
                      [[reason, _count(n)] for reason, n in stats["failures"].items()])
    return "\n".join(out) + "\n"
