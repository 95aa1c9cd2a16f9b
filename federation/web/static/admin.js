// Biobank admins' page: sync history with counts and errors, starting a sync (when the
// API offers it), and the records quarantined as invalid, with the reasons.

import { namedType, request, schemaCapabilities } from './api.js';
import { datedName, download } from './csv.js';
import { byId, fill, h } from './dom.js';
import { currentLanguage, formatDateTime, formatNumber, has, onLanguageChange, t } from './i18n.js';
import { currentIdentity, initShell } from './shell.js';

const RUNS = `query Runs($biobank: ID, $first: Int) {
  syncRuns(biobank: $biobank, first: $first) {
    id biobankId kind triggeredBy startedAt finishedAt outcome
    read indexed rejected deleted withdrawn durationSeconds generation error
  }
}`;
const QUARANTINE = `query Quarantine($biobank: ID!, $first: Int, $offset: Int) {
  quarantine(biobank: $biobank, first: $first, offset: $offset) {
    biobankId stream sourceId position field value reason payload runId firstSeen lastSeen
  }
}`;
const REQUESTS = `query Requests($biobank: ID, $first: Int) {
  syncRequests(biobank: $biobank, first: $first) {
    requestId biobankId mode requestedBy requestedAt takenAt state
    run { id outcome finishedAt error }
  }
}`;
const SCHEDULES = `query Schedules($biobank: ID) {
  syncSchedules(biobank: $biobank) { biobankId mode cron nextAt lastAt }
}`;
const BIOBANKS = '{ biobanks { id name nameJa country } }';
const REQUEST_PAGE = 10;
// While a requested sync is queued or running, the page asks again this often (ms).
const WATCH_INTERVAL = 2000;
const RUN_PAGE = 50;
const QUARANTINE_PAGE = 25;
const COUNTS = ['read', 'indexed', 'rejected', 'deleted', 'withdrawn'];

const biobanks = new Map();
let runs = null;
let runsError = null;
let quarantine = { offset: 0, rows: null, error: null };
let requests = { rows: null, error: null };
let schedules = { rows: null, error: null };
let watchTimer = null;
let startSync = null; // {field, argument} when the API has a usable `startSync` mutation
// Each load takes a ticket; an answer that arrives after a newer load started is dropped
// (signing out and in again quickly must not show the earlier answer last).
const tickets = { runs: 0, quarantine: 0, all: 0, requests: 0, schedules: 0 };

function biobankName(id) {
  const bb = biobanks.get(id);
  if (!bb) return id;
  return currentLanguage() === 'ja' && bb.nameJa ? bb.nameJa : bb.name;
}

function errorText(error) {
  if (!error) return '';
  const known = has(`admin.error.${error.code}`)
    ? t(`admin.error.${error.code}`)
    : has(`error.${error.code}`) ? t(`error.${error.code}`) : t('error.default');
  return error.code === 'UNAUTHENTICATED' || error.code === 'FORBIDDEN' ? known : `${known} (${error.message})`;
}

function errorNotice(error) {
  return h(
    'div',
    { class: `notice ${error.code === 'UNAUTHENTICATED' || error.code === 'FORBIDDEN' ? 'access' : 'error'}`, role: 'alert' },
    h('p', { text: errorText(error) }),
    error.code === 'UNAUTHENTICATED'
      ? h('button', { type: 'button', onclick: () => { byId('signin').open = true; byId('credential').focus(); }, text: t('auth.signin') })
      : null,
  );
}

// --- sync runs ------------------------------------------------------------------------

async function loadRuns() {
  const biobank = byId('sync-biobank').value || null;
  byId('sync-status').textContent = t('admin.loading');
  const ticket = ++tickets.runs;
  const { data, errors } = await request(RUNS, { biobank, first: RUN_PAGE }).catch((err) => ({
    data: null,
    errors: [{ code: err.code, message: err.message }],
  }));
  if (ticket !== tickets.runs) return;
  runs = data && data.syncRuns ? data.syncRuns : null;
  runsError = errors.length ? errors[0] : null;
  renderRuns();
}

function outcomeBadge(outcome) {
  return h('span', { class: `badge outcome-${outcome.toLowerCase()}`, text: t(`sync.outcome.${outcome}`) });
}

