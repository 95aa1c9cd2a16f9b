// A biobank's page: who they are, how to apply, how current their data is, and what they
// hold per collection — every figure a released count of the public API (`holdings`).

import { request } from './api.js';
import { biobankHref, countryName } from './biobank-links.js';
import { countNode, countPhrase, initTooltips } from './counts.js';
import { addToCart, inCart, onCartChange, readCart, removeFromCart } from './cart.js';
import { byId, fill, h } from './dom.js';
import { currentLanguage, formatDateTime, has, onLanguageChange, pageConfig, t } from './i18n.js';
import { diseaseName, ensureNames } from './names.js';
import { initShell } from './shell.js';

const C = 'value precision reason exists';
const BUCKET = `key label donors { ${C} } samples { ${C} }`;
const PAGE = `query BiobankPage($id: ID!) {
  biobank(id: $id) {
    id name nameJa country kind url contactEmail description accessUrl accessConditions lastPublished
    freshness { status lastSuccessfulSync lastAttempt lastAttemptFailed }
    collections { id name types description defaultConsent }
  }
  holdings(biobank: $id) {
    donors { ${C} }
    samples { ${C} }
    access { role granularity explanation }
    materials { ${BUCKET} }
    diseases { ${BUCKET} }
    collections {
      collection { id }
      described
      donors { ${C} }
      samples { ${C} }
      materials { ${BUCKET} }
      diseases { ${BUCKET} }
    }
  }
}`;
// Buckets shown per collection in the table (the biobank's lists show them all).
const PER_COLLECTION = 3;

const biobankId = pageConfig.biobank;
let page = null; // {biobank, holdings}
const renderListeners = new Set();

/** Run `listener(page)` after each render (the request cart adds its controls). */
export function onRender(listener) {
  renderListeners.add(listener);
  if (page) listener(page);
}

export function currentBiobank() {
  return page ? page.biobank : null;
}

export function localName(bb) {
  return currentLanguage() === 'ja' && bb.nameJa ? bb.nameJa : bb.name;
}

async function load() {
  document.body.dataset.state = 'loading';
  byId('biobank-status').textContent = t('biobank.loading');
  let response;
  try {
    response = await request(PAGE, { id: biobankId });
  } catch (err) {
    response = { data: null, errors: [{ code: err.code, message: err.message }] };
  }
  const { data, errors } = response;
  if (!data || !data.biobank) {
    showError(errors[0] || { code: 'NOT_FOUND', message: '' });
    document.body.dataset.state = 'failed';
    return;
  }
  page = { biobank: data.biobank, holdings: data.holdings };
  const codes = page.holdings
    ? [...page.holdings.diseases, ...page.holdings.collections.flatMap((c) => c.diseases)].map((b) => b.key)
    : [];
  await ensureNames(codes);
  render();
  // Counts may come without holdings (an error in that field alone, e.g. a rate limit).
  showError(data.holdings ? null : errors[0]);
  document.body.dataset.state = 'ready';
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
}

function showError(error) {
  const box = byId('biobank-error');
  if (!error) {
    box.hidden = true;
    fill(box);
    return;
  }
  const text = error.code === 'NOT_FOUND'
    ? t('biobank.notfound', { id: biobankId })
    : `${has(`error.${error.code}`) ? t(`error.${error.code}`) : t('error.default')}${error.message ? ` (${error.message})` : ''}`;
  fill(box, h('span', { text }));
  box.hidden = false;
  if (!page) {
    byId('biobank-name').textContent = t('biobank.notfound.heading');
    byId('biobank-status').textContent = '';
  }
}

function render() {
  const bb = page.biobank;
  const name = localName(bb);
  document.title = `${name} — ${t('shell.brand')}`;
  const heading = byId('biobank-name');
  heading.removeAttribute('data-i18n');
  heading.textContent = name;
  // The other language's name too, as the biobank writes it.
  const other = currentLanguage() === 'ja' ? bb.name : bb.nameJa;
  fill(
    byId('biobank-meta'),
    other && other !== name ? h('span', { lang: currentLanguage() === 'ja' ? 'en' : 'ja', text: other }) : null,
    other && other !== name ? ' · ' : null,
    h('span', { text: countryName(bb.country) }),
    bb.kind ? ` · ${has(`biobank.kind.${bb.kind}`) ? t(`biobank.kind.${bb.kind}`) : bb.kind}` : null,
  );
  byId('biobank-status').textContent = page.holdings && page.holdings.samples
    ? t('biobank.summary', { samples: countPhrase(page.holdings.samples), donors: countPhrase(page.holdings.donors), collections: bb.collections.length })
    : t('biobank.summary.none');
  byId('search-biobank').href = `/?biobank=${encodeURIComponent(bb.id)}`;
  renderAbout(bb);
  renderAccess(bb);
  renderCart(bb);
  renderFreshness(bb.freshness);
  renderHoldings(page.holdings);
  renderCollections(bb, page.holdings);
  byId('biobank-body').hidden = false;
  for (const wrap of document.querySelectorAll('.table-wrap')) {
    wrap.dataset.scrollable = String(wrap.scrollWidth > wrap.clientWidth + 1);
  }
  for (const listener of renderListeners) listener(page);
}

