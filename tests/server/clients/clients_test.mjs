// Real tracking SDKs against `shoal serve`: @segment/analytics-node and
// @rudderstack/rudder-sdk-node, unchanged, with their host pointed at the server.
//
//   SHOAL_URL=http://127.0.0.1:PORT SHOAL_WRITE_KEY=... SHOAL_ADMIN_TOKEN=... node clients_test.mjs
//
// What the SDKs send (read from their code in node_modules):
// - analytics-node 3.x (dist/cjs/plugins/segmentio/publisher.js): POST {host}/v1/batch,
//   Authorization: Basic base64("<writeKey>:"), Content-Type: application/json,
//   body {"batch": [...], "writeKey": ..., "sentAt": ...}; each call has type, messageId,
//   timestamp, context.library, _metadata. Retries 5xx/429, drops on 400.
// - rudder-sdk-node 3.x (cjs/index.js flush()): axios POST {dataPlaneUrl}/v1/batch with
//   auth {username: writeKey} (Basic base64("<writeKey>:")), body {"batch": [...], "timestamp",
//   "sentAt"} and, by default (gzip: true), Content-Encoding: gzip. Calls carry
//   originalTimestamp and a per-call sentAt but no timestamp; identify traits are copied to
//   context.traits.
// Checks go through the admin API: traits, segment membership, stored messageIds.

import { Analytics } from '@segment/analytics-node';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';

const URL_ = process.env.SHOAL_URL;
const WK = process.env.SHOAL_WRITE_KEY;
const TOKEN = process.env.SHOAL_ADMIN_TOKEN;
if (!URL_ || !WK || !TOKEN) {
  console.error('FAIL setup: SHOAL_URL, SHOAL_WRITE_KEY and SHOAL_ADMIN_TOKEN are required');
  process.exit(2);
}
const RUN = Date.now().toString(36);

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed++;
    console.log(`PASS ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}: ${detail}`);
  }
}

