// Prism console: a read-only view of one tenant's jobs and batches through Prism's own /v1 API.
// The key lives in sessionStorage and travels only as a bearer header; every value from the API
// is written with textContent, never parsed as HTML.
'use strict';

const KEY_STORAGE = 'prism-console-key';
const POLL_MS = 2000;
const HOUR_S = 3600;
// Pages of 100 read per kind for the charts: enough for the last hour of a busy tenant without
// making one poll unbounded.
const CHART_PAGES = 5;
const LIST_ROWS = 50;
const TERMINAL_BATCH = new Set(['completed', 'failed', 'expired', 'cancelled']);

const $ = (id) => document.getElementById(id);
// `session` counts sign-ins and sign-outs: an answer that arrives after one is dropped, never shown.
const state = { timer: null, selected: null, breakdowns: new Map(), polling: false, session: 0 };

function key() {
  return sessionStorage.getItem(KEY_STORAGE);
}

class SignedOut extends Error {}

// Relative to the page, so a path prefix in front of Prism (an API Gateway stage) still works.
async function call(path, { raw = false, headers = {} } = {}) {
  const response = await fetch(new URL(path, document.baseURI), {
    headers: { ...headers, Authorization: `Bearer ${key()}` },
    cache: 'no-store',
    credentials: 'omit',
  });
  if (response.status === 401) {
    signOut('The key was refused; sign in again.');
    throw new SignedOut();
  }
  if (!response.ok) {
    let message = `${response.status}`;
    try {
      message = (await response.json()).error.message;
    } catch (_) { /* not our JSON error shape */ }
    throw new Error(message);
  }
  return raw ? response : response.json();
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function statusBadge(status) {
  const badge = el('span', status, `status status-${status}`);
  badge.dataset.status = status;
  return badge;
}

function time(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const d = new Date(seconds * 1000);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—';
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

// From submit (or due time, for scheduled jobs) until a worker started it.
function queueWait(job) {
  if (!job.started_at) return null;
  const from = job.scheduled_at ? Date.parse(job.scheduled_at) / 1000 : job.created_at;
  return Math.max(0, Math.round(job.started_at - from));
}

// ---- sign in and out ----

function showSignedIn(signedIn) {
  $('sign-in').hidden = signedIn;
  $('app').hidden = !signedIn;
  $('sign-out').hidden = !signedIn;
}

function signOut(message) {
  state.session += 1;
  sessionStorage.removeItem(KEY_STORAGE);
  clearTimeout(state.timer);
  state.timer = null;
  state.selected = null;
  state.breakdowns.clear();
  for (const id of ['batches', 'async-jobs', 'scheduled-jobs']) {
    $(id).tBodies[0].replaceChildren();
  }
  $('detail-body').replaceChildren();
  delete $('detail-body').dataset.shown;
  $('detail-title').textContent = 'Details';
  $('detail-hint').textContent = 'Choose a batch or a job.';
  $('updated').textContent = '';
  $('sign-in-error').textContent = message || '';
  showSignedIn(false);
}

async function signIn(event) {
  event.preventDefault();
  const input = $('key');
  const typed = input.value.trim();
  input.value = '';
  if (!typed) return;
  sessionStorage.setItem(KEY_STORAGE, typed);
  try {
    await call('v1/async?limit=1');
  } catch (error) {
    if (!(error instanceof SignedOut)) signOut(`Prism did not answer: ${error.message}`);
    return;
  }
  $('sign-in-error').textContent = '';
  start();
}

function start() {
  state.session += 1;
  showSignedIn(true);
  poll();
}

// ---- polling ----

// One poll at a time: a poll already under way schedules the next one itself.
async function poll() {
  clearTimeout(state.timer);
  if (!key() || state.polling) return;
  state.polling = true;
  try {
    if (!document.hidden) await refresh();
    if (!document.hidden) $('updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (!(error instanceof SignedOut)) $('updated').textContent = `Update failed: ${error.message}`;
  } finally {
    state.polling = false;
  }
  if (key()) state.timer = setTimeout(poll, POLL_MS);
}

async function refresh() {
  const session = state.session;
  const [batches, asyncJobs, scheduledJobs] = await Promise.all([
    call('v1/batches?limit=100'),
    recentJobs('v1/async'),
    recentJobs('v1/scheduled'),
  ]);
  if (session !== state.session) return;
  renderBatches(batches.data);
  renderJobs('async-jobs', asyncJobs, false);
  renderJobs('scheduled-jobs', scheduledJobs, true);
  renderCharts(asyncJobs.concat(scheduledJobs));
  if (state.selected) await refreshDetail(batches.data);
}

// Newest first, reading further pages while they still reach into the last hour.
async function recentJobs(path) {
  const since = Date.now() / 1000 - HOUR_S;
  let jobs = [];
  let after = null;
  for (let page = 0; page < CHART_PAGES; page += 1) {
    const query = after ? `?limit=100&after=${encodeURIComponent(after)}` : '?limit=100';
    const list = await call(path + query);
    jobs = jobs.concat(list.data);
    const last = list.data[list.data.length - 1];
    if (!list.has_more || !last || last.created_at < since) break;
    after = last.id;
  }
  return jobs;
}

function fillTable(tableId, rows) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...rows);
  const empty = document.querySelector(`[data-empty-for="${tableId}"]`);
  if (empty) empty.hidden = rows.length > 0;
}

function selectable(row, kind, id) {
  row.dataset.id = id;
  row.tabIndex = 0;
  if (state.selected && state.selected.id === id) row.classList.add('selected');
  const choose = () => select(kind, id);
  row.addEventListener('click', choose);
  row.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') choose();
  });
  return row;
}

