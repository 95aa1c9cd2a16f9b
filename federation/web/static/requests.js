// Access requests after sending: a researcher's own requests (/requests) and a biobank
// admin's queue (/admin/requests). Each request shows one part per biobank with its state,
// the consent check made at submission, the message thread, and the moves the server says
// this reader may make (`allowedMoves`): the buttons never offer a move the API refuses.

import { request } from './api.js';
import { biobankHref } from './biobank-links.js';
import { countNode, initTooltips } from './counts.js';
import { byId, fill, h } from './dom.js';
import { currentLanguage, formatDateTime, has, onLanguageChange, pageConfig, t } from './i18n.js';
import { currentIdentity, initShell } from './shell.js';

const C = 'value precision reason exists';
const REQUEST = `id title description researcher language question createdAt
  parts {
    biobank { id name nameJa }
    state updatedAt allowedMoves
    consentCheck {
      donors { ${C} } samples { ${C} }
      permitted { samples { ${C} } } conditional { samples { ${C} } } notPermitted { samples { ${C} } }
      conditions { code description }
      collections
    }
    events { id at actor actorRole fromState toState message }
  }`;
const MINE = `{ myAccessRequests { ${REQUEST} } }`;
const QUEUE = `query Queue($biobank: ID, $state: AccessRequestState) {
  biobankAccessRequests(biobank: $biobank, state: $state) { ${REQUEST} }
}`;
const MOVE = `mutation Move($id: ID!, $biobank: ID!, $to: AccessRequestState!, $message: String) {
  moveAccessRequest(id: $id, biobank: $biobank, to: $to, message: $message) { ${REQUEST} }
}`;
const MESSAGE = `mutation Message($id: ID!, $biobank: ID!, $message: String!) {
  postAccessRequestMessage(id: $id, biobank: $biobank, message: $message) { ${REQUEST} }
}`;
// Moves the API refuses without a message: the reader is told at the field first.
const NEEDS_MESSAGE = ['MORE_INFO_NEEDED', 'DECLINED'];

const mode = pageConfig.mode; // 'mine' or 'queue'
let requests = [];
const sent = new URLSearchParams(window.location.search).get('sent');

function biobankName(bb) {
  return currentLanguage() === 'ja' && bb.nameJa ? bb.nameJa : bb.name;
}

function stateBadge(state) {
  return h('span', { class: `badge part-${state.toLowerCase()}`, 'data-state': state, text: t(`part.state.${state}`) });
}

function time(iso) {
  return h('time', { datetime: iso, text: formatDateTime(iso) });
}

function showError(error) {
  const box = byId('requests-error');
  if (!error) {
    box.hidden = true;
    fill(box);
    return;
  }
  const known = has(`request.error.${error.code}`)
    ? t(`request.error.${error.code}`)
    : has(`error.${error.code}`) ? t(`error.${error.code}`) : t('error.default');
  fill(box, h('span', { text: error.message ? `${known} (${error.message})` : known }));
  box.hidden = false;
}

function showNotice(key) {
  const box = byId('requests-notice');
  box.hidden = !key;
  fill(
    box,
    key ? h('p', { text: t(key) }) : null,
    key === 'requests.signin' || key === 'queue.signin'
      ? h('button', {
        type: 'button',
        onclick: () => {
          byId('signin').open = true;
          byId('credential').focus();
        },
        text: t('auth.signin'),
      })
      : null,
  );
}

// --- one request ---------------------------------------------------------------------

function eventText(event) {
  if (event.fromState === null && event.toState) return t('thread.submitted');
  if (event.toState && event.fromState !== event.toState) {
    return t('thread.moved', { from: t(`part.state.${event.fromState}`), to: t(`part.state.${event.toState}`) });
  }
  return t('thread.message');
}

function thread(part) {
  if (!part.events.length) return h('p', { class: 'hint', text: t('thread.empty') });
  return h(
    'ol',
    { class: 'thread' },
    part.events.map((event) => h(
      'li',
      { 'data-event': event.id },
      h(
        'p',
        { class: 'thread-meta' },
        h('strong', { text: event.actor }),
        ' ',
        h('span', { class: 'hint', text: `(${has(`role.${event.actorRole}`) ? t(`role.${event.actorRole}`) : event.actorRole})` }),
        ' · ',
        time(event.at),
        ' · ',
        h('span', { text: eventText(event) }),
      ),
      event.message ? h('p', { class: 'thread-message', text: event.message }) : null,
    )),
  );
}

