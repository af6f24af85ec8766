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

// Every attempt's whole log is shown, read as it streams in pages of
// LOG_PAGE bytes: the next page on request, however long the log. The latest
// attempt opens on its last LOG_LINES lines (how it ended) until the user asks
// for it from the start.
const LOG_PAGE = 256 * 1024;
const LOG_LINES = 200;
const logShown = new Map();  // "path#attempt" -> how many bytes the user asked to see
const logOpen = new Map();  // "path#attempt" -> whether the user opened (or closed) its log

async function taskLog(path, attempt, want) {
  const response = await answer(`${path}?attempt=${attempt}`);
  const size = Number(response.headers.get("X-Shoal-Log-Size") || 0);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "", got = 0;
  while (got < want) {
    const { done, value } = await reader.read();
    if (done) break;
    const part = value.subarray(0, want - got);  // a page ends where it ends, whatever came
    got += part.length;
    text += decoder.decode(part, { stream: true });
  }
  if (got >= want) reader.cancel();  // the rest waits for "more"
  else text += decoder.decode();
  return { text, got, size: Math.max(size, got) };
}

async function taskLogEnd(path, attempt) {
  const response = await answer(`${path}?attempt=${attempt}&tail=${LOG_LINES}`);
  const text = await response.text();
  const start = Number(response.headers.get("X-Shoal-Offset") || 0);
  const size = Number(response.headers.get("X-Shoal-Log-Size") || 0);
  return { text, got: size, size, start };
}

// A command's exit status in words: a signal by its name.
const SIGNALS = { 1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
  8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM",
  15: "SIGTERM", 24: "SIGXCPU", 25: "SIGXFSZ" };