function renderRuns() {
  byId('export-runs').disabled = !(runs && runs.length);
  const status = byId('sync-status');
  if (runsError || !runs) {
    status.textContent = '';
    fill(byId('sync-summary'));
    fill(byId('sync-table'), runsError ? errorNotice(runsError) : '');
    return;
  }
  status.textContent = t('sync.count', { n: formatNumber(runs.length) });
  // The latest run of each biobank, as cards: what an admin checks first.
  const latest = new Map();
  for (const run of runs) if (!latest.has(run.biobankId)) latest.set(run.biobankId, run);
  fill(
    byId('sync-summary'),
    [...latest.values()].map((run) =>
      h(
        'article',
        { class: 'card', 'data-biobank': run.biobankId },
        h('h3', { text: biobankName(run.biobankId) }),
        h('p', {}, outcomeBadge(run.outcome), ' ', h('span', { text: formatDateTime(run.finishedAt || run.startedAt) })),
        h('p', { class: 'hint', text: COUNTS.map((c) => `${t(`sync.${c}`)} ${formatNumber(run[c])}`).join(' · ') }),
        run.error ? h('p', { class: 'run-error', text: run.error }) : null,
      ),
    ),
  );
  if (!runs.length) {
    fill(byId('sync-table'), h('p', { class: 'hint', text: t('sync.empty') }));
    return;
  }
  const columns = ['biobank', 'started', 'outcome', 'kind', 'trigger', ...COUNTS, 'duration', 'error'];
  fill(
    byId('sync-table'),
    h(
      'table',
      { class: 'data', id: 'sync-runs' },
      h('caption', { class: 'visually-hidden', text: t('sync.heading') }),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: COUNTS.includes(c) || c === 'duration' ? 'num' : null, text: t(`sync.${c}`) })))),
      h(
        'tbody',
        {},
        runs.map((run) =>
          h(
            'tr',
            { 'data-run': run.id, 'data-biobank': run.biobankId },
            h('th', { scope: 'row', text: biobankName(run.biobankId) }),
            h('td', {}, h('time', { datetime: run.startedAt, text: formatDateTime(run.startedAt) })),
            h('td', {}, outcomeBadge(run.outcome)),
            h('td', { text: has(`sync.kind.${run.kind}`) ? t(`sync.kind.${run.kind}`) : run.kind }),
            h('td', { text: run.triggeredBy }),
            COUNTS.map((c) => h('td', { class: `num${c === 'rejected' && run[c] ? ' warn' : ''}`, 'data-field': c, text: formatNumber(run[c]) })),
            h('td', { class: 'num', text: run.durationSeconds === null ? '' : t('sync.seconds', { n: formatNumber(Math.round(run.durationSeconds * 10) / 10) }) }),
            h('td', { class: 'run-error', text: run.error || '' }),
          ),
        ),
      ),
    ),
  );
}

function exportRuns() {
  const columns = ['biobank', 'started', 'finished', 'outcome', 'kind', 'trigger', ...COUNTS, 'duration', 'generation', 'error'];
  const rows = runs.map((run) => [
    run.biobankId, run.startedAt, run.finishedAt || '', run.outcome, run.kind, run.triggeredBy,
    ...COUNTS.map((c) => run[c]), run.durationSeconds ?? '', run.generation || '', run.error || '',
  ]);
  download(datedName('sync-runs'), [columns.map((c) => t(`sync.${c}`)), ...rows]);
}

// --- requested syncs and schedules -----------------------------------------------------

async function loadRequests() {
  const biobank = byId('sync-biobank').value || null;
  const ticket = ++tickets.requests;
  const { data, errors } = await request(REQUESTS, { biobank, first: REQUEST_PAGE }).catch((err) => ({
    data: null,
    errors: [{ code: err.code, message: err.message }],
  }));
  if (ticket !== tickets.requests) return;
  const before = requests.rows;
  requests = { rows: data && data.syncRequests ? data.syncRequests : null, error: errors.length ? errors[0] : null };
  renderRequests();
  // A request that finished since the last look has a new run: show it in the history.
  const open = (rows) => new Set((rows || []).filter((r) => r.state !== 'FINISHED').map((r) => r.requestId));
  const wasOpen = open(before);
  if ((requests.rows || []).some((r) => r.state === 'FINISHED' && wasOpen.has(r.requestId))) loadRuns();
  watchRequests();
}

