// The researchers' search page: the query lives in the URL; each change runs one GraphQL
// search and renders the summary, facets, per-biobank table and chart, consent outcomes
// for a declared purpose, and a page of sample records.

import { request } from './api.js';
import { renderChart } from './chart.js';
import { diseaseCombobox, hierarchy } from './combobox.js';
import { countNode, countPhrase, initTooltips, isExact } from './counts.js';
import { datedName, download } from './csv.js';
import { exportAllRecords } from './export.js';
import { byId, debounce, fill, h } from './dom.js';
import { currentLanguage, formatList, formatNumber, has, onLanguageChange, pageConfig, t } from './i18n.js';
import { biobankHref, countryName } from './biobank-links.js';
import { addToCart, inCart, onCartChange, removeFromCart } from './cart.js';
import { disease, diseaseName, ensureNames, isWithin, remember } from './names.js';
import { initShell } from './shell.js';
import { readState, researchPurpose, sampleQuery, writeState } from './state.js';

const PAGE_SIZE = 20;
const FACET_SHOWN = 8;
const OUTCOMES = ['PERMITTED', 'CONDITIONAL', 'NOT_PERMITTED'];
// The facet catalogue comes from the server's facet definitions (federation/search/facets.py):
// a bucket of a "values" facet adds its key to the query argument (a state field).
const FACETS = pageConfig.facets;
const FACET_FIELDS = Object.fromEntries(FACETS.filter((f) => f.select === 'values').map((f) => [f.key, f.argument]));
const LABEL_RULE = Object.fromEntries(FACETS.map((f) => [f.key, f.label]));
const SELECT_RULE = Object.fromEntries(FACETS.map((f) => [f.key, f.select]));

const C = 'value precision reason exists';
// What collection-level biobanks declare (precision DECLARED), kept apart from counted rows.
const D = `declared { donors { ${C} } samples { ${C} } collections }`;
const RECORDS = `records(first: $first, after: $after, orderBy: $orderBy, descending: $descending) {
      totalCount
      nodes {
        sampleId biobankId collectionId donorId sex age materialType collectionDate
        storageTemperature availability diagnoses dataCategories consent
        consentOutcome obligations { code description until }
      }
      pageInfo { endCursor hasNextPage }
    }
    recordsNote`;
const PAGE_VARIABLES = '$query: SampleQuery!, $purpose: ResearchPurpose, $first: Int, $after: String, $orderBy: RecordOrder, $descending: Boolean';
const SEARCH = `query Search(${PAGE_VARIABLES}) {
  search(query: $query, purpose: $purpose) {
    donors { ${C} }
    samples { ${C} }
    byBiobank {
      biobank { id name nameJa country }
      donors { ${C} }
      samples { ${C} }
      access { role granularity explanation }
      consent { outcome donors { ${C} } samples { ${C} } }
      ${D}
    }
    facets { name buckets { key label donors { ${C} } samples { ${C} } ${D} } }
    consent { outcome donors { ${C} } samples { ${C} } }
    ${D}
    textDiseases { code name language }
    ${RECORDS}
  }
  biobanks { id name nameJa country }
}`;
const PAGE = `query Page(${PAGE_VARIABLES}) {
  search(query: $query, purpose: $purpose) {
    ${RECORDS}
  }
}`;

let state = readState();
let answer = null; // the last search's `search` field
const biobanks = new Map(); // id -> {id, name, nameJa, country}
const paging = { cursors: [null], index: 0, loading: false };
// The records' order: a column of the table (its API enum) and the direction.
const order = { by: 'BIOBANK', descending: false };
const SORTABLE = {
  biobank: 'BIOBANK', sample: 'SAMPLE', donor: 'DONOR', sex: 'SEX', age: 'AGE',
  material: 'MATERIAL_TYPE', collected: 'COLLECTION_DATE', storage: 'STORAGE_TEMPERATURE',
  availability: 'AVAILABILITY',
};
let exporting = false;
let ticket = 0;
let agesDraft = false; // ages typed, not yet searched: an answer leaves them alone
const expandedFacets = new Set();

// --- running searches

function variables(after = null) {
  return {
    query: sampleQuery(state), purpose: researchPurpose(state), first: PAGE_SIZE, after,
    orderBy: order.by, descending: order.descending,
  };
}

async function runSearch({ push = false } = {}) {
  const focus = focusedControl(); // before anything is re-rendered
  const url = `${window.location.pathname}${writeState(state)}`;
  if (url !== `${window.location.pathname}${window.location.search}`) {
    window.history[push ? 'pushState' : 'replaceState'](null, '', url);
  }
  renderFilters();
  fillPurposeForm();
  const mine = ++ticket;
  document.body.classList.add('busy');
  document.body.dataset.state = 'loading';
  byId('summary').textContent = t('search.loading');
  let response;
  try {
    response = await request(SEARCH, variables());
  } catch (err) {
    response = { data: null, errors: [{ code: err.code, message: err.message }] };
  }
  if (mine !== ticket) return; // a newer search superseded this one
  document.body.classList.remove('busy');
  const { data, errors } = response;
  for (const bb of (data && data.biobanks) || []) biobanks.set(bb.id, bb);
  if (!data || !data.search) {
    // The last answer stays on screen, marked as not answering the filters now shown:
    // an outage must not look like "no matches", and the reader keeps what they had.
    showError(errors[0]);
    renderFilters();
    byId('summary').textContent = t(answer ? 'summary.stale' : 'summary.failed');
    document.body.classList.toggle('stale', Boolean(answer));
    if (!answer) renderAll();
    restoreFocus(focus);
    document.body.dataset.state = 'failed';
    return;
  }
  showError(null);
  document.body.classList.remove('stale');
  answer = data.search;
  paging.cursors = [null];
  paging.index = 0;
  remember(answer.textDiseases);
  await ensureNames(displayedCodes(), { withAncestors: true });
  if (mine !== ticket) return;
  renderAll();
  restoreFocus(focus);
  markRendered();
}