function exitText(code) {
  if (code === null || code === undefined) return "";
  if (code < 0) return SIGNALS[-code] || `signal ${-code}`;
  if (code > 128 && SIGNALS[code - 128]) return `${code} (${SIGNALS[code - 128]})`;
  return String(code);
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
  // A sweep: one column per matrix key, so that its values read as a table.
  const keys = [...new Set(page.tasks.flatMap((t) => Object.keys(t.matrix || {})))];
  const rows = page.tasks.map((t) => `<tr><td><a href="#/run/${id}/task/${encodeURIComponent(t.name)}">${esc(t.name)}</a></td>
    ${keys.map((k) => `<td class="matrix">${esc(t.matrix && k in t.matrix ? t.matrix[k] : "")}</td>`).join("")}
    <td>${badge(t.state)}${t.cached ? ' <span class="muted">cached</span>' : ""}</td><td>${t.attempts}</td>
    <td>${esc(exitText(t.exit_code))}</td><td>${seconds(t.duration)}</td><td>${esc(t.worker || "")}</td>
    <td>${esc(t.state === "succeeded" ? short(t.result) : t.cause || "")}</td></tr>`);
  const pages = Math.max(1, Math.ceil(page.total / 200));
  main.innerHTML = `
    <div class="card"><div class="row"><div class="grow"><h1>Run ${run.run} · ${esc(run.name)} ${badge(run.state)}</h1>
      <div class="muted">${done} of ${run.total} done · started ${when(run.created)} · ${seconds((run.finished || Date.now() / 1000) - run.created)}</div></div>
      <button id="retry" ${failed ? "" : "disabled"}>Retry failed</button>
      <button id="cancel" class="danger" ${run.state === "running" ? "" : "disabled"}>Cancel run</button></div>
      <div style="margin:10px 0">${bar(run.counts, run.total)}</div><div id="counts">${countsText(run.counts)}</div>${result}</div>
    <div class="row" style="align-items:flex-start">
      <div class="card grow" id="graph"><h2>Graph</h2>${dag(graph)}</div>
      <div class="card throughput"><h2>Throughput (tasks/s)</h2>${sparkline(rate)}</div>
    </div>
    <h2>Tasks</h2>
    <div class="row" style="margin-bottom:8px">
      <select id="state"><option value="">every state</option>${STATES.map((s) => `<option ${s === view.state ? "selected" : ""}>${s}</option>`).join("")}</select>
      <input id="q" placeholder="search names" value="${esc(view.q)}">
      <select id="sort">${[["id", "submission order"], ["duration", "longest first"], ["-duration", "shortest first"], ["name", "name"]]
        .map(([v, l]) => `<option value="${v}" ${v === view.sort ? "selected" : ""}>${l}</option>`).join("")}</select>
      <span class="muted">${page.total} tasks</span></div>
    <div class="scroll"><table id="tasks"><thead><tr><th>Task</th>${keys.map((k) => `<th class="matrix">${esc(k)}</th>`).join("")}<th>State</th><th>Attempts</th><th>Exit</th><th>Duration</th><th>Worker</th><th>Result / cause</th></tr></thead>
      <tbody>${rows.join("")}</tbody></table></div>
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
  return `<div class="graph"><svg width="${width}" height="${height}" role="img" aria-label="task graph">${edges.join("")}${nodes.join("")}</svg></div>`;
}

function sparkline(rate) {
  if (!rate.rates.length) return '<p class="muted">Nothing finished yet.</p>';
  const W = 340, H = 110, max = Math.max(...rate.rates, 1e-9);
  const step = W / rate.rates.length;
  const bars = rate.rates.map((r, i) => `<rect x="${i * step}" y="${H - (H * r) / max}" width="${Math.max(step - 1, 1)}" height="${(H * r) / max}" fill="var(--running)"/>`);
  return `<svg width="${W}" height="${H + 18}">${bars.join("")}<text x="0" y="${H + 14}" fill="#6b7385">peak ${max.toFixed(1)}/s over ${seconds(rate.width * rate.rates.length)}</text></svg>`;
}

// Events as sentences: what happened, to which attempt, on which worker.
function eventText(e, attempts, workers) {
  const a = e.attempt_id ? attempts[e.attempt_id] : null;
  const nth = a ? `attempt ${a}` : "an attempt";
  const on = e.worker || (e.worker_id && workers[e.worker_id]) ? ` on ${esc(e.worker || workers[e.worker_id])}` : "";
  const why = e.detail ? `: ${esc(e.detail)}` : "";
  const words = {
    attempt_started: `${nth} started${on}`,
    task_succeeded: `${nth} succeeded${on}`,
    task_failed: `${a ? nth + " failed" : "failed"}${on}${why}; the task failed`,
    task_retried: `${nth} failed${on}${why}; the task will run again`,
    attempt_failed: `${nth} failed${on}${why}; another attempt still runs`,
    attempt_interrupted: `${nth} was interrupted${on}${why}; the task runs again`,
    attempt_lost: `${nth} was lost${on}${why}; the task runs again`,
    attempt_superseded: `${nth} lost the race to another attempt and was stopped${on}`,
    report_dropped: e.detail === "cancelled after the attempt was cancelled"
      ? `${nth} was stopped${on}` : `a late report of ${nth} was ignored${on}${why}`,
    task_cancelled: "the task was cancelled by hand",
    task_restarted: `the task was retried by hand${e.detail ? ` (${esc(e.detail)} in all)` : ""}`,
    upstream_failed: `it will not run: a task it runs after failed${why}`,
    log_lost: `the log was lost${why}`,
  };
  return words[e.kind] || `${esc(e.kind.replace(/_/g, " "))}${on}${why}`;
}

function dataLink(path, label) {
  return `<a href="/v1/data/${path.split("/").map(encodeURIComponent).join("/")}" download>${esc(label)}</a>`;
}

function taskLink(id, t) {
  return `<li><a href="#/run/${id}/task/${encodeURIComponent(t.name)}">${esc(t.name)}</a> ${badge(t.state)}</li>`;
}

async function taskPage(id, name) {
  const enc = encodeURIComponent(name);
  const [task, events, links, workerList] = await Promise.all([
    api(`/runs/${id}/tasks/${enc}`), api(`/runs/${id}/tasks/${enc}/events`),
    api(`/runs/${id}/tasks/${enc}/links`), api("/workers"),
  ]);
  const workers = Object.fromEntries(workerList.map((w) => [w.id, w.name]));
  const numbers = Object.fromEntries(task.attempt_list.map((a) => [a.id, a.number]));
  const logPath = `/runs/${id}/tasks/${enc}/log`;
  const last = task.attempt_list.length ? task.attempt_list[task.attempt_list.length - 1].number : 0;
  const logs = await Promise.all(task.attempt_list.map((a) => {
    const shown = logShown.get(`${logPath}#${a.number}`);
    return a.number === last && !shown ? taskLogEnd(logPath, a.number) : taskLog(logPath, a.number, shown || LOG_PAGE);
  }));
  const logBlocks = task.attempt_list.map((a, k) => {
    const log = logs[k];
    const more = log.start > 0
      ? `<p class="muted" id="log-note">The last ${LOG_LINES} lines of this log (${size(log.size)} in all): <a href="#" id="whole-log" data-attempt="${a.number}">show it from the start</a> · <a href="/v1${logPath}?attempt=${a.number}" download="${esc(task.name)}.${a.number}.log">download it</a></p>`
      : log.got < log.size
      ? `<p class="muted">${size(log.got)} of ${size(log.size)} shown: <a href="#" class="more-log" data-attempt="${a.number}" data-got="${log.got}">show the next ${size(LOG_PAGE)}</a> · <a href="/v1${logPath}?attempt=${a.number}" download="${esc(task.name)}.${a.number}.log">download it</a></p>`
      : "";
    const open = logOpen.has(`${logPath}#${a.number}`) ? logOpen.get(`${logPath}#${a.number}`) : a.number === last;
    return `<details class="attempt-log" data-attempt="${a.number}" ${open ? "open" : ""}>
      <summary>Attempt ${a.number} ${badge(a.state)} <span class="muted">${esc(a.worker || "")} · ${size(log.size)}</span></summary>
      <pre class="log" id="${a.number === last ? "log" : `log-${a.number}`}">${esc(log.text) || "(no output)"}</pre>${more}</details>`;
  });
  const attempts = task.attempt_list.map((a) => `<tr><td>${a.number}</td><td>${badge(a.state)}</td><td>${esc(a.worker || "")}</td>
    <td>${when(a.started)}</td><td>${seconds(a.duration)}</td><td>${esc(exitText(a.exit_code))}</td><td>${esc(a.cause || "")}</td></tr>`);
  const outRun = task.source_run || id;
  const outputs = task.outputs.map((o) => `<li>${dataLink(`runs/${outRun}/${name}/${o}`, o)}</li>`);
  // What the task was given: the files it declared, and its dependencies' outputs under inputs/<dep>/.
  const inputs = (task.spec.inputs || []).map((i) => `<li>${dataLink(i, i)}</li>`);
  links.deps.forEach((d) => d.outputs.forEach((o) => inputs.push(
    `<li>${dataLink(`runs/${d.run}/${d.name}/${o}`, `inputs/${d.name}/${o}`)} <span class="muted">from <a href="#/run/${id}/task/${encodeURIComponent(d.name)}">${esc(d.name)}</a></span></li>`)));
  const deps = links.deps.map((d) => taskLink(id, d));
  const dependents = links.dependents.map((d) => taskLink(id, d));
  if (links.more_dependents) dependents.push(`<li class="muted">and ${links.more_dependents} more</li>`);
  const history = events.map((e) => `<tr><td>${when(e.time)}</td><td>${eventText(e, numbers, workers)}</td></tr>`);
  const unfinished = ["waiting", "ready", "running"].includes(task.state);
  main.innerHTML = `<p><a href="#/run/${id}">‹ run ${id}</a></p>
    <div class="card"><div class="row"><div class="grow"><h1>${esc(task.name)} ${badge(task.state)}</h1>
      <div class="muted">${task.attempts} attempt(s)${task.cause ? " · " + esc(task.cause) : ""}${task.exit_code && !(task.cause || "").includes(exitText(task.exit_code)) ? " · exit " + esc(exitText(task.exit_code)) : ""}</div></div>
      <button id="task-retry" ${["failed", "cancelled"].includes(task.state) ? "" : "disabled"}>Retry this task</button>
      <button id="task-cancel" class="danger" ${unfinished ? "" : "disabled"}>Cancel this task</button></div>
      ${task.result !== null && task.state === "succeeded" ? `<div>Result <span class="result">${esc(short(task.result))}</span></div>` : ""}
      <div class="muted"><code>${esc((task.spec.run || []).join(" && "))}</code></div></div>
    <div class="row" style="align-items:flex-start">
      <div class="card grow" id="deps"><h2>Depends on</h2><ul>${deps.join("") || '<li class="muted">no other task</li>'}</ul></div>
      <div class="card grow" id="dependents"><h2>Needed by</h2><ul>${dependents.join("") || '<li class="muted">no other task</li>'}</ul></div></div>
    <h2>Attempts</h2><div class="scroll"><table><thead><tr><th>#</th><th>State</th><th>Worker</th><th>Started</th><th>Duration</th><th>Exit</th><th>Cause</th></tr></thead><tbody>${attempts.join("")}</tbody></table></div>
    <h2>Logs</h2><div id="logs">${logBlocks.join("") || '<p class="muted">It has not run yet.</p>'}</div>
    <div class="row" style="align-items:flex-start"><div class="card grow" id="inputs"><h2>Inputs</h2><ul>${inputs.join("") || '<li class="muted">none</li>'}</ul></div>
      <div class="card grow" id="outputs"><h2>Outputs</h2><ul>${outputs.join("") || '<li class="muted">none</li>'}</ul></div></div>
    <h2>History</h2><table id="history"><tbody>${history.join("")}</tbody></table>`;
  // A log the user opened stays open as the page redraws.
  document.querySelectorAll("details.attempt-log").forEach((d) => {
    // The click comes before the toggle: what it will be is the opposite of what it is.
    d.querySelector("summary").onclick = () => logOpen.set(`${logPath}#${d.dataset.attempt}`, !d.open);
  });
  const whole = document.getElementById("whole-log");
  if (whole) whole.onclick = (e) => { e.preventDefault(); logShown.set(`${logPath}#${whole.dataset.attempt}`, LOG_PAGE); render(); };
  document.querySelectorAll(".more-log").forEach((link) => {
    link.onclick = (e) => {
      e.preventDefault();
      logShown.set(`${logPath}#${link.dataset.attempt}`, Number(link.dataset.got) + LOG_PAGE);
      render();
    };
  });
  document.getElementById("task-retry").onclick = () => act(`/runs/${id}/tasks/${enc}/retry`);
  document.getElementById("task-cancel").onclick = () => {
    if (confirm(`Cancel task ${name}? What runs after it will not run.`)) act(`/runs/${id}/tasks/${enc}/cancel`);
  };
  const pre = document.getElementById("log");
  if (pre && !logShown.has(`${logPath}#${last}`)) pre.scrollTop = pre.scrollHeight;  // how it ended
}

