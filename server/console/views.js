// The console's pages other than the case: overview, deadline lists, audit log, reports,
// people and devices. Each takes the <main> element and the route's parameters.

import { api, explain, query } from './api.js';
import { barChart, lineChart } from './charts.js';
import { fill, h } from './dom.js';
import { AUDIT_KIND, ROLE, STAGE, STATUS, chinaTime, label, percent, span } from './labels.js';

/** A message in place of a page that failed to load. */
export function failed(main, error) {
  fill(main, h('p', { class: 'error', role: 'alert' }, explain(error)));
}

const TREND_RATES = ['response', 'on_time', 'completion', 'satisfaction'];

const monthLabel = (data) => data.month.period.label;

function stat(title, value, note, href) {
  const body = [h('div', { class: 'stat-title' }, title), h('div', { class: 'stat-value' }, value),
    note ? h('div', { class: 'stat-note' }, note) : null];
  return href ? h('a', { class: 'stat', href }, body) : h('div', { class: 'stat' }, body);
}

function countText(c) {
  return c.capped ? `≥ ${c.count}` : String(c.count);
}

function ratesTable(report) {
  const before = Object.fromEntries(report.previous_rates.map((r) => [r.key, r]));
  const rows = report.rates.map((r) => {
    const prev = before[r.key]?.rate;
    const change = r.rate !== null && prev !== null && prev !== undefined
      ? `${((r.rate - prev) * 100).toFixed(1)} 个百分点` : '—';
    return h('tr', {},
      h('th', { scope: 'row' }, r.name),
      h('td', { class: 'num' }, Number.isInteger(r.numerator) ? r.numerator : r.numerator.toFixed(1)),
      h('td', { class: 'num' }, r.denominator),
      h('td', { class: 'num' }, percent(r.rate)),
      h('td', { class: 'num' }, percent(prev)),
      h('td', { class: 'num' }, change));
  });
  return h('table', { class: 'data' },
    h('caption', {}, `${report.period.label} 考核指标（上期 ${report.previous_period.label}）`),
    h('thead', {}, h('tr', {}, ['指标', '分子', '分母', '比率', '上期', '增减'].map((t, i) => h('th', { scope: 'col', class: i ? 'num' : undefined }, t)))),
    h('tbody', {}, rows));
}

function hotSpots(spots) {
  const cells = spots.cells.slice(0, 8).map((c) => h('li', {},
    h('strong', {}, `${c.category} · ${c.area}`), `：${c.count} 件（近期平均 ${c.baseline_mean.toFixed(1)}）`));
  const bursts = spots.bursts.slice(0, 8).map((b) => h('li', {},
    h('strong', {}, `${b.category} · ${b.area}`), `：${b.days} 天内 ${b.count} 件（预期 ${b.expected.toFixed(1)}），建议专班`));
  return h('section', { class: 'card' }, h('h2', {}, '热点'),
    cells.length ? h('ul', { class: 'plain' }, cells) : h('p', { class: 'muted' }, '本期没有异常增多的类别与区域。'),
    h('h3', {}, '集中爆发'),
    bursts.length ? h('ul', { class: 'plain' }, bursts) : h('p', { class: 'muted' }, '没有同一地点的集中爆发。'));
}

/** The last twelve months' labels (China time), newest first. */
function recentMonths(at) {
  const d = new Date(at + 8 * 3_600_000);
  return Array.from({ length: 12 }, (_, i) => {
    const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - i, 1));
    return m.toISOString().slice(0, 7);
  });
}

export async function overview(main, params = {}) {
  const started = performance.now();
  const data = await api(`/console/api/overview${query({ month: params.month })}`);
  const m = data.month;
  const trend = lineChart({
    title: '考核指标趋势（近六个月）',
    labels: data.trend.map((p) => p.period),
    series: TREND_RATES.map((key) => ({
      name: data.trend[0]?.rates.find((r) => r.key === key)?.name ?? key,
      values: data.trend.map((p) => p.rates.find((r) => r.key === key)?.rate ?? null),
    })),
  });
  const top = barChart({ title: `${m.period.label} 类别排行`, rows: m.top_categories.slice(0, 8) });
  const months = h('select', { name: 'month', id: 'month' },
    recentMonths(data.at).map((m) => h('option', { value: m, selected: m === monthLabel(data) }, m)));
  months.addEventListener('change', () => { location.hash = `#/overview${query({ month: months.value })}`; });
  fill(main,
    h('div', { class: 'title-row' }, h('h1', {}, '总览'),
      h('label', { class: 'inline' }, '统计月份', months)),
    h('p', { class: 'muted' }, `辖区 ${data.jurisdiction === '*' ? '全部' : data.jurisdiction} · 截至 ${chinaTime(data.at)}`),
    h('div', { class: 'stats' },
      stat('今日新增', data.today_cases, data.today),
      stat('临期件', countText(data.due_soon), '即将超过时限', '#/list/due_soon'),
      stat('超期件', countText(data.overdue), '已超过时限', '#/list/overdue'),
      stat(`${m.period.label} 受理`, m.cases, `上月 ${m.previous_cases}`)),
    h('div', { class: 'grid2' },
      h('section', { class: 'card' }, trend),
      h('section', { class: 'card' }, top)),
    h('section', { class: 'card' }, ratesTable(m)),
    hotSpots(m.hot_spots));
  main.dataset.renderMs = String(Math.round(performance.now() - started));
}

