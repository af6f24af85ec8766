// shoal's dashboard: plain JavaScript, no build step. It reads the boss's API
// (the login cookie carries a session) and redraws when the boss says, over
// server-sent events, that something changed.
"use strict";

const STATES = ["succeeded", "running", "ready", "waiting", "failed", "upstream_failed", "cancelled"];
const main = document.getElementById("main");
const view = { page: 0, state: "", q: "", sort: "id" };

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// The session's CSRF token, which every change the dashboard asks for carries.
function csrf() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("shoal_csrf="));
  return found ? found.slice("shoal_csrf=".length) : "";
}

async function answer(path, options) {
  const headers = { "X-Shoal-CSRF": csrf(), ...((options || {}).headers || {}) };
  const response = await fetch("/v1" + path, { credentials: "same-origin", ...options, headers });
  if (response.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

async function api(path, options) {
  const response = await answer(path, options);
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// A log is shown from its end: its last lines, and the whole of it on request.
const LOG_LINES = 200;
const wholeLogs = new Set();

async function taskLog(path, whole) {
  const response = await answer(path + (whole ? "" : `?tail=${LOG_LINES}`));
  return {
    text: await response.text(),
    skipped: Number(response.headers.get("X-Shoal-Offset") || 0),
    size: Number(response.headers.get("X-Shoal-Log-Size") || 0),
  };
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  const units = ["KiB", "MiB", "GiB"];
  let value = bytes / 1024, i = 0;
  while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
  return `${value.toFixed(1)} ${units[i]}`;
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return Math.round(value * 1000) + " ms";
  if (value < 120) return value.toFixed(1) + " s";
  if (value < 7200) return (value / 60).toFixed(1) + " min";
  return (value / 3600).toFixed(1) + " h";
}

function when(epoch) { return epoch ? new Date(epoch * 1000).toLocaleTimeString() : "–"; }
function badge(state) { return `<span class="badge ${esc(state)}">${esc(state.replace("_", " "))}</span>`; }
function short(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 80 ? text.slice(0, 79) + "…" : text;
}

function bar(counts, total) {
  const parts = STATES.filter((s) => counts[s]).map((s) =>
    `<span style="width:${(100 * counts[s]) / Math.max(total, 1)}%;background:var(--${s})" title="${counts[s]} ${s}"></span>`);
  return `<div class="bar">${parts.join("")}</div>`;
}

function countsText(counts) {
  return `<span class="counts">${STATES.filter((s) => counts[s]).map((s) => `<span>${counts[s]} ${s.replace("_", " ")}</span>`).join("")}</span>`;
}

// -- pages -------------------------------------------------------------------

async function runsPage() {
  const runs = await api("/runs");
  const rows = runs.map((r) => {
    const done = r.total - r.active;
    const end = r.finished || Date.now() / 1000;
    return `<tr><td><a href="#/run/${r.run}">${r.run}</a></td><td><a href="#/run/${r.run}">${esc(r.name)}</a></td>
      <td>${badge(r.state)}</td><td>${bar(r.counts, r.total)}<div class="muted">${done} / ${r.total}</div></td>
      <td>${countsText(r.counts)}</td><td>${when(r.created)}</td><td>${seconds(end - r.created)}</td></tr>`;
  });
  main.innerHTML = `<h1>Runs</h1>
    <table><thead><tr><th>Run</th><th>Name</th><th>State</th><th>Progress</th><th>Tasks</th><th>Started</th><th>Duration</th></tr></thead>
    <tbody>${rows.join("") || '<tr><td colspan="7" class="muted">No runs yet: shoal submit FILE</td></tr>'}</tbody></table>`;
}

async function runPage(id) {
  const params = new URLSearchParams({ limit: 200, offset: view.page * 200, sort: view.sort });
  if (view.state) params.append("state", view.state);
  if (view.q) params.append("q", view.q);
  const [run, page, graph, rate] = await Promise.all([
    api(`/runs/${id}`), api(`/runs/${id}/page?${params}`), api(`/runs/${id}/graph`), api(`/runs/${id}/throughput`),
  ]);
  const done = run.total - run.active;
  const failed = (run.counts.failed || 0) + (run.counts.upstream_failed || 0) + (run.counts.cancelled || 0);
  let result = "";
  if (run.final && run.result !== null) result = `<div>Result <span class="result" id="result">${esc(short(run.result))}</span></div>`;
  else if (Object.keys(run.partial || {}).length) result = Object.entries(run.partial).map(([k, v]) => `<div>${esc(k)} so far <b>${esc(short(v))}</b></div>`).join("");
  const rows = page.tasks.map((t) => `<tr><td><a href="#/run/${id}/task/${encodeURIComponent(t.name)}">${esc(t.name)}</a></td>
    <td>${badge(t.state)}${t.cached ? ' <span class="muted">cached</span>' : ""}</td><td>${t.attempts}</td>
    <td>${t.exit_code ?? ""}</td><td>${seconds(t.duration)}</td><td>${esc(t.worker || "")}</td>
    <td>${esc(t.state === "succeeded" ? short(t.result) : t.cause || "")}</td></tr>`);
  const pages = Math.max(1, Math.ceil(page.total / 200));
  main.innerHTML = `
    <div class="card"><div class="row"><div class="grow"><h1>Run ${run.run} · ${esc(run.name)} ${badge(run.state)}</h1>
      <div class="muted">${done} of ${run.total} done · started ${when(run.created)} · ${seconds((run.finished || Date.now() / 1000) - run.created)}</div></div>
      <button id="retry" ${failed ? "" : "disabled"}>Retry failed</button>
      <button id="cancel" class="danger" ${run.state === "running" ? "" : "disabled"}>Cancel run</button></div>
      <div style="margin:10px 0">${bar(run.counts, run.total)}</div><div id="counts">${countsText(run.counts)}</div>${result}</div>
    <div class="row" style="align-items:flex-start">
      <div class="card grow"><h2>Graph</h2>${dag(graph)}</div>
      <div class="card" style="width:380px"><h2>Throughput (tasks/s)</h2>${sparkline(rate)}</div>
    </div>
    <h2>Tasks</h2>
    <div class="row" style="margin-bottom:8px">
      <select id="state"><option value="">every state</option>${STATES.map((s) => `<option ${s === view.state ? "selected" : ""}>${s}</option>`).join("")}</select>
      <input id="q" placeholder="search names" value="${esc(view.q)}">
      <select id="sort">${[["id", "submission order"], ["duration", "longest first"], ["-duration", "shortest first"], ["name", "name"]]
        .map(([v, l]) => `<option value="${v}" ${v === view.sort ? "selected" : ""}>${l}</option>`).join("")}</select>
      <span class="muted">${page.total} tasks</span></div>
    <table id="tasks"><thead><tr><th>Task</th><th>State</th><th>Attempts</th><th>Exit</th><th>Duration</th><th>Worker</th><th>Result / cause</th></tr></thead>
      <tbody>${rows.join("")}</tbody></table>
    <div class="pager row"><button id="prev" ${view.page ? "" : "disabled"}>‹ Previous</button>
      <span class="muted">page ${view.page + 1} of ${pages}</span><button id="next" ${view.page + 1 < pages ? "" : "disabled"}>Next ›</button></div>`;
  document.getElementById("state").onchange = (e) => { view.state = e.target.value; view.page = 0; render(); };
  document.getElementById("sort").onchange = (e) => { view.sort = e.target.value; render(); };
  document.getElementById("q").onchange = (e) => { view.q = e.target.value; view.page = 0; render(); };
  document.getElementById("prev").onclick = () => { view.page -= 1; render(); };
  document.getElementById("next").onclick = () => { view.page += 1; render(); };
  document.getElementById("retry").onclick = async () => { await api(`/runs/${id}/retry`, { method: "POST" }); render(); };
  document.getElementById("cancel").onclick = async () => {
    if (confirm(`Cancel run ${id}? Its unfinished tasks stop.`)) { await api(`/runs/${id}/cancel`, { method: "POST" }); render(); }
  };
}

function dag(graph) {
  // Groups in layers by their longest path from a source; edges between layers.
  const layer = {}, incoming = {};
  graph.nodes.forEach((n) => { incoming[n.id] = []; });
  graph.edges.forEach((e) => { if (incoming[e.target]) incoming[e.target].push(e.source); });
  const depth = (id, seen = new Set()) => {
    if (layer[id] !== undefined) return layer[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    layer[id] = incoming[id].length ? 1 + Math.max(...incoming[id].map((s) => depth(s, seen))) : 0;
    return layer[id];
  };
  graph.nodes.forEach((n) => depth(n.id));
  const columns = {};
  graph.nodes.forEach((n) => { (columns[layer[n.id]] = columns[layer[n.id]] || []).push(n); });
  const W = 170, H = 46, GX = 60, GY = 14, pos = {};
  let height = 0;
  Object.entries(columns).forEach(([x, nodes]) => nodes.forEach((n, y) => {
    pos[n.id] = { x: 10 + x * (W + GX), y: 10 + y * (H + GY) };
    height = Math.max(height, pos[n.id].y + H + 10);
  }));
  const width = 20 + Object.keys(columns).length * (W + GX);
  const color = (c) => c.failed ? "failed" : c.running ? "running" : c.upstream_failed ? "upstream_failed"
    : c.cancelled ? "cancelled" : c.ready ? "ready" : c.waiting ? "waiting" : "succeeded";
  const edges = graph.edges.filter((e) => pos[e.source] && pos[e.target]).map((e) => {
    const a = pos[e.source], b = pos[e.target];
    return `<path d="M${a.x + W},${a.y + H / 2} C${a.x + W + GX / 2},${a.y + H / 2} ${b.x - GX / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}" stroke="#b6bdcb" fill="none"/>`;
  });
  const nodes = graph.nodes.map((n) => {
    const p = pos[n.id], done = n.counts.succeeded || 0;
    return `<g><title>${esc(n.id)}: ${Object.entries(n.counts).map(([s, c]) => `${c} ${s}`).join(", ")}</title>
      <rect x="${p.x}" y="${p.y}" width="${W}" height="${H}" rx="8" fill="var(--${color(n.counts)})" opacity="0.9"/>
      <text x="${p.x + 10}" y="${p.y + 19}" fill="#fff" font-weight="600">${esc(n.id.length > 22 ? n.id.slice(0, 21) + "…" : n.id)}</text>
      <text x="${p.x + 10}" y="${p.y + 36}" fill="#fff">${n.total > 1 ? `${done} / ${n.total} done` : esc(color(n.counts))}</text></g>`;
  });
  return `<div style="overflow:auto;max-height:420px"><svg width="${width}" height="${height}" role="img" aria-label="task graph">${edges.join("")}${nodes.join("")}</svg></div>`;
}

function sparkline(rate) {
  if (!rate.rates.length) return '<p class="muted">Nothing finished yet.</p>';
  const W = 340, H = 110, max = Math.max(...rate.rates, 1e-9);
  const step = W / rate.rates.length;
  const bars = rate.rates.map((r, i) => `<rect x="${i * step}" y="${H - (H * r) / max}" width="${Math.max(step - 1, 1)}" height="${(H * r) / max}" fill="var(--running)"/>`);
  return `<svg width="${W}" height="${H + 18}">${bars.join("")}<text x="0" y="${H + 14}" fill="#6b7385">peak ${max.toFixed(1)}/s over ${seconds(rate.width * rate.rates.length)}</text></svg>`;
}

async function taskPage(id, name) {
  const enc = encodeURIComponent(name);
  const [task, events] = await Promise.all([api(`/runs/${id}/tasks/${enc}`), api(`/runs/${id}/tasks/${enc}/events`)]);
  const logPath = `/runs/${id}/tasks/${enc}/log`;
  const whole = wholeLogs.has(logPath);
  let log = { text: "", skipped: 0, size: 0 };
  if (task.attempt_list.length) log = await taskLog(logPath, whole);
  const logNote = log.skipped > 0
    ? `<p class="muted" id="log-note">The last ${LOG_LINES} lines of this log (${size(log.size)} in all): <a href="#" id="whole-log">show all of it</a> · <a href="/v1${logPath}" download="${esc(task.name)}.log">download it</a></p>`
    : "";
  const attempts = task.attempt_list.map((a) => `<tr><td>${a.number}</td><td>${badge(a.state)}</td><td>${esc(a.worker || "")}</td>
    <td>${when(a.started)}</td><td>${seconds(a.duration)}</td><td>${a.exit_code ?? ""}</td><td>${esc(a.cause || "")}</td></tr>`);
  const outRun = task.source_run || id;
  const outputs = task.outputs.map((o) => `<li><a href="/v1/data/runs/${outRun}/${enc}/${o.split("/").map(encodeURIComponent).join("/")}" download>${esc(o)}</a></li>`);
  const inputs = (task.spec.inputs || []).map((i) => `<li><a href="/v1/data/${i.split("/").map(encodeURIComponent).join("/")}" download>${esc(i)}</a></li>`);
  const history = events.map((e) => `<tr><td>${when(e.time)}</td><td>${esc(e.kind)}</td><td>${esc(e.detail || "")}</td></tr>`);
  main.innerHTML = `<p><a href="#/run/${id}">‹ run ${id}</a></p>
    <div class="card"><h1>${esc(task.name)} ${badge(task.state)}</h1>
      <div class="muted">${task.attempts} attempt(s) · ${task.cause ? esc(task.cause) : ""}</div>
      ${task.result !== null && task.state === "succeeded" ? `<div>Result <span class="result">${esc(short(task.result))}</span></div>` : ""}
      <div class="muted"><code>${esc((task.spec.run || []).join(" && "))}</code></div></div>
    <h2>Attempts</h2><table><thead><tr><th>#</th><th>State</th><th>Worker</th><th>Started</th><th>Duration</th><th>Exit</th><th>Cause</th></tr></thead><tbody>${attempts.join("")}</tbody></table>
    <h2>Log</h2>${logNote}<pre class="log" id="log">${esc(log.text) || "(no output)"}</pre>
    <div class="row" style="align-items:flex-start"><div class="card grow"><h2>Inputs</h2><ul>${inputs.join("") || '<li class="muted">none declared</li>'}</ul></div>
      <div class="card grow"><h2>Outputs</h2><ul>${outputs.join("") || '<li class="muted">none</li>'}</ul></div></div>
    <h2>History</h2><table><tbody>${history.join("")}</tbody></table>`;
  const more = document.getElementById("whole-log");
  if (more) more.onclick = (e) => { e.preventDefault(); wholeLogs.add(logPath); render(); };
  const pre = document.getElementById("log");
  pre.scrollTop = pre.scrollHeight;  // the end of a log is what tells how it went
}

async function workersPage() {
  const workers = await api("/workers");
  const now = Date.now() / 1000;
  const rows = workers.map((w) => `<tr><td>${esc(w.name)}</td><td>${esc(w.host)}</td><td>${badge(w.state)}</td>
    <td>${w.running} / ${w.slots}</td><td>${w.done}</td><td>${w.failed}</td><td>${seconds(now - w.last_sync)} ago</td></tr>`);
  main.innerHTML = `<h1>Workers</h1><table><thead><tr><th>Worker</th><th>Host</th><th>State</th><th>Slots in use</th><th>Done</th><th>Failed</th><th>Last sync</th></tr></thead>
    <tbody>${rows.join("") || '<tr><td colspan="7" class="muted">No workers yet: shoal worker --boss URL</td></tr>'}</tbody></table>`;
}

// -- routing and live updates ------------------------------------------------

let current = "";
async function render() {
  const hash = location.hash || "#/";
  if (hash !== current) { current = hash; Object.assign(view, { page: 0, state: "", q: "", sort: "id" }); }
  const parts = hash.slice(2).split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "run" && parts[2] === "task") await taskPage(parts[1], parts.slice(3).join("/"));
    else if (parts[0] === "run") await runPage(parts[1]);
    else if (parts[0] === "workers") await workersPage();
    else await runsPage();
  } catch (e) {
    main.innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}

let pending = null;
function soon() {
  // Redraw after a change, but not while the user is typing in a field.
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    if (document.activeElement && ["INPUT", "SELECT"].includes(document.activeElement.tagName)) return;
    render();
  }, 150);
}

window.addEventListener("hashchange", render);
const live = document.getElementById("live");
const events = new EventSource("/v1/stream");
events.onmessage = soon;
events.onopen = () => live.classList.remove("off");
events.onerror = () => live.classList.add("off");
render();

document.getElementById("logout").onclick = async () => {
  await fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "X-Shoal-CSRF": csrf() } });
  location.href = "/login";
};
