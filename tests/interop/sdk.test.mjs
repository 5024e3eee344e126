// Wix's own JavaScript SDK against wix-elevate's mock Wix and quickstart.
// Run by tests/integration/interop.rs, which starts both and passes:
//   WIX_BASE_URL, WIX_APP_ID, WIX_APP_SECRET  the mock Wix
//   QUICKSTART_URL                            the quickstart, pointed at it
//   TOKENS                                    JSON: caller tokens minted there
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { AppStrategy, createClient } from '@wix/sdk';
import { site } from '@wix/site';
import { dashboard } from '@wix/dashboard';

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is set (run through cargo test)`);
  return value;
};
const WIX = env('WIX_BASE_URL');
const APP_ID = env('WIX_APP_ID');
const APP_SECRET = env('WIX_APP_SECRET');
const QUICKSTART = env('QUICKSTART_URL');
const TOKENS = JSON.parse(env('TOKENS'));

// The SDK's OAuth calls hard-code https://www.wixapis.com: send them to the mock.
const realFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  const url = typeof input === 'string' || input instanceof URL ? input.toString() : input.url;
  const rewritten = url.replace(/^https:\/\/www\.wixapis\.com/, WIX);
  return realFetch(rewritten, init);
};

// A fetch for createClient({fetch}) that records the headers each call sent.
function recordingFetch() {
  const sent = [];
  const fetch = async (url, init) => {
    sent.push(new Headers(init?.headers ?? {}));
    return globalThis.fetch(url, init);
  };
  return { fetch, sent };
}

test('AppStrategy.elevated() accepts the mock\'s Token Info and grant, and its token calls Wix', async () => {
  const strategy = AppStrategy({ appId: APP_ID, appSecret: APP_SECRET, accessToken: TOKENS.member });
  const elevated = await strategy.elevated();
  const { headers } = await elevated.getAuthHeaders();
  assert.equal(typeof headers.Authorization, 'string');
  assert.ok(headers.Authorization.length > 0);
  assert.notEqual(headers.Authorization, TOKENS.member, 'an app token, not the caller token');

  // The raw app token (no "Bearer"), as the SDK sends it, works at the mock's Wix API.
  const direct = await globalThis.fetch(`${WIX}/apps/v1/instance`, { headers });
  assert.equal(direct.status, 200);
  assert.equal((await direct.json()).instance.instanceId, 'sdk-instance');

  // ...and through the SDK's own fetchWithAuth, with the hard-coded Wix URL.
  const client = createClient({ auth: elevated });
  const viaSdk = await client.fetchWithAuth('https://www.wixapis.com/apps/v1/instance');
  assert.equal(viaSdk.status, 200);
});

test('AppStrategy.elevated() refuses another app\'s token, as wix-elevate does', async () => {
  const strategy = AppStrategy({ appId: APP_ID, appSecret: APP_SECRET, accessToken: TOKENS.foreign });
  await assert.rejects(strategy.elevated(), /not issued for the app/);
  const res = await realFetch(`${QUICKSTART}/api/whoami`, { headers: { Authorization: TOKENS.foreign } });
  assert.equal(res.status, 401);
  assert.equal((await res.json()).code, 'foreign_token');
});

test('site.auth() + site.host() on a multilingual page call the quickstart through fetchWithAuth', async () => {
  globalThis.window = { commonConfig: { language: 'fr', locale: 'fr-fr' } };
  try {
    const { fetch, sent } = recordingFetch();
    const client = createClient({
      auth: site.auth(async () => TOKENS.visitor),
      host: site.host({ applicationId: APP_ID }),
      // As if an earlier response had set it: the SDK echoes it on every call.
      headers: { 'X-Wix-Consistent': 'consistent-1' },
      fetch,
    });
    const ok = await client.fetchWithAuth(`${QUICKSTART}/api/whoami`);
    assert.equal(ok.status, 200);
    const body = await ok.json();
    assert.equal(body.subjectType, 'VISITOR');
    assert.equal(body.instanceId, 'sdk-instance');
    // The request the SDK sent: raw token, the linguist header, the consistency echo.
    const headers = sent.at(-1);
    assert.equal(headers.get('authorization'), TOKENS.visitor);
    assert.match(headers.get('x-wix-linguist'), /^fr\|fr-fr\|false\|0{8}-/);
    assert.equal(headers.get('x-wix-consistent'), 'consistent-1');

    const elevated = await client.fetchWithAuth(`${QUICKSTART}/api/instance`);
    assert.equal(elevated.status, 200);
    assert.equal((await elevated.json()).instance.instance.instanceId, 'sdk-instance');

    const denied = await client.fetchWithAuth(`${QUICKSTART}/api/members/instance`);
    assert.equal(denied.status, 403);
    assert.equal(denied.headers.get('content-type'), 'application/problem+json');
    assert.equal((await denied.json()).code, 'forbidden');
  } finally {
    delete globalThis.window;
  }
});

test('dashboard.auth() calls the quickstart as a Wix user', async () => {
  // The dashboard host is an iframe channel to Wix; stand in for its getAccessToken.
  const host = { channel: { getAccessToken: async () => TOKENS.user } };
  const { fetch, sent } = recordingFetch();
  const client = createClient({ auth: dashboard.auth(), host, fetch });
  const res = await client.fetchWithAuth(`${QUICKSTART}/api/dashboard/instance`);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).caller.subjectType, 'USER');
  assert.equal(sent.at(-1).get('authorization'), TOKENS.user);

  const member = createClient({ auth: site.auth(async () => TOKENS.member) });
  const refused = await member.fetchWithAuth(`${QUICKSTART}/api/dashboard/instance`);
  assert.equal(refused.status, 403);
});

test('fetchWithAuth without a token gets a 401 the page can act on', async () => {
  const client = createClient({ auth: site.auth(async () => '') });
  const res = await client.fetchWithAuth(`${QUICKSTART}/api/whoami`);
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('www-authenticate'), 'Bearer');
  assert.equal((await res.json()).code, 'missing_token');
});
