// The live dashboard: polls the API's own JSON once a second and draws it with uPlot.
//   /           once: what the service is (feed, stage cores, SLOs, version)
//   /history    every second, only the points since the last one drawn (?after=T), for the
//               charts, and the state at the newest one (the /latest document: stage map,
//               readiness, kill switch, rejects, positions, rings). Both are made once per
//               reading of the engine by the API's sampler, so open pages cost it no reading.
//   /host       every ten seconds: the host tuning verdict
// Every URL is relative, so the page works behind an SSH tunnel or a path prefix alike.
"use strict";

(() => {
  const POLL_MS = 1000;
  const HOST_POLL_MS = 10000;
  const TIMEOUT_MS = 2500; // a request that takes longer counts as the API not answering
  const LATENCY_PATHS = [
    ["tick_to_order", "Tick to order"],
    ["md_to_engine", "Market data to engine"],
    ["feed_lag", "Feed lag"],
    ["order_wait", "Order wait in the batcher"],
  ];
  const PERCENTILES = [["p50", "p50", "#1b5fb4"], ["p90", "p90", "#2e7d32"],
    ["p99", "p99", "#b35900"], ["p999", "p99.9", "#8e24aa"]];
  const SLO_LINES = [["tick_to_order_p50_us", "SLO p50"], ["tick_to_order_p99_us", "SLO p99"],
    ["tick_to_order_p999_us", "SLO p99.9"]];

  const $ = (id) => document.getElementById(id);
  const state = { info: null, points: [], span: 300, lastT: null, lastAnswer: null,
    charts: [] };

  // ------------------------------------------------------------------ formatting
  const num = (v) => (v == null ? "–" : Math.round(v).toLocaleString("en-US"));
  const rate = (v) => (v == null ? "–" : `${num(v)} /s`);
  const micros = (ns) => (ns == null ? null : ns / 1000);
  function age(s) {
    if (s == null) return "never";
    return s < 10 ? `${s.toFixed(2)} s` : `${Math.round(s)} s`;
  }
  function clock(t) { return new Date(t).toLocaleTimeString("en-GB"); }
  function text(id, value) { $(id).textContent = value; }
  function rows(tbody, items) { // items: arrays of [text, className?]
    const body = typeof tbody === "string" ? $(tbody).tBodies[0] : tbody;
    body.replaceChildren(...items.map((cells) => {
      const tr = document.createElement("tr");
      for (const [value, cls] of cells) {
        const td = document.createElement("td");
        td.textContent = value;
        if (cls) td.className = cls;
        tr.append(td);
      }
      return tr;
    }));
  }

  // ------------------------------------------------------------------ fetching
  async function getJson(path) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      const response = await fetch(path, { headers: { Accept: "application/json" },
        cache: "no-store", signal: controller.signal });
      if (!response.ok && response.status !== 202) throw new Error(`${path}: HTTP ${response.status}`);
      return await response.json();
    } finally {
      clearTimeout(timer);
    }
  }

  // ------------------------------------------------------------------ charts
  // One chart: a title, series of [label, colour, value-of-point, dashed?], an optional
  // second axis for series flagged "right".
  function chart(parent, id, title, series, opts = {}) {
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.id = `${id}-title`;
    caption.textContent = title;
    const box = document.createElement("div");
    box.className = "chart";
    box.id = id;
    box.setAttribute("role", "img");
    box.setAttribute("aria-label", `${title}: ${series.map((s) => s.label).join(", ")} over time`);
    figure.append(caption, box);
    parent.append(figure);
    const axes = [{ space: 80, values: (u, splits) => splits.map((v) => clock(v * 1000)) },
      { label: opts.yLabel || "", size: 60 }];
    const scales = { x: { time: true }, y: opts.log ? { distr: 3, log: 10 } : {} };
    if (series.some((s) => s.right)) {
      scales.right = {};
      axes.push({ scale: "right", side: 1, label: opts.rightLabel || "", grid: { show: false }, size: 60 });
    }
    const plot = new uPlot({
      width: Math.max(300, box.clientWidth || 600),
      height: 220,
      scales,
      axes,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      series: [{ label: "time", value: (u, v) => (v == null ? "–" : clock(v * 1000)) },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.colour,
          width: s.dashed ? 1.5 : 2,
          dash: s.dashed ? [6, 4] : undefined,
          scale: s.right ? "right" : "y",
          spanGaps: false,
          points: { show: false },
          value: (u, v) => (v == null ? "–" : opts.format ? opts.format(v) : v.toPrecision(3)),
        }))],
    }, [[], ...series.map(() => [])], box);
    state.charts.push({ plot, box, series });
    return plot;
  }

  function buildCharts(info) {
    const latency = $("latency-charts");
    for (const [name, title] of LATENCY_PATHS) {
      const series = PERCENTILES.map(([key, label, colour]) => ({
        label, colour, of: (p) => micros(p.latency_ns?.[name]?.[key]) }));
      if (name === "tick_to_order") {
        for (const [key, label] of SLO_LINES) {
          const us = info.slo_us?.[key];
          if (us != null) {
            series.push({ label: `${label} ${us} µs`, colour: "#6b6b6b", dashed: true,
              of: () => us });
          }
        }
      }
      chart(latency, `chart-${name}`, title, series, { log: true, yLabel: "µs" });
    }
    const flow = $("flow-charts");
    chart(flow, "chart-rates", "Market data and order rates", [
      { label: "market data /s", colour: "#1b5fb4", of: (p) => p.rates_per_s?.md_messages },
      { label: "orders /s", colour: "#b35900", right: true, of: (p) => p.rates_per_s?.orders },
    ], { yLabel: "messages /s", rightLabel: "orders /s", format: (v) => num(v) });
    chart(flow, "chart-drops", "Drops, gaps and rejects", [
      { label: "dropped /s", colour: "#b00020", of: (p) => p.rates_per_s?.md_messages_dropped },
      { label: "lost /s", colour: "#8e24aa", of: (p) => p.rates_per_s?.md_messages_lost },
      { label: "sequence gaps /s", colour: "#b35900", of: (p) => p.rates_per_s?.sequence_gaps },
      { label: "rejects /s", colour: "#1b5fb4", of: (p) => p.rates_per_s?.rejects },
    ], { yLabel: "per second", format: (v) => num(v) });
    chart(flow, "chart-rings", "Ring occupancy", [
      { label: "md", colour: "#1b5fb4", of: (p) => p.rings?.md },
      { label: "orders", colour: "#b35900", of: (p) => p.rings?.orders },
      { label: "fills", colour: "#2e7d32", of: (p) => p.rings?.fills },
    ], { yLabel: "slots", format: (v) => num(v) });
  }

  function draw() {
    for (const el of document.querySelectorAll(".span-min")) el.textContent = String(Math.round(state.span / 60));
    const cutoff = Date.now() / 1000 - state.span;
    state.points = state.points.filter((p) => p.t >= cutoff);
    const xs = state.points.map((p) => p.t);
    for (const { plot, box, series } of state.charts) {
      // a point of a stopped engine is a gap, never a zero
      const ys = series.map((s) => state.points.map((p) => (p.engine_running ? s.of(p) ?? null : null)));
      plot.setData([xs, ...ys]);
      // how many points of the first series have a value: what a reader (or a test) can check
      box.dataset.points = String(ys[0].filter((v) => v != null).length);
    }
  }

  function resize() {
    for (const { plot, box } of state.charts) plot.setSize({ width: box.clientWidth, height: 220 });
  }

  // ------------------------------------------------------------------ panels
  function showInfo(info) {
    text("service", `· ${info.shm_prefix} · ${info.config_source}`);
    const feed = info.feed || {};
    text("feed", `${feed.source}, ${num(feed.rate_msgs_per_s)} msgs/s offered, ${feed.instruments} instruments`);
    text("version", `lowlat ${info.version}`);
  }

  function showLatest(latest) {
    const running = latest.engine_running;
    document.body.dataset.state = running ? "running" : "engine-down";
    if (running) {
      text("status", latest.ready ? "Engine running · ready" : "Engine running · not ready");
    } else {
      const why = latest.ready_reasons?.[0];
      const seen = state.points.filter((p) => p.engine_running).pop();
      text("status", "Engine not running"
        + (why && why !== "engine not running" ? ` · ${why}` : "")
        + (seen ? ` · last seen running at ${clock(seen.t * 1000)}` : ""));
    }
    const ready = $("ready");
    ready.textContent = latest.ready ? "ready" : "not ready";
    ready.className = latest.ready ? "yes" : "no";
    $("ready-reasons").replaceChildren(...(latest.ready_reasons || []).map((r) => {
      const li = document.createElement("li");
      li.textContent = r;
      return li;
    }));
    const kill = $("kill");
    kill.textContent = latest.kill_switch ? "ON: orders stopped" : "off";
    kill.className = latest.kill_switch ? "no" : "yes";
    text("engine", running ? "running" : "not running");
    text("md-rate", rate(latest.rates_per_s?.md_messages));
    text("order-rate", rate(latest.rates_per_s?.orders));
    const cores = state.info?.stages || {};
    rows("stages", Object.entries(latest.stages || {}).map(([name, s]) => [
      [name], [String(s.cpu ?? cores[name]?.cpu ?? "–")],
      [s.state, s.state === "running" ? "state-running" : "state-other"],
      [age(s.heartbeat_age_s)],
    ]));
    text("gaps", num(running ? latest.sequence_gaps : null));
    text("lost", num(running ? latest.md_messages_lost : null));
    text("stale", num(running ? latest.stale_books : null));
    rows("rejects", Object.entries(latest.rejects || {}).map(([reason, n]) => [[reason], [num(n), "num"]]));
    const instruments = state.info?.feed?.instruments ?? Infinity;
    rows("positions", Object.entries(latest.positions || {})
      .filter(([i, n]) => Number(i) < instruments || n !== 0)
      .map(([i, n]) => [[`instrument ${i}`], [num(n), "num"]]));
    rows("rings", Object.entries(latest.rings || {}).map(([name, r]) => [
      [name], [num(r.occupancy), "num"], [num(r.occupancy_max), "num"]]));
  }

  function showHost(host) {
    const verdict = $("host-verdict");
    const table = $("host-failures");
    if (host.available === false) {
      verdict.textContent = `Not checked yet: ${host.detail}`;
      table.hidden = true;
      return;
    }
    const s = host.summary || {};
    const when = host.checked_at_unix_s ? clock(host.checked_at_unix_s * 1000) : "?";
    verdict.textContent = `${host.ok ? "Tuned" : "Not tuned"}: ${s.passed} of ${s.total} checks pass, `
      + `${s.failed} fail, ${s.not_applicable} not applicable (checked ${when}, ${host.source}).`;
    verdict.className = host.ok ? "yes" : "no";
    const failing = (host.checks || []).filter((c) => c.status === "fail");
    rows(table.querySelector("tbody"), failing.map((c) => [[c.name, "check"], [c.expected], [c.observed]]));
    text("host-failures-summary", `${failing.length} failing check${failing.length === 1 ? "" : "s"}`);
    if (table.hidden && failing.length && failing.length <= 3) table.open = true; // few: show them
    table.hidden = failing.length === 0;
  }

  function apiDown(error) {
    document.body.dataset.state = "api-down";
    const since = state.lastAnswer ? ` · last answer ${clock(state.lastAnswer)}` : "";
    text("status", `API not answering${since}`);
    console.warn("telemetry API:", error?.message || error);
  }

  // ------------------------------------------------------------------ loops
  async function start() {
    for (;;) {
      try {
        state.info = await getJson("./");
        break;
      } catch (error) {
        apiDown(error);
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    }
    showInfo(state.info);
    buildCharts(state.info);
    window.addEventListener("resize", resize);
    pollHost();
    setInterval(pollHost, HOST_POLL_MS);
    poll();
    setInterval(poll, POLL_MS);
  }

  let polling = false;
  async function poll() {
    if (polling) return; // the previous round is still waiting on a slow API
    polling = true;
    try {
      const after = state.lastT == null ? "" : `?after=${state.lastT}`;
      const history = await getJson(`history${after}`);
      state.lastAnswer = Date.now();
      state.span = history.span_s || state.span;
      for (const p of history.points) {
        if (state.lastT == null || p.t > state.lastT) state.points.push(p);
      }
      if (state.points.length) state.lastT = state.points[state.points.length - 1].t;
      if (history.latest) showLatest(history.latest);
      draw();
    } catch (error) {
      apiDown(error);
    } finally {
      polling = false;
    }
  }

  async function pollHost() {
    try {
      showHost(await getJson("host"));
    } catch (error) {
      // /latest's poll reports the API as down; the verdict keeps its last value
    }
  }

  start();
})();
