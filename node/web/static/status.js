// The status page: fetches status.json from the node that served it
// every few seconds and renders it. Every value goes in as text, never
// as markup: lock names and labels come from clients.
"use strict";
(function () {
  const every = 3000;
  let last = null; // the previous document, for refusal rates

  const $ = (id) => document.getElementById(id);
  const text = (id, v) => { $(id).textContent = v; };
  function el(tag, cls, txt) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (txt !== undefined) e.textContent = txt;
    return e;
  }
  function row(cells) {
    const tr = el("tr");
    for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", "", String(c)));
    return tr;
  }
  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }
  function duration(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + (s % 60) + "s";
    return s + "s";
  }

  // state is a partition's colour class.
  function state(p, alive) {
    if (!alive.has(p.owner)) return "down";
    if (p.mode === "lost") return "lost";
    if (!p.replica) return "alone";
    if (p.synced === null || p.synced === undefined) return "unknown";
    return p.synced ? "synced" : "unsynced";
  }
  const stateNames = { synced: "synced replica", unsynced: "replica not synced", alone: "no replica",
    unknown: "synced: not known here", lost: "lost (lock-delay)", down: "owner not alive" };

  function render(d) {
    text("node-id", d.node.id);
    document.title = "elock " + d.node.id;
    const r = $("ready");
    r.textContent = d.ready ? "ready" : "not ready: " + d.not_ready;
    r.className = "badge " + (d.ready ? "ready" : "not-ready");
    text("updated", "updated " + new Date(d.time).toLocaleTimeString());
    text("self-id", d.node.id);
    text("self-version", d.node.version);
    text("self-uptime", duration(d.node.uptime_seconds));
    text("self-client", d.node.client_addr);
    text("self-gossip", d.node.gossip_addr || "-");
    text("self-peer", d.node.peer_addr || "-");
    text("leader", d.leader || "none");

    const c = d.counts;
    text("locks-held", c ? c.locks : "-");
    text("locks-waiters", c ? c.waiters : "-");
    text("sessions", c ? c.sessions : "-");
    text("clients", c ? c.clients : "-");
    text("grants", c ? c.grants : "-");

    const index = new Map(), alive = new Set();
    d.members.forEach((m, i) => { index.set(m.id, i); if (m.state === "alive") alive.add(m.id); });
    fill($("members").tBodies[0], d.members.map((m, i) => {
      const id = el("td", "", m.id);
      if (m.id === d.leader) id.appendChild(el("span", "leader-mark", " ★ leader"));
      if (m.id === d.node.id) id.appendChild(el("span", "muted", " (this node)"));
      const tr = row([i, id, m.addr, el("td", "state-" + m.state, m.state), m.voter ? "voter" : "member"]);
      tr.dataset.member = m.id;
      return tr;
    }));

    text("part-count", "(" + d.partitions.length + ")");
    $("grid").replaceChildren(...d.partitions.map((p, i) => {
      const st = state(p, alive);
      const cell = el("div", "cell s-" + st + (p.owner === d.node.id ? " mine" : ""),
        index.has(p.owner) ? String(index.get(p.owner)) : "?");
      cell.dataset.part = i;
      cell.dataset.owner = p.owner;
      cell.dataset.state = st;
      cell.title = "partition " + i + "\nowner " + p.owner + "\nreplica " + (p.replica || "none") +
        "\nepoch " + p.epoch + "\nmode " + p.mode + "\n" + stateNames[st];
      return cell;
    }));

    const b = d.busiest;
    $("busiest-na").hidden = b.available;
    if (!b.available) $("busiest-na").textContent = "not available";
    if (b.error) { $("busiest-na").hidden = false; $("busiest-na").textContent = "not available: " + b.error; }
    fill($("held").tBodies[0], b.held.map((e) =>
      row([e.name, duration(e.held_ms / 1000), e.waiters, e.label || "-"])));
    fill($("queued").tBodies[0], b.queued.map((e) =>
      row([e.name, e.waiters, duration(e.held_ms / 1000), e.label || "-"])));
    $("busiest-hidden").hidden = !b.hidden;
    text("busiest-hidden", b.hidden + " names hidden: not readable by this identity");

    // Rates between this document and the last one, by counter.
    const before = new Map();
    if (last) for (const f of last.refusals) before.set(f.code + " " + f.reason, f.total);
    const dt = last ? (d.time - last.time) / 1000 : 0;
    fill($("refusals").tBodies[0], d.refusals.map((f) => {
      const prev = before.get(f.code + " " + f.reason);
      const rate = dt > 0 && prev !== undefined ? ((f.total - prev) / dt).toFixed(2) : "…";
      return row([f.code, f.reason, rate, f.total]);
    }));
    $("refusals-none").hidden = d.refusals.length > 0;
    last = d;
  }

  async function refresh() {
    try {
      const res = await fetch("status.json", { cache: "no-store", credentials: "same-origin" });
      if (!res.ok) throw new Error(res.status + " " + (await res.text()).trim());
      render(await res.json());
      $("error").hidden = true;
    } catch (e) {
      $("error").hidden = false;
      text("error", "cannot refresh: " + e.message);
    } finally {
      setTimeout(refresh, every);
    }
  }
  refresh();
})();
