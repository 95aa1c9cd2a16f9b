// The request cart page: the chosen biobanks and collections, the research purpose, the
// project, the consent check per biobank (computed by the server, again on submission) and
// sending the request. Talks only to the public API (`previewAccessRequest`,
// `submitAccessRequest`).

import { request } from './api.js';
import { biobankHref } from './biobank-links.js';
import { clearCart, onCartChange, readCart, removeFromCart } from './cart.js';
import { countNode, initTooltips } from './counts.js';
import { byId, fill, h } from './dom.js';
import { currentLanguage, has, onLanguageChange, t } from './i18n.js';
import { currentIdentity, initShell } from './shell.js';
import { PURPOSE_KINDS, readState, researchPurpose, sampleQuery } from './state.js';

const C = 'value precision reason exists';
const SPLIT = `donors { ${C} } samples { ${C} }`;
const CATALOGUE = `{ biobanks { id name nameJa collections { id name } } }`;
const PREVIEW = `query Preview($query: SampleQuery!, $purpose: ResearchPurpose!, $biobanks: [ID!]!, $language: String) {
  previewAccessRequest(query: $query, purpose: $purpose, biobanks: $biobanks, language: $language) {
    question nothingPermits warning
    checks {
      biobank { id } role granularity
      donors { ${C} } samples { ${C} }
      permitted { ${SPLIT} } conditional { ${SPLIT} } notPermitted { ${SPLIT} }
      conditions { code description }
    }
  }
}`;
const SUBMIT = `mutation Submit($input: AccessRequestInput!) {
  submitAccessRequest(input: $input) { id title parts { biobank { id } state } }
}`;
const FLAGS = ['commercial', 'forProfit', 'ethicsApproval', 'genetic'];
const SPLITS = [
  ['permitted', 'PERMITTED'],
  ['conditional', 'CONDITIONAL'],
  ['notPermitted', 'NOT_PERMITTED'],
];

const names = new Map(); // biobank id -> {name, nameJa, collections: Map(id -> name)}
let preview = null; // the last preview, for the biobanks and purpose it was made for
let previewKey = '';
let busy = false;

function biobankName(id) {
  const bb = names.get(id);
  if (!bb) return id;
  return currentLanguage() === 'ja' && bb.nameJa ? bb.nameJa : bb.name;
}

function collectionName(biobankId, collectionId) {
  const bb = names.get(biobankId);
  return (bb && bb.collections.get(collectionId)) || collectionId;
}

// --- the form ------------------------------------------------------------------------

function form() {
  return byId('request-form');
}

function purposeFromForm() {
  const elements = form().elements;
  const kind = elements.kind.value;
  if (!PURPOSE_KINDS.includes(kind)) return null;
  const purpose = { kind };
  const diseases = elements.diseases.value.split(/[\s,、]+/).map((c) => c.trim()).filter(Boolean);
  if (diseases.length) purpose.diseases = diseases;
  const country = elements.country.value.trim().toUpperCase();
  if (country) purpose.country = country;
  for (const flag of FLAGS) purpose[flag] = elements[flag].checked;
  return purpose;
}

function fillPurpose(cart) {
  const state = readState(cart.search);
  const purpose = researchPurpose(state);
  if (!purpose) return;
  const elements = form().elements;
  elements.kind.value = purpose.kind;
  elements.diseases.value = (purpose.diseases || []).join(', ');
  elements.country.value = purpose.country || '';
  for (const flag of FLAGS) elements[flag].checked = Boolean(purpose[flag]);
}

function question(cart) {
  return sampleQuery(readState(cart.search));
}

function chosenKey(cart, purpose) {
  return JSON.stringify([cart.search, cart.biobanks, purpose]);
}

// A field's problem is said at the field (and read with it), and focus goes there.
function problem(id, key) {
  const field = byId(id);
  const note = byId(`${id}-problem`);
  field.setAttribute('aria-invalid', key ? 'true' : 'false');
  note.hidden = !key;
  note.textContent = key ? t(key) : '';
  return Boolean(key);
}

// --- rendering -----------------------------------------------------------------------

