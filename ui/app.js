// fraudgate's report page: a client of the public Data API (/v1/data),
// the reports (/v1/reports) and the admin API (/v1/admin). Nothing private.
// The key lives in this tab's sessionStorage and goes in a header, never in
// a URL. No framework, no build step: charts are plain SVG.
"use strict";

const KEY = "fraudgate.key";
const $ = (id) => document.getElementById(id);
const state = { filter: null, tail: null };

// ---- helpers -------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    // CSSOM, not a style attribute: the page's CSP allows no inline styles.
    else if (k === "style") e.style.cssText = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function fmt(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : (n ?? "");
}
function pct(n) {
  return typeof n === "number" ? n.toFixed(2) + "%" : "";
}

class HttpError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.error)) || "HTTP " + status);
    this.status = status;
    this.body = body;
  }
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY);
  if (key) {
    h["X-Api-Key"] = key;
    h["Authorization"] = "Bearer " + key;
  }
  return h;
}

async function call(method, path, body) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (r.status === 401 || r.status === 403) {
    if (path.startsWith("/v1/data") || path.startsWith("/v1/reports")) showLogin(data && data.message);
    throw new HttpError(r.status, data);
  }
  if (!r.ok) throw new HttpError(r.status, data);
  return { data, text };
}
const get = (path) => call("GET", path);

/// JSON lines of a Data API answer.
async function lines(path) {
  const { text } = await get(path);
  return text.split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

function range() {
  const f = new FormData($("range"));
  return {
    date_start: f.get("date_start"),
    date_end: f.get("date_end"),
    timezone: (f.get("timezone") || "UTC").trim() || "UTC",
  };
}

/// Report parameters: the range and the row filter (a clicked row).
function reportParams(extra) {
  const r = range();
  const p = new URLSearchParams({ date_start: r.date_start, date_end: r.date_end, timezone: r.timezone });
  if (state.filter) {
    p.append("search_fields[]", JSON.stringify({ term: state.filter.field, query: state.filter.value }));
  }
  for (const [k, v] of extra || []) p.append(k, v);
  return p.toString();
}

/// Data API parameters: the same range as a filter expression.
function dataFilter(more) {
  const r = range();
  const ops = [["date_ge", r.date_start], ["date_le", r.date_end]];
  if (state.filter) ops.push([state.filter.field, state.filter.value]);
  return { filter: JSON.stringify(["AND", ...ops, ...(more || [])]), tz: r.timezone };
}

function showError(e) {
  $("error").textContent = e ? "Error: " + (e.message || e) : "";
}

function table(t, columns, rows, onRow, empty) {
  t.replaceChildren();
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : "" }, c.label)));
  t.append(el("thead", {}, head));
  const body = el("tbody");
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, empty || "No decisions in this range.")));
  }
  for (const r of rows) {
    const tr = el("tr", {}, columns.map((c) => {
      const v = c.render ? c.render(r) : fmt(r[c.key]);
      return el("td", { class: c.num ? "num" : "", "data-label": c.label }, v);
    }));
    if (onRow) {
      tr.classList.add("clickable");
      tr.tabIndex = 0;
      tr.addEventListener("click", () => onRow(r));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") onRow(r); });
    }
    body.append(tr);
  }
  t.append(body);
}

// ---- login ----------------------------------------------------------------

function showLogin(message) {
  $("login").hidden = false;
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("login-error").textContent = message || "";
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, new FormData(e.target).get("key"));
  e.target.reset();
  $("login").hidden = true;
  route();
});

// ---- views ------------------------------------------------------------

// Reason colours, with a text label and a pattern each so the bars read
// without colour too.
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const reasonColour = {};
function colourOf(name) {
  if (!(name in reasonColour)) reasonColour[name] = PALETTE[Object.keys(reasonColour).length % PALETTE.length];
  return reasonColour[name];
}