// Re-rendering replaces the facet buttons and chips: put focus back on the control the
// reader used (the same facet bucket), or where the removed chip was.
function focusedControl() {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  if (el.dataset.facet) return { facet: el.dataset.facet, key: el.dataset.key };
  if (el.classList.contains('chip-remove')) {
    return { chip: [...document.querySelectorAll('#filter-list .chip-remove')].indexOf(el) };
  }
  return null;
}

function restoreFocus(focus) {
  if (!focus || (document.activeElement && document.activeElement !== document.body)) return;
  let target = null;
  if (focus.facet) {
    target = [...document.querySelectorAll('#facet-list [data-facet]')].find(
      (el) => el.dataset.facet === focus.facet && el.dataset.key === focus.key,
    ) || byId('facet-list').querySelector('[data-facet]');
  } else if (focus.chip !== undefined) {
    const chips = document.querySelectorAll('#filter-list .chip-remove');
    target = chips[Math.min(focus.chip, chips.length - 1)] || byId('disease-input');
  }
  if (target) target.focus();
}

// For tests and scripts that drive the page: `data-state` is `ready` once the latest
// request is rendered, and `data-rendered` counts renders.
function markRendered() {
  document.body.dataset.state = 'ready';
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
}

async function loadPage(index, { focusSort = null } = {}) {
  if (paging.loading || !answer) return;
  paging.loading = true;
  document.body.dataset.state = 'loading';
  const { data, errors } = await request(PAGE, variables(paging.cursors[index])).catch((err) => ({
    data: null,
    errors: [{ code: err.code, message: err.message }],
  }));
  paging.loading = false;
  if (!data || !data.search) {
    showError(errors[0]);
    document.body.dataset.state = 'failed';
    return;
  }
  paging.index = index;
  answer = { ...answer, records: data.search.records, recordsNote: data.search.recordsNote };
  await ensureNames(recordCodes());
  renderRecords();
  markScrollable();
  markRendered();
  if (focusSort) {
    // The table was drawn anew: the reader stays on the header they sorted by.
    const button = document.querySelector(`#records th button[data-sort="${focusSort}"]`);
    if (button) button.focus();
    return;
  }
  byId('records-heading').scrollIntoView({ block: 'start' });
}

function sortBy(name) {
  const by = SORTABLE[name];
  order.descending = order.by === by ? !order.descending : false;
  order.by = by;
  paging.cursors = [null];
  loadPage(0, { focusSort: name });
}

function headerCell(name) {
  const label = t(`records.${name}`);
  if (!SORTABLE[name]) return h('th', { scope: 'col', text: label });
  const current = order.by === SORTABLE[name];
  const direction = current ? (order.descending ? 'descending' : 'ascending') : null;
  return h(
    'th',
    { scope: 'col', 'aria-sort': direction || undefined },
    h(
      'button',
      { type: 'button', class: 'sort', 'data-sort': name, title: t('records.sort', { column: label }) },
      label,
    ),
  );
}

function displayedCodes() {
  const facetCodes = answer
    ? answer.facets.filter((f) => f.name === 'chapter' || f.name === 'block').flatMap((f) => f.buckets.map((b) => b.key))
    : [];
  return [...state.diseases, ...facetCodes, ...recordCodes()];
}

function recordCodes() {
  return answer && answer.records ? answer.records.nodes.flatMap((r) => r.diagnoses) : [];
}

function setState(change) {
  state = { ...state, ...change };
  if ('ageMin' in change) settleAges();
  runSearch({ push: true });
}

// --- labels

function biobankName(id) {
  const bb = biobanks.get(id);
  if (!bb) return id;
  return currentLanguage() === 'ja' && bb.nameJa ? bb.nameJa : bb.name;
}

function vocabulary(facet, key, fallback) {
  const messageKey = `vocab.${facet}.${key}`;
  return has(messageKey) ? t(messageKey) : fallback || key;
}

function diseaseLabel(code, fallback = '') {
  const name = diseaseName(code) || fallback;
  return name ? `${code} ${name}` : code;
}

function bucketLabel(facet, bucket) {
  const rule = LABEL_RULE[facet];
  if (rule === 'vocabulary') return vocabulary(facet, bucket.key, bucket.label);
  if (rule === 'disease') return diseaseLabel(bucket.key, bucket.label);
  if (rule === 'biobank') return biobankName(bucket.key);
  if (rule === 'country') return countryName(bucket.key);
  if (rule === 'age') {
    const [from, to] = bucket.key.split('-');
    return t('facets.age.bucket', { from, to });
  }
  return bucket.label;
}

let lastError = null; // re-said in the new language on a switch

