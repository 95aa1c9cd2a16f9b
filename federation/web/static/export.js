// The full records export: every record the reader's role may see, not only the page on
// screen. The page asks the public API for the records a page of 100 at a time (each page is
// a search like any other: the server audits it, charges the rate limit and the privacy
// budget), turns each page into CSV lines as it arrives and saves the file at the end.

import { ApiError, request } from './api.js';
import { datedName, download } from './csv.js';

export const EXPORT_PAGE_SIZE = 100; // the API's largest page
const LONGEST_WAIT_SECONDS = 60;

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/**
 * Page through `query` (a search selecting `records`) and save every record as CSV.
 * `line(record)` gives a record's cells; `progress({done, total, waiting})` is told after
 * each page and while the rate limit makes the export wait. Resolves to the record count;
 * throws an ApiError when the server refuses a page.
 */
export async function exportAllRecords({ query, variables, header, line, stem, progress, cancelled = () => false }) {
  const rows = [header];
  let after = null;
  let total = null;
  for (;;) {
    const { data, errors } = await request(query, { ...variables, first: EXPORT_PAGE_SIZE, after });
    if (cancelled()) return null;
    const limited = errors.find((e) => e.code === 'RATE_LIMITED');
    if (limited) {
      // Wait as the server says (the same limit every search draws from), then ask again.
      const wait = Math.min(Number(limited.retryAfter) || 5, LONGEST_WAIT_SECONDS);
      progress({ done: rows.length - 1, total, waiting: wait });
      await sleep(wait);
      continue;
    }
    const records = data && data.search && data.search.records;
    if (!records) {
      const error = errors[0] || { message: 'no records', code: 'ERROR' };
      throw new ApiError(error.message, error.code);
    }
    total = records.totalCount ?? total;
    for (const record of records.nodes) rows.push(line(record));
    progress({ done: rows.length - 1, total, waiting: 0 });
    if (!records.pageInfo.hasNextPage) break;
    after = records.pageInfo.endCursor;
  }
  download(datedName(stem), rows);
  return rows.length - 1;
}