function select(name, text, choices, value) {
  return h('label', {}, text,
    h('select', { name }, h('option', { value: '' }, '全部'),
      choices.map((c) => h('option', { value: c, selected: c === value }, c))));
}

export async function list(main, kind, params) {
  const title = { overdue: '超期件', due_soon: '临期件', supervised: '督办件' }[kind];
  const page = await api(`/console/api/cases${query({ list: kind, ...params, size: 20 })}`);
  const form = h('form', { class: 'filters', 'aria-label': '筛选' },
    h('label', {}, '区域代码前缀', h('input', { name: 'area', value: params.area ?? '', inputmode: 'numeric', pattern: '[0-9]*', maxlength: 12 })),
    select('category', '类别', page.categories, params.category),
    select('unit', '承办单位', page.units, params.unit),
    h('button', { type: 'submit' }, '筛选'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    location.hash = `#/list/${kind}${query(values)}`;
  });
  const rows = page.cases.map((c) => h('tr', {},
    h('td', {}, h('a', { href: `#/case/${encodeURIComponent(c.case_id)}` }, c.number || c.case_id)),
    h('td', {}, c.title),
    h('td', {}, c.category),
    h('td', {}, c.area_code),
    h('td', {}, c.responsible_unit || '—'),
    h('td', {}, label(STATUS, c.status)),
    h('td', {}, label(STAGE, c.stage)),
    h('td', {}, chinaTime(c.due_at)),
    h('td', { class: kind === 'overdue' ? 'late' : 'soon' }, c.due_at ? span(c.due_at, page.at) : '—')));
  const pager = h('nav', { class: 'pager', 'aria-label': '分页' },
    page.page > 1 ? h('a', { href: `#/list/${kind}${query({ ...params, page: page.page - 1 })}` }, '上一页') : null,
    h('span', {}, `第 ${page.page} / ${page.pages} 页，共 ${page.total} 件${page.capped ? '（仅统计前 10000 件）' : ''}`),
    page.page < page.pages ? h('a', { href: `#/list/${kind}${query({ ...params, page: page.page + 1 })}` }, '下一页') : null);
  fill(main, h('h1', {}, title), form,
    rows.length
      ? h('div', { class: 'scroll' }, h('table', { class: 'data' },
        h('caption', {}, `${title}列表`),
        h('thead', {}, h('tr', {}, ['工单编号', '标题', '类别', '区域', '承办单位', '状态', '环节', '时限', '超期/剩余'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows)))
      : h('p', { class: 'muted' }, '没有符合条件的案件。'),
    pager);
}

/** The audit log's rows as a table (also used by the case page). */
/** An audit row's kind in words: a reveal of an attachment's bytes is a view of the attachment. */
function auditKind(row) {
  if (row.kind === 'reveal' && /"attachment":/.test(row.detail ?? '')) return '查看附件';
  return label(AUDIT_KIND, row.kind);
}

export function auditTable(rows, caption) {
  return h('div', { class: 'scroll' }, h('table', { class: 'data audit' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ['时间', '类型', '人员', '设备', '案件', '详情'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.map((r) => h('tr', {},
      h('td', {}, chinaTime(r.at)), h('td', {}, auditKind(r)), h('td', {}, r.user_id ?? '—'),
      h('td', {}, r.device_id ?? '—'),
      h('td', {}, r.case_id ? h('a', { href: `#/case/${encodeURIComponent(r.case_id)}` }, r.case_id.slice(0, 8)) : '—'),
      h('td', { class: 'detail' }, r.detail ?? ''))))));
}

export async function audit(main, params) {
  const form = h('form', { class: 'filters', 'aria-label': '筛选' },
    h('label', {}, '人员', h('input', { name: 'user', value: params.user ?? '' })),
    h('label', {}, '案件编号', h('input', { name: 'case', value: params.case ?? '' })),
    h('label', {}, '类型', h('select', { name: 'kind' },
      [['', '全部'], ...Object.entries(AUDIT_KIND)].map(([value, text]) =>
        h('option', { value, selected: value === (params.kind ?? '') }, text)))),
    h('label', {}, '起', h('input', { name: 'from', type: 'date', value: params.from ?? '' })),
    h('label', {}, '止', h('input', { name: 'to', type: 'date', value: params.to ?? '' })),
    h('button', { type: 'submit' }, '筛选'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = `#/audit${query(Object.fromEntries(new FormData(form)))}`;
  });
  // China-time midnights: `from` the start of its day, `to` the end of its day (exclusive).
  const midnight = (d) => (d ? new Date(`${d}T00:00:00+08:00`).getTime() : undefined);
  const end = params.to ? midnight(params.to) + 86_400_000 : undefined;
  const before = params.before ? Number(params.before) : undefined;
  const to = [end, before].filter((t) => t !== undefined && !Number.isNaN(t));
  const data = await api(`/admin/audit${query({ user: params.user, case: params.case, kind: params.kind, from: midnight(params.from),
    to: to.length ? Math.min(...to) : undefined, limit: 50 })}`);
  const oldest = data.rows.at(-1)?.at;
  const more = data.count === 50 && oldest !== undefined
    ? h('nav', { class: 'pager', 'aria-label': '分页' },
      h('a', { href: `#/audit${query({ ...params, before: oldest })}` }, '更早的记录'))
    : null;
  fill(main, h('h1', {}, '审计日志'), form,
    data.rows.length ? auditTable(data.rows, `${before ? '更早的' : '最近'} ${data.count} 条`) : h('p', { class: 'muted' }, '没有记录。'),
    more);
}

export async function reports(main) {
  // The month just ended: a monthly report (月通报) is of a finished month.
  const month = recentMonths(Date.now())[1];
  const form = h('form', { class: 'filters', 'aria-label': '报表' },
    h('label', {}, '统计周期', h('input', { name: 'period', value: month, required: true, 'aria-describedby': 'period-help' })),
    h('label', {}, '区域代码前缀', h('input', { name: 'area', inputmode: 'numeric' })),
    h('button', { type: 'submit' }, '预览'));
  const help = h('p', { id: 'period-help', class: 'muted' }, '月：2026-11；日：2026-11-30；周：2026-W48；半月：2026-11-H1 / 2026-11-H2');
  const out = h('div', { 'aria-live': 'polite' });
  const show = async () => {
    const values = Object.fromEntries(new FormData(form));
    try {
      const report = await api(`/admin/report${query({ ...values, format: 'json' })}`);
      fill(out,
        h('p', { class: 'downloads' },
          h('a', { class: 'button', href: `/admin/report${query({ ...values, format: 'xlsx' })}`, download: '' }, '下载 XLSX'),
          h('a', { class: 'button', href: `/admin/report${query({ ...values, format: 'csv' })}`, download: '' }, '下载 CSV')),
        h('p', {}, `${report.period.label}：受理 ${report.cases} 件（上期 ${report.previous_cases}），超期 ${report.overdue.total} 件，督办 ${report.supervised.total} 件`),
        ratesTable(report));
    } catch (error) {
      fill(out, h('p', { class: 'error', role: 'alert' }, explain(error)));
    }
  };
  form.addEventListener('submit', (event) => { event.preventDefault(); show(); });
  fill(main, h('h1', {}, '报表'), form, help, out);
  await show();
}

function actionForm(title, fields, submit, act) {
  const result = h('div', { class: 'result', 'aria-live': 'polite' });
  const form = h('form', { class: 'stack', 'aria-label': title }, fields, h('button', { type: 'submit' }, submit), result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      fill(result, await act(Object.fromEntries(new FormData(form))));
    } catch (error) {
      fill(result, h('p', { class: 'error', role: 'alert' }, explain(error)));
    }
  });
  return h('section', { class: 'card' }, h('h2', {}, title), form);
}

const state = (revoked) => (revoked ? '已吊销' : '有效');

/** A revoke button that asks first, then reloads the list. */
function revokeButton(text, path, reload, result) {
  return h('button', { type: 'button', class: 'small', 'aria-label': text, onclick: async () => {
    if (!confirm(`${text}？吊销后不能恢复，设备下次同步时将被拒绝并清除数据。`)) return;
    try {
      await api(path, { method: 'POST', body: {} });
      fill(result, h('p', { class: 'ok' }, `${text}：已完成。`));
      await reload();
    } catch (error) {
      fill(result, h('p', { class: 'error', role: 'alert' }, explain(error)));
    }
  } }, '吊销');
}

/** One row per device (a user without devices gets one row), revoke buttons on each. */
function peopleTable(users, reload, result) {
  const rows = users.flatMap((u) => {
    const devices = u.devices.length ? u.devices : [null];
    return devices.map((d, i) => h('tr', {},
      h('td', {}, i ? '' : u.id), h('td', {}, i ? '' : label(ROLE, u.role)), h('td', {}, i ? '' : u.jurisdiction),
      h('td', {}, i || u.revoked ? (i ? '' : state(true)) : revokeButton(`吊销人员 ${u.id}`,
        `/admin/users/${encodeURIComponent(u.id)}/revoke`, reload, result)),
      h('td', {}, d ? h('code', {}, d.id) : '—'),
      h('td', {}, d ? (d.last_seen ? chinaTime(d.last_seen) : '从未同步') : ''),
      h('td', {}, d ? (d.revoked ? state(true) : revokeButton(`吊销设备 ${d.id}`,
        `/admin/devices/${encodeURIComponent(d.id)}/revoke`, reload, result)) : '')));
  });
  return h('div', { class: 'scroll' }, h('table', { class: 'data people' },
    h('caption', {}, `辖区内 ${users.length} 名人员`),
    h('thead', {}, h('tr', {}, ['用户名', '角色', '区域', '人员', '设备', '最近同步', '设备状态'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows)));
}

function adminTable(admins) {
  return h('div', { class: 'scroll' }, h('table', { class: 'data' },
    h('caption', {}, '辖区内的管理账号'),
    h('thead', {}, h('tr', {}, ['名称', '角色', '区域', '密码登录', '状态'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, admins.map((a) => h('tr', {},
      h('td', {}, a.name), h('td', {}, label(ROLE, a.role)), h('td', {}, a.jurisdiction || '全部'),
      h('td', {}, a.password ? '是' : '否'), h('td', {}, a.disabled ? '已停用' : '有效'))))));
}

/** The people list under the forms; `reload` redraws it after a change (`result`, the last
 *  revocation's outcome, stays). */
async function peopleList(box, result, reload) {
  try {
    const data = await api('/admin/people');
    fill(box, h('h2', {}, '人员名单'), result, peopleTable(data.users, reload, result),
      data.admins ? adminTable(data.admins) : null);
  } catch (error) {
    fill(box, h('h2', {}, '人员名单'), h('p', { class: 'error', role: 'alert' }, explain(error)));
  }
}

export async function people(main) {
  const listBox = h('section', { class: 'card' });
  const result = h('div', { 'aria-live': 'polite' });
  const reload = () => peopleList(listBox, result, reload);
  const roles = ['grid_worker', 'township_staff', 'handling_unit', 'hotline_centre', 'admin'];
  fill(main, h('h1', {}, '人员与设备'), h('div', { class: 'grid2' },
    actionForm('登记人员', [
      h('label', {}, '用户名', h('input', { name: 'id', required: true, autocomplete: 'off' })),
      h('label', {}, '角色', h('select', { name: 'role' }, roles.map((r) => h('option', { value: r }, label(ROLE, r))))),
      h('label', {}, '区域代码前缀', h('input', { name: 'area', required: true, inputmode: 'numeric' })),
    ], '登记', async (v) => {
      const r = await api('/admin/users', { method: 'POST', body: v });
      reload();
      return h('p', { class: 'ok' }, `已登记 ${r.user}（${label(ROLE, r.role)}，${r.area}）`);
    }),
    actionForm('登记设备', [h('label', {}, '用户名', h('input', { name: 'user', required: true, autocomplete: 'off' }))],
      '生成设备令牌', async (v) => {
        const r = await api('/console/api/devices', { method: 'POST', body: { user: v.user, server: location.origin } });
        const qr = h('img', { class: 'qr', alt: `设备 ${r.device} 的登记二维码`, width: 240, height: 240,
          src: `data:image/svg+xml;base64,${btoa(r.qr_svg)}` });
        reload();
        return h('div', { class: 'enrolled' },
          h('p', { class: 'ok' }, `设备 ${r.device} 已登记。请用手机应用扫描二维码；二维码和令牌只显示这一次。`),
          qr, h('code', { class: 'token' }, r.token));
      }),
    actionForm('吊销设备', [h('label', {}, '设备编号', h('input', { name: 'device', required: true, autocomplete: 'off' }))],
      '吊销', async (v) => {
        const r = await api(`/admin/devices/${encodeURIComponent(v.device)}/revoke`, { method: 'POST', body: {} });
        reload();
        return h('p', { class: 'ok' }, `设备 ${r.device} 已吊销，下次同步时将被拒绝并清除数据。`);
      }),
    actionForm('吊销人员', [h('label', {}, '用户名', h('input', { name: 'user', required: true, autocomplete: 'off' }))],
      '吊销', async (v) => {
        const r = await api(`/admin/users/${encodeURIComponent(v.user)}/revoke`, { method: 'POST', body: {} });
        reload();
        return h('p', { class: 'ok' }, `${r.user} 的全部设备已吊销。`);
      })), listBox);
  await reload();
}
