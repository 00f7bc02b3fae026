// Charts with Apache ECharts (vendored, server/console/vendor/; SVG renderer, no tooltip HTML,
// so nothing the CSP forbids): a line chart of rates over periods and a bar chart of counts.
// Each is a <figure> with a caption; ECharts' aria option describes the chart to screen
// readers. A chart is drawn once its box is in the page (it needs its size).

import { h } from './dom.js';

const COLOURS = ['#1d4e89', '#c0392b', '#2e8540', '#b86e00', '#6a3d9a'];
const TEXT = { color: '#4a5462', fontFamily: 'inherit' };

/** A figure whose chart is drawn with `option` when the box is in the page. */
function figure(title, option, height) {
  const box = h('div', { class: `echart h${height}` });
  const draw = () => {
    if (!box.isConnected) return requestAnimationFrame(draw);
    const chart = window.echarts.init(box, null, { renderer: 'svg' });
    chart.setOption({ aria: { enabled: true }, animation: false, color: COLOURS, textStyle: TEXT, ...option });
    new ResizeObserver(() => chart.resize()).observe(box);
    box.dataset.drawn = 'true';
    return undefined;
  };
  requestAnimationFrame(draw);
  return h('figure', { class: 'figure' }, h('figcaption', {}, title), box);
}

/**
 * Rates over periods: `series` is [{name, values: [rate 0..1 or null]}], `labels` the periods.
 */
export function lineChart({ title, labels, series }) {
  return figure(title, {
    grid: { left: 48, right: 24, top: 16, bottom: 56 },
    legend: { bottom: 0, textStyle: TEXT },
    xAxis: { type: 'category', data: labels, axisLabel: TEXT },
    yAxis: { type: 'value', min: 0, max: 100, axisLabel: { ...TEXT, formatter: '{value}%' } },
    series: series.map((s) => ({
      name: s.name,
      type: 'line',
      connectNulls: false,
      data: s.values.map((v) => (v === null ? null : Math.round(v * 1000) / 10)),
    })),
  }, 260);
}

/** Counts as horizontal bars: `rows` is [{name, count}]. */
export function barChart({ title, rows }) {
  if (!rows.length) {
    return h('figure', { class: 'figure' }, h('figcaption', {}, title), h('p', { class: 'muted' }, '本期暂无案件。'));
  }
  const ordered = [...rows].reverse();
  return figure(title, {
    grid: { left: 96, right: 40, top: 8, bottom: 8 },
    xAxis: { type: 'value', show: false },
    yAxis: { type: 'category', data: ordered.map((r) => r.name), axisLabel: TEXT, axisTick: { show: false } },
    series: [{ type: 'bar', data: ordered.map((r) => r.count), label: { show: true, position: 'right', ...TEXT }, barMaxWidth: 18 }],
  }, 260);
}