// Ask again while anything is queued or running, so the states move on screen.
function watchRequests() {
  clearTimeout(watchTimer);
  const open = (requests.rows || []).filter((r) => r.state !== 'FINISHED').length;
  byId('requests-status').textContent = open ? t('syncrequests.watching', { n: formatNumber(open) }) : '';
  if (open) watchTimer = setTimeout(loadRequests, WATCH_INTERVAL);
}

function requestBadge(row) {
  const finished = row.state === 'FINISHED' && row.run;
  return h(
    'span',
    { class: `badge request-${row.state.toLowerCase()}${finished ? ` outcome-${row.run.outcome.toLowerCase()}` : ''}` },
    t(`syncrequests.state.${row.state}`),
    finished ? ` · ${t(`sync.outcome.${row.run.outcome}`)}` : '',
  );
}

function renderRequests() {
  const { rows, error } = requests;
  if (error || !rows) {
    fill(byId('requests-table'), error ? errorNotice(error) : '');
    return;
  }
  if (!rows.length) {
    fill(byId('requests-table'), h('p', { class: 'hint', text: t('syncrequests.empty') }));
    return;
  }
  const columns = ['biobank', 'requested', 'state', 'mode', 'by'];
  fill(
    byId('requests-table'),
    h(
      'table',
      { class: 'data', id: 'sync-requests' },
      h('caption', { class: 'visually-hidden', text: t('syncrequests.heading') }),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', text: t(c === 'biobank' ? 'sync.biobank' : `syncrequests.${c}`) })))),
      h(
        'tbody',
        {},
        rows.map((row) =>
          h(
            'tr',
            { 'data-request': row.requestId, 'data-state': row.state },
            h('th', { scope: 'row', text: biobankName(row.biobankId) }),
            h('td', {}, h('time', { datetime: row.requestedAt, text: formatDateTime(row.requestedAt) })),
            h('td', {}, requestBadge(row)),
            h('td', { text: has(`sync.kind.${row.mode}`) ? t(`sync.kind.${row.mode}`) : row.mode }),
            h('td', { text: row.requestedBy }),
          ),
        ),
      ),
    ),
  );
}

async function loadSchedules() {
  const biobank = byId('sync-biobank').value || null;
  const ticket = ++tickets.schedules;
  const { data, errors } = await request(SCHEDULES, { biobank }).catch((err) => ({
    data: null,
    errors: [{ code: err.code, message: err.message }],
  }));
  if (ticket !== tickets.schedules) return;
  schedules = { rows: data && data.syncSchedules ? data.syncSchedules : null, error: errors.length ? errors[0] : null };
  renderSchedules();
}

function renderSchedules() {
  const { rows, error } = schedules;
  if (error || !rows) {
    fill(byId('schedules-table'), error ? errorNotice(error) : '');
    return;
  }
  if (!rows.length) {
    fill(byId('schedules-table'), h('p', { class: 'hint', text: t('schedules.empty') }));
    return;
  }
  const columns = ['biobank', 'mode', 'cron', 'next', 'last'];
  fill(
    byId('schedules-table'),
    h(
      'table',
      { class: 'data', id: 'sync-schedules' },
      h('caption', { class: 'visually-hidden', text: t('schedules.heading') }),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', text: t(c === 'biobank' ? 'sync.biobank' : `schedules.${c}`) })))),
      h(
        'tbody',
        {},
        rows.map((row) =>
          h(
            'tr',
            { 'data-biobank': row.biobankId },
            h('th', { scope: 'row', text: biobankName(row.biobankId) }),
            h('td', { text: has(`sync.kind.${row.mode}`) ? t(`sync.kind.${row.mode}`) : row.mode }),
            h('td', { class: 'mono', text: row.cron }),
            h('td', {}, h('time', { datetime: row.nextAt, text: formatDateTime(row.nextAt) })),
            h('td', {}, h('time', { datetime: row.lastAt, text: formatDateTime(row.lastAt) })),
          ),
        ),
      ),
    ),
  );
}

// --- starting a sync ------------------------------------------------------------------

