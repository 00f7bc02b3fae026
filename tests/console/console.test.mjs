// The admin console in a real browser (issue 12): Debian's chromium driven by playwright-core
// against a real gridcase-server with demo data (started by run.sh). One signed-in session
// walks the pages in order; every page is checked with axe-core (no serious or critical
// violations) and saved as a screenshot in screenshots/.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
const BASE = process.env.GRIDCASE_URL;
const ADMIN = process.env.GRIDCASE_ADMIN;
const PASSWORD = process.env.GRIDCASE_PASSWORD;
const DEVICE_TOKEN = process.env.GRIDCASE_DEVICE_TOKEN;
const SHOTS = new URL('./screenshots/', import.meta.url);

let browser;
let page;
const pageErrors = [];

before(async () => {
  assert.ok(BASE && ADMIN && PASSWORD && DEVICE_TOKEN, 'run through run.sh');
  browser = await chromium.launch({
    executablePath: process.env.GRIDCASE_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({
    viewport: { width: 1366, height: 768 }, locale: 'zh-CN', timezoneId: 'Asia/Shanghai', acceptDownloads: true,
  });
  page = await context.newPage();
  // Anything the CSP blocks, or a script error, shows here: the console must cause none.
  page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(msg.text()); });
  page.on('pageerror', (error) => pageErrors.push(String(error)));
});

after(async () => {
  await browser?.close();
});

/** axe-core on the page as it is: no serious or critical violations. */
async function accessible(name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`), [], `${name}: axe violations`);
}

async function shot(name) {
  await page.screenshot({ path: new globalThis.URL(`${name}.png`, SHOTS).pathname, fullPage: true });
}

/** A sync attempt with the device's token, as its phone would start one. */
async function syncStatus(token = DEVICE_TOKEN) {
  const response = await fetch(`${BASE}/v1/sync`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream' },
    body: new Uint8Array(0),
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

/** CRC-32 of PNG chunks (Node 20's zlib has none). */
function crc32(bytes) {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xEDB88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function pngChunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

/** A real PNG: a river under a sky between green banks, `width` × `height`, 8-bit RGB. */
function riverPhoto(width, height) {
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3); // filter byte 0: none
    for (let x = 0; x < width; x++) {
      const river = Math.abs(x - width / 2 - (y - height) * 0.4) < 10 + y / 4;
      const rgb = y < height / 3 ? [150 + y, 190 + y / 2, 235] : river ? [60, 110, 170] : [80, 150 - y / 4, 70];
      row.set(rgb.map(Math.round), 1 + x * 3);
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.concat(rows))), pngChunk('IEND', Buffer.alloc(0))]);
}

/** A call of the device's on the blob routes; its JSON answer, refused unless 2xx. */
async function deviceCall(method, path, body) {
  const response = await fetch(`${BASE}${path}`, { method, headers: { Authorization: `Bearer ${DEVICE_TOKEN}` }, body });
  const data = await response.json().catch(() => null);
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${JSON.stringify(data)}`);
  return data;
}

/** Uploads `bytes` as its phone does: where to resume, one chunk, commit. */
async function uploadBlob(bytes) {
  const sha = createHash('sha256').update(bytes).digest('hex');
  assert.deepEqual(await deviceCall('GET', `/v1/blobs/${sha}/upload`), { offset: 0, complete: false });
  await deviceCall('PUT', `/v1/blobs/${sha}/chunks/0`, bytes);
  assert.deepEqual(await deviceCall('POST', `/v1/blobs/${sha}/commit`), { sha256: sha, size: bytes.length, mime: 'image/png' });
}

test('the accessibility check is not vacuous: it finds a planted violation', async () => {
  const scratch = await page.context().newPage();
  await scratch.setContent('<html lang="zh-CN"><title>x</title><main><img src="x.png"><button></button></main></html>');
  await scratch.evaluate(AXE);
  const result = await scratch.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const ids = result.violations.filter((v) => v.impact === 'critical').map((v) => v.id).sort();
  assert.deepEqual(ids, ['button-name', 'image-alt']);
  await scratch.close();
});

test('a wrong password is refused', async () => {
  await page.goto(`${BASE}/console/`);
  await page.getByLabel('用户名').fill(ADMIN);
  await shot('sign-in');
  await accessible('sign-in');
  await page.getByLabel('密码').fill('not the password at all');
  await page.getByRole('button', { name: '登录' }).click();
  await page.getByRole('alert').filter({ hasText: '用户名或密码错误' }).waitFor();
  assert.equal(await page.getByRole('heading', { name: '总览' }).count(), 0);
});

