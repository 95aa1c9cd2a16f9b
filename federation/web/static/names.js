// ICD-10 names in the reader's language, fetched by code (`diseaseNames`) and kept for the
// page: the hierarchy of a suggestion, chapter and block facets, chips, diagnoses.

import { request } from './api.js';
import { currentLanguage, onLanguageChange } from './i18n.js';

const NAMES = `query Names($codes: [String!]!, $language: String) {
  diseaseNames(codes: $codes, language: $language) { code name language kind ancestors }
}`;
const BATCH = 100;
const cache = new Map();
let available = true; // false once the API turns out not to have `diseaseNames`

onLanguageChange(() => cache.clear());

/** The cached item for a code: {code, name, language, kind, ancestors}, or undefined. */
export function disease(code) {
  return cache.get(code);
}

export function diseaseName(code) {
  const item = cache.get(code);
  return item ? item.name : '';
}

/** True when `code` is `ancestor` or lies beneath it (as far as the cache knows). */
export function isWithin(code, ancestor) {
  if (code === ancestor) return true;
  const item = cache.get(code);
  return Boolean(item && item.ancestors.includes(ancestor));
}

/** Fetch the names of the codes not cached yet (and remember the ones given). */
export async function ensureNames(codes, { withAncestors = false } = {}) {
  if (!available) return;
  const language = currentLanguage();
  let wanted = [...new Set(codes.filter(Boolean))].filter((c) => !cache.has(c));
  for (let round = 0; round < 2 && wanted.length; round += 1) {
    for (let start = 0; start < wanted.length; start += BATCH) {
      const { data, errors } = await request(NAMES, { codes: wanted.slice(start, start + BATCH), language });
      if (errors.some((e) => e.code === 'GRAPHQL_VALIDATION_FAILED')) {
        available = false;
        return;
      }
      if (language !== currentLanguage()) return; // switched meanwhile; names are stale
      for (const item of (data && data.diseaseNames) || []) cache.set(item.code, item);
    }
    if (!withAncestors) return;
    wanted = [...new Set(wanted.flatMap((c) => (cache.get(c) || { ancestors: [] }).ancestors))].filter(
      (c) => !cache.has(c),
    );
  }
}

/** Remember items the API returned elsewhere (e.g. `diseases` matches in this language). */
export function remember(items) {
  for (const item of items) if (item.language === currentLanguage() && !cache.has(item.code)) cache.set(item.code, item);
}