function progressOf(batch) {
  const counts = batch.request_counts || { total: 0, completed: 0, failed: 0 };
  const done = counts.completed + counts.failed;
  const bar = document.createElement('progress');
  bar.max = Math.max(counts.total, 1);
  bar.value = done;
  bar.dataset.done = String(done);
  bar.dataset.total = String(counts.total);
  const cell = el('td');
  cell.append(bar, el('span', `${done}/${counts.total}`, 'count'));
  return cell;
}

function renderBatches(batches) {
  fillTable('batches', batches.map((batch) => {
    const row = el('tr');
    const status = el('td');
    status.append(statusBadge(batch.status));
    row.append(el('td', batch.id, 'id'), status, progressOf(batch), el('td', time(batch.created_at), 'wide'));
    return selectable(row, 'batch', batch.id);
  }));
}

function renderJobs(tableId, jobs, scheduled) {
  // The charts read up to CHART_PAGES pages; the list shows the newest of them.
  fillTable(tableId, jobs.slice(0, LIST_ROWS).map((job) => {
    const row = el('tr');
    const status = el('td');
    status.append(statusBadge(job.status));
    row.append(el('td', job.id, 'id'), status, el('td', job.model, 'wide'));
    row.append(scheduled ? el('td', job.scheduled_at ? time(Date.parse(job.scheduled_at) / 1000) : '—')
      : el('td', time(job.created_at), 'wide'));
    row.append(el('td', duration(queueWait(job))));
    return selectable(row, scheduled ? 'scheduled' : 'async', job.id);
  }));
}

// A file's bytes, or (when the blob store serves it directly, as S3 does for large files on
// AWS) {url}: the CSP lets the page reach only its own origin, so Prism is asked for the URL
// rather than a redirect the page could not follow.
async function fileContent(fileId) {
  const response = await call(`v1/files/${encodeURIComponent(fileId)}/content`, {
    raw: true, headers: { 'x-prism-redirect': 'json' },
  });
  if ((response.headers.get('content-type') || '').startsWith('application/json')) {
    return { url: (await response.json()).url };
  }
  return { blob: await response.blob() };
}

// ---- details ----

function select(kind, id) {
  state.selected = { kind, id };
  for (const row of document.querySelectorAll('tbody tr')) {
    row.classList.toggle('selected', row.dataset.id === id);
  }
  $('detail-body').replaceChildren();
  refreshDetail(null).then(() => {
    if (window.matchMedia('(max-width: 900px)').matches) $('detail').scrollIntoView();
  });
}

async function refreshDetail(batches) {
  const { kind, id } = state.selected;
  const session = state.session;
  // Answers for an object no longer chosen (or a session since ended) are dropped.
  const current = () => session === state.session && state.selected && state.selected.id === id;
  try {
    if (kind === 'batch') {
      const batch = (batches && batches.find((b) => b.id === id)) || await call(`v1/batches/${encodeURIComponent(id)}`);
      const breakdown = await errorBreakdown(batch);
      if (current()) showBatch(batch, breakdown);
    } else {
      const job = await call(`v1/${kind}/${encodeURIComponent(id)}`);
      if (current()) showJob(job, kind);
    }
  } catch (error) {
    if (!(error instanceof SignedOut)) $('detail-hint').textContent = `Could not load ${id}: ${error.message}`;
  }
}

function facts(pairs) {
  const list = el('dl');
  for (const [name, value] of pairs) {
    list.append(el('dt', name), value instanceof Node ? wrap('dd', value) : el('dd', value));
  }
  return list;
}

function wrap(tag, child) {
  const node = el(tag);
  node.append(child);
  return node;
}

