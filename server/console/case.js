// A case: its fields, description, timeline (trusted times and authors), supervisions, notes,
// attachments, and the complainant with the phone masked; "reveal" asks a reason, shows the
// phone, and the audit row it wrote appears below.

import { api, explain } from './api.js';
import { fill, h } from './dom.js';
import { ACTION, ROLE, STAGE, STATUS, URGENCY, chinaTime, label } from './labels.js';
import { auditTable } from './views.js';

function field(name, value) {
  return [h('dt', {}, name), h('dd', {}, value === '' || value === null || value === undefined ? '—' : value)];
}

function author(a) {
  return `${a.user}（${label(ROLE, a.role)}）`;
}

/** What an action carries besides its kind, in words. */
function actionDetail(action) {
  const parts = [];
  if (action.unit) parts.push(`承办单位：${action.unit}`);
  if (action.assignee) parts.push(`承办人：${action.assignee}`);
  if (action.days) parts.push(`${action.days} 天`);
  if (action.reason) parts.push(`原因：${action.reason}`);
  if (action.text) parts.push(action.text);
  if (action.level) parts.push(`${action.level} 级`);
  if (action.kind === 'follow_up') parts.push(action.solved ? '已解决' : '未解决');
  return parts.join('；');
}

function timeline(events) {
  return h('ol', { class: 'timeline' }, events.map((e) => h('li', { class: e.conflicted ? 'conflicted' : '' },
    h('time', {}, chinaTime(e.at)),
    h('strong', {}, label(ACTION, e.action.kind)),
    h('span', { class: 'muted' }, ` · ${author(e.author)}`),
    e.conflicted ? h('span', { class: 'tag' }, '冲突未生效') : null,
    actionDetail(e.action) ? h('div', {}, actionDetail(e.action)) : null)));
}

function complainantCard(id, complainant, onAudit) {
  const phone = h('span', { id: 'phone' }, complainant?.phone || '—');
  const card = h('section', { class: 'card' }, h('h2', {}, '诉求人'));
  if (!complainant) return fill(card, h('h2', {}, '诉求人'), h('p', { class: 'muted' }, '无'));
  const reason = h('textarea', { name: 'reason', id: 'reveal-reason', required: true, rows: 2, maxlength: 500 });
  const result = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'stack', 'aria-label': '查看完整电话' },
    h('label', { for: 'reveal-reason' }, '查看原因（将记入审计日志）'), reason,
    h('button', { type: 'submit' }, '查看完整电话'), result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const r = await api(`/admin/cases/${encodeURIComponent(id)}/reveal`, { method: 'POST', body: { reason: reason.value } });
      fill(phone, r.complainant?.phone ?? '—');
      fill(result, h('p', { class: 'ok' }, '已显示完整电话，本次查看已记入审计日志。'));
      form.querySelector('button').disabled = true;
      await onAudit();
    } catch (error) {
      fill(result, h('p', { class: 'error', role: 'alert' }, explain(error)));
    }
  });
  return fill(card, h('h2', {}, '诉求人'),
    h('dl', { class: 'fields' },
      field('姓名', complainant.anonymous ? '匿名' : complainant.name),
      field('电话', phone)),
    form);
}

/** Types a browser shows as a picture; anything else (HEIC photos, recordings, PDF) is a download. */
const PICTURES = new Set(['image/jpeg', 'image/png', 'image/webp']);

function fileSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * One attachment, from the admin route (each view is audited): a photo as a thumbnail linking
 * to the full image, anything else as a download link with its type and size. A phone syncs the
 * case before the photo's bytes, so a photo the server does not have yet says so.
 */
function attachmentItem(caseId, a) {
  const url = `/admin/cases/${encodeURIComponent(caseId)}/attachments/${encodeURIComponent(a.sha256)}`;
  const about = h('span', { class: 'muted' }, `${a.mime}，${fileSize(a.size)} · ${chinaTime(a.at)} · ${author(a.author)}`);
  if (!PICTURES.has(a.mime)) {
    return h('li', {}, h('a', { href: url, download: '' }, `下载 ${a.caption || '附件'}`), ' ', about);
  }
  const img = h('img', { src: url, alt: a.caption || '现场照片（无说明）', class: 'thumb' });
  const link = h('a', { href: url, target: '_blank', rel: 'noopener' }, img);
  img.addEventListener('error', () => link.replaceWith(h('p', { class: 'missing' }, '照片尚未上传到服务器')));
  return h('li', {}, h('figure', {}, link, h('figcaption', {}, a.caption || '现场照片', h('br'), about)));
}