async function checkStartSync() {
  const caps = await schemaCapabilities();
  const field = caps.mutations.get('startSync');
  const help = byId('start-sync-help');
  startSync = null;
  if (!field) {
    help.textContent = t(caps.known ? 'sync.start.unavailable' : 'sync.start.unknown');
    help.dataset.i18n = caps.known ? 'sync.start.unavailable' : 'sync.start.unknown';
    updateStartButton();
    return;
  }
  const argument = field.args.find((a) => ['biobank', 'biobankId', 'id'].includes(a.name));
  const otherRequired = field.args.filter((a) => a !== argument && a.type.kind === 'NON_NULL' && a.defaultValue == null);
  if (!argument || otherRequired.length) {
    help.textContent = t('sync.start.unsupported');
    help.dataset.i18n = 'sync.start.unsupported';
  } else {
    const full = field.args.find((a) => a.name === 'full' && namedType(a.type) === 'Boolean');
    startSync = {
      argument: argument.name,
      type: namedType(argument.type),
      required: argument.type.kind === 'NON_NULL',
      full: Boolean(full),
    };
    byId('sync-full-option').hidden = !full;
  }
  updateStartButton();
}

function updateStartButton() {
  const button = byId('start-sync');
  const help = byId('start-sync-help');
  if (!startSync) {
    button.disabled = true;
    return;
  }
  const biobank = byId('sync-biobank').value;
  const identity = currentIdentity();
  let key = 'sync.start.ready';
  if (!identity) key = 'sync.start.signin';
  else if (!biobank && startSync.required) key = 'sync.start.choose';
  else if (biobank && Array.isArray(identity.adminOf) && !identity.adminOf.includes(biobank)) key = 'sync.start.notadmin';
  button.disabled = key !== 'sync.start.ready';
  help.dataset.i18n = key;
  help.textContent = t(key);
}

// The outcome of the last start, as a function of the language, so a switch re-says it.
let startMessage = () => '';

function showStartMessage(message) {
  startMessage = message;
  byId('start-sync-status').textContent = message();
}

async function runStartSync() {
  const biobank = byId('sync-biobank').value;
  if (!startSync || (!biobank && startSync.required)) return;
  const type = `${startSync.type || 'ID'}${startSync.required ? '!' : ''}`;
  const full = startSync.full && byId('sync-full').checked;
  const mutation = startSync.full
    ? `mutation Start($biobank: ${type}, $full: Boolean) { startSync(${startSync.argument}: $biobank, full: $full) { __typename } }`
    : `mutation Start($biobank: ${type}) { startSync(${startSync.argument}: $biobank) { __typename } }`;
  showStartMessage(() => t('sync.start.running'));
  const variables = startSync.full ? { biobank: biobank || null, full } : { biobank: biobank || null };
  const { errors } = await request(mutation, variables).catch((err) => ({
    errors: [{ code: err.code, message: err.message }],
  }));
  const error = errors[0];
  showStartMessage(() => (error ? errorText(error) : t('sync.start.done', { biobank: biobankName(biobank) })));
  await Promise.all([loadRuns(), loadRequests()]);
}

// --- quarantine -----------------------------------------------------------------------

async function loadQuarantine(offset = 0) {
  const biobank = byId('quarantine-biobank').value;
  if (!biobank) return;
  byId('quarantine-status').textContent = t('admin.loading');
  const ticket = ++tickets.quarantine;
  const { data, errors } = await request(QUARANTINE, { biobank, first: QUARANTINE_PAGE, offset }).catch((err) => ({
    data: null,
    errors: [{ code: err.code, message: err.message }],
  }));
  if (ticket !== tickets.quarantine) return;
  quarantine = { offset, rows: data && data.quarantine ? data.quarantine : null, error: errors.length ? errors[0] : null };
  renderQuarantine();
}