function setDetail(title, ...children) {
  $('detail-title').textContent = title;
  $('detail-hint').textContent = '';
  // Only replaced when the shown object changes, so an opened result stays open across polls.
  $('detail-body').replaceChildren(...children);
}

function showJob(job, kind) {
  const key = `${job.id}:${job.status}:${job.attempts}`;
  if ($('detail-body').dataset.shown === key) return;
  const pairs = [
    ['Id', job.id],
    ['Status', statusBadge(job.status)],
    ['Model', job.model],
    ['Created', time(job.created_at)],
  ];
  if (job.scheduled_at) pairs.push(['Due', time(Date.parse(job.scheduled_at) / 1000)]);
  pairs.push(
    ['Started', time(job.started_at)],
    ['Finished', time(job.completed_at)],
    ['Queue wait', duration(queueWait(job))],
    ['Run time', job.started_at && job.completed_at ? duration(job.completed_at - job.started_at) : '—'],
    ['Attempts', job.attempts ?? '—'],
  );
  const children = [facts(pairs)];
  if (job.error) {
    children.push(el('h3', 'Error'), facts([
      ['Code', job.error.code ?? '—'],
      ['Type', job.error.type ?? '—'],
      ['Message', job.error.message ?? '—'],
    ]));
  }
  if (job.result) {
    // Read again on click, so the completion is fetched and shown only when asked for.
    const reveal = el('button', 'Show result', 'secondary');
    reveal.id = 'show-result';
    reveal.type = 'button';
    reveal.addEventListener('click', async () => {
      reveal.disabled = true;
      try {
        const fresh = await call(`v1/${kind}/${encodeURIComponent(job.id)}`);
        const pre = el('pre', JSON.stringify(fresh.result, null, 2));
        pre.id = 'result';
        reveal.replaceWith(pre);
      } catch (error) {
        reveal.disabled = false;
        if (!(error instanceof SignedOut)) reveal.textContent = `Show result (failed: ${error.message})`;
      }
    });
    children.push(el('h3', 'Result'), reveal);
  }
  setDetail(kind === 'async' ? 'Async job' : 'Scheduled job', ...children);
  $('detail-body').dataset.shown = key;
}

function showBatch(batch, breakdown) {
  const counts = batch.request_counts;
  const key = `${batch.id}:${batch.status}:${counts.completed}:${counts.failed}:${breakdown.size}:${breakdown.unread}`;
  if ($('detail-body').dataset.shown === key) return;
  const bar = progressOf(batch).firstChild;
  bar.id = 'detail-progress';
  const children = [facts([
    ['Id', batch.id],
    ['Status', statusBadge(batch.status)],
    ['Progress', bar],
    ['Lines', `${counts.total} in all: ${counts.completed} completed, ${counts.failed} failed`],
    ['Endpoint', batch.endpoint],
    ['Created', time(batch.created_at)],
    ['Started', time(batch.in_progress_at)],
    ['Finished', time(batch.completed_at || batch.failed_at || batch.cancelled_at || batch.expired_at)],
  ])];
  children.push(el('h3', 'Errors by code'));
  if (breakdown.size > 0) {
    const table = el('table');
    table.id = 'error-breakdown';
    const head = el('tr');
    head.append(el('th', 'Code'), el('th', 'Lines'));
    table.append(wrap('thead', head));
    const body = el('tbody');
    for (const [code, n] of [...breakdown].sort((a, b) => b[1] - a[1])) {
      const row = el('tr');
      row.dataset.code = code;
      row.append(el('td', code), el('td', n));
      body.append(row);
    }
    table.append(body);
    children.push(table);
  } else if (!breakdown.unread) {
    children.push(el('p', TERMINAL_BATCH.has(batch.status) ? 'None.' : 'Shown once the batch has finished.', 'muted'));
  }
  if (breakdown.unread) {
    children.push(el('p', 'The error file is too large to read here: download it for its codes.', 'muted'));
  }
  const actions = el('div', null, 'actions');
  for (const [label, fileId, name] of [
    ['Download output', batch.output_file_id, 'output'],
    ['Download errors', batch.error_file_id, 'errors'],
  ]) {
    if (!fileId) continue;
    const button = el('button', label, 'secondary');
    button.type = 'button';
    button.dataset.file = fileId;
    button.addEventListener('click', () => download(fileId, `${batch.id}-${name}.jsonl`, button));
    actions.append(button);
  }
  if (actions.childElementCount > 0) children.push(el('h3', 'Files'), actions);
  setDetail('Batch', ...children);
  $('detail-body').dataset.shown = key;
}