// The request cart: this biobank as a whole, or some of its collections. With an empty cart
// the question is "this biobank's samples" (its search page's address); otherwise the cart
// keeps the search it was filled from.
function cartToggle(bb, collection = null) {
  const collectionId = collection ? collection.id : null;
  const chosen = inCart(bb.id, collectionId);
  const name = collection ? collection.name : localName(bb);
  return h('button', {
    type: 'button',
    class: collection ? 'cart-toggle' : 'cart-toggle primary',
    'aria-pressed': String(chosen),
    'data-cart': collectionId ?? '',
    'aria-label': t(chosen ? 'cart.remove.named' : 'cart.add.named', { name }),
    onclick: () => {
      if (inCart(bb.id, collectionId)) {
        removeFromCart(bb.id, collectionId);
        byId('cart-status').textContent = t('cart.removed', { name });
      } else {
        const cart = readCart();
        addToCart(bb.id, cart.biobanks.length ? null : `?biobank=${encodeURIComponent(bb.id)}`, collectionId);
        byId('cart-status').textContent = t('cart.added', { name });
      }
    },
    text: t(chosen ? 'cart.in' : collection ? 'cart.add' : 'cart.add.biobank'),
  });
}

function renderCart(bb) {
  fill(byId('cart-controls'), cartToggle(bb), h('a', { href: '/request', class: 'button-link', text: t('cart.open') }));
}

function external(href, text) {
  // The biobank's own site: a new tab would surprise; no referrer carries the page address.
  return h('a', { href, rel: 'noopener noreferrer', class: 'external', text });
}

function renderAbout(bb) {
  const description = byId('biobank-description');
  description.textContent = bb.description || t('biobank.description.none');
  description.classList.toggle('hint', !bb.description);
  const facts = [];
  const fact = (key, ...value) => facts.push(h('dt', { text: t(key) }), h('dd', {}, ...value));
  fact('biobank.country', countryName(bb.country), bb.country ? h('span', { class: 'hint', text: ` (${bb.country})` }) : null);
  if (bb.url) fact('biobank.website', external(bb.url, bb.url));
  if (bb.contactEmail) fact('biobank.contact', h('a', { href: `mailto:${bb.contactEmail}`, text: bb.contactEmail }));
  fact('biobank.id', h('span', { class: 'mono', text: bb.id }));
  fill(byId('biobank-facts'), facts);
}

function renderAccess(bb) {
  const conditions = byId('access-conditions');
  conditions.textContent = bb.accessConditions || t('biobank.access.none');
  conditions.classList.toggle('hint', !bb.accessConditions);
  const apply = byId('access-apply');
  if (bb.accessUrl) fill(apply, external(bb.accessUrl, t('biobank.access.apply')));
  else if (bb.contactEmail) fill(apply, t('biobank.access.ask'), ' ', h('a', { href: `mailto:${bb.contactEmail}`, text: bb.contactEmail }));
  else fill(apply);
}

function renderFreshness(freshness) {
  const box = byId('freshness');
  if (!freshness) {
    fill(box, h('p', { class: 'hint', text: t('biobank.freshness.unknown') }));
    return;
  }
  const status = freshness.status;
  const time = (iso) => (iso ? h('time', { datetime: iso, text: formatDateTime(iso) }) : t('biobank.freshness.never'));
  fill(
    box,
    h('p', {}, h('span', { class: `badge freshness-${status.toLowerCase()}`, 'data-status': status, text: t(`freshness.${status}`) })),
    h('p', { class: 'hint', text: t(`freshness.${status}.help`) }),
    h(
      'dl',
      { class: 'facts' },
      h('dt', { text: t('biobank.freshness.success') }),
      h('dd', { 'data-field': 'last-success' }, time(freshness.lastSuccessfulSync)),
      h('dt', { text: t('biobank.freshness.attempt') }),
      h(
        'dd',
        { 'data-field': 'last-attempt' },
        time(freshness.lastAttempt),
        freshness.lastAttemptFailed ? h('span', { class: 'warn', text: ` ${t('biobank.freshness.failed')}` }) : null,
      ),
    ),
  );
}

function bucketLabel(kind, bucket) {
  if (kind === 'material_type') {
    const key = `vocab.material_type.${bucket.key}`;
    return has(key) ? t(key) : bucket.label;
  }
  const name = diseaseName(bucket.key) || bucket.label;
  return name && name !== bucket.key ? `${bucket.key} ${name}` : bucket.key;
}

