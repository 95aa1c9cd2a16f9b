// CSV export of what is on screen, built in the browser (UTF-8 with a BOM so spreadsheet
// programs read Japanese correctly).

const RISKY = /^[=+\-@\t\r]/;

function cell(value) {
  let text = value === null || value === undefined ? '' : String(value);
  // A text cell starting like a formula would run as one in a spreadsheet.
  if (typeof value === 'string' && RISKY.test(text)) text = `'${text}`;
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function toCsv(rows) {
  return rows.map((row) => row.map(cell).join(',')).join('\r\n') + '\r\n';
}

export function download(filename, rows) {
  const blob = new Blob(['\ufeff', toCsv(rows)], { type: 'text/csv;charset=utf-8' });
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** A file name with the date: biobanks-2024-05-01.csv */
export function datedName(stem) {
  return `${stem}-${new Date().toISOString().slice(0, 10)}.csv`;
}
