// A real browser (Debian's Chromium, driven by playwright-core) calling the
// quickstart from another origin, the way fetchWithAuth does on a Wix site.
// Run by tests/integration/interop.rs, which passes QUICKSTART_URL, TOKENS,
// CHROMIUM (the binary) and SCREENSHOT (where to keep a screenshot).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';

import { chromium } from 'playwright-core';

const QUICKSTART = process.env.QUICKSTART_URL;
const TOKENS = JSON.parse(process.env.TOKENS ?? '{}');
const CHROMIUM = process.env.CHROMIUM;
const SCREENSHOT = process.env.SCREENSHOT;

const PAGE = `<!doctype html><meta charset="utf-8"><title>wix-elevate from another origin</title>
<style>body{font:14px system-ui;margin:16px}td,th{border:1px solid #999;padding:4px 8px;text-align:left}</style>
<h1>fetchWithAuth-style calls to the quickstart</h1><table id="results"><tr><th>call</th><th>status</th><th>code</th><th>Retry-After</th><th>WWW-Authenticate</th></tr></table>`;

// Serve the page from its own origin (another port than the quickstart).
async function servePage() {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(PAGE);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

// What the page runs: fetch as the Wix SDK's fetchWithAuth does on a
// multilingual site (raw token, x-wix-linguist, X-Wix-Consistent), then
// read everything page code can read.
async function call({ base, path, token, label }) {
  const headers = {
    'x-wix-linguist': 'fr|fr-fr|false|00000000-0000-0000-0000-000000000000',
    'X-Wix-Consistent': 'consistent-1',
  };
  if (token) headers.Authorization = token;
  let result;
  try {
    const res = await fetch(base + path, { headers });
    const text = await res.text();
    let code = null;
    try { code = JSON.parse(text).code ?? null; } catch { /* not JSON */ }
    result = {
      label,
      status: res.status,
      contentType: res.headers.get('content-type'),
      code,
      body: text,
      retryAfter: res.headers.get('Retry-After'),
      wwwAuthenticate: res.headers.get('WWW-Authenticate'),
    };
  } catch (error) {
    result = { label, status: 0, error: String(error) };
  }
  const row = document.createElement('tr');
  for (const cell of [label, result.status, result.code ?? result.error ?? '', result.retryAfter ?? '', result.wwwAuthenticate ?? '']) {
    const td = document.createElement('td');
    td.textContent = String(cell);
    row.append(td);
  }
  document.getElementById('results').append(row);
  return result;
}

test('Chromium on another origin reads 200/401/403/429 answers from the quickstart', async (t) => {
  assert.ok(QUICKSTART && CHROMIUM, 'QUICKSTART_URL and CHROMIUM are set (run through cargo test)');
  const server = await servePage();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  t.after(async () => {
    await browser.close();
    server.close();
  });
  const page = await browser.newPage();
  const origin = `http://127.0.0.1:${server.address().port}`;
  await page.goto(`${origin}/`);
  assert.notEqual(new URL(origin).port, new URL(QUICKSTART).port, 'a cross-origin call');
  const run = (path, token, label) => page.evaluate(call, { base: QUICKSTART, path, token, label });

  const ok = await run('/api/whoami', TOKENS.visitor, 'visitor /api/whoami');
  assert.equal(ok.status, 200, JSON.stringify(ok));
  assert.equal(JSON.parse(ok.body).subjectType, 'VISITOR');

  const elevated = await run('/api/instance', TOKENS.visitor, 'visitor /api/instance');
  assert.equal(elevated.status, 200, JSON.stringify(elevated));

  const missing = await run('/api/whoami', null, 'no token');
  assert.equal(missing.status, 401, JSON.stringify(missing));
  assert.equal(missing.contentType, 'application/problem+json');
  assert.equal(missing.code, 'missing_token');
  assert.equal(missing.wwwAuthenticate, 'Bearer');

  const invalid = await run('/api/whoami', 'OauthNG.JWS.not-a-token', 'unknown token');
  assert.equal(invalid.status, 401, JSON.stringify(invalid));
  assert.equal(invalid.wwwAuthenticate, 'Bearer error="invalid_token"');

  const forbidden = await run('/api/members/instance', TOKENS.visitor, 'visitor /api/members/instance');
  assert.equal(forbidden.status, 403, JSON.stringify(forbidden));
  assert.equal(forbidden.code, 'forbidden');

  let limited;
  for (let i = 0; i < 8; i += 1) {
    limited = await run('/api/whoami', TOKENS.limited, `rate-limited visitor #${i + 1}`);
    if (limited.status !== 200) break;
  }
  assert.equal(limited.status, 429, JSON.stringify(limited));
  assert.equal(limited.code, 'rate_limited');
  assert.match(limited.retryAfter ?? '', /^[1-9][0-9]*$/, 'Retry-After readable by page code');

  if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT, fullPage: true });
});
