// The monthly random audit (每月随机抽查): draw N closed cases of a finished month inside the
// jurisdiction (reproducible: seed and inputs recorded, and the server replays them), then
// record each drawn case's re-verification (回访核实). A second draw of a month needs a reason;
// the server refuses a silent redraw and names the first draw.

import { api, explain, query } from './api.js';
import { fill, h } from './dom.js';
import { chinaTime } from './labels.js';

const RESULT = { confirmed: '核实属实', failed: '核实不实' };

function lastMonth() {
  const d = new Date(Date.now() + 8 * 3_600_000);
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
}

function verifyForm(draw, c, reload) {
  const error = h('span', { 'aria-live': 'polite' });
  const note = h('input', { name: 'note', 'aria-label': `第 ${c.position + 1} 件核实说明`, placeholder: '核实说明' });
  const choose = (result) => async () => {
    try {
      await api(`/admin/audit-draws/${draw.id}/results`, { method: 'POST', body: { case: c.case_id, result, note: note.value } });
      await reload();
    } catch (e) {
      fill(error, h('span', { class: 'error', role: 'alert' }, explain(e)));
    }
  };
  return h('div', { class: 'verify' }, note,
    h('button', { type: 'button', onclick: choose('confirmed') }, RESULT.confirmed),
    h('button', { type: 'button', class: 'quiet', onclick: choose('failed') }, RESULT.failed), error);
}

/** One draw: its recorded inputs and its cases with their results or the forms to record them. */
async function showDraw(out, id) {
  const draw = await api(`/admin/audit-draws/${encodeURIComponent(id)}`);
  const reload = () => showDraw(out, id);
  fill(out, h('section', { class: 'card' },
    h('h2', {}, `抽查 ${draw.id}：${draw.month} · ${draw.area || '全部辖区'}`),
    h('p', { class: 'muted' },
      `${chinaTime(draw.at)} 由 ${draw.by} 抽取 ${draw.n} 件（候选 ${draw.candidates} 件）· 第 ${draw.sequence + 1} 次抽取`,
      draw.reason ? ` · 重抽原因：${draw.reason}` : '',
      draw.replays ? ' · 可按记录的种子复现' : ' · 无法复现！'),
    h('div', { class: 'scroll' }, h('table', { class: 'data' },
      h('caption', {}, '抽中的案件'),
      h('thead', {}, h('tr', {}, ['序号', '案件', '核实结果', '说明', '核实人'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, draw.cases.map((c) => h('tr', {},
        h('td', {}, c.position + 1),
        h('td', {}, h('a', { href: `#/case/${encodeURIComponent(c.case_id)}` }, c.case_id.slice(0, 8))),
        c.result
          ? [h('td', {}, RESULT[c.result] ?? c.result), h('td', {}, c.note ?? ''),
            h('td', {}, `${c.verified_by ?? ''} ${chinaTime(c.verified_at)}`)]
          : h('td', { colspan: 3 }, verifyForm(draw, c, reload)))))))));
}

export function draws(main, params) {
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'filters', 'aria-label': '抽取' },
    h('label', {}, '月份', h('input', { name: 'month', value: lastMonth(), required: true })),
    h('label', {}, '区域代码前缀', h('input', { name: 'area', inputmode: 'numeric', required: true })),
    h('label', {}, '件数', h('input', { name: 'n', type: 'number', min: 1, max: 100, value: 10 })),
    h('label', {}, '重抽原因（仅重抽时填写）', h('input', { name: 'reason' })),
    h('button', { type: 'submit' }, '抽取'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const v = Object.fromEntries(new FormData(form));
    try {
      const draw = await api('/admin/audit-draws', { method: 'POST',
        body: { month: v.month, area: v.area, n: Number(v.n), reason: v.reason || null } });
      location.hash = `#/draws${query({ id: draw.id })}`;
    } catch (e) {
      const first = e.code === 'conflict' ? e.message.match(/draw (\d+)/)?.[1] : null;
      fill(out, h('p', { class: 'error', role: 'alert' }, e.code === 'conflict' ? '本月该区域已抽取过；重抽须填写原因。' : explain(e)),
        first ? h('p', {}, h('a', { href: `#/draws${query({ id: first })}` }, `查看已有的抽查 ${first}`)) : null);
    }
  });
  const open = h('form', { class: 'filters', 'aria-label': '查看抽查' },
    h('label', {}, '抽查编号', h('input', { name: 'id', inputmode: 'numeric', value: params.id ?? '' })),
    h('button', { type: 'submit' }, '查看'));
  open.addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = `#/draws${query(Object.fromEntries(new FormData(open)))}`;
  });
  fill(main, h('h1', {}, '随机抽查'),
    h('p', { class: 'muted' }, '每月从已办结的案件中随机抽取，逐件回访核实。抽取可复现，且记入审计日志。'),
    form, open, out);
  if (params.id) {
    return showDraw(out, params.id).catch((e) => fill(out, h('p', { class: 'error', role: 'alert' }, explain(e))));
  }
  return undefined;
}
