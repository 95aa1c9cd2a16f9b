// Message catalogues: the page's catalogue is embedded in it; switching language fetches
// the other one, re-labels every element marked data-i18n and tells the page to re-render.

const config = JSON.parse(document.getElementById('config').textContent);
let language = config.language;
let messages = JSON.parse(document.getElementById('messages').textContent);
const listeners = new Set();
const ATTRIBUTES = ['placeholder', 'aria-label', 'title'];

export const pageConfig = config;

export function currentLanguage() {
  return language;
}

/** The message for `key` with `{name}` placeholders filled from `params`. */
export function t(key, params = {}) {
  let text = Object.hasOwn(messages, key) ? messages[key] : key;
  for (const [name, value] of Object.entries(params)) {
    text = text.replaceAll(`{${name}}`, String(value));
  }
  return text;
}

/** True when the catalogue has `key` (for optional translations of codes). */
export function has(key) {
  return Object.hasOwn(messages, key);
}

export function formatNumber(value) {
  return new Intl.NumberFormat(language).format(value);
}

/** "A, B and C" / "A、B、C" in the page's language. */
export function formatList(items) {
  return new Intl.ListFormat(language, { style: 'long', type: 'conjunction' }).format(items);
}

export function formatDateTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return new Intl.DateTimeFormat(language, { dateStyle: 'medium', timeStyle: 'short' }).format(date);
}

export function onLanguageChange(listener) {
  listeners.add(listener);
}

/** Label every element under `root` that names a message key. */
export function translateElements(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const attribute of ATTRIBUTES) {
    for (const el of root.querySelectorAll(`[data-i18n-${attribute}]`)) {
      el.setAttribute(attribute, t(el.getAttribute(`data-i18n-${attribute}`)));
    }
  }
}

export async function setLanguage(next) {
  if (!config.languages.includes(next) || next === language) return;
  const response = await fetch(config.catalogues[next], { credentials: 'same-origin' });
  if (!response.ok) throw new Error(`catalogue ${next}: HTTP ${response.status}`);
  messages = await response.json();
  language = next;
  // The server renders the next page in this language from the cookie (no flash of the
  // other language); a year, like any preference.
  document.cookie = `${config.languageCookie}=${next}; path=/; max-age=31536000; SameSite=Lax`;
  document.documentElement.lang = next;
  translateElements();
  for (const listener of listeners) listener(next);
}