async function showOverview() {
  const [global, sources, interval] = await Promise.all([
    get("/v1/reports/global?" + reportParams()),
    lines("/v1/data/all/groups?" + new URLSearchParams({ group: "source", field: "count", sort: "count_desc", ...dataFilter() })),
    get("/v1/reports/interval?" + reportParams([["time_interval", intervalUnit()], ["group[]", "door"], ["count", "10000"]])),
  ]);
  const g = (global.data.global.results[0]) || { events: 0, blocked: 0, block_rate: 0 };
  const by = Object.fromEntries(sources.map((s) => [s.source, s.count]));
  const rt = by.upstream || 0;
  const cache = by.cache || 0;
  const hitRatio = rt + cache ? (100 * cache) / (rt + cache) : null;
  const kpi = (label, value, id) => el("div", { class: "kpi", id }, el("span", { class: "kpi-value" }, value), el("span", { class: "kpi-label" }, label));
  $("kpis").replaceChildren(
    kpi("events", fmt(g.events), "kpi-events"),
    kpi("blocked", fmt(g.blocked), "kpi-blocked"),
    kpi("block rate", pct(g.block_rate), "kpi-rate"),
    kpi("RT calls", fmt(rt), "kpi-rt"),
    kpi("cache hit ratio", hitRatio === null ? "n/a" : pct(hitRatio), "kpi-cache"),
  );
  table($("sources"), [
    { label: "source", key: "source" },
    { label: "decisions", key: "count", num: true },
  ], sources);
  lineChart($("interval-chart"), interval.data.results);
}

function intervalUnit() {
  const r = range();
  const days = (Date.parse(r.date_end) - Date.parse(r.date_start)) / 86400000;
  return days <= 2 ? "hour" : days <= 90 ? "day" : "month";
}

/// Block rate per interval, one line per door; points carry a title.
function lineChart(box, rows) {
  box.replaceChildren();
  if (!rows.length) {
    box.append(el("p", { class: "empty" }, "No decisions in this range."));
    return;
  }
  const xs = [...new Set(rows.map((r) => r.intervals))].sort();
  const doors = [...new Set(rows.map((r) => r.door))].sort();
  const W = 720, H = 240, L = 44, B = 28, T = 10, R = 10;
  const x = (i) => L + (xs.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (xs.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / 100);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "line-chart", preserveAspectRatio: "xMidYMid meet" });
  for (const v of [0, 25, 50, 75, 100]) {
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    chart.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, v + "%"));
  }
  const step = Math.max(1, Math.ceil(xs.length / 6));
  xs.forEach((label, i) => {
    if (i % step === 0) chart.append(svg("text", { x: x(i), y: H - 8, "text-anchor": "middle", class: "axis" }, label));
  });
  const dashes = ["", "6 3", "2 3", "10 3 2 3"];
  doors.forEach((door, d) => {
    const pts = rows.filter((r) => r.door === door).map((r) => [xs.indexOf(r.intervals), r.block_rate, r]);
    pts.sort((a, b) => a[0] - b[0]);
    const colour = colourOf("door:" + door);
    chart.append(svg("polyline", {
      points: pts.map(([i, v]) => `${x(i)},${y(v)}`).join(" "),
      fill: "none", stroke: colour, "stroke-width": 2, "stroke-dasharray": dashes[d % dashes.length],
    }));
    for (const [i, v, r] of pts) {
      chart.append(svg("circle", { cx: x(i), cy: y(v), r: 3.5, fill: colour },
        svg("title", {}, `${door} ${r.intervals}: ${pct(v)} of ${fmt(r.events)} blocked`)));
    }
  });
  box.append(chart);
  box.append(el("ul", { class: "legend" }, doors.map((door, d) =>
    el("li", {}, el("span", { class: "swatch", style: `border-top: 3px ${d % dashes.length ? "dashed" : "solid"} ${colourOf("door:" + door)}` }), door))));
}

async function showTop() {
  const dim = $("top-dim").value;
  const sort = $("top-sort").value;
  const res = await get("/v1/reports/fraud?" + reportParams([["group[]", dim], ["count", "50"]]));
  let rows = res.data.fraud.results;
  if (sort === "block_rate") rows = rows.slice().sort((a, b) => b.block_rate - a.block_rate || b.blocked - a.blocked);
  const max = Math.max(1, ...rows.map((r) => r.blocked));
  table($("top-table"), [
    { label: dim, render: (r) => r[dim] ?? "(none)" },
    { label: "events", key: "events", num: true },
    { label: "blocked", key: "blocked", num: true },
    { label: "block rate", render: (r) => pct(r.block_rate), num: true },
    { label: "GIVT / SIVT", render: (r) => `${fmt(r.ivt_givt)} / ${fmt(r.ivt_sivt)}`, num: true },
    { label: "reasons", render: (r) => reasonsBar(r.reasons || {}, max) },
  ], rows, (r) => setFilter(dim, r[dim]));
}

