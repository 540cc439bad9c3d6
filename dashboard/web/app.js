/*
 * boxoffice live dashboard: the browser half of `boxoffice dashboard`.
 * It talks only to the JSON API described in dashboard/API.md and draws charts with the
 * Chart.js UMD build the server ships at /assets/chart.umd.js (global `Chart`).
 *
 * Shape: PANELS is the table of panels (one entry per API panel) naming the renderer for its
 * kind; a refresh cycle fetches /api/filters, then every panel at once, renders, and records
 * the outcome on <body data-*> for the browser test.
 */
'use strict';

const DASH = '–';
const UNREACHABLE = 'dashboard server unreachable; retrying';
const DEFAULT_REFRESH_SECONDS = 5;
const FILTER_KEYS = ['from', 'to', 'category', 'status']; // fixed order of every query string

/* ---------- formatting ---------- */

const NF_INT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const NF_MONEY = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const NF_COMPACT = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

const FORMAT = {
  int: (v) => (isNum(v) ? NF_INT.format(v) : DASH),
  money: (v) => (isNum(v) ? NF_MONEY.format(v) : DASH),
  pct: (v) => (isNum(v) ? `${(v * 100).toFixed(1)}%` : DASH),
  text: (v) => (v == null || v === '' ? DASH : String(v)),
  age: (v) => humanSeconds(v),
  // Sub-second lags need the second decimal (0.45 s, not 0.5 s).
  lag: (v) => (isNum(v) && Math.abs(v) < 10 ? `${v.toFixed(2)} s` : humanSeconds(v)),
  ms: (v) => (!isNum(v) ? DASH : Math.abs(v) < 1000 ? `${Math.round(v)} ms` : humanSeconds(v / 1000)),
  time: (v) => utcTime(v),
};

/** Seconds in human form: "4.2 s", "3 min", "1.5 h", "2.0 d". */
function humanSeconds(s) {
  if (!isNum(s)) return DASH;
  const sign = s < 0 ? '-' : ''; // a negative age means clock skew; show it rather than hide it
  const a = Math.abs(s);
  if (a < 59.95) return `${sign}${a.toFixed(1)} s`;
  if (a < 3570) return `${sign}${Math.round(a / 60)} min`;
  if (a < 86400) return `${sign}${(a / 3600).toFixed(1)} h`;
  return `${sign}${(a / 86400).toFixed(1)} d`;
}

