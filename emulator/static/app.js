/* serverless-emulator dashboard.
 *
 * Data: GET /v1/dashboard once, then the SSE stream /v1/events/stream ("snapshot" after each change,
 * "transition" for every worker state change). Uptimes and countdowns tick locally once a second;
 * nothing polls the server except the log drawer while it is open and following.
 * With EMULATOR_API_KEY set, the key is asked for once and kept in sessionStorage.
 */
"use strict";

(() => {
  const KEY_STORE = "serverless-emulator.apiKey";
  const STATES = ["INITIALIZING", "IDLE", "RUNNING", "THROTTLED", "OUTDATED", "UNHEALTHY"];
  const MAX_EVENTS = 500;        // per endpoint, in the page
  const SHOWN_EVENTS = 120;      // rows in the timeline list
  const LANE_WINDOW_MAX_S = 300; // the swimlanes show at most the last five minutes
  const LANE_WINDOW_MIN_S = 6;
  const MAX_LANES = 10;
  const LOG_FOLLOW_MS = 2000;

  const st = {
    key: sessionStorage.getItem(KEY_STORE) || "",
    snap: null,
    offset: 0,              // server clock minus this browser's clock, in seconds
    events: new Map(),      // endpoint id -> transitions, oldest first
    seen: new Set(),        // "seq:at" of transitions already held
    selected: null,
    es: null,
    bootTimer: null,
    log: { worker: null, endpoint: null, job: null, timer: null, busy: false },
  };

  // --- helpers -------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
  const serverNow = () => Date.now() / 1000 + st.offset;
  const authHeaders = () => (st.key ? { Authorization: "Bearer " + st.key } : {});

  function fmtDuration(s) {
    if (s == null || !isFinite(s)) return "—";
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60 ? " " + String(s % 60).padStart(2, "0") + "s" : "");
    if (s < 86400) return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function fmtMs(ms) {
    if (ms == null || !isFinite(ms)) return "—";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    return fmtDuration(ms / 1000);
  }

  function fmtClock(epochS) {
    const d = new Date(epochS * 1000);
    const p = (n, w = 2) => String(n).padStart(w, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  const ago = (epochS) => (epochS ? fmtDuration(serverNow() - epochS) + " ago" : "—");
  const untilText = (epochS) => {
    if (!epochS) return "—";
    const left = epochS - serverNow();
    return left <= 0 ? "due" : "in " + fmtDuration(Math.ceil(left));
  };
  const shortId = (id, n = 8) => (id && id.length > n + 2 ? id.slice(0, n) + "…" : id || "");

  async function api(path) {
    const r = await fetch(path, { headers: authHeaders(), cache: "no-store" });
    if (r.status === 401) {
      const e = new Error("unauthorized");
      e.status = 401;
      throw e;
    }
    if (!r.ok) {
      const e = new Error(`${path}: HTTP ${r.status}`);
      e.status = r.status;
      throw e;
    }
    return r;
  }

  // --- connection ------------------------------------------------------------------------------
  function setConn(state, text) {
    const el = $("conn");
    el.dataset.state = state;
    const labels = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", error: "Offline", auth: "Locked" };
    el.querySelector(".conn-text").textContent = text || labels[state] || state;
  }

  function scheduleBoot(ms) {
    clearTimeout(st.bootTimer);
    st.bootTimer = setTimeout(boot, ms);
  }

  async function boot() {
    clearTimeout(st.bootTimer);
    if (!st.es) setConn("connecting");
    try {
      const snap = await (await api("/v1/dashboard")).json();
      hideKeyModal();
      applySnapshot(snap);
      connect();
    } catch (e) {
      if (e.status === 401) {
        if (st.es) { st.es.close(); st.es = null; }
        setConn("auth");
        showKeyModal(st.key ? "That key was not accepted." : "");
      } else {
        setConn("error", "Offline · retrying");
        scheduleBoot(3000);
      }
    }
  }

  function connect() {
    if (st.es) st.es.close();
    // a fresh stream replays the recent history: start the timeline afresh
    st.events.clear();
    st.seen.clear();
    const url = "/v1/events/stream" + (st.key ? "?key=" + encodeURIComponent(st.key) : "");
    const es = (st.es = new EventSource(url));
    es.addEventListener("open", () => setConn("live"));
    es.addEventListener("snapshot", (ev) => {
      setConn("live");
      applySnapshot(JSON.parse(ev.data));
    });
    es.addEventListener("transition", (ev) => addTransition(JSON.parse(ev.data)));
    es.addEventListener("error", () => {
      if (es !== st.es) return;
      setConn("reconnecting");
      if (es.readyState === EventSource.CLOSED) {
        // the browser gave up (e.g. 401 after a key change, or the server went away): start over
        es.close();
        st.es = null;
        scheduleBoot(2000);
      }
    });
  }

  function addTransition(t) {
    const id = t.seq + ":" + t.at;
    if (st.seen.has(id)) return;
    st.seen.add(id);
    if (st.seen.size > 20000) st.seen.clear();
    let list = st.events.get(t.endpoint);
    if (!list) st.events.set(t.endpoint, (list = []));
    list.push(t);
    if (list.length > MAX_EVENTS) list.splice(0, list.length - MAX_EVENTS);
    // the snapshot that follows re-renders; nothing to draw here
  }

  function applySnapshot(snap) {
    st.snap = snap;
    st.offset = snap.now - Date.now() / 1000;
    $("forget-key").hidden = !snap.authRequired;
    $("runtime").textContent = "runtime: " + snap.runtime;
    const ids = new Set(snap.endpoints.map((e) => e.id));
    for (const key of st.events.keys()) if (!ids.has(key)) st.events.delete(key);
    select();
  }

  function select() {
    const ids = new Set(st.snap.endpoints.map((e) => e.id));
    const wanted = decodeURIComponent((location.hash.match(/endpoint=([^&]+)/) || [])[1] || "");
    st.selected = ids.has(wanted) ? wanted : ids.has(st.selected) ? st.selected : st.snap.endpoints[0]?.id ?? null;
    render();
  }

  // --- rendering ---------------------------------------------------------------------------------
  function render() {
    const snap = st.snap;
    if (!snap) return;
    renderTotals(snap);
    renderSidebar(snap);
    const main = $("main");
    const scroll = main.querySelector(".events")?.scrollTop ?? 0;
    const ep = snap.endpoints.find((e) => e.id === st.selected);
    main.innerHTML = ep ? endpointView(ep) : emptyView();
    const events = main.querySelector(".events");
    if (events) events.scrollTop = scroll;
    tick();
  }

  function renderTotals(snap) {
    let workers = 0, running = 0, queued = 0, inProgress = 0, unhealthy = 0;
    for (const ep of snap.endpoints) {
      const s = ep.workers.summary;
      workers += s.total;
      running += s.running;
      unhealthy += s.unhealthy;
      queued += ep.queue.inQueue;
      inProgress += ep.queue.inProgress;
    }
    const item = (label, value) => `<span class="total"><b>${value}</b>${label}</span>`;
    $("totals").innerHTML =
      item(snap.endpoints.length === 1 ? "endpoint" : "endpoints", snap.endpoints.length) +
      item(workers === 1 ? "worker" : "workers", workers) +
      item("running", running) +
      item("in queue", queued) +
      item("in progress", inProgress) +
      (unhealthy ? item("unhealthy", unhealthy) : "");
  }

  function renderSidebar(snap) {
    const list = $("endpoint-list");
    if (!snap.endpoints.length) {
      list.innerHTML = `<li class="muted" style="padding: 8px 10px; font-size: 13px">None yet</li>`;
      return;
    }
    list.innerHTML = snap.endpoints
      .map((ep) => {
        const dots = ep.workers.workers
          .slice(0, 14)
          .map((w) => `<span class="dot bg-${esc(w.status)}" title="${esc(w.id)}: ${esc(w.status)}"></span>`)
          .join("");
        const n = ep.workers.summary.total;
        return `<li><a href="#endpoint=${encodeURIComponent(ep.id)}" data-endpoint="${esc(ep.id)}"
            class="${ep.id === st.selected ? "active" : ""}">
          <span class="ep-name">${esc(ep.name)}</span>
          <span class="ep-sub">${dots ? `<span class="dots">${dots}</span>` : ""}${n} worker${n === 1 ? "" : "s"} · ${ep.queue.inQueue} queued</span>
        </a></li>`;
      })
      .join("");
  }

  function emptyView() {
    const origin = esc(location.origin);
    return `<div class="empty">
      <h2>No endpoints yet</h2>
      <p>Create one with the management API (or declare it in <code>endpoints.toml</code>):</p>
      <pre>curl -X POST ${origin}/v1/endpoints -H 'Content-Type: application/json' \\
  -d '{"name": "echo", "imageName": "serverless-emulator/sample-echo:latest"}'</pre>
    </div>`;
  }

  function endpointView(ep) {
    return [header(ep), rolloutBanner(ep), kpis(ep), workersCard(ep),
      `<div class="grid2">${ep.type === "LB" ? requestsCard(ep) : jobsCard(ep)}${timelineCard(ep)}</div>`].join("");
  }

  function header(ep) {
    const chip = (label, value) => `<span class="chip">${label} <b>${esc(value)}</b></span>`;
    const chips = [
      ep.type === "LB" ? chip("type", "load-balancing") : "",
      chip("workers", `${ep.workersMin}–${ep.workersMax}`),
      chip("extra", ep.extraWorkers),
      chip(ep.scalerType === "QUEUE_DELAY" ? "queue delay" : "request count", ep.scalerValue + (ep.scalerType === "QUEUE_DELAY" ? " s" : "")),
      chip("GPUs", ep.gpuCount),
      chip("idle timeout", ep.idleTimeout + " s"),
      chip("exec timeout", fmtMs(ep.executionTimeoutMs)),
      ep.flashboot ? chip("FlashBoot", "on") : "",
    ].join("");
    return `<div class="ep-head">
      <div>
        <h1 class="ep-title">${esc(ep.name)} <span class="version-pill" title="endpoint version">v${ep.version}</span></h1>
        <div class="ep-ident"><span>id <span class="mono">${esc(ep.id)}</span></span><span>image <span class="mono">${esc(ep.imageName)}</span></span></div>
      </div>
      <div class="chips">${chips}</div>
    </div>`;
  }

  function rolloutBanner(ep) {
    if (!ep.rollout) return "";
    const r = ep.rollout;
    return `<div class="banner"><b>Rollout ${esc(r.status || "")}</b> ${esc(r.reason || "")}</div>`;
  }

  function kpis(ep) {
    const s = ep.workers.summary;
    const total = s.total || 0;
    const bar = STATES.map((state) => {
      const n = s[state.toLowerCase()] || 0;
      return n ? `<span class="bg-${state}" style="width:${(100 * n) / total}%" title="${n} ${state}"></span>` : "";
    }).join("");
    const legend = STATES.filter((state) => s[state.toLowerCase()])
      .map((state) => `<span><i class="dot bg-${state}"></i>${s[state.toLowerCase()]} ${state.toLowerCase()}</span>`)
      .join("");
    const c = ep.counters;
    const failed = c.failed + c.timedOut;
    const tile = (label, value, extra = "", cls = "") =>
      `<div class="kpi ${cls}"><div class="kpi-label">${label}</div><div class="kpi-value">${value}${extra}</div></div>`;
    const workersTile = `<div class="kpi"><div class="kpi-label">Workers</div>
        <div class="kpi-value">${s.idle + s.running}<small>ready of ${total}</small></div>
        <div class="statebar">${bar}</div><div class="legend">${legend || '<span class="muted">no workers</span>'}</div></div>`;
    if (ep.type === "LB") return lbKpis(ep, workersTile, tile);
    return `<div class="kpis">
      ${workersTile}
      ${tile("In queue", ep.queue.inQueue, ep.queue.inQueue ? `<small>oldest ${fmtMs(ep.queue.oldestWaitS * 1000)}</small>` : "")}
      ${tile("In progress", ep.queue.inProgress)}
      ${tile("Completed", c.completed)}
      ${tile("Failed", failed, c.timedOut ? `<small>${c.timedOut} timed out</small>` : "", failed ? "kpi-bad" : "")}
      ${tile("Retried", c.retried, `<small>requeued: retry or lost worker${c.cancelled ? ` · ${c.cancelled} cancelled` : ""}</small>`)}
    </div>
    <div class="card-note kpi-window">Job counts since the endpoint was created${ep.countersSince ? ` (${ago(ep.countersSince)})` : ""}, kept across restarts.</div>`;
  }

  // load-balancing endpoints have no jobs: requests waiting, in flight, and the recent answers
  function lbKpis(ep, workersTile, tile) {
    const reqs = ep.requests || [];
    const answered = reqs.filter((r) => r.status < 400).length;
    const errors = reqs.length - answered;
    return `<div class="kpis">
      ${workersTile}
      ${tile("Waiting", ep.queue.inQueue, "<small>for a worker</small>")}
      ${tile("In flight", ep.queue.inProgress)}
      ${tile("Answered", answered, "<small>2xx / 3xx</small>")}
      ${tile("Errors", errors, "<small>4xx / 5xx</small>", errors ? "kpi-bad" : "")}
    </div>
    <div class="card-note kpi-window">Answers counted over the ${reqs.length} most recent request(s) below.</div>`;
  }

  function workersCard(ep) {
    const workers = ep.workers.workers;
    const rows = workers.length
      ? workers.map((w) => workerRow(w)).join("")
      : `<tr class="empty-row"><td colspan="10">No workers. They appear here as the supervisor starts them (or when you register one).</td></tr>`;
    return `<section class="card" id="workers-card">
      <div class="card-head">
        <div class="card-title">Workers <span class="count">${ep.workers.summary.total}</span>${ep.workers.summary.standby ? ` <span class="count" title="standby containers (extraWorkers): created, not started">+${ep.workers.summary.standby} standby</span>` : ""}</div>
        <div class="card-note">endpoint version v${ep.workers.endpointVersion}</div>
      </div>
      <div class="table-wrap"><table class="workers">
        <thead><tr>
          <th>Worker</th><th>State</th><th>Version</th><th>GPUs</th><th>Current job</th>
          <th>Uptime</th><th class="num">Restarts</th><th>Reason</th><th>Next retry</th><th></th>
        </tr></thead>
        <tbody>${rows}</tbody>
      </table></div>
    </section>`;
  }

  function workerRow(w) {
    const flags = [w.kind, w.paused ? "paused" : "", w.standby ? "extraWorkers, not started" : "", w.stopping ? "stopping" : ""]
      .filter(Boolean).join(" · ");
    const jobs = w.jobIds.length === 1 && w.jobIds[0] === "http-requests"  // load-balancing: requests in flight
      ? '<span title="HTTP requests in flight (load-balancing)">requests</span>'
      : w.jobIds.length
      ? `<span title="${esc(w.jobIds.join("\n"))}">${esc(shortId(w.jobIds[0], 8))}</span>` +
        (w.jobIds.length > 1 ? `<span class="more">+${w.jobIds.length - 1}</span>` : "")
      : `<span class="muted">—</span>`;
    const bad = w.status === "UNHEALTHY" || w.status === "THROTTLED";
    const p = w.pull;  // an image pull in progress: layers and bytes done of total
    const pulling = p && p.status !== "complete" && p.status !== "failed"
      ? `<progress class="pull" max="${p.bytesTotal || 1}" value="${p.bytesDone || 0}" title="${esc(`${p.layersDone}/${p.layersTotal} layers`)}"></progress>`
      : "";
    return `<tr data-worker="${esc(w.id)}" data-state="${esc(w.status)}">
      <td><span class="worker-id mono">${esc(w.id)}</span><span class="worker-kind">${esc(flags)}</span></td>
      <td><span class="badge s-${esc(w.status)}">${esc(w.status)}</span></td>
      <td class="nowrap version-cell">v${w.version}${w.isStale ? '<span class="flag flag-stale" title="older than the endpoint\'s version">stale</span>' : ""}</td>
      <td class="mono">${w.gpuIds.length ? esc(w.gpuIds.join(", ")) : '<span class="muted">—</span>'}</td>
      <td class="mono job-cell nowrap" data-jobs="${esc(w.jobIds.join(","))}">${jobs}</td>
      <td class="nowrap" data-since="${w.startedAt ?? ""}">${w.startedAt ? fmtDuration(serverNow() - w.startedAt) : "—"}</td>
      <td class="num">${w.restarts ? `<b>${w.restarts}</b>` : '<span class="muted">0</span>'}</td>
      <td><div class="reason ${bad ? "bad" : ""}" title="${esc(w.reason || "")}">${w.reason ? esc(w.reason) : '<span class="muted">—</span>'}</div>${pulling}</td>
      <td class="nowrap" data-until="${w.nextRetryAt ?? ""}">${untilText(w.nextRetryAt)}</td>
      <td><button class="btn" data-logs="${esc(w.id)}" title="Show this worker's output">Logs</button></td>
    </tr>`;
  }

  function jobsCard(ep) {
    const jobs = ep.jobs;
    const longest = Math.max(1, ...jobs.map((j) => (j.delayTime || 0) + (j.executionTime || 0)));
    const rows = jobs.length
      ? jobs.map((j) => jobRow(j, longest)).join("")
      : `<tr class="empty-row"><td colspan="4">No jobs yet. Send one to <span class="mono">POST /v2/${esc(ep.id)}/run</span>.</td></tr>`;
    const q = ep.queue;
    return `<section class="card" id="jobs-card">
      <div class="card-head"><div class="card-title">Queue and recent jobs <span class="count">${jobs.length}</span></div>
        <div class="card-note">${recentWindow(ep)}</div></div>
      <div class="queue-line">
        <span><b>${q.inQueue}</b> in queue</span><span><b>${q.inProgress}</b> in progress</span>
        <span><b>${q.takers}</b> worker${q.takers === 1 ? "" : "s"} waiting for work</span>
        ${q.inQueue ? `<span>oldest waiting <b>${fmtMs(q.oldestWaitS * 1000)}</b></span>` : ""}
      </div>
      <div class="table-wrap"><table class="jobs">
        <thead><tr><th>Job</th><th>Status</th><th>Delay · execution</th><th>Cold start</th></tr></thead>
        <tbody>${rows}</tbody>
      </table></div>
    </section>`;
  }

  function recentWindow(ep) {
    const r = ep.recentJobs;
    if (!r) return "newest first";
    return `the newest ${r.limit} still kept (results stay ${fmtDuration(r.runRetentionS)} after /run, ` +
      `${fmtDuration(r.syncRetentionS)} after /runsync), newest first`;
  }

  // load-balancing endpoints: no queue; the last requests the proxy served
  function requestsCard(ep) {
    const reqs = ep.requests || [];
    const rows = reqs.length
      ? reqs.map(requestRow).join("")
      : `<tr class="empty-row"><td colspan="5">No requests yet. Send one to <span class="mono">/lb/${esc(ep.id)}/…</span>.</td></tr>`;
    const q = ep.queue;
    return `<section class="card" id="requests-card">
      <div class="card-head"><div class="card-title">Recent requests <span class="count">${reqs.length}</span></div>
        <div class="card-note">newest first</div></div>
      <div class="queue-line">
        <span><b>${q.inQueue}</b> waiting for a worker</span><span><b>${q.inProgress}</b> in flight</span>
      </div>
      <div class="table-wrap"><table class="jobs requests">
        <thead><tr><th>Request</th><th>Status</th><th>Worker</th><th>Time</th><th>Cold start</th></tr></thead>
        <tbody>${rows}</tbody>
      </table></div>
    </section>`;
  }

  function requestRow(r) {
    const ok = r.status >= 200 && r.status < 400;
    const cs = r.coldStart;
    const cold = cs
      ? `<span class="cold-tag cold-yes">cold</span><span class="cold-parts">${[["create", cs.createS], ["start", cs.startS], ["ready", cs.readyS]]
          .filter(([, v]) => v != null).map(([k, v]) => `${k} ${fmtMs(v * 1000)}`).join(" · ")}</span>`
      : '<span class="muted">—</span>';
    return `<tr data-request-status="${esc(r.status)}">
      <td class="job-id-cell"><span class="mono nowrap">${esc(r.method)} ${esc(shortId(r.path, 40))}</span>
        <span class="job-sub"><span data-ago="${r.at ?? ""}">${ago(r.at)}</span></span></td>
      <td><span class="badge small ${ok ? "j-COMPLETED" : "j-FAILED"}">${esc(r.status)}</span></td>
      <td>${r.workerId ? `<span class="mono">${esc(r.workerId)}</span>` : '<span class="muted">—</span>'}</td>
      <td class="timing"><div class="ttext"><b>${fmtMs(r.ms)}</b>${r.waitMs ? ` · waited ${fmtMs(r.waitMs)}` : ""}</div></td>
      <td class="cold">${cold}</td>
    </tr>`;
  }

  function jobRow(j, longest) {
    const delay = j.delayTime || 0;
    const exec = j.executionTime || 0;
    const cs = j.coldStart;
    const isCold = cs && cs.coldStart;
    const wPct = (100 * delay) / longest;
    const ePct = (100 * exec) / longest;
    let cold = '<span class="muted">—</span>';
    if (cs) {
      const parts = [
        ["pull", cs.pullMs], ["create", cs.createMs], ["start", cs.startMs], ["ready", cs.readyMs],
      ].filter(([, v]) => v != null).map(([k, v]) => `${k} ${fmtMs(v)}`);
      cold = isCold
        ? `<span class="cold-tag cold-yes">cold</span>${parts.length ? `<span class="cold-parts">${parts.join(" · ")}</span>` : ""}`
        : `<span class="cold-tag cold-no">warm</span>`;
      cold += `<span class="cold-parts">queue wait ${fmtMs(cs.queueWaitMs)}</span>`;
    }
    const err = (j.error ? `<span class="job-error" title="${esc(j.error)}">${esc(j.error)}</span>` : "") +
      (j.resultRefused && !(j.error || "").includes(j.resultRefused)
        ? `<span class="job-error" title="${esc(j.resultRefused)}">result refused: ${esc(j.resultRefused)}</span>` : "");
    const oa = j.openai;  // an /openai/* call: its route and, streamed, time to first chunk and chunk rate
    const oaLine = oa
      ? `<div class="ttext oa-line" title="OpenAI-compatible call${oa.stream ? " (streamed)" : ""}"><span class="mono">${esc(oa.route || "")}</span>${
          oa.ttftMs != null ? ` · TTFT <b>${fmtMs(oa.ttftMs)}</b>` : ""}${
          oa.chunksPerS != null ? ` · <b>${oa.chunksPerS}</b> chunks/s` : ""}${
          oa.chunks != null ? ` · ${oa.chunks} chunk${oa.chunks === 1 ? "" : "s"}` : ""}</div>`
      : "";
    return `<tr data-job="${esc(j.id)}" data-status="${esc(j.status)}">
      <td class="job-id-cell">
        <span class="mono nowrap" title="${esc(j.id)}">${esc(shortId(j.id, 13))}</span>${j.retries ? `<span class="flag flag-info" title="put back in the queue ${j.retries} time(s): a retry or a lost worker">retried ×${j.retries}</span>` : ""}
        <span class="job-sub">${j.workerId ? `on <span class="mono">${esc(j.workerId)}</span> · <button class="btn btn-link" data-logs="${esc(j.workerId)}" data-job="${esc(j.id)}" title="This job's output lines">logs</button> · ` : ""}<span data-ago="${j.createdAt ?? ""}">${ago(j.createdAt)}</span></span>${err}
      </td>
      <td><span class="badge small j-${esc(j.status)}">${esc(j.status.replace("_", " "))}</span></td>
      <td class="timing">
        <div class="ttext"><b>${fmtMs(delay)}</b> delay · <b>${j.status === "IN_QUEUE" ? "—" : fmtMs(exec)}</b> run</div>
        <div class="tbar"><span class="${isCold ? "t-cold" : "t-wait"}" style="width:${wPct}%"></span><span class="t-exec" style="width:${ePct}%"></span></div>${oaLine}
      </td>
      <td class="cold">${cold}</td>
    </tr>`;
  }

  function timelineCard(ep) {
    const events = st.events.get(ep.id) || [];
    const shown = events.slice(-SHOWN_EVENTS).reverse();
    const items = shown.length
      ? shown.map((t) => `<li data-seq="${t.seq}">
          <span class="ev-time" title="${esc(new Date(t.at * 1000).toISOString())}">${fmtClock(t.at)}</span>
          <div class="ev-main">
            <span class="ev-worker">${esc(t.worker)}</span>
            ${t.from ? `<span class="badge small s-${esc(t.from)}">${esc(t.from)}</span><span class="ev-arrow">→</span>` : ""}
            <span class="badge small s-${esc(t.to)}">${esc(t.to)}</span>
            <span class="ev-reason" title="${esc(t.reason)}">${esc(t.reason)}</span>
          </div>
        </li>`).join("")
      : `<li class="muted" style="display:block; padding: 22px 16px; text-align:center">No state changes since the emulator started.</li>`;
    return `<section class="card" id="timeline-card">
      <div class="card-head"><div class="card-title">Timeline <span class="count">${events.length}</span></div>
        <div class="card-note">worker state changes</div></div>
      <div class="lanes" id="lanes">${lanes(ep)}</div>
      <ul class="events">${items}</ul>
    </section>`;
  }

  function lanes(ep) {
    const events = st.events.get(ep.id) || [];
    if (!events.length) return `<div class="muted" style="font-size: 12.5px">Lanes appear with the first state change.</div>`;
    const now = serverNow();
    const span = Math.min(LANE_WINDOW_MAX_S, Math.max(LANE_WINDOW_MIN_S, (now - events[0].at) * 1.15));
    const start = now - span;
    const byWorker = new Map();
    for (const t of events) {
      if (!byWorker.has(t.worker)) byWorker.set(t.worker, []);
      byWorker.get(t.worker).push(t);
    }
    const current = new Set(ep.workers.workers.map((w) => w.id));
    const names = [...byWorker.keys()]
      .sort((a, b) => (current.has(b) - current.has(a)) || (byWorker.get(b).at(-1).at - byWorker.get(a).at(-1).at))
      .slice(0, MAX_LANES)
      .sort((a, b) => byWorker.get(a)[0].at - byWorker.get(b)[0].at);
    const pct = (t) => (100 * (Math.min(now, Math.max(start, t)) - start)) / span;
    const rows = names.map((name) => {
      const list = byWorker.get(name);
      const segs = [];
      list.forEach((t, i) => {
        if (t.to === "REMOVED") return;
        const end = i + 1 < list.length ? list[i + 1].at : now;
        if (end < start) return;
        const left = pct(t.at);
        const width = Math.max(0.4, pct(end) - left);
        segs.push(`<span class="lane-seg bg-${esc(t.to)}" style="left:${left}%;width:${width}%"
          title="${esc(t.to)} from ${fmtClock(t.at)}"></span>`);
      });
      return `<div class="lane"><span class="lane-name" title="${esc(name)}">${esc(name)}</span><div class="lane-track">${segs.join("")}</div></div>`;
    });
    return rows.join("") + `<div class="lane-axis"><span>${fmtDuration(span)} ago</span><span>now</span></div>`;
  }

  // --- once a second: local clocks only ------------------------------------------------------------
  function tick() {
    const main = $("main");
    for (const el of main.querySelectorAll("[data-since]")) {
      const v = parseFloat(el.dataset.since);
      if (v) el.textContent = fmtDuration(serverNow() - v);
    }
    for (const el of main.querySelectorAll("[data-until]")) el.textContent = untilText(parseFloat(el.dataset.until) || null);
    for (const el of main.querySelectorAll("[data-ago]")) el.textContent = ago(parseFloat(el.dataset.ago) || null);
    const lanesEl = $("lanes");
    const ep = st.snap?.endpoints.find((e) => e.id === st.selected);
    if (lanesEl && ep) lanesEl.innerHTML = lanes(ep);
  }

  // --- logs ------------------------------------------------------------------------------------------
  async function loadLogs() {
    const worker = st.log.worker;
    if (!worker || st.log.busy) return;
    st.log.busy = true;
    const body = $("log-body");
    const tail = $("log-tail").value;
    try {
      // the endpoint's kept logs first (they outlive the worker; a job's lines by its id), else the container's
      let text = "";
      if (st.log.endpoint) {
        const filter = st.log.job ? `job=${encodeURIComponent(st.log.job)}` : `worker=${encodeURIComponent(worker)}`;
        const kept = await (await api(`/v1/endpoints/${encodeURIComponent(st.log.endpoint)}/logs?${filter}&limit=${tail}`)).json();
        text = kept.lines.map((l) => l.line).join("\n");
      }
      if (!text && !st.log.job) text = await (await api(`/v1/workers/${encodeURIComponent(worker)}/logs?tail=${tail}`)).text();
      if (worker !== st.log.worker) return;
      const atBottom = body.scrollTop + body.clientHeight >= body.scrollHeight - 8;
      if (text) body.textContent = text;
      else body.innerHTML = '<span class="log-empty">No output captured for this worker (yet). Workers you run yourself (--runtime none) keep their output in your terminal.</span>';
      if ($("log-follow").checked || atBottom) body.scrollTop = body.scrollHeight;
      $("log-status").textContent = `last ${tail} lines · fetched ${fmtClock(Date.now() / 1000)}`;
    } catch (e) {
      if (e.status === 404) {
        body.innerHTML = '<span class="log-empty">This worker no longer exists.</span>';
        stopFollow();
      } else if (e.status === 401) {
        boot();
      } else {
        $("log-status").textContent = "could not fetch logs: " + e.message;
      }
    } finally {
      st.log.busy = false;
    }
  }

  function stopFollow() {
    clearInterval(st.log.timer);
    st.log.timer = null;
  }

  function syncFollow() {
    stopFollow();
    if (st.log.worker && $("log-follow").checked) st.log.timer = setInterval(loadLogs, LOG_FOLLOW_MS);
  }

  function openLogs(worker, job = null) {
    st.log.worker = worker;
    st.log.endpoint = st.selected;
    st.log.job = job;
    $("log-worker").textContent = job ? `job ${job}` : worker;
    $("log-body").textContent = "";
    $("log-status").textContent = "loading…";
    $("log-drawer").hidden = false;
    loadLogs();
    syncFollow();
  }

  function closeLogs() {
    st.log.worker = null;
    stopFollow();
    $("log-drawer").hidden = true;
  }

  // --- API key -----------------------------------------------------------------------------------------
  function showKeyModal(error) {
    $("key-error").textContent = error || "";
    $("key-modal").hidden = false;
    setTimeout(() => $("key-input").focus(), 0);
  }

  function hideKeyModal() {
    $("key-modal").hidden = true;
  }

  // --- wiring --------------------------------------------------------------------------------------------
  document.addEventListener("click", (ev) => {
    const logs = ev.target.closest("[data-logs]");
    if (logs) {
      openLogs(logs.dataset.logs, logs.dataset.job || null);
      return;
    }
    const link = ev.target.closest("[data-endpoint]");
    if (link) st.selected = link.dataset.endpoint; // the hash change re-renders
  });
  window.addEventListener("hashchange", () => st.snap && select());
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("log-drawer").hidden) closeLogs();
  });
  $("log-close").addEventListener("click", closeLogs);
  $("log-refresh").addEventListener("click", loadLogs);
  $("log-tail").addEventListener("change", loadLogs);
  $("log-follow").addEventListener("change", syncFollow);
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    st.key = $("key-input").value.trim();
    sessionStorage.setItem(KEY_STORE, st.key);
    $("key-input").value = "";
    boot();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    st.key = "";
    if (st.es) { st.es.close(); st.es = null; }
    boot();
  });

  setInterval(tick, 1000);
  boot();
})();
