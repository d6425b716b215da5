// Shoal dashboard: fetches /stats every few seconds and draws it. No framework, no CDN.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const HOUR = 3600;
  const MIN_WINDOW = 60;
  const CLIENT_COLORS = ["#2563eb", "#f08c1a", "#0e9aa7", "#8b5cf6", "#e0457b", "#12805c",
    "#b7791f", "#64748b"];

  const number = new Intl.NumberFormat("en-US");
  const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  let latest = null;

  const byId = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function compact(n) {
    if (n >= 1e9) return decimal.format(n / 1e9) + "B";
    if (n >= 1e6) return decimal.format(n / 1e6) + "M";
    if (n >= 1e5) return decimal.format(n / 1e3) + "k";
    return number.format(n);
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? number.format(n) : decimal.format(n)) + " " + units[i];
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "\u2013";
    if (seconds < 0.001) return decimal.format(seconds * 1e6) + " \u00b5s";
    if (seconds < 1) return decimal.format(seconds * 1e3) + " ms";
    return decimal.format(seconds) + " s";
  }

  function uptime(seconds) {
    const d = Math.floor(seconds / 86400);
    const h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${Math.floor(seconds % 60)}s`;
    return `${Math.floor(seconds)}s`;
  }

  function percent(part, whole) {
    return whole ? (100 * part) / whole : 0;
  }

  function setStat(name, value, text) {
    const node = document.querySelector(`[data-stat="${name}"]`);
    node.dataset.value = String(value);
    node.textContent = text === undefined ? compact(value) : text;
    node.title = number.format(value);
  }

  // Rates from the cumulative request totals: one point per neighbouring pair of samples.
  function rates(history) {
    const cols = history.columns;
    const points = history.points;
    const out = [];
    for (let i = 1; i < points.length; i += 1) {
      const dt = points[i][0] - points[i - 1][0];
      if (dt < 0.5) continue;
      const row = { t: points[i][0] };
      for (let c = 1; c < cols.length; c += 1) {
        row[cols[c]] = Math.max(0, (points[i][c] - points[i - 1][c]) / dt);
      }
      out.push(row);
    }
    return out;
  }

  function niceStep(max, ticks) {
    const raw = max / ticks;
    const power = 10 ** Math.floor(Math.log10(raw));
    const unit = raw / power;
    return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
  }

  function ago(seconds) {
    if (seconds < 0.5) return "now";
    if (seconds < 120) return `\u2212${Math.round(seconds)} s`;
    return `\u2212${Math.round(seconds / 60)} min`;
  }

  function windowLabel(span) {
    if (span >= HOUR) return "last hour";
    if (span >= 120) return `last ${Math.round(span / 60)} minutes`;
    return `last ${Math.round(span)} seconds`;
  }

  function drawChart(stats) {
    const canvas = byId("chart");
    const box = canvas.parentElement.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(box.width * ratio);
    canvas.height = Math.round(box.height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const width = box.width;
    const height = box.height;
    ctx.clearRect(0, 0, width, height);

    const series = rates(stats.history);
    const points = stats.history.points;
    const now = stats.time;
    const first = points.length ? points[0][0] : now;
    const span = Math.min(HOUR, Math.max(MIN_WINDOW, now - first));
    byId("chart-window").textContent = windowLabel(span);

    const pad = { left: 48, right: 12, top: 10, bottom: 26 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const protocols = stats.history.columns.slice(1);
    let max = 0;
    for (const row of series) max = Math.max(max, protocols.reduce((sum, p) => sum + row[p], 0));
    const step = niceStep(Math.max(max, 1), 4);
    const top = Math.max(step, Math.ceil(max / step) * step);
    const x = (t) => pad.left + plotW * (1 - (now - t) / span);
    const y = (v) => pad.top + plotH * (1 - v / top);

    const muted = cssVar("--muted");
    ctx.font = "11px system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif";
    ctx.lineWidth = 1;
    ctx.strokeStyle = cssVar("--grid");
    ctx.fillStyle = muted;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let v = 0; v <= top + step / 2; v += step) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, yy);
      ctx.lineTo(width - pad.right, yy);
      ctx.stroke();
      ctx.fillText(compact(Math.round(v * 10) / 10), pad.left - 8, yy);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let i = 0; i <= 6; i += 1) {
      const back = (span * (6 - i)) / 6;
      ctx.fillText(ago(back), Math.min(width - pad.right - 14, x(now - back)), height - 18);
    }

    if (!series.length) {
      ctx.fillStyle = muted;
      ctx.textBaseline = "middle";
      ctx.font = "13px system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif";
      ctx.fillText("Collecting samples\u2026", pad.left + plotW / 2, pad.top + plotH / 2);
      return;
    }
    // Stacked areas: each protocol's band sits on the ones before it, so the top is the total.
    const visible = series.filter((row) => now - row.t <= span);
    const base = visible.map(() => 0);
    for (const p of protocols) {
      const color = cssVar("--" + p) || muted;
      const topLine = visible.map((row, i) => base[i] + row[p]);
      ctx.beginPath();
      visible.forEach((row, i) => {
        if (i === 0) ctx.moveTo(x(row.t), y(topLine[i]));
        else ctx.lineTo(x(row.t), y(topLine[i]));
      });
      for (let i = visible.length - 1; i >= 0; i -= 1) ctx.lineTo(x(visible[i].t), y(base[i]));
      ctx.closePath();
      ctx.save();
      ctx.globalAlpha = 0.18;
      ctx.fillStyle = color;
      ctx.fill();
      ctx.restore();
      ctx.beginPath();
      visible.forEach((row, i) => {
        if (i === 0) ctx.moveTo(x(row.t), y(topLine[i]));
        else ctx.lineTo(x(row.t), y(topLine[i]));
      });
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.75;
      ctx.lineJoin = "round";
      ctx.stroke();
      if (visible.length === 1) {
        ctx.fillStyle = color;
        ctx.beginPath();
        ctx.arc(x(visible[0].t), y(topLine[0]), 3, 0, 2 * Math.PI);
        ctx.fill();
      }
      topLine.forEach((v, i) => { base[i] = v; });
    }
  }

  function renderSwarms(swarms) {
    const body = byId("swarms").tBodies[0];
    body.replaceChildren();
    if (!swarms.length) {
      body.append(el("tr", {}, el("td", { colspan: "5", class: "empty", text: "No torrents yet" })));
      return;
    }
    for (const s of swarms) {
      body.append(el("tr", { "data-info-hash": s.info_hash },
        el("td", { class: "hash", title: s.info_hash, text: s.info_hash }),
        el("td", { class: "num", text: number.format(s.peers) }),
        el("td", { class: "num", text: number.format(s.seeders) }),
        el("td", { class: "num", text: number.format(s.leechers) }),
        el("td", { class: "num", text: number.format(s.completed) })));
    }
  }

  function renderClients(clients) {
    const box = byId("clients");
    box.replaceChildren();
    const total = clients.sampled_peers;
    byId("clients-note").textContent = total
      ? `${number.format(total)} peer${total === 1 ? "" : "s"} sampled`
      : "from peer ids";
    if (!clients.mix.length) {
      box.append(el("p", { class: "empty", text: "No peers yet" }));
      return;
    }
    clients.mix.slice(0, 8).forEach((c, i) => {
      const versions = c.versions.filter((v) => v.version).slice(0, 3)
        .map((v) => v.version).join(", ");
      const fill = el("div", { class: "bar-fill" });
      fill.style.width = `${percent(c.peers, total).toFixed(1)}%`;
      fill.style.background = c.client === "unknown" ? cssVar("--muted")
        : CLIENT_COLORS[i % CLIENT_COLORS.length];
      box.append(el("div", { class: "bar-row", "data-client": c.client,
        "data-peers": String(c.peers) },
      el("div", { class: "bar-name", title: c.client },
        c.client, versions ? el("small", { text: versions }) : null),
      el("div", { class: "bar-count" }, el("b", { text: number.format(c.peers) }),
        ` \u00b7 ${decimal.format(percent(c.peers, total))}%`),
      el("div", { class: "bar-track" }, fill)));
    });
    const rest = clients.mix.slice(8).reduce((sum, c) => sum + c.peers, 0);
    if (rest) box.append(el("p", { class: "muted", text: `+ ${number.format(rest)} more` }));
  }

  function renderShare(id, entries, labels) {
    const box = byId(id);
    const total = entries.reduce((sum, [, n]) => sum + n, 0);
    const track = el("div", { class: "track" });
    const rows = el("div", { class: "rows" });
    for (const [key, n] of entries) {
      const seg = el("div", { class: `seg ${key}` });
      seg.style.width = `${percent(n, total)}%`;
      track.append(seg);
      rows.append(el("div", { class: "row", "data-share": key, "data-count": String(n) },
        el("i", { class: `dot ${key}` }), labels[key] || key,
        el("span", { class: "n", text: number.format(n) }),
        el("span", { class: "pct", text: total ? `${decimal.format(percent(n, total))}%` : "\u2013" })));
    }
    box.replaceChildren(track, rows);
  }

  function renderTable(id, entries, empty) {
    const body = byId(id).tBodies[0];
    body.replaceChildren();
    if (!entries.length) {
      body.append(el("tr", {}, el("td", { class: "empty", colspan: "2", text: empty })));
      return;
    }
    for (const [label, n] of entries) {
      body.append(el("tr", {}, el("td", { class: "reason", text: label }),
        el("td", { class: "num", text: number.format(n) })));
    }
  }

  function renderListeners(listeners) {
    const list = byId("listeners");
    list.replaceChildren();
    for (const l of listeners) {
      list.append(el("li", { "data-serving": String(l.serving) },
        el("i", { class: "state" }), el("span", { class: "kind", text: l.kind }), l.address,
        l.serving ? null : el("span", { text: "down" })));
    }
  }

  function currentRate(stats) {
    const series = rates(stats.history);
    if (!series.length) return 0;
    const last = series[series.length - 1];
    return stats.history.columns.slice(1).reduce((sum, p) => sum + last[p], 0);
  }

  function render(stats) {
    latest = stats;
    const t = stats.totals;
    for (const key of ["torrents", "peers", "seeders", "leechers", "completed"]) {
      setStat(key, t[key]);
    }
    setStat("requests", stats.requests.total);
    const rate = currentRate(stats);
    setStat("rate", rate, decimal.format(rate));

    byId("version").textContent = "v" + stats.version;
    byId("uptime").textContent = uptime(stats.uptime_seconds);
    byId("updated").textContent = new Date(stats.time * 1000).toLocaleTimeString();
    const health = byId("health");
    health.dataset.state = stats.healthy ? "ok" : "down";
    const store = stats.store || { kind: "memory", description: "", available: true };
    health.textContent = stats.healthy ? "Serving"
      : store.available ? "Listener down" : "Store down";
    byId("store").textContent = store.kind === "memory" ? "memory"
      : store.description + (store.available ? "" : " (unreachable)");

    drawChart(stats);
    renderSwarms(stats.top_swarms);
    renderClients(stats.clients);
    const r = stats.requests;
    renderShare("protocol-share", [["http", r.by_protocol.http || 0], ["udp", r.by_protocol.udp || 0],
      ["ws", r.by_protocol.ws || 0]], { http: "HTTP", udp: "UDP", ws: "WebSocket" });
    renderShare("family-share", [["ipv4", r.by_family.ipv4 || 0], ["ipv6", r.by_family.ipv6 || 0]],
      { ipv4: "IPv4", ipv6: "IPv6" });
    const kinds = ["announce", "scrape", "connect", "error"]
      .map((k) => [k, r.by_kind[k] || 0]);
    renderTable("kinds", kinds, "No requests yet");

    const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
    byId("bytes-in").textContent = bytes(sum(stats.bytes.received));
    byId("bytes-out").textContent = bytes(sum(stats.bytes.sent));
    byId("conn-open").textContent = number.format(stats.http_connections.open);
    byId("conn-total").textContent = number.format(stats.http_connections.total);
    if (stats.websocket) {
      const w = stats.websocket;
      byId("ws-open").textContent = number.format(w.open);
      byId("ws-peers").textContent = number.format(w.peers);
      byId("ws-relayed").textContent =
        `${number.format(w.offers_relayed)} / ${number.format(w.answers_relayed)}`;
    }
    byId("lat-p50").textContent = stats.latency.count
      ? "\u2264 " + duration(stats.latency.p50_seconds) : "\u2013";
    byId("lat-p99").textContent = stats.latency.count
      ? (stats.latency.p99_seconds === null ? "> 1 s" : "\u2264 " + duration(stats.latency.p99_seconds))
      : "\u2013";
    byId("lat-mean").textContent = duration(stats.latency.mean_seconds);
    byId("sweeps").textContent = stats.sweep.count
      ? `${number.format(stats.sweep.count)} (${duration(stats.sweep.last_seconds)})` : "none yet";
    const failures = Object.entries(stats.failures).slice(0, 6);
    renderTable("failures", failures, "No failures");
    byId("internal-errors").textContent = stats.internal_errors
      ? `${number.format(stats.internal_errors)} internal errors` : "";
    renderListeners(stats.listeners);
    document.body.dataset.loaded = "true";
  }

  async function refresh() {
    try {
      const reply = await fetch("stats", { cache: "no-store" });
      if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
      render(await reply.json());
    } catch (err) {
      const health = byId("health");
      health.dataset.state = "offline";
      health.textContent = "Unreachable";
      health.title = String(err);
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  window.addEventListener("resize", () => { if (latest) drawChart(latest); });
  refresh();
})();