function showError(error) {
  lastError = error;
  const box = byId('search-error');
  if (!error) {
    box.hidden = true;
    fill(box);
    return;
  }
  const known = has(`error.${error.code}`) ? t(`error.${error.code}`) : t('error.default');
  const retry = RETRYABLE.includes(error.code)
    ? h('button', { type: 'button', id: 'search-retry', onclick: () => runSearch(), text: t('search.retry') })
    : null;
  fill(box, h('span', { text: error.message ? `${known} (${error.message})` : known }), retry ? ' ' : '', retry);
  box.hidden = false;
}

// Failures a second try may cure (the server or the network), as opposed to bad input.
const RETRYABLE = ['NETWORK', 'HTTP_ERROR', 'BACKEND_UNAVAILABLE', 'ENGINE_UNAVAILABLE', 'TIMEOUT', 'RATE_LIMITED', 'INTERNAL_SERVER_ERROR'];

// --- rendering

// The facet list is one stop in the Tab order (roving tabindex): arrows move between its
// buttons, so the keyboard reaches the results in a few Tabs instead of fifty.
function rovingFacets() {
  const buttons = [...byId('facet-list').querySelectorAll('button')];
  const current = buttons.find((el) => el === document.activeElement)
    || buttons.find((el) => el.getAttribute('aria-pressed') === 'true')
    || buttons[0];
  for (const el of buttons) el.tabIndex = el === current ? 0 : -1;
}

function facetKeys(event) {
  const moves = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 };
  const buttons = [...byId('facet-list').querySelectorAll('button')].filter((el) => el.offsetParent !== null);
  const at = buttons.indexOf(document.activeElement);
  if (at < 0) return;
  let next = null;
  if (event.key in moves) next = buttons[Math.min(buttons.length - 1, Math.max(0, at + moves[event.key]))];
  else if (event.key === 'Home') next = buttons[0];
  else if (event.key === 'End') next = buttons[buttons.length - 1];
  if (!next) return;
  event.preventDefault();
  next.focus();
}

function renderAll() {
  renderFilters();
  renderSummary();
  renderFacets();
  renderBiobanks();
  renderPurpose();
  renderRecords();
  markScrollable();
  rovingFacets();
}

// Tables wider than their panel say so (a line of text; see .scroll-hint in app.css).
function markScrollable() {
  for (const wrap of document.querySelectorAll('.table-wrap')) {
    wrap.dataset.scrollable = String(wrap.scrollWidth > wrap.clientWidth + 1);
  }
}

function chip(label, onRemove, title, kind = '') {
  return h(
    'li',
    { class: kind ? `chip ${kind}` : 'chip', title },
    h('span', { text: label }),
    h('button', {
      type: 'button',
      class: 'chip-remove',
      'aria-label': t('filters.remove', { filter: label }),
      onclick: onRemove,
      text: '×',
    }),
  );
}

function without(list, value) {
  return list.filter((v) => v !== value);
}

function renderFilters() {
  const chips = [];
  for (const code of state.diseases) {
    const known = disease(code);
    chips.push(
      chip(
        `${t('filters.disease')}: ${diseaseLabel(code)}`,
        () => setState({ diseases: without(state.diseases, code) }),
        known ? hierarchy(known) : undefined,
      ),
    );
  }
  if (state.text) {
    const matched = answer ? answer.textDiseases : [];
    chips.push(
      chip(
        `${t('filters.text')}: ${t('filters.quoted', { text: state.text })}${answer ? ` (${t('filters.text.matched', { n: formatNumber(matched.length) })})` : ''}`,
        () => setState({ text: '', textExclude: [] }),
        matched.map((d) => `${d.code} ${d.name}`).join('\n') || undefined,
      ),
    );
    // What the words became, one removable chip per ICD-10 item: the reader sees what was
    // searched and drops what they did not mean.
    for (const item of matched) {
      const known = disease(item.code);
      chips.push(
        chip(
          `${t('filters.text.became')}: ${diseaseLabel(item.code, item.name)}`,
          () => setState({ textExclude: [...state.textExclude, item.code] }),
          known ? hierarchy(known) : undefined,
          'text-disease',
        ),
      );
    }
  }
  for (const [facet, field] of Object.entries(FACET_FIELDS)) {
    for (const key of state[field]) {
      const rule = LABEL_RULE[facet];
      const label = rule === 'biobank' ? biobankName(key) : rule === 'country' ? countryName(key) : vocabulary(facet, key, key);
      chips.push(chip(`${t(`facets.${facet}`)}: ${label}`, () => setState({ [field]: without(state[field], key) })));
    }
  }
  if (state.ageMin !== null || state.ageMax !== null) {
    chips.push(
      chip(
        `${t('facets.age')}: ${t('filters.age', { from: state.ageMin ?? 0, to: state.ageMax ?? '' })}`,
        () => setState({ ageMin: null, ageMax: null }),
      ),
    );
  }
  fill(byId('filter-list'), chips);
  // A picked disease and the words are both required (AND), unlike two picked diseases.
  byId('filters-and').hidden = !(state.text && state.diseases.length);
  byId('clear-all').hidden = chips.length === 0;
  if (!agesDraft) {
    byId('age-min').value = state.ageMin ?? '';
    byId('age-max').value = state.ageMax ?? '';
  }
}