function bars(kind, buckets, rule) {
  if (!buckets.length) return [h('li', { class: 'hint', text: t('biobank.nothing') })];
  return buckets.map((bucket) => h(
    'li',
    { 'data-key': bucket.key },
    h('span', { class: 'bucket-label', text: bucketLabel(kind, bucket) }),
    h('span', { class: 'bucket-count' }, countNode(bucket.samples, rule)),
  ));
}

function renderHoldings(holdings) {
  const rule = holdings && holdings.access ? holdings.access.explanation : '';
  const card = (key, count, field) => h(
    'div',
    { class: 'card', 'data-field': field },
    h('p', { class: 'unit', text: t(key) }),
    h('p', { class: 'outcome-count' }, count ? countNode(count, rule) : h('span', { class: 'hint', text: t('biobank.nothing') })),
  );
  const cards = [card('biobank.samples', holdings && holdings.samples, 'samples'), card('biobank.donors', holdings && holdings.donors, 'donors')];
  if (holdings && holdings.access) {
    cards.push(h(
      'div',
      { class: 'card', 'data-field': 'access' },
      h('p', { class: 'unit', text: t('biobank.yourAccess') }),
      h('p', { text: `${t(`granularity.${holdings.access.granularity}`)} · ${t(`role.${holdings.access.role}`)}` }),
      h('p', { class: 'hint', text: holdings.access.explanation }),
    ));
  }
  fill(byId('holdings-totals'), cards);
  fill(byId('holdings-materials'), bars('material_type', holdings ? holdings.materials : [], rule));
  fill(byId('holdings-diseases'), bars('block', holdings ? holdings.diseases : [], rule));
}

function typeLabel(code) {
  const key = `vocab.collection_type.${code}`;
  return has(key) ? t(key) : code;
}

function topList(kind, buckets, rule, described) {
  if (!described) return h('span', { class: 'hint', text: t('biobank.collection.undescribed') });
  if (!buckets.length) return h('span', { class: 'hint', text: t('biobank.nothing') });
  const shown = buckets.slice(0, PER_COLLECTION);
  return h(
    'ul',
    { class: 'inline-list' },
    shown.map((b) => h('li', {}, `${bucketLabel(kind, b)} `, countNode(b.samples, rule))),
    buckets.length > shown.length ? h('li', { class: 'hint', text: t('biobank.more', { n: buckets.length - shown.length }) }) : null,
  );
}

function renderCollections(bb, holdings) {
  const container = byId('collections-table');
  if (!bb.collections.length) {
    fill(container, h('p', { class: 'hint', text: t('biobank.collections.none') }));
    return;
  }
  const rule = holdings && holdings.access ? holdings.access.explanation : '';
  const figures = new Map(((holdings && holdings.collections) || []).map((c) => [c.collection.id, c]));
  const rows = bb.collections.map((collection) => {
    const held = figures.get(collection.id) || { described: false, donors: null, samples: null, materials: [], diseases: [] };
    const count = (value) => (value ? countNode(value, rule) : h('span', { class: 'hint', text: t('biobank.nothing') }));
    return h(
      'tr',
      { 'data-collection': collection.id },
      h(
        'th',
        { scope: 'row' },
        h('span', { class: 'collection-name', text: collection.name }),
        collection.description ? h('span', { class: 'hint block', text: collection.description }) : null,
        h('span', { class: 'hint block', text: collection.types.map(typeLabel).join(t('list.separator')) }),
      ),
      h('td', { class: 'num', 'data-field': 'donors' }, held.described ? count(held.donors) : '–'),
      h('td', { class: 'num', 'data-field': 'samples' }, held.described ? count(held.samples) : '–'),
      h('td', { 'data-field': 'materials' }, topList('material_type', held.materials, rule, held.described)),
      h('td', { 'data-field': 'diseases' }, topList('block', held.diseases, rule, held.described)),
      h('td', { class: 'mono', 'data-field': 'consent', text: collection.defaultConsent || '' }),
      h('td', { class: 'cart-cell' }, cartToggle(bb, collection)),
    );
  });
  fill(
    container,
    h(
      'table',
      { class: 'data', id: 'collections' },
      h('caption', { class: 'visually-hidden', text: t('biobank.collections.caption') }),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['collection', 'donors', 'samples', 'materials', 'diseases', 'consent', 'request'].map((c) => h('th', {
            scope: 'col',
            class: c === 'donors' || c === 'samples' ? 'num' : undefined,
            text: t(`biobank.column.${c}`),
          })),
        ),
      ),
      h('tbody', {}, rows),
    ),
  );
}

export { biobankHref };

// The cart changed (here or in another tab): re-draw its buttons, keeping focus on the
// one pressed.
onCartChange(() => {
  if (!page) return;
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.cart : undefined;
  renderCart(page.biobank);
  renderCollections(page.biobank, page.holdings);
  if (focused !== undefined) {
    const again = [...document.querySelectorAll('[data-cart]')].find((el) => el.dataset.cart === focused);
    if (again) again.focus();
  }
});

initTooltips();
onLanguageChange(() => load());
initShell({ onAuthChange: () => load() }).then(() => load());