// A change asked of the boss; a refusal is shown, not lost.
async function act(path) {
  try {
    await api(path, { method: "POST" });
  } catch (e) {
    alert(e.message);
  }
  render();
}

function usageText(u) {
  if (!u) return { cpu: '<span class="muted">–</span>', memory: '<span class="muted">–</span>' };
  const cpu = u.cpu !== undefined
    ? `${Math.round(u.cpu)}%<div class="meter"><span style="width:${Math.min(100, u.cpu)}%"></span></div>` : "–";
  const load = u.load !== undefined ? `<div class="muted">load ${u.load.toFixed(2)} on ${u.cores} cores</div>` : "";
  const share = u.memory_total ? (100 * u.memory_used) / u.memory_total : null;
  const memory = share !== null
    ? `${size(u.memory_used)} of ${size(u.memory_total)}<div class="meter"><span style="width:${share}%"></span></div>` : "–";
  return { cpu: cpu + load, memory };
}

async function workersPage() {
  const [workers, runs] = await Promise.all([api("/workers"), api("/runs")]);
  // What each worker runs now: the running tasks of the running runs.
  const pages = await Promise.all(runs.filter((r) => r.state === "running").map((r) =>
    api(`/runs/${r.run}/page?state=running&limit=1000`).then((page) => page.tasks.map((t) => ({ run: r.run, ...t })))));
  const current = {};
  pages.flat().forEach((t) => { (current[t.worker] = current[t.worker] || []).push(t); });
  const now = Date.now() / 1000;
  const rows = workers.map((w) => {
    const usage = usageText(w.state === "active" ? w.usage : null);
    const tasks = w.state === "active" ? (current[w.name] || []) : [];
    const list = tasks.slice(0, 8).map((t) => `<a href="#/run/${t.run}/task/${encodeURIComponent(t.name)}">${esc(t.name)}</a>`).join(", ")
      + (tasks.length > 8 ? ` <span class="muted">and ${tasks.length - 8} more</span>` : "");
    const state = w.order === "drain" ? `${badge(w.state)} <span class="muted">draining</span>`
      : w.order === "stop" ? `${badge(w.state)} <span class="muted">stopping</span>` : badge(w.state);
    const buttons = w.state === "active"
      ? `<button class="drain" data-worker="${w.id}" ${w.order ? "disabled" : ""}>Drain</button>
         <button class="stop danger" data-worker="${w.id}" ${w.order === "stop" ? "disabled" : ""}>Stop</button>` : "";
    return `<tr data-worker="${esc(w.name)}"><td>${esc(w.name)}</td><td>${esc(w.host)}</td><td>${state}</td>
      <td>${w.running} / ${w.slots}</td><td class="cpu">${usage.cpu}</td><td class="memory">${usage.memory}</td>
      <td class="current">${list || '<span class="muted">–</span>'}</td>
      <td>${w.done}</td><td>${w.failed}</td><td>${seconds(now - w.last_sync)} ago</td><td class="actions">${buttons}</td></tr>`;
  });
  main.innerHTML = `<h1>Workers</h1><div class="scroll"><table id="workers"><thead><tr><th>Worker</th><th>Host</th><th>State</th><th>Slots in use</th>
    <th>CPU</th><th>Memory</th><th>Running now</th><th>Done</th><th>Failed</th><th>Last sync</th><th></th></tr></thead>
    <tbody>${rows.join("") || '<tr><td colspan="11" class="muted">No workers yet: shoal worker --boss URL</td></tr>'}</tbody></table></div>`;
  document.querySelectorAll("button.drain").forEach((b) => {
    b.onclick = () => act(`/workers/${b.dataset.worker}/drain`);
  });
  document.querySelectorAll("button.stop").forEach((b) => {
    b.onclick = () => {
      if (confirm("Stop this worker now? What it runs will run again elsewhere.")) act(`/workers/${b.dataset.worker}/stop`);
    };
  });
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
// The change feed: "live" while it is open, "offline" while the boss is out
// of reach; it connects again by itself, and the page catches up then.
const live = document.getElementById("live");
let feed = null, offline = false;
function follow() {
  feed = new EventSource("/v1/stream");
  feed.onmessage = soon;
  feed.onopen = () => {
    live.classList.remove("off");
    live.textContent = "● live";
    if (offline) { offline = false; render(); }
  };
  feed.onerror = () => {
    offline = true;
    live.classList.add("off");
    live.textContent = "● offline";
    // A stream the browser gave up on (the boss answered with an error) is opened anew.
    if (feed.readyState === EventSource.CLOSED) setTimeout(follow, 2000);
  };
}
follow();
render();

document.getElementById("logout").onclick = async () => {
  await fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "X-Shoal-CSRF": csrf() } });
  location.href = "/login";
};