// ---- funnel ----------------------------------------------------------------

const CTIT_BUCKETS = ["<0s", "<10s", "10s-1m", "1m-10m", "10m-1h", "1h-24h", ">=24h"];

async function showFunnel() {
  const r = range();
  const p = new URLSearchParams({ date_start: r.date_start, date_end: r.date_end, timezone: r.timezone, count: "50" });
  const res = await get("/v1/reports/funnel?" + p);
  const rows = res.data.funnel.results;
  table($("funnel-table"), [
    { label: "source", render: (s) => `${s.affiliate_id ?? "(none)"} / ${s.aff_sub1 ?? "(none)"}` },
    { label: "impressions", key: "impressions", num: true },
    { label: "clicks", key: "clicks", num: true },
    { label: "conversions", key: "conversions", num: true },
    { label: "CR", render: (s) => (s.cr === null ? "–" : pct(s.cr)), num: true },
    { label: "goals", key: "goals", num: true },
    { label: "rejected", render: (s) => `${fmt(s.rejected)}${s.rejection_rate === null ? "" : " (" + pct(s.rejection_rate) + ")"}`, num: true },
    { label: "rejections", render: (s) => Object.entries(s.rejections).map(([k, v]) => `${k} ${fmt(v)}`).join(" · ") },
    { label: "CTIT", render: (s) => ctitHistogram(s.ctit) },
    { label: "payout approved / at risk", render: (s) => `${money(s.payout_approved)} / ${money(s.payout_at_risk)}` },
  ], rows);
  const claw = await get("/v1/reports/clawback?" + new URLSearchParams({ date_start: r.date_start, date_end: r.date_end, timezone: r.timezone }));
  table($("clawback-table"), [
    { label: "affiliate", key: "affiliate_id" },
    { label: "currency", key: "currency" },
    { label: "conversions", key: "conversions", num: true },
    { label: "payout", render: (c) => c.payout.toFixed(2), num: true },
  ], claw.data.clawback.by_affiliate, null,
  `None of the ${fmt(claw.data.clawback.conversions_approved)} approved conversions: today's lists block none of their clicks.`);
}

function money(m) {
  const parts = Object.entries(m || {}).map(([c, v]) => `${v.toFixed(2)} ${c}`);
  return parts.length ? parts.join(", ") : "–";
}

/// The CTIT buckets as bars (under 10 s is click injection's, from 24 h
/// flooding's: coloured apart), with the median.
function ctitHistogram(c) {
  if (!c || !c.n) return "–";
  const max = Math.max(1, ...CTIT_BUCKETS.map((b) => c.buckets[b] || 0));
  const w = 14, h = 28;
  const box = svg("svg", { width: CTIT_BUCKETS.length * (w + 2), height: h, role: "img",
    "aria-label": CTIT_BUCKETS.map((b) => `${b} ${c.buckets[b] || 0}`).join(", ") });
  CTIT_BUCKETS.forEach((b, i) => {
    const n = c.buckets[b] || 0;
    const bh = n ? Math.max(2, (h * n) / max) : 0;
    const colour = i <= 1 ? "#c0392b" : i === CTIT_BUCKETS.length - 1 ? "#d68910" : "#5d6d7e";
    // Each bucket's slot, so an empty one still shows where it is.
    box.append(svg("rect", { x: i * (w + 2), y: h - 1, width: w, height: 1, fill: "#c8ced6" }));
    const rect = svg("rect", { x: i * (w + 2), y: h - bh, width: w, height: bh, fill: colour });
    rect.append(svg("title", {}, `${b}: ${n}`));
    box.append(rect);
  });
  return el("div", { class: "ctit" }, box, el("div", { class: "reasons-text" }, `median ${fmt(c.median_s)} s`));
}