function renderCart() {
  const cart = readCart();
  const empty = cart.biobanks.length === 0;
  byId('cart-empty').hidden = !empty;
  form().hidden = empty;
  if (empty) {
    byId('request-status').textContent = t('request.empty.status');
    return;
  }
  byId('request-search-link').href = `/${cart.search}`;
  if (!preview || previewKey !== chosenKey(cart, purposeFromForm())) {
    byId('request-question').textContent = t('request.question.pending');
  }
  const items = cart.biobanks.map((entry) => {
    const name = biobankName(entry.id);
    return h(
      'li',
      { 'data-biobank': entry.id },
      h('a', { href: biobankHref(entry.id), text: name }),
      entry.collections.length
        ? h(
          'ul',
          { class: 'chips' },
          entry.collections.map((c) => {
            const label = collectionName(entry.id, c);
            return h(
              'li',
              { class: 'chip' },
              h('span', { text: `${t('request.collection')}: ${label}` }),
              h('button', {
                type: 'button',
                class: 'chip-remove',
                'aria-label': t('cart.remove.named', { name: label }),
                onclick: () => removeFromCart(entry.id, c),
                text: '×',
              }),
            );
          }),
        )
        : h('span', { class: 'hint', text: ` ${t('request.whole')}` }),
      h('button', {
        type: 'button',
        class: 'link',
        'aria-label': t('cart.remove.named', { name }),
        onclick: () => removeFromCart(entry.id),
        text: t('request.remove'),
      }),
    );
  });
  fill(byId('request-biobanks'), items);
  byId('request-status').textContent = t('request.status', { n: cart.biobanks.length });
}

function renderPreview() {
  const container = byId('request-checks');
  const warning = byId('request-warning');
  const acknowledge = byId('request-acknowledge-row');
  if (!preview) {
    fill(container);
    warning.hidden = true;
    acknowledge.hidden = true;
    return;
  }
  byId('request-question').textContent = preview.question;
  warning.hidden = !preview.nothingPermits;
  fill(warning, preview.nothingPermits ? h('p', { text: preview.warning || t('request.warning') }) : null);
  acknowledge.hidden = !preview.nothingPermits;
  const head = [
    h('th', { scope: 'col', text: t('biobanks.biobank') }),
    h('th', { scope: 'col', class: 'num', text: t('biobanks.donors') }),
    h('th', { scope: 'col', class: 'num', text: t('biobanks.samples') }),
    SPLITS.map(([, outcome]) => h('th', { scope: 'col', class: 'num', text: t(`outcome.${outcome}`) })),
    h('th', { scope: 'col', text: t('request.conditions') }),
  ];
  const rows = preview.checks.map((check) => h(
    'tr',
    { 'data-biobank': check.biobank.id },
    h('th', { scope: 'row', text: biobankName(check.biobank.id) }),
    h('td', { class: 'num', 'data-field': 'donors' }, countNode(check.donors)),
    h('td', { class: 'num', 'data-field': 'samples' }, countNode(check.samples)),
    SPLITS.map(([field, outcome]) => h(
      'td',
      { class: 'num', 'data-field': `consent-${outcome}` },
      countNode(check[field].samples),
    )),
    h(
      'td',
      { 'data-field': 'conditions' },
      check.conditions.length
        ? h('ul', { class: 'obligations' }, check.conditions.map((o) => h('li', { title: o.description, text: `${o.code}: ${o.description}` })))
        : '',
    ),
  ));
  fill(
    container,
    h(
      'table',
      { class: 'data', id: 'request-check-table' },
      h('caption', { class: 'visually-hidden', text: t('request.check.caption') }),
      h('thead', {}, h('tr', {}, head)),
      h('tbody', {}, rows),
    ),
  );
  container.dataset.scrollable = String(container.scrollWidth > container.clientWidth + 1);
}