function renderSummary() {
  const summary = byId('summary');
  if (!answer) {
    summary.textContent = t('summary.failed');
    return;
  }
  const rows = answer.byBiobank;
  if (!rows.length) {
    summary.textContent = t('summary.none');
    return;
  }
  summary.textContent = t('summary.found', {
    samples: countPhrase(answer.samples),
    donors: countPhrase(answer.donors),
    biobanks: formatNumber(rows.length),
  });
  if (answer.declared) {
    summary.textContent += ` ${t('summary.declared', {
      samples: countPhrase(answer.declared.samples),
      donors: countPhrase(answer.declared.donors),
      collections: formatNumber(answer.declared.collections.length),
    })}`;
  }
}

// Chapter and block facets refine the disease list: a bucket beneath a selected disease
// narrows it, a selected disease beneath the bucket stays. A bucket unrelated to every
// selected disease (another diagnosis of the same donors) cannot be combined with them,
// because the query's diseases are alternatives.
function refinedDiseases(code) {
  if (!state.diseases.length) return [code];
  const refined = [];
  for (const selected of state.diseases) {
    if (isWithin(selected, code)) refined.push(selected);
    else if (isWithin(code, selected)) refined.push(code);
  }
  return [...new Set(refined)];
}

function bucketState(facet, bucket) {
  const field = FACET_FIELDS[facet];
  if (field) {
    const pressed = state[field].includes(bucket.key);
    return {
      pressed,
      apply: () => setState({ [field]: pressed ? without(state[field], bucket.key) : [...state[field], bucket.key] }),
    };
  }
  if (SELECT_RULE[facet] === 'range') {
    const [from, to] = bucket.key.split('-').map(Number);
    const min = state.ageMin;
    const max = state.ageMax;
    const pressed = min !== null && max !== null && from >= min && to <= max;
    let change;
    if (!pressed) {
      change = min === null || max === null ? { ageMin: from, ageMax: to } : { ageMin: Math.min(min, from), ageMax: Math.max(max, to) };
    } else if (from === min && to === max) change = { ageMin: null, ageMax: null };
    else if (from === min) change = { ageMin: to + 1 };
    else if (to === max) change = { ageMax: from - 1 };
    else change = { ageMin: from, ageMax: to };
    return { pressed, apply: () => setState(change) };
  }
  // SELECT_RULE 'diseases': chapter, block
  const pressed = state.diseases.includes(bucket.key);
  if (pressed) return { pressed, apply: () => setState({ diseases: without(state.diseases, bucket.key) }) };
  const refined = refinedDiseases(bucket.key);
  if (!refined.length) return { pressed: false, apply: null };
  if (refined.length === state.diseases.length && refined.every((c) => state.diseases.includes(c))) {
    return { pressed: true, apply: null }; // already as narrow as this bucket
  }
  return { pressed: false, apply: () => setState({ diseases: refined }) };
}

function renderFacets() {
  const list = byId('facet-list');
  if (!answer) {
    fill(list);
    return;
  }
  const sections = answer.facets
    .filter((facet) => facet.buckets.length)
    .map((facet) => {
      const headingId = `facet-${facet.name}`;
      const expanded = expandedFacets.has(facet.name);
      const ordered = SELECT_RULE[facet.name] === 'range'
        ? [...facet.buckets].sort((a, b) => parseInt(a.key, 10) - parseInt(b.key, 10))
        : facet.buckets;
      const buckets = expanded ? ordered : ordered.slice(0, FACET_SHOWN);
      const items = buckets.map((bucket) => {
        const label = bucketLabel(facet.name, bucket);
        const { pressed, apply } = bucketState(facet.name, bucket);
        // A bucket only collections declare shows their figure; one with counted samples
        // shows those, and the declared part beside them, each with its own marker.
        const declared = bucket.declared;
        const onlyDeclared = declared && isExact(bucket.samples) && !bucket.samples.value;
        const content = [
          h('span', { class: 'bucket-label', title: label, text: label }),
          h(
            'span',
            { class: 'bucket-count' },
            onlyDeclared ? null : countNode(bucket.samples),
            declared
              ? h(
                'span',
                { class: 'bucket-declared' },
                onlyDeclared ? null : h('span', { class: 'separator', 'aria-hidden': 'true', text: '· ' }),
                countNode(declared.samples),
              )
              : null,
          ),
        ];
        let described = `${label}: ${t('facets.bucket.counts', {
          samples: countPhrase(bucket.samples),
          donors: countPhrase(bucket.donors),
        })}`;
        if (declared) {
          described += `; ${t('facets.bucket.declared', {
            samples: countPhrase(declared.samples),
            donors: countPhrase(declared.donors),
          })}`;
        }
        if (!apply) {
          return h(
            'li',
            { class: `bucket static${pressed ? ' selected' : ''}`, title: pressed ? undefined : t('facets.bucket.unrelated') },
            h('span', { class: 'visually-hidden', text: described }),
            h('span', { 'aria-hidden': 'true', class: 'bucket-inner' }, content[0]),
            content[1],
          );
        }
        return h(
          'li',
          { class: 'bucket' },
          h(
            'button',
            {
              type: 'button',
              class: 'bucket-button',
              'aria-pressed': String(pressed),
              'aria-label': described,
              'data-facet': facet.name,
              'data-key': bucket.key,
              onclick: apply,
            },
            content[0],
          ),
          content[1],
        );
      });
      const more = facet.buckets.length > FACET_SHOWN
        ? h('button', {
          type: 'button',
          class: 'link',
          'aria-expanded': String(expanded),
          onclick: () => {
            if (expanded) expandedFacets.delete(facet.name);
            else expandedFacets.add(facet.name);
            renderFacets();
            rovingFacets();
          },
          text: expanded ? t('facets.less') : t('facets.more', { n: formatNumber(facet.buckets.length) }),
        })
        : null;
      return h(
        'section',
        { class: 'facet', 'aria-labelledby': headingId, 'data-facet': facet.name },
        h('h3', { id: headingId, text: t(`facets.${facet.name}`) }),
        h('ul', { class: 'buckets' }, items),
        more,
      );
    });
  fill(list, sections.length ? sections : h('p', { class: 'hint', text: t('facets.empty') }));
}

