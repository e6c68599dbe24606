// The logdist dashboard: reads /dashboard/events (a `history` event, then a `snapshot`
// event a second) and draws the distributor, one row per analyzer, and the share chart.
// Read-only: it sends nothing but the one GET of the event stream.
"use strict";

const COLUMNS = ["analyzer", "state", "protocol", "weight", "target", "share",
  "target vs actual", "msg/s", "pkt/s", "queue", "p50 / p99", "errors", "re-routed",
  "retries", "ejections", "last check"];
const PALETTE = ["#58a6ff", "#f0883e", "#a371f7", "#3fb950", "#f778ba", "#d29922",
  "#56d4dd", "#ff7b72"];
const WINDOW_MS = 5 * 60 * 1000;

const history = []; // {at_ms, shares: {id: [share, target]}}
const colours = new Map();

function colour(id) {
  if (!colours.has(id)) colours.set(id, PALETTE[colours.size % PALETTE.length]);
  return colours.get(id);
}

function $(id) { return document.getElementById(id); }

function rate(n) {
  if (n >= 10000) return Math.round(n).toLocaleString("en-US");
  if (n >= 100) return n.toFixed(0);
  return n.toFixed(1);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
  const m = Math.floor(s % 3600 / 60), sec = Math.floor(s % 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

function ms(v) {
  if (v === null || v === undefined) return "–";
  return v < 1 ? v.toFixed(2) : v.toFixed(v < 10 ? 1 : 0);
}

function cell(tr, label, content) {
  const td = document.createElement("td");
  td.dataset.label = label;
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  tr.appendChild(td);
  return td;
}

function row(a) {
  const tr = document.createElement("tr");
  tr.dataset.id = a.id;
  tr.dataset.state = a.state;
  const name = document.createElement("span");
  const sw = document.createElement("span");
  sw.className = "swatch";
  sw.style.background = colour(a.id);
  name.append(sw, a.id);
  name.title = a.url;
  cell(tr, COLUMNS[0], name).className = "id";
  const state = document.createElement("span");
  state.className = "state " + a.state;
  state.textContent = a.state;
  cell(tr, COLUMNS[1], state).className = "state-cell";
  cell(tr, COLUMNS[2], a.protocol);
  cell(tr, COLUMNS[3], String(a.weight));
  cell(tr, COLUMNS[4], a.target_share.toFixed(3)).className = "target";
  cell(tr, COLUMNS[5], a.share.toFixed(3)).className = "share";
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.title = `target ${a.target_share.toFixed(3)}, actual ${a.share.toFixed(3)}`;
  const actual = document.createElement("div");
  actual.className = "actual";
  actual.style.width = (Math.min(1, a.share) * 100) + "%";
  const target = document.createElement("div");
  target.className = "target";
  target.style.left = `calc(${Math.min(1, a.target_share) * 100}% - 1px)`;
  bar.append(actual, target);
  cell(tr, COLUMNS[6], bar);
  cell(tr, COLUMNS[7], rate(a.messages_per_s)).className = "msgs";
  cell(tr, COLUMNS[8], rate(a.packets_per_s)).className = "pkts";
  cell(tr, COLUMNS[9], `${a.queued_packets} pkt / ${bytes(a.queued_bytes)}`);
  cell(tr, COLUMNS[10], `${ms(a.latency_p50_ms)} / ${ms(a.latency_p99_ms)} ms`);
  cell(tr, COLUMNS[11], String(a.failed_deliveries + a.rejected_packets)).title =
    `${a.failed_deliveries} failed deliveries, ${a.rejected_packets} packets refused`;
  cell(tr, COLUMNS[12], String(a.rerouted_packets)).title =
    "packets routed from it to another analyzer";
  cell(tr, COLUMNS[13], String(a.retried_deliveries)).title =
    "deliveries sent to it again in parts (a refused batch halved, one over its body limit split)";
  cell(tr, COLUMNS[14], String(a.ejections));
  const p = a.last_probe;
  const check = cell(tr, COLUMNS[15], p ? `${p.ok ? "ok" : "failed"}, ${p.age_s.toFixed(0)}s ago` : "–");
  if (p && p.age_s > 30) check.className = "old";
  return tr;
}

function render(s) {
  const d = s.distributor;
  $("version").textContent = "v" + d.version;
  $("in-rate").textContent = rate(d.messages_in_per_s);
  $("out-rate").textContent = rate(d.messages_delivered_per_s);
  $("online").textContent = `${d.online} / ${s.analyzers.length}`;
  const rejects = Object.entries(d.rejects);
  $("rejects").textContent = rejects.length === 0 ? "0" :
    rejects.map(([why, n]) => `${why} ${n}`).join(", ");
  $("rerouted").textContent = `${d.rerouted_total} / ${d.parked}`;
  $("spool-tile").hidden = !d.spool;
  if (d.spool) {
    const sp = d.spool;
    $("spool").textContent = `${sp.packets} pkt, ${bytes(sp.bytes)}, oldest ${duration(sp.oldest_s)}`;
    $("spool").title = `replayed at start: ${sp.replayed_total} packets; damaged bytes found: ${sp.corrupt_bytes_total}`;
  }
  $("memory").textContent = d.rss_bytes > 0 ? bytes(d.rss_bytes) : "–";
  $("uptime").textContent = duration(d.uptime_s);

  const body = document.querySelector("#analyzers tbody");
  body.replaceChildren(...s.analyzers.map(row));
  $("empty").hidden = s.analyzers.length > 0;

  renderFleet(s.fleet);
}

function renderFleet(fleet) {
  const section = $("fleet");
  if (!fleet) { section.hidden = true; return; }
  section.hidden = false;
  const head = document.createElement("tr");
  for (const name of ["analyzer", ...fleet.distributors]) {
    const th = document.createElement("th");
    th.textContent = name;
    head.appendChild(th);
  }
  document.querySelector("#fleet-table thead").replaceChildren(head);
  const rows = Object.entries(fleet.states).map(([id, states]) => {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.textContent = id;
    tr.appendChild(td);
    for (const dist of fleet.distributors) {
      const c = document.createElement("td");
      const st = states[dist];
      if (st) {
        const span = document.createElement("span");
        span.className = "state " + st;
        span.textContent = st;
        c.appendChild(span);
      } else c.textContent = "–";
      tr.appendChild(c);
    }
    return tr;
  });
  document.querySelector("#fleet-table tbody").replaceChildren(...rows);
}

function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight || 220;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const left = 36, right = 8, top = 8, bottom = 18;
  const w = width - left - right, h = height - top - bottom;
  const now = history.length ? history[history.length - 1].at_ms : Date.now();
  // The last five minutes, or since the first point, but at least one minute.
  const span = Math.min(WINDOW_MS, Math.max(60000, history.length ? now - history[0].at_ms : 0));
  const x = (t) => left + w * (1 - (now - t) / span);
  const y = (v) => top + h * (1 - Math.min(1, Math.max(0, v)));
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#8b96a1";
  g.strokeStyle = "#2b343e";
  g.lineWidth = 1;
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    g.beginPath(); g.moveTo(left, y(v)); g.lineTo(left + w, y(v)); g.stroke();
    g.fillText(v.toFixed(2), 2, y(v) + 4);
  }
  for (const k of [5, 4, 3, 2, 1]) {
    const ago = k * span / 5;
    const label = ago >= 120000 ? `-${Math.round(ago / 60000)}m` : `-${Math.round(ago / 1000)}s`;
    g.fillText(label, x(now - ago) - 8, height - 4);
  }
  const ids = new Set();
  for (const p of history) for (const id of Object.keys(p.shares)) ids.add(id);
  for (const id of ids) {
    g.strokeStyle = colour(id);
    for (const [index, dashed] of [[1, true], [0, false]]) {
      g.setLineDash(dashed ? [5, 4] : []);
      g.lineWidth = dashed ? 1 : 2;
      g.beginPath();
      let pen = false;
      for (const p of history) {
        const v = p.shares[id];
        if (!v) { pen = false; continue; }
        if (pen) g.lineTo(x(p.at_ms), y(v[index]));
        else { g.moveTo(x(p.at_ms), y(v[index])); pen = true; }
      }
      g.stroke();
    }
  }
  g.setLineDash([]);
  const legend = [...ids].map((id) => {
    const span = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = colour(id);
    span.append(sw, id);
    return span;
  });
  $("legend").replaceChildren(...legend);
}

function remember(s) {
  const shares = {};
  for (const a of s.analyzers) shares[a.id] = [a.share, a.target_share];
  history.push({ at_ms: s.at_ms, shares });
  while (history.length && history[0].at_ms < s.at_ms - WINDOW_MS) history.shift();
}

function connect() {
  const events = new EventSource("/dashboard/events");
  const link = $("link");
  events.addEventListener("open", () => { link.textContent = "live"; link.className = "link up"; });
  events.addEventListener("error", () => { link.textContent = "reconnecting…"; link.className = "link down"; });
  events.addEventListener("history", (e) => {
    history.length = 0;
    for (const p of JSON.parse(e.data)) history.push(p);
    drawChart();
  });
  events.addEventListener("snapshot", (e) => {
    const s = JSON.parse(e.data);
    if (s.at_ms === 0) return; // Before the first sample.
    render(s);
    if (!history.length || history[history.length - 1].at_ms !== s.at_ms) remember(s);
    drawChart();
  });
}

window.addEventListener("resize", drawChart);
connect();