function consentSummary(check) {
  const split = (key, outcome) => h(
    'li',
    { 'data-field': `consent-${outcome}` },
    `${t(`outcome.${outcome}`)}: `,
    countNode(check[key].samples),
  );
  return h(
    'div',
    { class: 'consent-summary' },
    h(
      'p',
      {},
      `${t('biobanks.samples')}: `,
      h('span', { 'data-field': 'samples' }, countNode(check.samples)),
      ` · ${t('biobanks.donors')}: `,
      h('span', { 'data-field': 'donors' }, countNode(check.donors)),
    ),
    h(
      'ul',
      { class: 'inline-list' },
      split('permitted', 'PERMITTED'),
      split('conditional', 'CONDITIONAL'),
      split('notPermitted', 'NOT_PERMITTED'),
    ),
    check.conditions.length
      ? h('p', { class: 'hint', text: `${t('request.conditions')}: ${check.conditions.map((o) => o.code).join(t('list.separator'))}` })
      : null,
    check.collections.length
      ? h('p', { class: 'hint', text: `${t('request.collection')}: ${check.collections.join(t('list.separator'))}` })
      : null,
  );
}

function partSection(item, part) {
  const key = `${item.id}-${part.biobank.id}`;
  const messageId = `message-${key}`;
  const problemId = `message-problem-${key}`;
  const statusId = `part-status-${key}`;
  const headingId = `part-${key}`;
  const moves = part.allowedMoves.map((to) => h('button', {
    type: 'button',
    class: to === 'DECLINED' || to === 'CLOSED' ? 'move' : 'move primary',
    'data-move': to,
    onclick: () => act(item, part, to),
    text: t(`move.${to}`),
  }));
  return h(
    'section',
    { class: 'part', 'data-biobank': part.biobank.id, 'data-state': part.state, 'aria-labelledby': headingId },
    h(
      'h3',
      { id: headingId, tabindex: '-1' },
      h('a', { href: biobankHref(part.biobank.id), text: biobankName(part.biobank) }),
      ' ',
      stateBadge(part.state),
    ),
    h('p', { class: 'hint' }, `${t('part.updated')}: `, time(part.updatedAt)),
    consentSummary(part.consentCheck),
    h('h4', { text: t('thread.heading') }),
    thread(part),
    h(
      'div',
      { class: 'part-actions' },
      h('label', { for: messageId, text: t('thread.write') }),
      h('textarea', { id: messageId, rows: '3', 'aria-describedby': problemId, 'data-message': key }),
      h('p', { id: problemId, class: 'hint invalid', hidden: true }),
      h(
        'div',
        { class: 'row' },
        h('button', { type: 'button', class: 'send-message', onclick: () => act(item, part, null), text: t('thread.send') }),
        moves,
      ),
      h('p', { id: statusId, class: 'status', role: 'status', 'aria-live': 'polite' }),
    ),
  );
}

function requestArticle(item) {
  const headingId = `request-title-${item.id}`;
  return h(
    'article',
    { class: 'panel request', id: `request-${item.id}`, 'data-request': item.id, 'aria-labelledby': headingId },
    h('h2', { id: headingId, text: item.title }),
    h(
      'p',
      { class: 'hint' },
      `${t('request.sent')}: `,
      time(item.createdAt),
      mode === 'queue' ? ` · ${t('request.researcher')}: ${item.researcher}` : null,
      ` · ${t('request.id')}: `,
      h('span', { class: 'mono', text: item.id }),
    ),
    h('p', { class: 'request-question' }, h('strong', { text: `${t('request.question')}: ` }), item.question),
    h('p', { class: 'prose', text: item.description }),
    item.parts.map((part) => partSection(item, part)),
  );
}

function render() {
  const list = byId('requests-list');
  if (!requests.length) {
    fill(list, h('p', { class: 'hint', text: t(mode === 'queue' ? 'queue.empty' : 'requests.empty') }));
    byId('requests-status').textContent = '';
    return;
  }
  fill(list, requests.map(requestArticle));
  byId('requests-status').textContent = t(mode === 'queue' ? 'queue.count' : 'requests.count', { n: requests.length });
}

// --- actions -------------------------------------------------------------------------