// Validation errors from the batch object, plus one count per line of its error file (read once:
// the file never changes).
async function errorBreakdown(batch) {
  const counts = new Map();
  for (const error of (batch.errors && batch.errors.data) || []) {
    counts.set(error.code, (counts.get(error.code) || 0) + 1);
  }
  if (batch.error_file_id) {
    if (!state.breakdowns.has(batch.error_file_id)) {
      const content = await fileContent(batch.error_file_id);
      // Too large for the API to serve itself: the counts stay unknown rather than guessed.
      const fromFile = content.url ? null : new Map();
      const text = content.blob ? await content.blob.text() : '';
      for (const line of fromFile ? text.split('\n') : []) {
        if (!line.trim()) continue;
        let code = 'unreadable_line';
        try {
          const parsed = JSON.parse(line);
          const response = parsed.response;
          code = (parsed.error && parsed.error.code)
            || (response && response.body && response.body.error && response.body.error.code)
            || (response ? `http_${response.status_code}` : 'unknown');
        } catch (_) { /* counted as unreadable */ }
        fromFile.set(code, (fromFile.get(code) || 0) + 1);
      }
      state.breakdowns.set(batch.error_file_id, fromFile);
    }
    const fromFile = state.breakdowns.get(batch.error_file_id);
    for (const [code, n] of fromFile || []) {
      counts.set(code, (counts.get(code) || 0) + n);
    }
    counts.unread = fromFile === null;
  }
  return counts;
}

// The key may not go in a URL, so the file is read with the header and handed over as a blob.
async function download(fileId, filename, button) {
  button.disabled = true;
  try {
    const content = await fileContent(fileId);
    const link = el('a');
    // A short-lived signed URL of the blob store carries no key of the tenant's.
    link.href = content.url || URL.createObjectURL(content.blob);
    link.download = filename;
    link.rel = 'noopener';
    document.body.append(link);
    link.click();
    link.remove();
    if (content.blob) setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    button.dataset.downloaded = content.blob ? String(content.blob.size) : 'url';
  } catch (error) {
    if (!(error instanceof SignedOut)) button.textContent = `${button.textContent} (failed: ${error.message})`;
  } finally {
    button.disabled = false;
  }
}

// ---- charts ----

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Sixty one-minute buckets ending now: jobs finished per minute, and the mean queue wait of the
// jobs that started in each minute.
function perMinute(jobs) {
  const now = Date.now() / 1000;
  const finished = new Array(60).fill(0);
  const waitSum = new Array(60).fill(0);
  const started = new Array(60).fill(0);
  const bucket = (t) => 59 - Math.floor((now - t) / 60);
  for (const job of jobs) {
    if (job.completed_at && ['completed', 'failed'].includes(job.status)) {
      const b = bucket(job.completed_at);
      if (b >= 0 && b < 60) finished[b] += 1;
    }
    const wait = queueWait(job);
    if (wait !== null) {
      const b = bucket(job.started_at);
      if (b >= 0 && b < 60) {
        waitSum[b] += wait;
        started[b] += 1;
      }
    }
  }
  return { finished, wait: waitSum.map((sum, i) => (started[i] ? sum / started[i] : 0)) };
}

function drawBars(target, values, className, unit) {
  const width = 600;
  const height = 160;
  const left = 34;
  const bottom = 20;
  const max = Math.max(...values, 1);
  const step = (width - left - 4) / values.length;
  const nodes = [
    svg('line', { x1: left, y1: height - bottom, x2: width, y2: height - bottom }),
    svg('text', { x: 2, y: 12 }, `${Math.round(max * 10) / 10}${unit}`),
    svg('text', { x: 2, y: height - bottom }, '0'),
    svg('text', { x: left, y: height - 4 }, '−60 min'),
    svg('text', { x: width - 40, y: height - 4 }, 'now'),
  ];
  values.forEach((value, i) => {
    if (value <= 0) return;
    const h = ((height - bottom - 16) * value) / max;
    const bar = svg('rect', {
      x: left + i * step + 1, y: height - bottom - h, width: Math.max(step - 2, 1), height: h, class: className,
    });
    bar.append(svg('title', {}, `${Math.round(value * 10) / 10}${unit}`));
    nodes.push(bar);
  });
  $(target).replaceChildren(...nodes);
  $(target).dataset.total = String(values.reduce((a, b) => a + b, 0));
}

function renderCharts(jobs) {
  const { finished, wait } = perMinute(jobs);
  drawBars('chart-throughput', finished, 'bar-throughput', '');
  drawBars('chart-wait', wait, 'bar-wait', ' s');
}

// ---- start ----

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', () => signOut(''));
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && key()) poll();
  });
  if (key()) start();
  else showSignedIn(false);
});