const LEVELS = { 1: '督办', 2: '升级督办', 3: '挂牌督办' };
const FINISHED = new Set(['closed', 'merged', 'not_accepted']);

/** Issue a supervision or escalate (the server allows it to admins and supervisors). */
function superviseCard(id, current, reload) {
  const level = h('select', { name: 'level', id: 'supervise-level' },
    Object.entries(LEVELS).map(([n, text]) => h('option', { value: n, selected: Number(n) === Math.min(3, current + 1) }, `${n} 级 · ${text}`)));
  const reason = h('textarea', { name: 'reason', id: 'supervise-reason', required: true, rows: 2, maxlength: 500 });
  const result = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'stack', 'aria-label': '督办' },
    h('label', { for: 'supervise-level' }, '督办级别'), level,
    h('label', { for: 'supervise-reason' }, '督办意见'), reason,
    h('button', { type: 'submit' }, '发出督办'), result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api(`/admin/cases/${encodeURIComponent(id)}/supervise`, { method: 'POST', body: { level: Number(level.value), reason: reason.value } });
      await reload();
    } catch (error) {
      fill(result, h('p', { class: 'error', role: 'alert' }, explain(error)));
    }
  });
  return h('section', { class: 'card' }, h('h2', {}, '发出督办'), form);
}

export async function casePage(main, id) {
  const detail = await api(`/admin/cases/${encodeURIComponent(id)}`);
  const c = detail.case;
  const s = detail.summary;
  const auditBox = h('section', { class: 'card' });
  const loadAudit = async () => {
    try {
      const data = await api(`/admin/audit?case=${encodeURIComponent(id)}&limit=50`);
      const rows = data.rows.filter((r) => r.kind !== 'change');
      fill(auditBox, h('h2', {}, '审计记录'), rows.length
        ? auditTable(rows, '本案的查看与管理记录')
        : h('p', { class: 'muted' }, '暂无查看记录。'));
    } catch (error) {
      fill(auditBox, h('h2', {}, '审计记录'), h('p', { class: 'error' }, explain(error)));
    }
  };
  fill(main,
    h('p', {}, h('button', { type: 'button', class: 'quiet', onclick: () => history.back() }, '← 返回')),
    h('h1', {}, `${c.number || s.case_id} ${c.title}`),
    h('div', { class: 'grid2' },
      h('section', { class: 'card' }, h('h2', {}, '基本信息'), h('dl', { class: 'fields' },
        field('状态', label(STATUS, c.status)),
        field('当前环节', label(STAGE, s.stage)),
        field('办理时限', s.due_at ? `${chinaTime(s.due_at)}${s.due_provisional ? '（暂定）' : ''}` : '—'),
        field('类别', c.category),
        field('紧急程度', label(URGENCY, c.urgency)),
        field('区域', c.location.area_code),
        field('地址', c.location.address),
        field('承办单位', c.responsible_unit),
        field('承办人', c.assignee),
        field('登记', `${chinaTime(c.created_at)} · ${author(c.created_by)}`))),
      complainantCard(id, detail.complainant, loadAudit)),
    h('section', { class: 'card' }, h('h2', {}, '诉求内容'), h('p', { class: 'description' }, c.description || '—')),
    h('section', { class: 'card' }, h('h2', {}, '办理过程'), timeline(c.timeline)),
    FINISHED.has(c.status) ? null : superviseCard(id, Math.max(0, ...c.supervisions.map((v) => v.level)), () => casePage(main, id)),
    detail.supervisions.length ? h('section', { class: 'card' }, h('h2', {}, '督办'),
      h('ul', { class: 'plain' }, detail.supervisions.map((v) =>
        h('li', {}, `${chinaTime(v.created_at)} · ${v.level} 级督办 · ${label(STAGE, v.stage)} · ${v.reason}`)))) : null,
    c.notes.length ? h('section', { class: 'card' }, h('h2', {}, '备注'),
      h('ul', { class: 'plain' }, c.notes.map((n) => h('li', {}, `${chinaTime(n.at)} · ${author(n.author)}：${n.text}`)))) : null,
    c.attachments.length ? h('section', { class: 'card' }, h('h2', {}, '附件'),
      h('ul', { class: 'attachments' }, c.attachments.map((a) => attachmentItem(id, a)))) : null,
    auditBox);
  await loadAudit();
}