test('sign in and see the overview', async () => {
  await page.getByLabel('密码').fill(PASSWORD);
  const started = Date.now();
  await page.getByRole('button', { name: '登录' }).click();
  await page.getByRole('heading', { name: '总览' }).waitFor();
  await page.locator('.stat').first().waitFor();
  const renderMs = Date.now() - started;
  console.log(`overview: shown ${renderMs} ms after signing in (${await page.locator('main').getAttribute('data-render-ms')} ms to fetch and draw)`);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'gridcase_session');
  assert.ok(session?.httpOnly && session.sameSite === 'Strict', 'an HttpOnly, SameSite=Strict cookie');
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the session');
  assert.match(await page.locator('.stat').nth(2).innerText(), /超期件\s*\d+/);
  await page.locator('.echart[data-drawn] svg path').first().waitFor({ state: 'attached' });
  assert.equal(await page.locator('.echart[data-drawn]').count(), 2, 'the trend and top-categories charts are drawn');
  // The month before (the demo's cases lie in the 30 days before now).
  const previous = await page.locator('select[name=month] option').nth(1).getAttribute('value');
  await page.getByLabel('统计月份').selectOption(previous);
  await page.getByRole('table', { name: new RegExp(`^${previous} 考核指标`) }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('.echart[data-drawn]').length === 2);
  await shot('overview');
  // A tablet held upright: one column, nothing wider than the screen.
  await page.setViewportSize({ width: 820, height: 1180 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 820), 'no sideways scrolling');
  await shot('overview-tablet');
  await page.setViewportSize({ width: 1366, height: 768 });
  await accessible('overview');
});

test('the overview redraws by itself when cases change', async () => {
  await page.locator('#live').waitFor({ state: 'visible' });
  const before = Number(await page.locator('main').getAttribute('data-renders'));
  await page.evaluate(() => { window.notReloaded = true; });
  // Ten more demo cases, written by another process into the server's database.
  execFileSync(process.env.GRIDCASE_SERVER_BIN, ['demo', '--data', process.env.GRIDCASE_DATA, '--cases', '410', '--seed', '7']);
  await page.waitForFunction((n) => Number(document.querySelector('main').dataset.renders) > n, before, { timeout: 20_000 });
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'redrawn in place, not reloaded');
});

test('the overdue list filters and pages', async () => {
  await page.getByRole('link', { name: '超期件', exact: true }).first().click();
  await page.getByRole('heading', { name: '超期件' }).waitFor();
  const rows = page.locator('table.data tbody tr');
  assert.ok(await rows.count() > 0, 'the demo data has overdue cases');
  await shot('overdue');
  await accessible('overdue list');
  const pager = await page.locator('.pager span').innerText();
  const total = Number(pager.match(/共 (\d+) 件/)[1]);
  const category = await page.locator('select[name=category] option').nth(1).getAttribute('value');
  await page.getByLabel('类别').selectOption(category);
  await page.getByRole('button', { name: '筛选' }).click();
  await page.waitForFunction((c) => location.hash.includes(encodeURIComponent(c)), category);
  await page.locator('table.data tbody tr').first().waitFor();
  const categories = await page.locator('table.data tbody tr td:nth-child(3)').allInnerTexts();
  assert.ok(categories.length > 0 && categories.every((c) => c === category), `only ${category}`);
  const filtered = Number((await page.locator('.pager span').innerText()).match(/共 (\d+) 件/)[1]);
  assert.ok(filtered <= total);
});

test('the due-soon list', async () => {
  await page.getByRole('link', { name: '临期件' }).click();
  await page.getByRole('heading', { name: '临期件' }).waitFor();
  await page.locator('.pager').waitFor();
  await shot('due-soon');
  await accessible('due-soon list');
});

test('the supervised list', async () => {
  await page.getByRole('link', { name: '督办件' }).click();
  await page.getByRole('heading', { name: '督办件' }).waitFor();
  await page.locator('table.data tbody tr').first().waitFor();
  const titles = await page.locator('table.data tbody tr td:nth-child(2)').allInnerTexts();
  assert.ok(titles.every((t) => t.length > 0), 'rows carry their titles');
  const statuses = await page.locator('table.data tbody tr td:nth-child(6)').allInnerTexts();
  assert.ok(!statuses.includes('已办结'), 'open cases only');
  await accessible('supervised list');
});

