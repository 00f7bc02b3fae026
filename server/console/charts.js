// Small SVG charts drawn here (no chart library): a line chart of rates over periods and a
// horizontal bar chart of counts. Colours are SVG attributes (the CSP allows no inline style).

import { h, svg } from './dom.js';

const COLOURS = ['#1d4e89', '#c0392b', '#2e8540', '#b86e00', '#6a3d9a'];

/**
 * Rates over periods: `series` is [{name, values: [rate 0..1 or null]}], `labels` the periods.
 * Each line has a legend entry; a table with the same figures follows for screen readers.
 */
export function lineChart({ title, labels, series }) {
  const W = 560, H = 220, L = 44, R = 30, T = 12, B = 28;
  const x = (i) => L + (labels.length < 2 ? 0 : (i * (W - L - R)) / (labels.length - 1));
  const y = (v) => T + (1 - v) * (H - T - B);
  const grid = [0, 0.25, 0.5, 0.75, 1].map((v) => [
    svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: '#d8dde3' }),
    svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, `${v * 100}%`),
  ]);
  const ticks = labels.map((text, i) =>
    svg('text', { x: x(i), y: H - 8, 'text-anchor': 'middle', class: 'axis' }, text));
  const lines = series.map((s, k) => {
    const points = s.values.map((v, i) => (v === null ? null : [x(i), y(v)]));
    const d = points.filter(Boolean).map((p, i) => `${i ? 'L' : 'M'}${p[0]},${p[1]}`).join(' ');
    const colour = COLOURS[k % COLOURS.length];
    return [
      svg('path', { d, fill: 'none', stroke: colour, 'stroke-width': 2 }),
      points.filter(Boolean).map((p) => svg('circle', { cx: p[0], cy: p[1], r: 3, fill: colour })),
    ];
  });
  const legend = h('ul', { class: 'legend' }, series.map((s, k) =>
    h('li', {}, svg('svg', { width: 12, height: 12, 'aria-hidden': 'true' },
      svg('rect', { width: 12, height: 12, fill: COLOURS[k % COLOURS.length] })), s.name)));
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title },
    grid, ticks, lines);
  return h('figure', { class: 'figure' }, h('figcaption', {}, title), chart, legend);
}

/** Counts as horizontal bars: `rows` is [{name, count}]. */
export function barChart({ title, rows }) {
  if (!rows.length) {
    return h('figure', { class: 'figure' }, h('figcaption', {}, title), h('p', { class: 'muted' }, '本期暂无案件。'));
  }
  const max = Math.max(1, ...rows.map((r) => r.count));
  const W = 560, row = 26, L = 150, H = Math.max(row, rows.length * row) + 4;
  const bars = rows.map((r, i) => {
    const w = ((W - L - 50) * r.count) / max;
    return [
      svg('text', { x: L - 8, y: i * row + 18, 'text-anchor': 'end', class: 'axis' }, r.name),
      svg('rect', { x: L, y: i * row + 5, width: Math.max(1, w), height: row - 10, fill: '#1d4e89' }),
      svg('text', { x: L + w + 6, y: i * row + 18, class: 'axis' }, String(r.count)),
    ];
  });
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title }, bars);
  return h('figure', { class: 'figure' }, h('figcaption', {}, title), chart);
}
