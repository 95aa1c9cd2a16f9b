// Released counts: the number (or what stands for it) and a marker on every count that is
// not the true number, whose tooltip and accessible name say how and why.

import { h } from './dom.js';
import { formatNumber, t } from './i18n.js';

const MARKERS = {
  ROUNDED: '≈',
  NOISED: '±',
  BELOW_THRESHOLD: '<',
  BOOLEAN: '?',
  LOWER_BOUND: '≥',
  HIDDEN: '–',
  // Declared by collections for their whole size: the matching part is at most this.
  DECLARED: '≤',
};

/** The count as a short text: "1,230", "few", "some"... */
export function countText(count) {
  if (!count) return '';
  if (count.value !== null && count.value !== undefined) return formatNumber(count.value);
  if (count.precision === 'BOOLEAN') return t(count.exists ? 'count.some' : 'count.none');
  if (count.precision === 'BELOW_THRESHOLD') return t('count.few');
  return t('count.hidden');
}

/** The count in a sentence: "about 1,230", "at least 1,200", "a few"... */
export function countPhrase(count) {
  if (!count) return '';
  const n = count.value !== null && count.value !== undefined ? formatNumber(count.value) : '';
  return t(`count.phrase.${count.precision}`, { n, text: countText(count) });
}

/** Why a count is not exact, in words: the precision, the count's reason, the biobank's rule. */
export function countExplanation(count, rule) {
  const parts = [t(`precision.${count.precision}`)];
  if (count.reason) parts.push(count.reason);
  if (rule) parts.push(`${t('access.rule')}: ${rule}`);
  return parts.join(' — ');
}

export function isExact(count) {
  return !count || count.precision === 'EXACT';
}

/** A count for a table cell or a facet: the text, and a focusable marker when not exact. */
export function countNode(count, rule) {
  const text = h('span', { class: 'count-value', text: countText(count) });
  if (isExact(count)) return h('span', { class: 'count' }, text);
  const explanation = countExplanation(count, rule);
  return h(
    'span',
    { class: `count inexact precision-${count.precision.toLowerCase()}` },
    text,
    h('button', {
      type: 'button',
      class: 'marker',
      'aria-label': explanation,
      'data-tip': explanation,
      text: MARKERS[count.precision] || '*',
    }),
  );
}

// One tooltip for the page, placed beside the marker under the pointer or the focus (a
// CSS tooltip would be clipped by scrolling tables). Escape hides it.
let tooltip = null;
let anchor = null;

function place() {
  const box = anchor.getBoundingClientRect();
  const width = Math.min(320, window.innerWidth - 16);
  tooltip.style.maxWidth = `${width}px`;
  tooltip.style.left = `${Math.max(8, Math.min(box.left, window.innerWidth - width - 8))}px`;
  const below = box.bottom + 6;
  const height = tooltip.offsetHeight;
  tooltip.style.top = `${below + height > window.innerHeight ? box.top - height - 6 : below}px`;
}

export function initTooltips() {
  tooltip = h('div', { class: 'tooltip', role: 'tooltip', id: 'tooltip', hidden: true });
  document.body.append(tooltip);
  const show = (event) => {
    const marker = event.target.closest && event.target.closest('[data-tip]');
    if (!marker) return;
    anchor = marker;
    tooltip.textContent = marker.dataset.tip;
    tooltip.hidden = false;
    place();
  };
  const hide = (event) => {
    if (event.target.closest && event.target.closest('[data-tip]')) {
      tooltip.hidden = true;
      anchor = null;
    }
  };
  document.addEventListener('mouseover', show);
  document.addEventListener('focusin', show);
  document.addEventListener('mouseout', hide);
  document.addEventListener('focusout', hide);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') tooltip.hidden = true;
  });
  // Scrolling (also the scroll that brings a focused marker into view) moves the tooltip along.
  window.addEventListener('scroll', () => {
    if (anchor && !tooltip.hidden) place();
  }, { passive: true, capture: true });
}