let caseId;

test('open a case and reveal the phone with a reason; the audit row appears', async () => {
  await page.getByRole('link', { name: '超期件', exact: true }).first().click();
  await page.getByRole('heading', { name: '超期件' }).waitFor();
  const link = page.locator('table.data tbody tr a').first();
  caseId = decodeURIComponent((await link.getAttribute('href')).replace('#/case/', ''));
  await link.click();
  await page.getByRole('heading', { name: '办理过程' }).waitFor();
  const masked = await page.locator('#phone').innerText();
  assert.match(masked, /\*/, `masked: ${masked}`);
  assert.ok(await page.locator('ol.timeline li').count() > 0, 'a timeline');
  assert.equal(await page.getByRole('table', { name: '本案的查看与管理记录' }).count(), 0);
  await page.getByLabel('查看原因（将记入审计日志）').fill('回访核实办理结果');
  await page.getByRole('button', { name: '查看完整电话' }).click();
  await page.getByText('本次查看已记入审计日志').waitFor();
  const phone = await page.locator('#phone').innerText();
  assert.match(phone, /^1\d{10}$/, `revealed: ${phone}`);
  const audit = page.getByRole('table', { name: '本案的查看与管理记录' });
  await audit.waitFor();
  const row = audit.locator('tbody tr').filter({ hasText: '查看联系方式' });
  assert.equal(await row.count(), 1);
  assert.match(await row.innerText(), new RegExp(ADMIN));
  assert.match(await row.innerText(), /回访核实办理结果/);
  // Escalate: the admin's supervision joins the timeline.
  await page.getByLabel('督办级别').selectOption('2');
  await page.getByLabel('督办意见').fill('请三日内办结并回复');
  await page.getByRole('button', { name: '发出督办' }).click();
  await page.locator('ol.timeline li').filter({ hasText: `督办 · ${ADMIN}` }).filter({ hasText: '请三日内办结并回复' }).waitFor();
  await shot('case');
  await accessible('case');
});

test('a photo a phone attached to its case is shown, once its bytes are uploaded', async () => {
  const photo = riverPhoto(240, 160);
  const sha = createHash('sha256').update(photo).digest('hex');
  const caption = '村口河道漂浮垃圾';
  // The demo grid worker's phone registers a case with the photo's reference and syncs.
  const id = execFileSync('python3', [new globalThis.URL('./add_photo_case.py', import.meta.url).pathname,
    BASE, DEVICE_TOKEN, sha, String(photo.length), caption], { encoding: 'utf8' }).trim();
  await page.goto(`${BASE}/console/#/case/${encodeURIComponent(id)}`);
  await page.getByRole('heading', { name: '附件' }).waitFor();
  // The case came first: no broken image, a word instead.
  await page.getByText('照片尚未上传到服务器').waitFor();
  await uploadBlob(photo);
  await page.reload();
  const img = page.getByRole('img', { name: caption });
  await img.waitFor();
  await page.waitForFunction((alt) => {
    const el = document.querySelector(`img[alt="${alt}"]`);
    return el?.complete && el.naturalWidth > 0;
  }, caption);
  assert.deepEqual(await img.evaluate((el) => [el.naturalWidth, el.naturalHeight]), [240, 160]);
  const href = await page.getByRole('link', { name: caption }).getAttribute('href');
  assert.equal(href, `/admin/cases/${encodeURIComponent(id)}/attachments/${sha}`);
  assert.match(await page.locator('ul.attachments figcaption').innerText(), /image\/png，\d+\.\d KB/);
  await shot('case-photo');
  await accessible('case with a photo');
  // The full image is the uploaded bytes; every view is in the audit log, as a view of it.
  const full = await page.evaluate(async (url) => {
    const r = await fetch(url);
    return [r.status, r.headers.get('content-type'), [...new Uint8Array(await r.arrayBuffer())]];
  }, href);
  assert.deepEqual(full, [200, 'image/png', [...photo]]);
  await page.goto(`${BASE}/console/#/audit?case=${encodeURIComponent(id)}`);
  await page.locator('table.data tbody tr td:nth-child(2)').filter({ hasText: '查看附件' }).first().waitFor();
});