/// A stacked bar of the reasons, scaled to the largest blocked volume, each
/// segment labelled (title, and text when wide enough).
function reasonsBar(reasons, max) {
  const entries = Object.entries(reasons).filter(([k]) => !k.startsWith("rule:")).sort((a, b) => b[1] - a[1]);
  const rules = Object.entries(reasons).filter(([k]) => k.startsWith("rule:"));
  const bar = el("div", { class: "bar", role: "img",
    "aria-label": entries.map(([k, v]) => `${k} ${v}`).join(", ") || "none" });
  for (const [name, n] of entries) {
    const w = (100 * n) / max;
    bar.append(el("span", { class: "seg", style: `width:${w}%;background:${colourOf(name)}`, title: `${name}: ${fmt(n)}` },
      w > 12 ? `${name} ${fmt(n)}` : ""));
  }
  const text = el("div", { class: "reasons-text" },
    [...entries, ...rules].map(([k, v]) => `${k} ${fmt(v)}`).join(" · "));
  return el("div", {}, bar, text);
}

function setFilter(field, value) {
  if (value === null || value === undefined) return;
  state.filter = { field, value: String(value) };
  const chip = $("filter");
  chip.hidden = false;
  chip.replaceChildren(`${field} = ${value} `, el("button", { type: "button", "aria-label": "clear filter", onclick: () => { state.filter = null; chip.hidden = true; route(); } }, "×"));
  location.hash = "#overview";
  route();
}

const LIST_FIELDS = "id,datetime,door,event_type,ip,ua,affiliate_id,offer_id,decision,tags,reason";

async function showSearch(e) {
  if (e) e.preventDefault();
  const f = new FormData($("search-form"));
  $("entry").hidden = true;
  const id = (f.get("id") || "").trim();
  if (id) return entry(id);
  const more = [];
  if (f.get("ip")) more.push(["ip", f.get("ip").trim()]);
  if (f.get("ua")) more.push(["ua_like", "%" + f.get("ua").trim() + "%"]);
  if (f.get("affiliate_id")) more.push(["affiliate_id", f.get("affiliate_id").trim()]);
  const rows = await lines("/v1/data/all?" + new URLSearchParams({ field: LIST_FIELDS, page_size: "100", ...dataFilter(more) }));
  table($("search-results"), [
    { label: "time", key: "datetime" },
    { label: "door", key: "door" },
    { label: "ip", key: "ip" },
    { label: "affiliate", key: "affiliate_id" },
    { label: "offer", key: "offer_id" },
    { label: "decision", render: (r) => el("span", { class: "decision " + r.decision }, r.decision) },
    { label: "tags", key: "tags" },
    { label: "reason", key: "reason" },
  ], rows, (r) => entry(r.id));
}

async function entry(id) {
  const box = $("entry");
  try {
    const { data } = await get("/v1/reports/entry/" + encodeURIComponent(id));
    const rows = Object.entries(data).map(([k, v]) => ({ field: k, value: v }));
    table($("entry-table"), [
      { label: "field", key: "field" },
      { label: "value", render: (r) => r.field === "rules" ? rulesList(r.value) : (typeof r.value === "object" && r.value !== null ? JSON.stringify(r.value) : fmt(r.value)) },
    ], rows);
    box.hidden = false;
    $("search-results").replaceChildren();
  } catch (e) {
    if (e.status === 404 || e.status === 400) {
      table($("search-results"), [{ label: "result", key: "m" }], [{ m: "No decision with id " + id }]);
    } else throw e;
  }
}

function rulesList(rules) {
  if (!Array.isArray(rules) || !rules.length) return "none";
  return el("ul", { class: "rules" }, rules.map((r) => el("li", {}, el("strong", {}, r.kind), ` (${r.name}${r.tag ? ", tag " + r.tag : ""})`, r.reason ? ": " + r.reason : "")));
}

async function showLists() {
  try {
    const { data } = await get("/v1/admin/lists");
    $("lists-note").textContent = "Changes apply on the next request. Runtime entries live in this process.";
    table($("lists-table"), [
      { label: "list", key: "name" },
      { label: "action", key: "action" },
      { label: "file entries", key: "file_entries", num: true },
      { label: "runtime entries", key: "runtime_entries", num: true },
    ], data.lists, (l) => listEntries(l.name));
  } catch (e) {
    $("lists-table").replaceChildren();
    $("list-entries").hidden = true;
    $("lists-note").textContent = e.status === 404
      ? "The admin API is off: set auth.admin_keys, then sign in here with an admin key."
      : "Lists need an admin key (auth.admin_keys): sign in with one.";
  }
}