function showError(error) {
  const box = byId('request-error');
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

function showSignIn() {
  const identity = currentIdentity();
  byId('request-signin').hidden = Boolean(identity);
}

// --- talking to the API ----------------------------------------------------------------

async function loadNames() {
  const { data } = await request(CATALOGUE).catch(() => ({ data: null }));
  for (const bb of (data && data.biobanks) || []) {
    names.set(bb.id, { name: bb.name, nameJa: bb.nameJa, collections: new Map(bb.collections.map((c) => [c.id, c.name])) });
  }
}

async function runPreview() {
  const cart = readCart();
  const purpose = purposeFromForm();
  if (problem('request-kind', purpose ? null : 'request.kind.missing')) {
    byId('request-kind').focus();
    return false;
  }
  document.body.dataset.state = 'loading';
  const variables = { query: question(cart), purpose, biobanks: cart.biobanks.map((b) => b.id), language: currentLanguage() };
  const { data, errors } = await request(PREVIEW, variables).catch((err) => ({ data: null, errors: [{ code: err.code, message: err.message }] }));
  document.body.dataset.state = 'ready';
  if (!data || !data.previewAccessRequest) {
    preview = null;
    renderPreview();
    showError(errors[0]);
    return false;
  }
  showError(null);
  preview = data.previewAccessRequest;
  previewKey = chosenKey(cart, purpose);
  renderPreview();
  return true;
}

async function submit(event) {
  event.preventDefault();
  if (busy) return;
  const elements = form().elements;
  const title = elements.title.value.trim();
  const description = elements.description.value.trim();
  const purpose = purposeFromForm();
  const missing = [
    problem('request-kind', purpose ? null : 'request.kind.missing') && 'request-kind',
    problem('request-title', title ? null : 'request.projectTitle.missing') && 'request-title',
    problem('request-description', description ? null : 'request.description.missing') && 'request-description',
  ].filter(Boolean);
  if (missing.length) {
    byId(missing[0]).focus();
    return;
  }
  busy = true;
  byId('request-submit').disabled = true;
  try {
    const cart = readCart();
    // The consent check the researcher sees is the one for exactly what is sent; the
    // server computes it again on submission.
    if (!preview || previewKey !== chosenKey(cart, purpose)) {
      if (!(await runPreview())) return;
    }
    if (preview.nothingPermits && !byId('request-acknowledge').checked) {
      byId('check-heading').scrollIntoView({ block: 'start' });
      byId('request-acknowledge').focus();
      byId('request-status').textContent = t('request.acknowledge.needed');
      return;
    }
    const collections = cart.biobanks.filter((b) => b.collections.length).map((b) => ({ biobank: b.id, collections: b.collections }));
    const input = {
      query: question(cart),
      purpose,
      biobanks: cart.biobanks.map((b) => b.id),
      collections,
      title,
      description,
      language: currentLanguage(),
      acknowledgeNoPermission: Boolean(preview.nothingPermits && byId('request-acknowledge').checked),
    };
    document.body.dataset.state = 'loading';
    const { data, errors } = await request(SUBMIT, { input }).catch((err) => ({ data: null, errors: [{ code: err.code, message: err.message }] }));
    document.body.dataset.state = 'ready';
    if (!data || !data.submitAccessRequest) {
      showError(errors[0]);
      byId('request-error').focus?.();
      return;
    }
    clearCart();
    window.location.assign(`/requests?sent=${encodeURIComponent(data.submitAccessRequest.id)}#request-${encodeURIComponent(data.submitAccessRequest.id)}`);
  } finally {
    busy = false;
    byId('request-submit').disabled = false;
  }
}

function wire() {
  form().addEventListener('submit', submit);
  // A problem said at a field goes once the field has a value.
  for (const id of ['request-kind', 'request-title', 'request-description']) {
    byId(id).addEventListener('input', () => {
      if (byId(id).value.trim()) problem(id, null);
    });
  }
  byId('request-preview').addEventListener('click', () => runPreview());
  byId('request-clear').addEventListener('click', () => {
    clearCart();
    byId('request-heading').focus();
  });
  byId('request-signin-open').addEventListener('click', () => {
    const panel = byId('signin');
    panel.open = true;
    byId('credential').focus();
  });
  // A changed purpose or selection makes the last check stale: say so, do not show it.
  form().addEventListener('change', (event) => {
    if (event.target.id === 'request-acknowledge') return;
    if (preview && previewKey !== chosenKey(readCart(), purposeFromForm())) {
      preview = null;
      renderPreview();
      byId('request-question').textContent = t('request.question.pending');
    }
  });
  onCartChange(() => {
    preview = null;
    renderPreview();
    renderCart();
  });
  onLanguageChange(async () => {
    renderCart();
    if (preview) await runPreview();
  });
}

async function start() {
  initTooltips();
  wire();
  await initShell({
    onAuthChange: () => {
      showSignIn();
      if (preview) runPreview();
    },
  });
  showSignIn();
  await loadNames();
  fillPurpose(readCart());
  renderCart();
  if (readCart().biobanks.length && currentIdentity() && purposeFromForm()) await runPreview();
  document.body.dataset.state = 'ready';
}

start();