function sortedRows() {
  const rows = answer ? [...answer.byBiobank] : [];
  return rows.sort((a, b) => (b.samples.value ?? -1) - (a.samples.value ?? -1) || biobankName(a.biobank.id).localeCompare(biobankName(b.biobank.id)));
}

function consentOf(row, outcome) {
  return (row.consent || []).find((c) => c.outcome === outcome);
}

function accessCell(access) {
  const label = `${t(`granularity.${access.granularity}`)} · ${t(`role.${access.role}`)}`;
  return h(
    'td',
    { class: 'access' },
    h('span', { text: label }),
    h('button', {
      type: 'button',
      class: 'marker info',
      'aria-label': `${t('access.rule')}: ${access.explanation}`,
      'data-tip': `${t('access.rule')}: ${access.explanation}`,
      text: 'i',
    }),
  );
}

// Choosing a biobank for an access request: a toggle per row; the cart keeps this search
// (its URL query string) as the request's question.
function cartButton(biobankId) {
  const chosen = inCart(biobankId);
  const name = biobankName(biobankId);
  return h('button', {
    type: 'button',
    class: 'cart-toggle',
    'aria-pressed': String(chosen),
    'data-cart': biobankId,
    'aria-label': t(chosen ? 'cart.remove.named' : 'cart.add.named', { name }),
    onclick: () => {
      if (inCart(biobankId)) {
        removeFromCart(biobankId);
        byId('cart-status').textContent = t('cart.removed', { name });
      } else {
        const replaced = addToCart(biobankId, writeState(state));
        byId('cart-status').textContent = t(replaced ? 'cart.added.replaced' : 'cart.added', { name });
      }
    },
    text: t(chosen ? 'cart.in' : 'cart.add'),
  });
}

function refreshCartButtons() {
  for (const button of document.querySelectorAll('#biobank-results [data-cart]')) {
    const id = button.dataset.cart;
    const chosen = inCart(id);
    const name = biobankName(id);
    button.setAttribute('aria-pressed', String(chosen));
    button.setAttribute('aria-label', t(chosen ? 'cart.remove.named' : 'cart.add.named', { name }));
    button.textContent = t(chosen ? 'cart.in' : 'cart.add');
  }
}

onCartChange(() => refreshCartButtons());

function renderBiobanks() {
  const container = byId('biobank-table');
  const exportButton = byId('export-biobanks');
  const rows = sortedRows();
  exportButton.disabled = !rows.length;
  if (!answer || !rows.length) {
    fill(container, answer ? h('p', { class: 'hint', text: t('biobanks.empty') }) : '');
    // Without an answer there is nothing to chart, which is not "no matches".
    renderChart(byId('chart'), [], 'chart-caption', { empty: Boolean(answer) });
    return;
  }
  const withConsent = Boolean(answer.consent);
  const head = [
    h('th', { scope: 'col', text: t('biobanks.biobank') }),
    h('th', { scope: 'col', text: t('biobanks.country') }),
    h('th', { scope: 'col', class: 'num', text: t('biobanks.donors') }),
    h('th', { scope: 'col', class: 'num', text: t('biobanks.samples') }),
    withConsent ? OUTCOMES.map((o) => h('th', { scope: 'col', class: 'num', text: t(`outcome.${o}`) })) : null,
    h('th', { scope: 'col', text: t('biobanks.access') }),
    h('th', { scope: 'col', text: t('cart.column') }),
  ];
  const body = rows.map((row) => {
    const rule = row.access.explanation;
    return h(
      'tr',
      { 'data-biobank': row.biobank.id },
      // The name leads to the biobank's page: who they are, their collections, how to apply.
      h('th', { scope: 'row' }, h('a', { href: biobankHref(row.biobank.id), class: 'biobank-link', text: biobankName(row.biobank.id) })),
      h('td', { title: row.biobank.country || undefined, text: row.biobank.country ? countryName(row.biobank.country) : '' }),
      h('td', { class: 'num', 'data-field': 'donors' }, countNode(row.donors, rule)),
      h('td', { class: 'num', 'data-field': 'samples' }, countNode(row.samples, rule)),
      withConsent
        ? OUTCOMES.map((o) => {
          const split = consentOf(row, o);
          return h('td', { class: 'num', 'data-field': `consent-${o}` }, split ? countNode(split.samples, rule) : '');
        })
        : null,
      accessCell(row.access),
      h('td', { class: 'cart-cell' }, cartButton(row.biobank.id)),
    );
  });
  const total = h(
    'tr',
    { class: 'total', 'data-biobank': '' },
    h('th', { scope: 'row', text: t('biobanks.total') }),
    h('td'),
    h('td', { class: 'num', 'data-field': 'donors' }, countNode(answer.donors)),
    h('td', { class: 'num', 'data-field': 'samples' }, countNode(answer.samples)),
    withConsent
      ? OUTCOMES.map((o) => {
        const split = answer.consent.find((c) => c.outcome === o);
        return h('td', { class: 'num', 'data-field': `consent-${o}` }, split ? countNode(split.samples) : '');
      })
      : null,
    h('td'),
    h('td'),
  );
  // Declared counts are never added to the total of counted samples: their own line.
  const declaredTotal = answer.declared
    ? h(
      'tr',
      { class: 'total declared', 'data-biobank': '', 'data-total': 'declared' },
      h('th', { scope: 'row', text: t('biobanks.total.declared') }),
      h('td'),
      h('td', { class: 'num', 'data-field': 'donors' }, countNode(answer.declared.donors)),
      h('td', { class: 'num', 'data-field': 'samples' }, countNode(answer.declared.samples)),
      withConsent ? OUTCOMES.map(() => h('td')) : null,
      h('td'),
    )
    : null;
  fill(
    container,
    h(
      'table',
      { class: 'data', id: 'biobank-results' },
      h('caption', { class: 'visually-hidden', text: t(withConsent ? 'biobanks.caption.consent' : 'biobanks.caption') }),
      h('thead', {}, h('tr', {}, head)),
      h('tbody', {}, body),
      h('tfoot', {}, total, declaredTotal),
    ),
  );
  renderChart(
    byId('chart'),
    rows.map((row) => ({ label: biobankName(row.biobank.id), donors: row.donors, samples: row.samples })),
    'chart-caption',
  );
}