async function listEntries(name) {
  state.list = name;
  const { data } = await get("/v1/admin/lists/" + encodeURIComponent(name) + "/entries");
  $("list-title").textContent = "Entries of " + name;
  table($("entries-table"), [
    { label: "kind", key: "kind" },
    { label: "value", key: "value" },
    { label: "source", key: "source" },
    { label: "expires", render: (r) => r.expires ? new Date(r.expires * 1000).toISOString().replace(".000Z", "Z") : "never" },
    { label: "reason", key: "reason" },
    { label: "", render: (r) => r.source === "runtime"
        ? el("button", { type: "button", onclick: (e) => { e.stopPropagation(); removeEntry(r); } }, "Remove")
        : "" },
  ], data.entries);
  $("list-entries").hidden = false;
}

async function removeEntry(r) {
  const p = new URLSearchParams({ kind: r.kind, value: r.value });
  await call("DELETE", `/v1/admin/lists/${encodeURIComponent(state.list)}/entries?` + p);
  await showLists();
  await listEntries(state.list);
}

$("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const body = { kind: f.get("kind"), value: f.get("value").trim() };
  if (f.get("ttl_s")) body.ttl_s = Number(f.get("ttl_s"));
  if (f.get("reason")) body.reason = f.get("reason");
  try {
    await call("POST", `/v1/admin/lists/${encodeURIComponent(state.list)}/entries`, body);
    $("list-error").textContent = "";
    e.target.reset();
    await showLists();
    await listEntries(state.list);
  } catch (err) {
    $("list-error").textContent = err.message;
  }
});

async function showTail() {
  const rows = await lines("/v1/data/all?" + new URLSearchParams({
    field: LIST_FIELDS, page_size: "25", filter: JSON.stringify(["would_be", "block"]), tz: range().timezone,
  }));
  table($("tail-table"), [
    { label: "time", key: "datetime" },
    { label: "door", key: "door" },
    { label: "ip", key: "ip" },
    { label: "affiliate", key: "affiliate_id" },
    { label: "tags", key: "tags" },
    { label: "reason", key: "reason" },
  ], rows, (r) => { location.hash = "#search?id=" + encodeURIComponent(r.id); });
  $("tail-status").textContent = "updated " + new Date().toLocaleTimeString() + ", every 2 s";
}

// ---- routing ------------------------------------------------------------

const VIEWS = { overview: showOverview, top: showTop, funnel: showFunnel, search: showSearch, lists: showLists, tail: showTail };

/// `#view?name=value...`: a view and its inputs, shareable as a link (the
/// part after # never reaches a server; keys never go here).
function hashParams() {
  const [name, query] = (location.hash || "#overview").slice(1).split("?");
  return { name, params: new URLSearchParams(query || "") };
}

function applyParams(view, params) {
  if (view === "search") {
    const form = $("search-form");
    for (const k of ["id", "ip", "ua", "affiliate_id"]) {
      if (params.has(k)) form.elements[k].value = params.get(k);
    }
  }
  if (view === "top" && params.has("by")) $("top-dim").value = params.get("by");
  if (view === "top" && params.has("sort")) $("top-sort").value = params.get("sort");
}

async function route() {
  const { name, params } = hashParams();
  const view = VIEWS[name] ? name : "overview";
  applyParams(view, params);
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + view;
  for (const a of document.querySelectorAll("#nav a")) a.setAttribute("aria-current", a.dataset.view === view ? "page" : "false");
  clearInterval(state.tail);
  showError(null);
  try {
    if (view === "search") {
      if ($("search-results").childElementCount === 0 || [...params.keys()].length) await showSearch();
    } else {
      await VIEWS[view]();
    }
    if (view === "tail") state.tail = setInterval(() => showTail().catch(showError), 2000);
    $("login").hidden = true;
    document.body.dataset.ready = view;
  } catch (e) {
    if (e.status !== 401 && e.status !== 403) showError(e);
  }
}

function today(offsetDays) {
  const d = new Date(Date.now() + (offsetDays || 0) * 86400000);
  return d.toISOString().slice(0, 10);
}

// Yesterday and today (UTC dates), hour by hour.
$("range").date_start.value = today(-1);
$("range").date_end.value = today(0);
$("range").addEventListener("submit", (e) => { e.preventDefault(); route(); });
$("top-dim").addEventListener("change", () => showTop().catch(showError));
$("top-sort").addEventListener("change", () => showTop().catch(showError));
$("search-form").addEventListener("submit", (e) => showSearch(e).catch(showError));
window.addEventListener("hashchange", route);
route();