test('a forged or missing CSRF token is refused', async () => {
  const results = await page.evaluate(async (id) => {
    const reveal = (headers) => fetch(`/admin/cases/${encodeURIComponent(id)}/reveal`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify({ reason: '伪造请求' }),
    }).then(async (r) => [r.status, (await r.json()).error]);
    return [await reveal({ 'X-CSRF-Token': 'f'.repeat(64) }), await reveal({})];
  }, caseId);
  assert.deepEqual(results, [[403, 'csrf'], [403, 'csrf']]);
  // Nor does a page of another origin get anywhere: no cookie leaves with a cross-site request.
  const forged = await fetch(`${BASE}/admin/cases/${encodeURIComponent(caseId)}/reveal`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Origin: 'http://evil.example' },
    body: JSON.stringify({ reason: 'x' }),
  });
  assert.equal(forged.status, 401);
});

test('revoke a device; its phone is refused at its next sync', async () => {
  const before = await syncStatus();
  assert.notEqual(before.status, 401, `the device syncs before: ${JSON.stringify(before)}`);
  await page.getByRole('link', { name: '人员与设备' }).click();
  await page.getByRole('heading', { name: '人员与设备' }).waitFor();
  // From the list: the device's row has its own revoke button, which asks first.
  const device = DEVICE_TOKEN.split('.')[0];
  const list = page.getByRole('table', { name: /^辖区内 \d+ 名人员$/ });
  const row = list.locator('tbody tr').filter({ hasText: device });
  await row.getByRole('button', { name: `吊销设备 ${device}` }).waitFor();
  page.once('dialog', (dialog) => dialog.accept());
  await row.getByRole('button', { name: `吊销设备 ${device}` }).click();
  await page.getByText(`吊销设备 ${device}：已完成。`).waitFor();
  await row.getByRole('cell', { name: '已吊销' }).waitFor();
  assert.equal(await row.getByRole('button', { name: `吊销设备 ${device}` }).count(), 0, 'a revoked device has no button');
  // The admin accounts inside the jurisdiction are listed for an admin.
  await page.getByRole('table', { name: '辖区内的管理账号' }).getByRole('cell', { name: ADMIN, exact: true }).waitFor();
  // A new phone for a demo grid worker: its token once, as a QR code too; the token syncs.
  await page.getByRole('form', { name: '登记设备' }).getByLabel('用户名').fill('grid-101');
  await page.getByRole('button', { name: '生成设备令牌' }).click();
  const qr = page.getByRole('img', { name: /的登记二维码$/ });
  await qr.waitFor();
  assert.ok((await qr.evaluate((img) => img.naturalWidth)) >= 240, 'the QR code is drawn');
  const token = await page.locator('code.token').innerText();
  const newDevice = token.split('.')[0];
  await list.getByRole('button', { name: `吊销设备 ${newDevice}` }).waitFor();
  const enrolled = await syncStatus(token);
  assert.notEqual(enrolled.status, 401, `the new device's token is taken: ${JSON.stringify(enrolled)}`);
  await shot('people');
  await accessible('people');
  const afterwards = await syncStatus();
  assert.deepEqual([afterwards.status, afterwards.body?.error, afterwards.body?.wipe], [401, 'revoked', true]);
});

test('download a report and read it back', async () => {
  await page.getByRole('link', { name: '报表' }).click();
  await page.getByRole('heading', { name: '报表' }).waitFor();
  await page.getByRole('table').first().waitFor();
  await shot('reports');
  await accessible('reports');
  const [csv] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: '下载 CSV' }).click()]);
  const text = await readFile(await csv.path(), 'utf8');
  assert.match(csv.suggestedFilename(), /^report-\d{4}-\d{2}\.csv$/);
  assert.match(text, /考核指标/);
  assert.match(text, /响应率,\d+,\d+/);
  const [xlsx] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: '下载 XLSX' }).click()]);
  const bytes = await readFile(await xlsx.path());
  assert.equal(bytes.subarray(0, 2).toString(), 'PK', 'a zip');
  assert.ok(bytes.includes('xl/workbook.xml'), 'an Office Open XML workbook');
});

