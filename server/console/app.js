// The console's shell: who is signed in, the sign-in form, the navigation and the router
// (pages are addressed by the URL's hash: #/overview, #/list/overdue, #/case/<id>, …).

import { api, explain, setCsrf } from './api.js';
import { casePage } from './case.js';
import { draws } from './draws.js';
import { fill, h } from './dom.js';
import { ROLE, label } from './labels.js';
import { audit, failed, list, overview, people, reports } from './views.js';

const main = document.getElementById('main');
let live = null;
let renders = 0;
let rendering = false;
let latest = 0;

/** Pages that redraw by themselves when cases change (not the case or a form being filled). */
const LIVE_PAGES = new Set(['overview', 'list']);

/** Listens for "cases changed" from the server and redraws a live page. */
function listen() {
  live?.close();
  live = new EventSource('/console/api/events');
  const badge = document.getElementById('live');
  live.addEventListener('open', () => { badge.hidden = false; });
  live.addEventListener('error', () => { badge.hidden = true; });
  live.addEventListener('cases', () => {
    const [page = 'overview'] = parseHash().parts;
    if (LIVE_PAGES.has(page) && !rendering) route({ quiet: true });
  });
}

function signInForm() {
  const error = h('div', { 'aria-live': 'assertive' });
  const form = h('form', { class: 'sign-in card', 'aria-labelledby': 'sign-in-title' },
    h('h1', { id: 'sign-in-title' }, 'gridcase 管理台'),
    h('p', { class: 'muted' }, '请用管理员账号登录'),
    h('label', {}, '用户名', h('input', { name: 'name', autocomplete: 'username', required: true })),
    h('label', {}, '密码', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    h('button', { type: 'submit' }, '登录'), error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const who = await api('/console/session', { method: 'POST', body: Object.fromEntries(new FormData(form)) });
      signedIn(who);
    } catch (e) {
      fill(error, h('p', { class: 'error', role: 'alert' }, explain(e)));
    }
  });
  live?.close();
  live = null;
  document.getElementById('live').hidden = true;
  document.getElementById('top').hidden = true;
  fill(main, form);
  form.querySelector('input').focus();
}

function signedIn(who) {
  setCsrf(who.csrf);
  const area = who.jurisdiction === '*' ? '全部辖区' : who.jurisdiction;
  fill(document.getElementById('who'), `${who.name} · ${label(ROLE, who.role)} · ${area}`);
  document.getElementById('top').hidden = false;
  listen();
  route();
}

/** The hash's page and its query parameters. */
function parseHash() {
  const [path, q = ''] = location.hash.replace(/^#/, '').split('?');
  return { parts: path.split('/').filter(Boolean), params: Object.fromEntries(new URLSearchParams(q)) };
}

async function route({ quiet = false } = {}) {
  if (document.getElementById('top').hidden) return;
  rendering = true;
  const mine = ++latest;
  const { parts, params } = parseHash();
  const [page = 'overview', arg] = parts;
  const current = page === 'list' ? arg : page;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // A live redraw keeps the page in place until the new one is ready.
  const target = quiet ? h('div') : main;
  if (!quiet) fill(main, h('p', { class: 'loading' }, '正在加载…'));
  try {
    if (page === 'list' && ['overdue', 'due_soon', 'supervised'].includes(arg)) await list(target, arg, params);
    else if (page === 'case' && arg) await casePage(target, decodeURIComponent(arg));
    else if (page === 'audit') await audit(target, params);
    else if (page === 'reports') await reports(target);
    else if (page === 'people') await people(target);
    else if (page === 'draws') await draws(target, params);
    else await overview(target, params);
    if (mine !== latest) return; // the admin moved on meanwhile
    if (quiet) {
      main.replaceChildren(...target.childNodes);
      Object.assign(main.dataset, target.dataset);
    }
    renders += 1;
    main.dataset.renders = String(renders);
    document.title = `${main.querySelector('h1')?.textContent ?? ''} · gridcase 管理台`;
  } catch (error) {
    if (error.status === 401) signInForm();
    else if (!quiet) failed(main, error);
  } finally {
    rendering = false;
  }
}

async function start() {
  document.getElementById('sign-out').addEventListener('click', async () => {
    try {
      await api('/console/session/end', { method: 'POST', body: {} });
    } finally {
      setCsrf(null);
      signInForm();
    }
  });
  window.addEventListener('hashchange', route);
  try {
    signedIn(await api('/console/session'));
  } catch (error) {
    if (error.status === 401) signInForm();
    else failed(main, error);
  }
}

start();