function fillPurposeForm() {
  const form = byId('purpose-form');
  const purpose = state.purpose;
  form.elements.kind.value = purpose ? purpose.kind : '';
  form.elements.diseases.value = purpose ? purpose.diseases.join(', ') : '';
  form.elements.country.value = purpose ? purpose.country : '';
  for (const flag of ['commercial', 'forProfit', 'ethicsApproval', 'genetic']) {
    form.elements[flag].checked = Boolean(purpose && purpose[flag]);
  }
}

function renderPurpose() {
  const box = byId('purpose-result');
  if (!answer || !answer.consent) {
    fill(box, state.purpose ? '' : h('p', { class: 'hint', text: t('purpose.none') }));
    return;
  }
  const cards = OUTCOMES.map((outcome) => {
    const split = answer.consent.find((c) => c.outcome === outcome);
    return h(
      'div',
      { class: `outcome outcome-${outcome.toLowerCase()}`, 'data-outcome': outcome },
      h('h3', { text: t(`outcome.${outcome}`) }),
      h('p', { class: 'outcome-count' }, split ? countNode(split.samples) : '', h('span', { class: 'unit', text: ` ${t('biobanks.samples')}` })),
      h('p', { class: 'outcome-donors' }, split ? countNode(split.donors) : '', h('span', { class: 'unit', text: ` ${t('biobanks.donors')}` })),
      h('p', { class: 'hint', text: t(`outcome.${outcome}.help`) }),
    );
  });
  fill(box, h('div', { class: 'cards' }, cards));
}

const RECORD_COLUMNS = [
  ['biobank', (r) => biobankName(r.biobankId)],
  ['sample', (r) => r.sampleId],
  ['donor', (r) => r.donorId],
  ['sex', (r) => vocabulary('sex', r.sex, r.sex)],
  ['age', (r) => (r.age ?? '')],
  ['material', (r) => vocabulary('material_type', r.materialType, r.materialType)],
  ['diagnoses', (r) => r.diagnoses.join(' ')],
  ['collected', (r) => r.collectionDate || ''],
  ['storage', (r) => (r.storageTemperature ? vocabulary('storage', r.storageTemperature, r.storageTemperature) : '')],
  ['availability', (r) => vocabulary('availability', r.availability, r.availability)],
  ['data', (r) => r.dataCategories.join(' ')],
  ['consent', (r) => r.consent || ''],
];
const PURPOSE_COLUMNS = [
  ['outcome', (r) => (r.consentOutcome ? t(`outcome.${r.consentOutcome}`) : '')],
  ['obligations', (r) => (r.obligations || []).map(obligationText).join('; ')],
];

function obligationText(o) {
  const text = has(`obligation.${o.code}`) ? t(`obligation.${o.code}`) : o.description;
  return o.until ? `${o.code}: ${text} (${t('obligation.until', { date: o.until })})` : `${o.code}: ${text}`;
}

// With a purpose, what the consent says comes right after the sample: the reason a
// researcher reads the records at all, in view without scrolling sideways.
function recordColumns() {
  if (!(state.purpose && answer && answer.consent)) return RECORD_COLUMNS;
  return [...RECORD_COLUMNS.slice(0, 2), ...PURPOSE_COLUMNS, ...RECORD_COLUMNS.slice(2)];
}

