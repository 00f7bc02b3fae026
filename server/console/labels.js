// Chinese names of what the server stores in English keys, and how times and rates print.

export const STATUS = {
  draft: '草稿', registered: '已受理', not_accepted: '不予受理', dispatched: '已派单',
  signed: '已签收', in_progress: '办理中', replied: '已答复', reviewed: '已审核',
  followed_up: '已回访', closed: '已办结', return_requested: '申请退单', returned: '已退单',
  merged: '已合并', reopened: '重启',
};

export const ACTION = {
  register: '登记受理', not_accept: '不予受理', dispatch: '派单', sign: '签收', start: '开始办理',
  reply: '答复', approve: '审核通过', reject: '审核退回', follow_up: '回访', close: '办结',
  request_return: '申请退单', approve_return: '同意退单', request_extension: '申请延期',
  grant_extension: '批准延期', deny_extension: '驳回延期', merge_into: '合并', reopen: '重启',
  supervise: '督办',
};

export const ROLE = {
  grid_worker: '网格员', township_staff: '乡镇(街道)工作人员', handling_unit: '承办单位',
  hotline_centre: '热线中心', admin: '管理员', system: '系统',
  supervisor: '督办员', auditor: '核查员',
};

export const STAGE = {
  route: '派单', sign: '签收', handle: '办理', review: '审核', follow_up: '回访',
  close: '办结', return_review: '退单审核',
};

export const URGENCY = { general: '一般', urgent: '紧急' };

export const AUDIT_KIND = {
  change: '案件变更', reveal: '查看联系方式', reject: '拒收变更', revoke: '吊销',
  enrol: '登记', admin: '管理员账号', audit_draw: '抽查', audit_verify: '抽查核实',
};

/** A label from a table, or the key itself. */
export const label = (table, key) => table[key] ?? key ?? '';

const CHINA = new Intl.DateTimeFormat('zh-CN', {
  timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', hour12: false,
});

/** Milliseconds since the epoch as China time, `2026/11/28 10:00`. */
export function chinaTime(ms) {
  if (ms === null || ms === undefined) return '—';
  return CHINA.format(new Date(ms));
}

/** A rate (0..1 or null) as a percentage. */
export function percent(rate) {
  return rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(1)}%`;
}

/** How long ago / until `ms` from `now`, in hours or days. */
export function span(ms, now) {
  const hours = Math.round(Math.abs(now - ms) / 3_600_000);
  const text = hours >= 48 ? `${Math.round(hours / 24)} 天` : `${hours} 小时`;
  return ms < now ? `超期 ${text}` : `剩余 ${text}`;
}