test('the monthly random audit: draw, refuse a silent redraw, record a result', async () => {
  await page.getByRole('link', { name: '随机抽查' }).click();
  await page.getByRole('heading', { name: '随机抽查' }).waitFor();
  const month = await page.getByLabel('月份').inputValue();
  await page.getByLabel('区域代码前缀').fill('330604');
  await page.getByLabel('件数').fill('3');
  await page.getByRole('button', { name: '抽取' }).click();
  const drawn = page.getByRole('table', { name: '抽中的案件' });
  await drawn.waitFor();
  assert.equal(await drawn.locator('tbody tr').count(), 3);
  assert.match(await page.locator('main h2').first().innerText(), new RegExp(`${month} · 330604`));
  assert.match(await page.locator('main').innerText(), /可按记录的种子复现/);
  await page.getByLabel('第 1 件核实说明').fill('电话回访，诉求人确认已解决');
  await page.getByRole('button', { name: '核实属实' }).first().click();
  await drawn.locator('tbody tr').first().filter({ hasText: '核实属实' }).filter({ hasText: '诉求人确认已解决' }).waitFor();
  await shot('draws');
  await accessible('random audit');
  await page.getByLabel('区域代码前缀').fill('330604');
  await page.getByRole('button', { name: '抽取' }).click();
  await page.getByRole('alert').filter({ hasText: '重抽须填写原因' }).waitFor();
  await page.getByRole('link', { name: /^查看已有的抽查/ }).waitFor();
});

test('the audit log shows the reveal and the revocation', async () => {
  await page.getByRole('link', { name: '审计日志' }).click();
  await page.getByRole('heading', { name: '审计日志' }).waitFor();
  const kind = (text) => page.locator('table.data tbody tr td:nth-child(2)').filter({ hasText: text });
  await kind('吊销').first().waitFor();
  // Fifty rows a page; older ones behind a link.
  assert.equal(await page.locator('table.data tbody tr').count(), 50);
  const first = await page.locator('table.data tbody').innerText();
  await page.getByRole('link', { name: '更早的记录' }).click();
  await page.getByRole('table', { name: /^更早的/ }).waitFor();
  assert.notEqual(await page.locator('table.data tbody').innerText(), first, 'another page of rows');
  await page.getByRole('link', { name: '审计日志' }).click();
  await page.getByRole('table', { name: /^最近/ }).waitFor();
  await page.getByLabel('人员').fill(ADMIN);
  await page.getByRole('button', { name: '筛选' }).click();
  await page.waitForFunction(() => location.hash.includes('user='));
  // The revocation is the device's user's row (its detail names who revoked): filtered out.
  await kind('吊销').first().waitFor({ state: 'detached' });
  await kind('查看联系方式').first().waitFor();
  const users = await page.locator('table.data tbody tr td:nth-child(3)').allInnerTexts();
  assert.ok(users.length > 0 && users.every((u) => u === ADMIN), users.join());
  await shot('audit');
  await accessible('audit log');
  // By kind: only revocations, whoever made them.
  await page.getByLabel('人员').fill('');
  await page.getByLabel('类型').selectOption('revoke');
  await page.getByRole('button', { name: '筛选' }).click();
  await page.waitForFunction(() => location.hash.includes('kind=revoke') && !location.hash.includes('user='));
  await kind('查看联系方式').first().waitFor({ state: 'detached' });
  // The user-filtered page has no revocations, so one showing means the new page is drawn
  // (the rows detach while the page loads, before the new ones arrive).
  await kind('吊销').first().waitFor();
  const kinds = await page.locator('table.data tbody tr td:nth-child(2)').allInnerTexts();
  assert.ok(kinds.length > 0 && kinds.every((k) => k === '吊销'), kinds.join());
  assert.equal(await page.getByLabel('类型').inputValue(), 'revoke', 'the select keeps the filter');
});

test('sign out ends the session', async () => {
  await page.getByRole('button', { name: '退出' }).click();
  await page.getByRole('button', { name: '登录' }).waitFor();
  const status = await page.evaluate(() => fetch('/console/session').then((r) => r.status));
  assert.equal(status, 401);
  // Refusals the tests provoke (401, 403, 409, and 404 for the photo not uploaded yet) are
  // logged by the browser; nothing else may be.
  const refusals = /Failed to load resource: the server responded with a status of (401|403|404|409)/;
  assert.deepEqual(pageErrors.filter((e) => !refusals.test(e)), [], 'no CSP violation or script error');
});
