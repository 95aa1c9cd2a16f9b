// A horizontal bar chart of samples and donors per biobank, drawn as inline SVG. The table
// above it carries the same numbers for screen readers; the chart is one labelled image.

import { countText, isExact } from './counts.js';
import { h } from './dom.js';
import { t } from './i18n.js';

// Drawn at the container's own width (one SVG unit per CSS pixel), so the 12 px text stays
// 12 px on a phone instead of being scaled down with the picture.
const MAX_WIDTH = 640;
const MIN_WIDTH = 280;
const MAX_LABEL_WIDTH = 210;
const LABEL_SHARE = 0.34; // of a narrow chart's width
const VALUE_WIDTH = 80;
const BAR = 12;
const GAP = 3;
const ROW = BAR * 2 + GAP + 14;
const TOP = 28;
const SERIES = [
  { key: 'samples', className: 'bar-samples' },
  { key: 'donors', className: 'bar-donors' },
];

// Wide characters (CJK) take about twice the width of Latin ones at the same font size.
function fit(label, room) {
  let width = 0;
  let out = '';
  for (const ch of label) {
    width += ch.codePointAt(0) > 0x2e80 ? 2 : 1.1;
    if (width > room) return `${out}…`;
    out += ch;
  }
  return out;
}

/** Draw rows [{label, donors: Count, samples: Count}] into `container`. */
export function renderChart(container, rows, captionId, { empty = true } = {}) {
  if (!rows.length) {
    container.replaceChildren(empty ? h('p', { class: 'hint', text: t('chart.empty') }) : '');
    return;
  }
  const WIDTH = Math.round(Math.min(MAX_WIDTH, Math.max(MIN_WIDTH, container.clientWidth || MAX_WIDTH)));
  const LABEL_WIDTH = Math.round(Math.min(MAX_LABEL_WIDTH, WIDTH * LABEL_SHARE));
  const max = Math.max(1, ...rows.flatMap((r) => SERIES.map((s) => r[s.key].value || 0)));
  const plot = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
  const height = TOP + rows.length * ROW + 4;
  const svg = h('svg:svg', {
    viewBox: `0 0 ${WIDTH} ${height}`,
    width: WIDTH,
    role: 'img',
    'aria-labelledby': captionId,
    class: 'bar-chart',
    preserveAspectRatio: 'xMinYMin meet',
  });
  // Legend.
  SERIES.forEach((series, n) => {
    const x = LABEL_WIDTH + n * 110;
    svg.append(
      h('svg:rect', { x, y: 6, width: 12, height: 12, class: series.className }),
      h('svg:text', { x: x + 18, y: 16, class: 'legend', text: t(`biobanks.${series.key}`) }),
    );
  });
  rows.forEach((row, index) => {
    const y = TOP + index * ROW;
    const label = h('svg:text', {
      x: LABEL_WIDTH - 8,
      y: y + BAR + 2,
      'text-anchor': 'end',
      class: 'bar-label',
      text: fit(row.label, LABEL_WIDTH / 7),
    });
    label.append(h('svg:title', { text: row.label }));
    svg.append(label);
    SERIES.forEach((series, n) => {
      const count = row[series.key];
      const by = y + n * (BAR + GAP);
      const value = count.value;
      if (value === null || value === undefined) {
        // Withheld: an outlined stub, so the biobank is visibly there without a number.
        svg.append(h('svg:rect', { x: LABEL_WIDTH, y: by, width: 6, height: BAR, class: `${series.className} withheld` }));
      } else {
        const width = Math.max(value > 0 ? 1 : 0, (value / max) * plot);
        svg.append(h('svg:rect', { x: LABEL_WIDTH, y: by, width, height: BAR, class: series.className }));
      }
      const barEnd = value ? LABEL_WIDTH + (value / max) * plot : LABEL_WIDTH + 6;
      const mark = isExact(count) ? '' : ' *';
      svg.append(
        h('svg:text', { x: barEnd + 4, y: by + BAR - 2, class: 'bar-value', text: countText(count) + mark }),
      );
    });
  });
  const note = rows.some((r) => !isExact(r.donors) || !isExact(r.samples))
    ? h('p', { class: 'hint chart-note', text: t('chart.inexact') })
    : null;
  container.replaceChildren(svg, note || '');
}