function renderRecords() {
  const container = byId('records-table');
  const note = byId('records-note');
  const records = answer && answer.records;
  byId('export-records').disabled = !(records && records.nodes.length);
  byId('records-prev').disabled = !records || paging.index === 0;
  byId('records-next').disabled = !(records && records.pageInfo.hasNextPage);
  if (!answer) {
    fill(container);
    note.hidden = true;
    byId('records-page').textContent = '';
    return;
  }
  // Biobanks with matches whose records this role may not see: say which, so an empty or
  // short page is not mistaken for "no samples".
  const closed = answer.byBiobank.filter((row) => row.access.granularity !== 'record').map((row) => biobankName(row.biobank.id));
  if (answer.recordsNote) {
    note.textContent = `${t(records ? 'records.partial' : 'records.unavailable')} (${answer.recordsNote})`;
    note.hidden = false;
  } else if (records && closed.length) {
    note.textContent = t('records.closed', { biobanks: formatList(closed) });
    note.hidden = false;
  } else note.hidden = true;
  if (!records || !records.nodes.length) {
    fill(container, records ? h('p', { class: 'hint', text: t('records.empty') }) : '');
    byId('records-page').textContent = '';
    return;
  }
  const first = paging.index * PAGE_SIZE + 1;
  byId('records-page').textContent = t(records.totalCount == null ? 'records.range' : 'records.range.total', {
    from: formatNumber(first),
    to: formatNumber(first + records.nodes.length - 1),
    total: formatNumber(records.totalCount ?? 0),
  });
  const columns = recordColumns();
  const rows = records.nodes.map((record) =>
    h(
      'tr',
      { 'data-sample': record.sampleId },
      columns.map(([name, value], n) => {
        if (name === 'diagnoses') {
          return h('td', {}, record.diagnoses.map((code, i) => [i ? ' ' : '', h('span', { class: 'code', title: diseaseName(code) || undefined, text: code })]));
        }
        if (name === 'obligations') {
          return h('td', {}, h('ul', { class: 'obligations' }, (record.obligations || []).map((o) => h('li', { text: obligationText(o) }))));
        }
        return n === 1 ? h('th', { scope: 'row', text: value(record) }) : h('td', { text: value(record) });
      }),
    ),
  );
  fill(
    container,
    h(
      'table',
      { class: 'data records', id: 'records' },
      h('caption', { class: 'visually-hidden', text: t('records.caption') }),
      h('thead', {}, h('tr', {}, columns.map(([name]) => headerCell(name)))),
      h('tbody', {}, rows),
    ),
  );
}

// --- CSV

function countColumns(count) {
  if (!count) return ['', ''];
  return [count.value ?? (count.precision === 'BOOLEAN' ? (count.exists ? '>0' : '0') : ''), count.precision];
}

function exportBiobanks() {
  const withConsent = Boolean(answer.consent);
  const header = [
    t('biobanks.biobank'), 'id', t('biobanks.country'),
    t('biobanks.donors'), t('csv.precision', { column: t('biobanks.donors') }),
    t('biobanks.samples'), t('csv.precision', { column: t('biobanks.samples') }),
  ];
  if (withConsent) {
    for (const o of OUTCOMES) {
      for (const unit of ['donors', 'samples']) {
        const column = `${t(`outcome.${o}`)} ${t(`biobanks.${unit}`)}`;
        header.push(column, t('csv.precision', { column }));
      }
    }
  }
  header.push(t('biobanks.access'), t('access.rule'));
  const line = (name, id, country, donors, samples, consent, access) => {
    const cells = [name, id, country, ...countColumns(donors), ...countColumns(samples)];
    if (withConsent) {
      for (const o of OUTCOMES) {
        const split = (consent || []).find((c) => c.outcome === o);
        cells.push(...countColumns(split && split.donors), ...countColumns(split && split.samples));
      }
    }
    cells.push(access ? `${t(`granularity.${access.granularity}`)} · ${t(`role.${access.role}`)}` : '', access ? access.explanation : '');
    return cells;
  };
  const rows = sortedRows().map((r) => line(biobankName(r.biobank.id), r.biobank.id, r.biobank.country || '', r.donors, r.samples, r.consent, r.access));
  rows.push(line(t('biobanks.total'), '', '', answer.donors, answer.samples, answer.consent, null));
  download(datedName('biobanks'), [header, ...rows]);
}

async function exportRecords() {
  if (exporting) return;
  exporting = true;
  const columns = recordColumns();
  const status = byId('records-export-status');
  const button = byId('export-records');
  button.setAttribute('aria-busy', 'true');
  const mine = ticket; // a new search makes this export stale: it stops
  status.textContent = t('records.export.started');
  try {
    const count = await exportAllRecords({
      query: PAGE,
      variables: variables(),
      header: columns.map(([name]) => t(`records.${name}`)),
      line: (record) => columns.map(([, value]) => value(record)),
      stem: 'records',
      cancelled: () => mine !== ticket,
      progress: ({ done, total, waiting }) => {
        const numbers = { done: formatNumber(done), total: formatNumber(total ?? done), seconds: waiting };
        status.textContent = t(waiting ? 'records.export.waiting' : 'records.export.progress', numbers);
      },
    });
    status.textContent = count === null ? '' : t('records.export.done', { n: formatNumber(count) });
  } catch (err) {
    status.textContent = t('records.export.failed', { error: err.message });
  } finally {
    exporting = false;
    button.removeAttribute('aria-busy');
  }
}

// --- wiring