async function act(item, part, to) {
  const key = `${item.id}-${part.biobank.id}`;
  const field = document.querySelector(`textarea[data-message="${CSS.escape(key)}"]`);
  const note = byId(`message-problem-${key}`);
  const message = field.value.trim();
  const needs = to === null || NEEDS_MESSAGE.includes(to);
  field.setAttribute('aria-invalid', String(needs && !message));
  note.hidden = !(needs && !message);
  note.textContent = needs && !message ? t(to === null ? 'thread.empty.message' : 'move.needsMessage') : '';
  if (needs && !message) {
    field.focus();
    return;
  }
  document.body.dataset.state = 'loading';
  const variables = { id: item.id, biobank: part.biobank.id, message: message || null };
  const { data, errors } = await request(to === null ? MESSAGE : MOVE, to === null ? variables : { ...variables, to })
    .catch((err) => ({ data: null, errors: [{ code: err.code, message: err.message }] }));
  const updated = data && (data.moveAccessRequest || data.postAccessRequestMessage);
  if (!updated) {
    showError(errors[0]);
    // Moved meanwhile by someone else: show the part as it is now.
    if (errors[0] && errors[0].code === 'STATE_CONFLICT') await load();
    document.body.dataset.state = 'ready';
    return;
  }
  showError(null);
  if (mode === 'queue') updated.parts = updated.parts.filter((p) => item.parts.some((q) => q.biobank.id === p.biobank.id));
  requests = requests.map((r) => (r.id === updated.id ? updated : r));
  render();
  // Back where the reader was, told what happened.
  const heading = byId(`part-${key}`);
  if (heading) heading.focus();
  const status = byId(`part-status-${key}`);
  if (status) status.textContent = to === null ? t('thread.sent') : t('move.done', { to: t(`part.state.${to}`) });
  document.body.dataset.state = 'ready';
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
}

// --- loading -------------------------------------------------------------------------

function queueFilters() {
  const biobank = byId('queue-biobank').value || null;
  const state = byId('queue-state').value || null;
  return { biobank, state };
}

function fillQueueBiobanks() {
  const select = byId('queue-biobank');
  const identity = currentIdentity();
  const chosen = select.value;
  const options = [...select.options].slice(0, 1);
  for (const id of (identity && identity.adminOf) || []) options.push(h('option', { value: id, text: id }));
  fill(select, options);
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

async function load() {
  document.body.dataset.state = 'loading';
  const identity = currentIdentity();
  if (!identity) {
    requests = [];
    fill(byId('requests-list'));
    showNotice(mode === 'queue' ? 'queue.signin' : 'requests.signin');
    byId('requests-status').textContent = '';
    document.body.dataset.state = 'ready';
    return;
  }
  showNotice(null);
  const { data, errors } = await (mode === 'queue' ? request(QUEUE, queueFilters()) : request(MINE))
    .catch((err) => ({ data: null, errors: [{ code: err.code, message: err.message }] }));
  const found = data && (mode === 'queue' ? data.biobankAccessRequests : data.myAccessRequests);
  if (!found) {
    requests = [];
    render();
    if (errors[0] && errors[0].code === 'FORBIDDEN') {
      showError(null);
      showNotice(mode === 'queue' ? 'queue.forbidden' : 'requests.forbidden');
    } else showError(errors[0]);
    document.body.dataset.state = 'ready';
    return;
  }
  showError(null);
  requests = found;
  render();
  if (sent && mode === 'mine') {
    const article = byId(`request-${sent}`);
    byId('requests-status').textContent = t('requests.sent', { title: (requests.find((r) => r.id === sent) || { title: '' }).title });
    if (article) {
      article.scrollIntoView({ block: 'start' });
      byId(`request-title-${sent}`).setAttribute('tabindex', '-1');
      byId(`request-title-${sent}`).focus();
    }
  }
  document.body.dataset.state = 'ready';
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
}

async function start() {
  initTooltips();
  if (mode === 'queue') {
    byId('queue-biobank').addEventListener('change', () => load());
    byId('queue-state').addEventListener('change', () => load());
  }
  onLanguageChange(() => render());
  await initShell({
    onAuthChange: () => {
      if (mode === 'queue') fillQueueBiobanks();
      load();
    },
  });
  if (mode === 'queue') fillQueueBiobanks();
  await load();
}

start();
