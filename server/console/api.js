// Calls to the server with the session cookie; changes carry the session's CSRF token.

let csrf = null;

/** Remembers the CSRF token the server gave at sign-in or with the session. */
export function setCsrf(token) {
  csrf = token;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A JSON call; throws ApiError with the server's error code on a refusal. */
export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    if (csrf) headers['X-CSRF-Token'] = csrf;
  }
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, data?.error ?? 'error', data?.message ?? response.statusText);
  }
  return data;
}

/** A query string of the non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** Chinese text for a refusal. */
export function explain(error) {
  if (!(error instanceof ApiError)) return `无法连接服务器：${error.message}`;
  const known = {
    unauthorized: '用户名或密码错误，或登录已过期。',
    too_many_sign_ins: '失败次数过多，请稍后再试。',
    forbidden: '您的角色或辖区不允许此操作。',
    csrf: '安全校验失败，请刷新页面后重试。',
    not_found: '未找到。',
    reason_required: '请填写查看原因。',
  };
  return known[error.code] ?? `操作失败：${error.message}`;
}