async function admin(method, path, body) {
  const res = await fetch(URL_ + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

async function createSegment(name, definition) {
  const r = await admin('POST', '/v1/segments', { name, definition });
  if (r.status !== 201) throw new Error(`create segment ${name}: ${r.status} ${r.text}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Events carry the client's wall-clock time; an event counts from its timestamp + 1 ms, so poll
// briefly for membership.
async function waitFor(fn, ms = 5000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last.ok) return last;
    await sleep(100);
  }
  return last;
}

async function expectProfile(label, id, traits, segments) {
  const r = await waitFor(async () => {
    const p = await admin('GET', `/v1/profiles/${encodeURIComponent(id)}`);
    if (p.status !== 200) return { ok: false, detail: `GET /v1/profiles/${id} -> ${p.status} ${p.text}` };
    const bad = Object.entries(traits).filter(([k, v]) => p.json.traits[k] !== v);
    const missing = segments.filter((s) => !p.json.segments.includes(s));
    return {
      ok: bad.length === 0 && missing.length === 0,
      detail: `traits ${JSON.stringify(p.json.traits)} (want ${JSON.stringify(traits)}), ` +
        `segments ${JSON.stringify(p.json.segments)} (want ${JSON.stringify(segments)})`,
    };
  });
  check(`${label}: profile ${id} traits and segments`, r.ok, r.detail);
}

async function expectStored(label, ids) {
  const lost = [];
  for (const id of ids) {
    const r = await admin('GET', `/v1/debug/messages/${encodeURIComponent(id)}`);
    if (r.status !== 200 || !r.json.stored) lost.push(`${id}: ${r.status} ${r.text}`);
  }
  check(`${label}: every messageId sent is stored (${ids.length})`, lost.length === 0, lost.join('; '));
}

async function segmentSdk() {
  const label = 'analytics-node';
  const u = `seg-${RUN}-u1`;
  const requests = [];
  const responses = [];
  const errors = [];
  const analytics = new Analytics({ writeKey: WK, host: URL_, flushAt: 10, flushInterval: 200, maxRetries: 2 });
  analytics.on('http_request', (r) => requests.push(r));
  analytics.on('http_response', (r) => responses.push(r));
  analytics.on('error', (e) => errors.push(String(e && (e.reason || e.message || e.code) || e)));
  analytics.identify({ userId: u, traits: { plan: 'pro', age: 31, address: { city: 'Paris' } } });
  analytics.track({ userId: u, event: 'Order Completed', properties: { total: 120.5, currency: 'EUR' } });
  analytics.group({ userId: u, groupId: 'acme', traits: { name: 'Acme' } });
  analytics.page({ userId: u, name: 'Pricing', properties: { path: '/pricing' } });
  await analytics.closeAndFlush({ timeout: 20000 });
  check(`${label}: no delivery error`, errors.length === 0, errors.join('; '));
  check(`${label}: requests sent`, requests.length > 0, 'none');
  const r0 = requests[0] || { headers: {}, body: '{}' };
  check(`${label}: POST ${URL_}/v1/batch with Basic auth`,
    r0.url === `${URL_}/v1/batch` && r0.method === 'POST' &&
      r0.headers.Authorization === `Basic ${Buffer.from(`${WK}:`).toString('base64')}`,
    `${r0.method} ${r0.url} ${JSON.stringify(r0.headers)}`);
  check(`${label}: every answer is 200`, responses.length > 0 && responses.every((r) => r.status === 200),
    JSON.stringify(responses.map((r) => r.status)));
  const ids = requests.flatMap((r) => JSON.parse(r.body).batch.map((c) => c.messageId));
  check(`${label}: 4 calls sent`, ids.length === 4, `${ids.length} calls`);
  await expectProfile(label, u, { plan: 'pro', age: 31, 'address.city': 'Paris' },
    ['sdk_pro', 'sdk_buyers', 'sdk_pricing', 'sdk_paris']);
  await expectStored(label, ids);
}

async function rudderSdk(gzip) {
  const label = `rudder-sdk-node (gzip ${gzip ? 'on, the default' : 'off'})`;
  const u = `rud-${RUN}-${gzip ? 'gz' : 'plain'}`;
  const errors = [];
  const opts = {
    dataPlaneUrl: URL_, flushAt: 10, flushInterval: 200, retryCount: 1, logLevel: 'error',
    errorHandler: (e) => errors.push(`${e.response ? e.response.status + ' ' + JSON.stringify(e.response.data) : e.code || e.message}`),
  };
  if (!gzip) opts.gzip = false;
  const client = new RudderAnalytics(WK, opts);
  const ids = [`${u}-id`, `${u}-tr`, `${u}-gr`];
  const done = [];
  const cb = (err) => done.push(err ? String(err.message || err) : null);
  client.identify({ userId: u, messageId: ids[0], traits: { plan: 'pro', age: 44, address: { city: 'Lyon' } } }, cb);
  client.track({ userId: u, messageId: ids[1], event: 'Order Completed', properties: { total: 250 } }, cb);
  client.group({ userId: u, messageId: ids[2], groupId: 'globex', traits: { name: 'Globex' } }, cb);
  try {
    await client.flush();
  } catch (e) {
    errors.push(String(e.message || e));
  }
  // flush() sends at most flushAt calls per request; wait for every callback
  const end = Date.now() + 15000;
  while (done.length < 3 && Date.now() < end) {
    try { await client.flush(); } catch (e) { errors.push(String(e.message || e)); }
    await sleep(100);
  }
  check(`${label}: no delivery error`, errors.length === 0 && done.every((d) => d === null),
    `${errors.join('; ')} callbacks=${JSON.stringify(done)}`);
  await expectProfile(label, u, { plan: 'pro', age: 44, 'address.city': 'Lyon' }, ['sdk_pro', 'sdk_buyers']);
  await expectStored(label, ids);
}

async function main() {
  const h = await fetch(`${URL_}/healthz`);
  check('server healthy', h.status === 200, `GET /healthz -> ${h.status}`);
  await createSegment('sdk_pro', 'plan = "pro"');
  await createSegment('sdk_buyers', 'performed "Order Completed" where total > 100');
  await createSegment('sdk_pricing', 'performed "Page Viewed" where name = "Pricing"');
  await createSegment('sdk_paris', 'address.city = "Paris" and age between 25 and 40');
  for (const [name, fn] of [['analytics-node', () => segmentSdk()],
    ['rudder gzip', () => rudderSdk(true)], ['rudder plain', () => rudderSdk(false)]]) {
    try {
      await fn();
    } catch (e) {
      check(`${name}: ran`, false, e.stack || String(e));
    }
  }
  const v = await admin('GET', '/v1/debug/verify');
  check('verify ok after SDK traffic', v.status === 200 && v.json.ok === true, `${v.status} ${v.text}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`FAIL clients_test: ${e.stack || e}`);
  process.exit(1);
});
