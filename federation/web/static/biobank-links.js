// Links to biobank pages and country names, shared by the search page and the biobank page.

import { currentLanguage } from './i18n.js';

/** The URL of a biobank's page. */
export function biobankHref(id) {
  return `/biobank/${encodeURIComponent(id)}`;
}

/** A country's name in the page's language from its ISO 3166-1 code (the code if unknown). */
export function countryName(code) {
  if (!code) return '';
  try {
    return new Intl.DisplayNames([currentLanguage()], { type: 'region' }).of(code) || code;
  } catch {
    return code;
  }
}