/** RFC 3339 timestamp as "YYYY-MM-DD HH:MM:SS UTC" (the API's dates are UTC too). */
function utcTime(v) {
  if (!v) return DASH;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? String(v) : `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** Sets a value element: raw JSON value in data-value (test hook), formatted text visible. */
function setValue(el, value, fmt) {
  if (!el) return;
  el.dataset.value = value == null ? '' : String(value);
  el.textContent = FORMAT[fmt](value);
  if (fmt === 'time') el.title = value == null ? '' : String(value);
}

/* ---------- table cells ---------- */

function occupancyBar(value) {
  const wrap = document.createElement('div');
  wrap.className = 'occ';
  const bar = document.createElement('span');
  bar.className = 'occ-bar';
  bar.setAttribute('aria-hidden', 'true'); // the number next to it carries the information
  const fill = document.createElement('span');
  // Oversold events can exceed 100%; the bar is clamped, the number is not.
  fill.style.width = `${isNum(value) ? Math.min(100, Math.max(0, value * 100)) : 0}%`;
  if (isNum(value) && value >= 0.9) fill.className = 'high';
  bar.append(fill);
  const num = document.createElement('span');
  num.className = 'occ-num';
  num.textContent = FORMAT.pct(value);
  wrap.append(bar, num);
  return wrap;
}

function statusPill(status) {
  const s = String(status ?? '');
  const span = document.createElement('span');
  let kind = 'neutral';
  if (/^(succe|ok|complete|done|pass)/i.test(s)) kind = 'ok';
  else if (/^(fail|error|abort|timeout|timed|cancel)/i.test(s)) kind = 'bad';
  else if (/^(run|start|pending|queue)/i.test(s)) kind = 'running';
  span.className = `pill pill-${kind}`;
  span.textContent = FORMAT.text(status);
  return span;
}

function truncated(text, max) {
  const span = document.createElement('span');
  span.className = 'truncate';
  if (text == null || text === '') {
    span.textContent = DASH;
    return span;
  }
  const s = String(text);
  span.textContent = s.length > max ? `${s.slice(0, max - 1)}…` : s;
  span.title = s;
  return span;
}

/** A compact UTC timestamp for tables ("11-23 08:00:00"); the full value is in the tooltip. */
function timeCell(value) {
  const t = document.createElement('time');
  const d = value ? new Date(value) : null;
  if (!d || Number.isNaN(d.getTime())) {
    t.textContent = FORMAT.text(value);
    return t;
  }
  t.dateTime = String(value);
  t.title = utcTime(value);
  t.textContent = d.toISOString().slice(5, 19).replace('T', ' ');
  return t;
}

function eventCell(row) {
  const span = document.createElement('span');
  span.textContent = FORMAT.text(row.event_name ?? row.event_id);
  span.title = `event ${row.event_id}`;
  return span;
}

/* ---------- the table of panels ---------- */

const PAYMENT_COLUMNS = [
  { label: 'Method', key: 'payment_method' },
  { label: 'Type', key: 'payment_type' },
  { label: 'Attempts', key: 'attempts', fmt: 'int', num: true },
  { label: 'Success', key: 'success_rate', fmt: 'pct', num: true },
  { label: 'Amount', key: 'amount', fmt: 'money', num: true },
];

const TOP_EVENT_COLUMNS = [
  { label: 'Event', cell: eventCell },
  { label: 'Category', key: 'event_category' },
  { label: 'Orders', key: 'orders', fmt: 'int', num: true },
  { label: 'Seats sold', key: 'seats_sold', fmt: 'int', num: true },
  { label: 'Revenue', key: 'revenue', fmt: 'money', num: true },
  { label: 'Capacity', key: 'capacity', fmt: 'int', num: true },
  { label: 'Occupancy', cell: (r) => occupancyBar(r.occupancy) },
];

const JOB_COLUMNS = [
  { label: 'Job', key: 'job' },
  { label: 'Task', key: 'task' },
  { label: 'Status', cell: (r) => statusPill(r.last_status) },
  { label: 'Last started (UTC)', cell: (r) => timeCell(r.last_started_at) },
  { label: 'Last ended (UTC)', cell: (r) => timeCell(r.last_ended_at) },
  { label: 'Duration', key: 'last_duration_ms', fmt: 'ms', num: true },
  { label: 'Runs', key: 'runs', fmt: 'int', num: true },
  { label: 'Failures', key: 'failures', fmt: 'int', num: true },
  { label: 'Last error', cell: (r) => truncated(r.last_error, 60) },
];

const hourLabel = (h) => (isNum(h) ? `${String(h).padStart(2, '0')}h` : DASH);
const series = (key, label, fmt) => ({ key, label, fmt });

// kind picks the renderer; the other fields configure it. Element ids follow the panel name.
const PANELS = [
  {
    name: 'kpis', kind: 'kpis', prefix: 'kpi-', emptyState: true,
    fields: { bookings: 'int', seats_sold: 'int', revenue: 'money', conversion_rate: 'pct', failed_payment_rate: 'pct' },
    subs: {
      conversion_rate: (r) => `${FORMAT.int(r.paid)} paid of ${FORMAT.int(r.bookings)}`,
      failed_payment_rate: (r) => `${FORMAT.int(r.failed_payments)} of ${FORMAT.int(r.payment_attempts)} attempts`,
    },
  },
  { name: 'revenue_by_category', kind: 'chart', type: 'bar', x: 'event_category', series: [series('revenue', 'Revenue', 'money')] },
  {
    name: 'bookings_by_hour', kind: 'chart', type: 'bar', x: 'booking_hour', xfmt: hourLabel,
    series: [series('bookings', 'Bookings', 'int'), series('paid', 'Paid', 'int')],
  },
  {
    name: 'payment_mix', kind: 'chart', type: 'doughnut', x: 'payment_method',
    series: [series('attempts', 'Attempts', 'int')], table: PAYMENT_COLUMNS,
  },
  { name: 'top_events', kind: 'table', table: TOP_EVENT_COLUMNS },
  {
    name: 'movie_kpis', kind: 'kpis', prefix: 'movie-kpi-',
    fields: { total_bookings: 'int', total_revenue: 'money', total_tickets_sold: 'int', total_cancellations: 'int' },
  },
  { name: 'movie_revenue_by_status', kind: 'chart', type: 'bar', x: 'status', colorBy: 'status', series: [series('revenue', 'Revenue', 'money')] },
  { name: 'movie_bookings_by_movie', kind: 'chart', type: 'hbar', x: 'movie_id', series: [series('bookings', 'Bookings', 'int')] },
  { name: 'movie_tickets_by_status', kind: 'chart', type: 'bar', x: 'status', colorBy: 'status', series: [series('tickets', 'Tickets', 'int')] },
  { name: 'movie_revenue_by_movie', kind: 'chart', type: 'hbar', x: 'movie_id', series: [series('revenue', 'Revenue', 'money')] },
  {
    name: 'movie_status_distribution', kind: 'chart', type: 'bar', x: 'status', colorBy: 'status',
    series: [series('bookings', 'Bookings', 'int')], extra: series('share', 'Share', 'pct'),
  },
  {
    name: 'freshness', kind: 'facts',
    facts: [['event_age_seconds', 'age'], ['watermark_lag_seconds', 'age'], ['gold_age_seconds', 'age'],
      ['last_event', 'time'], ['watermark', 'time'], ['gold_refreshed_at', 'time'],
      ['gold_lag_median_seconds', 'lag'], ['gold_lag_p95_seconds', 'lag'], ['job_cadence', 'text']],
  },
  { name: 'job_health', kind: 'table', table: JOB_COLUMNS },
];

/* ---------- charts ---------- */

const PALETTE = ['#2563eb', '#059669', '#d97706', '#7c3aed', '#db2777', '#0891b2', '#65a30d', '#dc2626', '#4b5563', '#ca8a04'];
const STATUS_COLORS = { BOOKED: '#2563eb', COMPLETED: '#059669', CANCELLED: '#dc2626' };

function barData(p, rows) {
  const labels = rows.map((r) => (p.xfmt ? p.xfmt(r[p.x]) : FORMAT.text(r[p.x])));
  const datasets = p.series.map((s, i) => ({
    label: s.label,
    data: rows.map((r) => (isNum(r[s.key]) ? r[s.key] : null)),
    backgroundColor: p.colorBy
      ? rows.map((r, j) => STATUS_COLORS[r[p.colorBy]] || PALETTE[j % PALETTE.length])
      : PALETTE[i % PALETTE.length],
    borderRadius: 3,
    maxBarThickness: p.type === 'hbar' ? 28 : 56,
  }));
  return { labels, datasets };
}

/** payment_mix has one row per (method, type); the doughnut sums attempts per method. */
function doughnutData(p, rows) {
  const s = p.series[0];
  const totals = new Map();
  for (const r of rows) {
    const key = FORMAT.text(r[p.x]);
    totals.set(key, (totals.get(key) || 0) + (isNum(r[s.key]) ? r[s.key] : 0));
  }
  const labels = [...totals.keys()];
  return {
    labels,
    datasets: [{
      label: s.label,
      data: [...totals.values()],
      backgroundColor: labels.map((_, i) => PALETTE[i % PALETTE.length]),
      borderColor: '#ffffff',
      borderWidth: 2,
    }],
  };
}

function tooltipLabel(p, ctx) {
  const fmt = FORMAT[p.series[ctx.datasetIndex]?.fmt || 'int'];
  if (p.type !== 'doughnut') return `${ctx.dataset.label}: ${fmt(ctx.raw)}`;
  const total = ctx.dataset.data.reduce((a, b) => a + b, 0);
  return `${ctx.label}: ${fmt(ctx.raw)} (${FORMAT.pct(total ? ctx.raw / total : null)})`;
}

function createChart(p) {
  if (typeof window.Chart !== 'function') return null; // asset missing: panels still show tables/KPIs
  const doughnut = p.type === 'doughnut';
  const horizontal = p.type === 'hbar';
  const valueAxis = horizontal ? 'x' : 'y';
  const categoryAxis = horizontal ? 'y' : 'x';
  const callbacks = { label: (ctx) => tooltipLabel(p, ctx) };
  if (p.extra) callbacks.afterLabel = (ctx) => `${p.extra.label}: ${FORMAT[p.extra.fmt](p.rows[ctx.dataIndex]?.[p.extra.key])}`;
  const options = {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    plugins: {
      legend: { display: doughnut || p.series.length > 1, position: doughnut ? 'right' : 'top', labels: { boxWidth: 12 } },
      tooltip: { callbacks },
    },
  };
  if (doughnut) {
    options.cutout = '60%';
  } else {
    options.indexAxis = categoryAxis;
    options.scales = {
      [valueAxis]: { beginAtZero: true, grid: { color: '#e5e7eb' }, ticks: { callback: (v) => NF_COMPACT.format(v) } },
      [categoryAxis]: { grid: { display: false } },
    };
  }
  return new window.Chart(p.canvas, { type: doughnut ? 'doughnut' : 'bar', data: { labels: [], datasets: [] }, options });
}

/** A text version of the chart for screen readers (the canvas is role="img"). */
function chartSummary(p, labels, datasets) {
  const points = labels.slice(0, 30).map((label, i) =>
    `${label} ${datasets.map((d, k) => FORMAT[p.series[k].fmt](d.data[i])).join(' / ')}`);
  const more = labels.length > 30 ? `; and ${labels.length - 30} more` : '';
  return `${p.alt}. ${datasets.map((d) => d.label).join(' / ')}: ${points.join('; ')}${more}`;
}

/* ---------- renderers: one per panel kind ---------- */

const rowsOf = (resp) => (Array.isArray(resp.rows) && Array.isArray(resp.columns)
  ? resp.rows.map((r) => Object.fromEntries(resp.columns.map((c, i) => [c, r[i]])))
  : []);

function fillTable(table, columns, rows) {
  const frag = document.createDocumentFragment();
  for (const row of rows) {
    const tr = document.createElement('tr');
    for (const col of columns) {
      const td = document.createElement('td');
      if (col.num) td.className = 'num';
      // Data goes in as text or built nodes, never as HTML: event names come from users.
      td.append(col.cell ? col.cell(row) : FORMAT[col.fmt || 'text'](row[col.key]));
      tr.append(td);
    }
    frag.append(tr);
  }
  table.tBodies[0].replaceChildren(frag);
}

function renderKpis(p, resp) {
  const row = rowsOf(resp)[0] || {}; // empty: every card shows "–"
  for (const [field, fmt] of Object.entries(p.fields)) {
    const el = document.getElementById(p.prefix + field);
    setValue(el, row[field] ?? null, fmt);
    const sub = p.subs && p.subs[field] && el && el.parentElement.querySelector('.kpi-sub');
    if (sub) sub.textContent = resp.empty ? '' : p.subs[field](row);
  }
  if (p.emptyState) {
    els.emptyState.textContent = resp.empty ? (resp.message || 'No data yet.') : '';
    els.emptyState.hidden = !resp.empty;
  }
}

function renderChart(p, resp) {
  // Empty: keep the canvas (and its Chart instance), hide it, and let the message show instead.
  p.canvas.hidden = !!resp.empty;
  if (p.tableEl) p.body.hidden = !!resp.empty;
  if (resp.empty) return;
  const rows = rowsOf(resp);
  p.rows = rows;
  const { labels, datasets } = p.type === 'doughnut' ? doughnutData(p, rows) : barData(p, rows);
  // Horizontal bars grow with the number of movies instead of squeezing them.
  if (p.type === 'hbar') p.box.style.height = `${Math.max(240, labels.length * 24 + 50)}px`;
  if (!p.chart) p.chart = createChart(p);
  if (p.chart) {
    p.chart.data = { labels, datasets };
    p.chart.update('none'); // update in place: no flicker on live refresh
  }
  p.canvas.setAttribute('aria-label', chartSummary(p, labels, datasets));
  if (p.tableEl) fillTable(p.tableEl, p.table, rows);
}

function renderTable(p, resp) {
  p.body.hidden = !!resp.empty;
  if (!resp.empty) fillTable(p.tableEl, p.table, rowsOf(resp));
}

function renderFacts(p, resp) {
  p.body.hidden = !!resp.empty;
  const row = rowsOf(resp)[0] || {};
  for (const [key, fmt] of p.facts) setValue(document.getElementById(`fresh-${key}`), row[key] ?? null, fmt);
}

const RENDERERS = { kpis: renderKpis, chart: renderChart, table: renderTable, facts: renderFacts };

/** Which filters a panel applies, in words; a filter it ignores reads as "all ...". */
function appliesNote(applies, f) {
  const a = new Set(applies || []);
  const from = a.has('from') ? f.from : '';
  const to = a.has('to') ? f.to : '';
  const parts = [from && to ? `${from} – ${to}` : from ? `from ${from}` : to ? `until ${to}` : 'all dates'];
  // Category is the event panels' filter and status the movie panels'; the other one is only
  // mentioned when the user has set it, to say that this panel ignores it.
  if (a.has('category') || !a.has('status') || f.category) {
    parts.push(a.has('category') && f.category ? `category ${f.category}` : 'all categories');
  }
  if (a.has('status') || f.status) parts.push(a.has('status') && f.status ? `status ${f.status}` : 'all statuses');
  return parts.join(', ');
}

function renderPanel(p, resp, filters) {
  p.note.textContent = appliesNote(resp.applies, filters);
  p.note.title = `Filters this panel applies: ${(resp.applies || []).join(', ') || 'none'}`;
  if (p.msg) {
    p.msg.textContent = resp.empty ? (resp.message || 'Nothing to show.') : '';
    p.msg.hidden = !resp.empty;
  }
  RENDERERS[p.kind](p, resp);
}

/* ---------- filters & URL ---------- */

let els = {};
let panels = [];
const state = { filters: {}, refreshSeconds: DEFAULT_REFRESH_SECONDS, refreshes: 0, timer: null, inFlight: false, again: false };

function queryString(f) {
  const q = new URLSearchParams();
  for (const k of FILTER_KEYS) if (f[k]) q.append(k, f[k]);
  return q.toString();
}

const panelUrl = (name, qs, format) => {
  const q = new URLSearchParams(qs);
  if (format) q.append('format', format);
  const s = q.toString();
  return `/api/${name}${s ? `?${s}` : ''}`;
};

function readFilterInputs() {
  return { from: els.from.value, to: els.to.value, category: els.category.value, status: els.status.value };
}

/** Rebuilds a select's options only when the list changed, so an open dropdown is not disturbed. */
function fillSelect(select, values, allLabel, current) {
  const list = Array.isArray(values) ? values.map(String) : [];
  // Keep the user's choice even if the server stops listing it: the server then answers 400 and
  // the error banner says why, which beats silently showing unfiltered data.
  if (current && !list.includes(current)) list.push(current);
  const signature = JSON.stringify(list);
  if (select.dataset.options === signature) return;
  select.dataset.options = signature;
  select.replaceChildren(new Option(allLabel, ''), ...list.map((v) => new Option(v, v)));
  select.value = current || '';
}

function setDateBounds(dates) {
  for (const input of [els.from, els.to]) {
    for (const bound of ['min', 'max']) {
      if (dates && dates[bound]) input[bound] = dates[bound];
      else input.removeAttribute(bound);
    }
  }
}

function applyFilterMeta(meta) {
  const secs = Number(meta.refresh_seconds);
  state.refreshSeconds = Number.isFinite(secs) && secs > 0 ? secs : DEFAULT_REFRESH_SECONDS;
  fillSelect(els.category, meta.categories, 'All categories', state.filters.category);
  fillSelect(els.status, meta.statuses, 'All statuses', state.filters.status);
  setDateBounds(meta.dates);
}

function updateCsvLinks(qs) {
  for (const p of panels) if (p.csv) p.csv.href = panelUrl(p.name, qs, 'csv');
}

function onFilterChange() {
  state.filters = readFilterInputs();
  const qs = queryString(state.filters);
  history.replaceState(history.state, '', `${location.pathname}${qs ? `?${qs}` : ''}${location.hash}`);
  updateCsvLinks(qs);
  requestRefresh();
}

function loadFiltersFromUrl() {
  const q = new URLSearchParams(location.search);
  els.from.value = q.get('from') || ''; // the date input drops anything that is not YYYY-MM-DD
  els.to.value = q.get('to') || '';
  fillSelect(els.category, [], 'All categories', q.get('category') || '');
  fillSelect(els.status, [], 'All statuses', q.get('status') || '');
  state.filters = readFilterInputs();
}

/* ---------- fetching & the refresh cycle ---------- */

async function getJson(url) {
  let res;
  try {
    res = await fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' } });
  } catch (_) {
    throw new Error(UNREACHABLE);
  }
  let body = null;
  try {
    body = await res.json();
  } catch (_) { /* not JSON: fall through to a generic message */ }
  if (!res.ok) throw new Error(body && body.error ? String(body.error) : `HTTP ${res.status} from ${url}`);
  if (!body || typeof body !== 'object') throw new Error(`unreadable answer from ${url}`);
  return body;
}

function setState(name) {
  document.body.dataset.state = name;
  els.state.textContent = name;
  els.state.dataset.state = name;
}

function showErrors(errors) {
  els.error.textContent = [...errors].join(' · ');
  els.error.hidden = errors.size === 0;
}

async function refreshCycle() {
  const errors = new Set();
  try {
    applyFilterMeta(await getJson('/api/filters'));
  } catch (e) {
    errors.add(e.message);
  }
  const filters = { ...state.filters };
  const qs = queryString(filters);
  updateCsvLinks(qs);
  // Fetch every panel at once, then render them together so the page changes in one step.
  const results = await Promise.all(panels.map((p) => getJson(panelUrl(p.name, qs)).then(
    (resp) => ({ p, resp }),
    (err) => ({ p, err }),
  )));
  let kpisEmpty = false;
  for (const { p, resp, err } of results) {
    if (err) { errors.add(err.message); continue; }
    try {
      renderPanel(p, resp, filters);
      if (p.name === 'kpis') kpisEmpty = !!resp.empty;
    } catch (e) {
      console.error(`rendering ${p.name}`, e);
      errors.add(`could not render ${p.name}: ${e.message}`);
    }
  }
  showErrors(errors);
  if (errors.size === 0) els.updated.textContent = new Date().toLocaleTimeString();
  // Test hooks: query and state first, the counter last, so a waiter on the counter sees both.
  document.body.dataset.query = qs;
  setState(errors.size ? 'error' : kpisEmpty ? 'empty' : 'ready');
  state.refreshes += 1;
  document.body.dataset.refreshes = String(state.refreshes);
}

/** Starts a cycle now; if one is in flight, queues exactly one more right after it. */
function requestRefresh() {
  if (state.inFlight) {
    state.again = true;
    return;
  }
  clearTimeout(state.timer);
  runCycle();
}

async function runCycle() {
  state.inFlight = true;
  try {
    await refreshCycle();
  } catch (e) {
    console.error('refresh cycle failed', e); // refreshCycle catches per call; this is a bug guard
  } finally {
    state.inFlight = false;
    if (state.again) {
      state.again = false;
      runCycle();
    } else {
      state.timer = setTimeout(runCycle, state.refreshSeconds * 1000);
    }
  }
}

/* ---------- start-up ---------- */

const ALT = {
  revenue_by_category: 'Revenue by event category',
  bookings_by_hour: 'Bookings and paid bookings per hour of day (UTC)',
  payment_mix: 'Payment attempts per payment method',
  movie_revenue_by_status: 'Movie booking revenue per status',
  movie_bookings_by_movie: 'Bookings per movie',
  movie_tickets_by_status: 'Movie tickets per status',
  movie_revenue_by_movie: 'Revenue per movie',
  movie_status_distribution: 'Movie bookings per status',
};

/** Attaches a panel's DOM elements to its config entry. */
function bindPanel(cfg) {
  const el = document.getElementById(`panel-${cfg.name}`);
  const p = { ...cfg, el, rows: [], chart: null, alt: ALT[cfg.name] || cfg.name };
  p.note = el.querySelector('.applies');
  p.csv = el.querySelector('a.csv');
  p.msg = el.querySelector('.panel-message');
  p.body = el.querySelector('.panel-body');
  p.canvas = el.querySelector('canvas');
  p.box = el.querySelector('.chart-box');
  p.tableEl = el.querySelector('table');
  if (p.tableEl && p.table) {
    const tr = document.createElement('tr');
    for (const col of p.table) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = col.label;
      if (col.num) th.className = 'num';
      tr.append(th);
    }
    p.tableEl.tHead.replaceChildren(tr);
  }
  return p;
}

function configureChartDefaults() {
  if (typeof window.Chart !== 'function') return;
  const Chart = window.Chart;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = '#4b5563';
}

function init() {
  els = {
    from: document.getElementById('filter-from'),
    to: document.getElementById('filter-to'),
    category: document.getElementById('filter-category'),
    status: document.getElementById('filter-status'),
    error: document.getElementById('error'),
    emptyState: document.getElementById('empty-state'),
    state: document.getElementById('state'),
    updated: document.getElementById('last-updated'),
  };
  configureChartDefaults();
  panels = PANELS.map(bindPanel);
  loadFiltersFromUrl();
  updateCsvLinks(queryString(state.filters));
  for (const input of [els.from, els.to, els.category, els.status]) input.addEventListener('change', onFilterChange);
  document.body.dataset.refreshes = '0';
  setState('loading');
  requestRefresh(); // the first cycle fetches /api/filters first, which sets refresh_seconds
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