function renderQuarantine() {
  const { rows, error, offset } = quarantine;
  byId('quarantine-prev').disabled = !rows || offset === 0;
  byId('quarantine-next').disabled = !rows || rows.length < QUARANTINE_PAGE;
  byId('quarantine-page').textContent = rows && rows.length
    ? t('records.range', { from: formatNumber(offset + 1), to: formatNumber(offset + rows.length) })
    : '';
  const status = byId('quarantine-status');
  if (error || !rows) {
    status.textContent = '';
    fill(byId('quarantine-table'), error ? errorNotice(error) : '');
    return;
  }
  status.textContent = rows.length || offset ? '' : t('quarantine.empty');
  if (!rows.length) {
    fill(byId('quarantine-table'));
    return;
  }
  const columns = ['stream', 'source', 'field', 'value', 'reason', 'seen', 'payload'];
  fill(
    byId('quarantine-table'),
    h(
      'table',
      { class: 'data', id: 'quarantined' },
      h('caption', { class: 'visually-hidden', text: t('quarantine.heading') }),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', text: t(`quarantine.${c}`) })))),
      h(
        'tbody',
        {},
        rows.map((row) =>
          h(
            'tr',
            {},
            h('td', { text: row.stream }),
            h('th', { scope: 'row', text: [row.sourceId, row.position].filter(Boolean).join(' · ') }),
            h('td', { text: row.field || '' }),
            h('td', { class: 'mono', text: row.value ?? '' }),
            h('td', { class: 'reason', text: row.reason }),
            h('td', {}, h('time', { datetime: row.lastSeen, text: formatDateTime(row.lastSeen) })),
            h('td', {}, h('details', {}, h('summary', { text: t('quarantine.show') }), h('pre', { text: row.payload }))),
          ),
        ),
      ),
    ),
  );
}

// --- wiring ---------------------------------------------------------------------------

function fillBiobankSelects() {
  const syncSelect = byId('sync-biobank');
  const quarantineSelect = byId('quarantine-biobank');
  const chosenSync = syncSelect.value;
  const chosenQuarantine = quarantineSelect.value;
  // An admin is offered the biobanks they administer; an operator (or a server whose `me`
  // does not say) every biobank.
  const identity = currentIdentity();
  const operator = identity && (identity.roles || []).includes('NETWORK_OPERATOR');
  const mine = identity && Array.isArray(identity.adminOf) && identity.adminOf.length && !operator
    ? [...biobanks.values()].filter((bb) => identity.adminOf.includes(bb.id))
    : [...biobanks.values()];
  const options = () => mine.map((bb) => h('option', { value: bb.id, text: `${biobankName(bb.id)} (${bb.id})` }));
  fill(syncSelect, h('option', { value: '', 'data-i18n': 'admin.biobank.all', text: t('admin.biobank.all') }), options());
  fill(quarantineSelect, options());
  syncSelect.value = mine.some((bb) => bb.id === chosenSync) ? chosenSync : '';
  const preferred = identity && identity.adminOf && identity.adminOf.find((id) => biobanks.has(id));
  const kept = mine.some((bb) => bb.id === chosenQuarantine) ? chosenQuarantine : '';
  quarantineSelect.value = kept || preferred || (mine.length ? mine[0].id : '');
}

async function loadAll() {
  document.body.dataset.state = 'loading';
  const ticket = ++tickets.all;
  await Promise.all([loadRuns(), loadQuarantine(0), loadRequests(), loadSchedules()]);
  if (ticket !== tickets.all) return;
  // For tests and scripts that drive the page (as on the search page).
  document.body.dataset.state = 'ready';
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
}

async function start() {
  const { data } = await request(BIOBANKS).catch(() => ({ data: null }));
  for (const bb of (data && data.biobanks) || []) biobanks.set(bb.id, bb);
  await initShell({
    onAuthChange: () => {
      fillBiobankSelects();
      updateStartButton();
      loadAll();
    },
  });
  fillBiobankSelects();
  byId('sync-biobank').addEventListener('change', () => {
    updateStartButton();
    loadRuns();
    loadRequests();
    loadSchedules();
  });
  byId('quarantine-biobank').addEventListener('change', () => loadQuarantine(0));
  byId('quarantine-prev').addEventListener('click', () => loadQuarantine(Math.max(0, quarantine.offset - QUARANTINE_PAGE)));
  byId('quarantine-next').addEventListener('click', () => loadQuarantine(quarantine.offset + QUARANTINE_PAGE));
  byId('start-sync').addEventListener('click', runStartSync);
  byId('export-runs').addEventListener('click', exportRuns);
  onLanguageChange(() => {
    fillBiobankSelects();
    renderRuns();
    renderRequests();
    renderSchedules();
    renderQuarantine();
    updateStartButton();
    showStartMessage(startMessage);
  });
  checkStartSync();
  await loadAll();
}

start();