function readPurposeForm() {
  const form = byId('purpose-form');
  const kind = form.elements.kind.value;
  if (!kind) return null;
  return {
    kind,
    diseases: form.elements.diseases.value.split(/[\s,、，]+/).map((c) => c.trim()).filter(Boolean),
    country: form.elements.country.value.trim().toUpperCase(),
    commercial: form.elements.commercial.checked,
    forProfit: form.elements.forProfit.checked,
    ethicsApproval: form.elements.ethicsApproval.checked,
    genetic: form.elements.genetic.checked,
  };
}

function ageValue(input) {
  if (input.value === '' && input.validity.valid) return null;
  const n = Number(input.value);
  return Number.isInteger(n) && n >= 0 && n <= 150 && input.value !== '' ? n : undefined;
}

function settleAges() {
  agesDraft = false;
  ageProblem(null, null);
}

/** Mark an unusable age at its field and say why; true when there is a problem. */
function ageProblem(ageMin, ageMax) {
  const message = byId('age-problem');
  let key = null;
  let field = null;
  if (ageMin === undefined) [key, field] = ['search.age.invalid', 'age-min'];
  else if (ageMax === undefined) [key, field] = ['search.age.invalid', 'age-max'];
  else if (ageMin !== null && ageMax !== null && ageMin > ageMax) [key, field] = ['search.age.order', 'age-min'];
  for (const id of ['age-min', 'age-max']) byId(id).setAttribute('aria-invalid', String(id === field));
  message.hidden = !key;
  message.textContent = key ? t(key) : '';
  if (key) message.dataset.i18n = key;
  else delete message.dataset.i18n;
  return Boolean(key);
}

function wire() {
  diseaseCombobox({
    input: byId('disease-input'),
    listbox: byId('disease-options'),
    status: byId('disease-status'),
    problem: byId('disease-problem'),
    onSelect: (code) => {
      if (!state.diseases.includes(code)) setState({ diseases: [...state.diseases, code] });
    },
    onText: (text) => setState({ text, textExclude: [] }),
  });
  byId('search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = byId('disease-input').value.trim();
    byId('disease-input').value = '';
    setState({ text, textExclude: [] });
  });
  for (const id of ['age-min', 'age-max']) {
    byId(id).addEventListener('input', () => { agesDraft = true; });
    byId(id).addEventListener('change', () => {
      const ageMin = ageValue(byId('age-min'));
      const ageMax = ageValue(byId('age-max'));
      if (ageProblem(ageMin, ageMax)) return;
      if (ageMin === state.ageMin && ageMax === state.ageMax) settleAges();
      else setState({ ageMin, ageMax });
    });
  }
  byId('clear-all').addEventListener('click', () => {
    setState({
      diseases: [], text: '', textExclude: [], materials: [], sexes: [], biobanks: [], collectionTypes: [], dataCategories: [], ageMin: null, ageMax: null,
    });
    byId('disease-input').focus();
  });
  byId('purpose-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const purpose = readPurposeForm();
    const diseases = byId('purpose-diseases');
    const help = byId('purpose-diseases-help');
    // Disease research needs its diseases: say so beside the field rather than after a
    // round trip that the server would refuse.
    const missing = purpose && purpose.kind === 'DISEASE' && !purpose.diseases.length && !state.diseases.length;
    diseases.setAttribute('aria-invalid', String(Boolean(missing)));
    help.dataset.i18n = missing ? 'purpose.diseases.required' : 'purpose.diseases.help';
    help.textContent = t(help.dataset.i18n);
    help.classList.toggle('invalid', Boolean(missing));
    if (missing) {
      diseases.focus();
      return;
    }
    setState({ purpose });
  });
  byId('purpose-clear').addEventListener('click', () => setState({ purpose: null }));
  byId('export-biobanks').addEventListener('click', exportBiobanks);
  byId('export-records').addEventListener('click', exportRecords);
  byId('records-table').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-sort]');
    if (button) sortBy(button.dataset.sort);
  });
  byId('records-next').addEventListener('click', () => {
    const cursor = answer && answer.records && answer.records.pageInfo.endCursor;
    if (!cursor) return;
    paging.cursors[paging.index + 1] = cursor;
    loadPage(paging.index + 1);
  });
  byId('records-prev').addEventListener('click', () => {
    if (paging.index > 0) loadPage(paging.index - 1);
  });
  byId('facet-list').addEventListener('keydown', facetKeys);
  document.querySelector('.skip-to').addEventListener('click', (event) => {
    event.preventDefault(); // no #fragment in the URL: the URL is the search
    byId('records-heading').focus();
  });
  byId('facet-list').addEventListener('focusin', (event) => {
    for (const el of byId('facet-list').querySelectorAll('button')) el.tabIndex = el === event.target ? 0 : -1;
  });
  byId('facets-toggle').addEventListener('click', () => {
    const open = byId('facets').dataset.collapsed === 'true';
    byId('facets').dataset.collapsed = String(!open);
    byId('facets-toggle').setAttribute('aria-expanded', String(open));
  });
  // A turned phone or a resized window: the chart is drawn for its width, tables re-measured.
  window.addEventListener('resize', debounce(() => {
    if (answer) renderBiobanks();
    markScrollable();
  }, 200));
  window.addEventListener('popstate', () => {
    state = readState();
    settleAges();
    runSearch();
  });
  // The server writes reasons, explanations and notes in the request's language: ask again.
  onLanguageChange(() => runSearch());
}

initTooltips();
byId('summary').removeAttribute('data-i18n'); // from here on the summary states results
wire();
initShell({ onAuthChange: () => runSearch() });
runSearch();
