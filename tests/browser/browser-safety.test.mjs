// Browser safety in a real browser (docs/api.md, "Browser safety"): a page of another origin, driven
// in Chromium, tries what a malicious site would against a `strata serve` on 127.0.0.1 — a no-cors
// POST, a beacon, a form post, JSON and DELETE fetches, reading the log — and a page under a name
// rebound to 127.0.0.1 tries it as "same origin". Nothing changes and nothing is read; the server
// counts each refusal. A page of a --cors-origin and a page the server itself serves work.
//
// Run by scripts/browser-tests (STRATA_BIN: the strata binary; CHROMIUM: the browser).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const STRATA_BIN = process.env.STRATA_BIN;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
assert.ok(STRATA_BIN, 'STRATA_BIN names the strata binary (scripts/browser-tests sets it)');

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

/** A web server of its own origin serving one empty page. */
const pageServer = async () => {
  const port = await freePort();
  const server = createServer((_, response) => {
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end('<!doctype html><title>a page</title><iframe name="sink"></iframe>');
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${port}` };
};

let strata, dataDir, base, attacker, consolePage, browser, port;
const victim = '/v1/streams/victim';
const forged = JSON.stringify({ events: [{ type: 'Forged', data: {} }] });

before(async () => {
  attacker = await pageServer();
  consolePage = await pageServer();
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  dataDir = mkdtempSync(join(tmpdir(), 'strata-browser-'));
  strata = spawn(
    STRATA_BIN,
    ['serve', '--data', dataDir, '--listen', `127.0.0.1:${port}`, '--cors-origin', consolePage.origin],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  for (let attempt = 0; ; attempt++) {
    try {
      if ((await fetch(`${base}/v1/health`)).ok) break;
    } catch {}
    assert.ok(attempt < 200, 'strata serve did not answer /v1/health within 20 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const seeded = await fetch(base + victim, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ events: [{ type: 'Placed', data: { n: 1 } }] }),
  });
  assert.equal(seeded.status, 200, await seeded.text());
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Root in CI has no user namespaces for the sandbox; the page is ours.
    args: ['--no-sandbox', '--host-resolver-rules=MAP rebind.test 127.0.0.1'],
  });
});

after(async () => {
  await browser?.close();
  strata?.kill('SIGTERM');
  await new Promise((resolve) => (strata?.exitCode !== null ? resolve() : strata.once('exit', resolve)));
  attacker?.server.close();
  consolePage?.server.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const log = async () => (await fetch(`${base}/v1/all`)).text();
const refusals = async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  const count = (rule) => Number(text.match(new RegExp(`strata_browser_refusals_total\\{rule="${rule}"\\} (\\d+)`))[1]);
  return { host: count('host'), origin: count('origin'), content_type: count('content_type') };
};

test('a page of another origin changes nothing and reads nothing', async () => {
  const before = await log();
  const counted = await refusals();
  const page = await browser.newPage();
  await page.goto(attacker.origin);
  const results = await page.evaluate(
    async ({ base, victim, forged }) => {
      const outcome = (promise) =>
        promise.then(
          (response) => `answered ${response.type} ${response.status}`,
          (error) => `blocked: ${error.name}`,
        );
      const results = {};
      // Simple requests: sent without asking; the page cannot see the answer (opaque).
      results.noCorsPost = await outcome(
        fetch(base + victim, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: forged }),
      );
      results.beacon = navigator.sendBeacon(`${base}/v1/scavenge`, new Blob(['{}'], { type: 'text/plain' }));
      const form = document.createElement('form');
      form.method = 'POST';
      form.action = `${base}/v1/scavenge`;
      form.enctype = 'text/plain';
      form.target = 'sink';
      document.body.append(form);
      const posted = new Promise((resolve) => document.querySelector('iframe').addEventListener('load', resolve, { once: true }));
      form.submit();
      await posted;
      // Requests that need the server's consent first (a preflight): refused.
      results.jsonPost = await outcome(fetch(base + victim, { method: 'POST', headers: { 'content-type': 'application/json' }, body: forged }));
      results.delete = await outcome(fetch(base + victim, { method: 'DELETE' }));
      // A read is answered, but without a CORS header the browser keeps it from the page.
      results.read = await outcome(fetch(`${base}/v1/all`).then((response) => response.text()));
      return results;
    },
    { base, victim, forged },
  );
  assert.deepEqual(results, {
    noCorsPost: 'answered opaque 0',
    beacon: true,
    jsonPost: 'blocked: TypeError',
    delete: 'blocked: TypeError',
    read: 'blocked: TypeError',
  });
  // The beacon is sent in the background: wait until the server has refused it too.
  let now;
  for (let attempt = 0; attempt < 50; attempt++) {
    now = await refusals();
    if (now.origin - counted.origin >= 5) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // The no-cors POST, the beacon, the form and the two preflights reached the server and were refused.
  assert.equal(now.origin - counted.origin, 5, JSON.stringify({ counted, now }));
  assert.equal(await log(), before, 'nothing was appended, deleted or scavenged');
  await page.close();
});

test('a page under a name rebound to the server is refused, "same origin" or not', async () => {
  const before = await log();
  const counted = await refusals();
  const page = await browser.newPage();
  const response = await page.goto(`http://rebind.test:${port}/v1/all`);
  assert.equal(response.status(), 403);
  assert.match(await response.text(), /host_not_allowed/);
  // The browser takes the refusal for the site's own page: a fetch from it is "same origin".
  const status = await page.evaluate(
    async ({ victim, forged }) =>
      (await fetch(victim, { method: 'POST', headers: { 'content-type': 'application/json' }, body: forged })).status,
    { victim, forged },
  );
  assert.equal(status, 403);
  // The page, the fetch, and whatever else the browser asks of that name (its favicon).
  assert.ok((await refusals()).host - counted.host >= 2);
  assert.equal(await log(), before);
  await page.close();
});

test('a page of a --cors-origin and a page of the server itself use the API', async () => {
  const page = await browser.newPage();
  await page.goto(consolePage.origin);
  const listed = await page.evaluate(
    async ({ base, victim }) => {
      const appended = await fetch(base + victim, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ events: [{ type: 'Shipped', data: {} }] }),
      });
      const answer = await appended.json();
      const read = await (await fetch(base + victim)).json();
      // A subscription over CORS: the first event arrives.
      const first = await new Promise((resolve, reject) => {
        const source = new EventSource(`${base}/v1/subscribe?stream=victim&from=start`);
        source.onmessage = (message) => {
          source.close();
          resolve(JSON.parse(message.data).type);
        };
        source.onerror = () => {
          source.close();
          reject(new Error('the subscription failed'));
        };
      });
      return { status: appended.status, revision: answer.last_revision, types: read.events.map((e) => e.type), first };
    },
    { base, victim },
  );
  assert.deepEqual(listed, { status: 200, revision: 1, types: ['Placed', 'Shipped'], first: 'Placed' });
  // Even a listed origin cannot send what a form or a page sends unasked: a text/plain POST and a
  // form post are refused for their content type (the origin rule lets them through).
  const counted = await refusals();
  await page.evaluate(
    async ({ base, victim, forged }) => {
      await fetch(base + victim, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: forged });
      const form = document.createElement('form');
      form.method = 'POST';
      form.action = `${base}/v1/scavenge`;
      form.target = 'sink';
      document.body.append(form);
      const posted = new Promise((resolve) => document.querySelector('iframe').addEventListener('load', resolve, { once: true }));
      form.submit();
      await posted;
    },
    { base, victim, forged },
  );
  const now = await refusals();
  assert.deepEqual(
    { content_type: now.content_type - counted.content_type, origin: now.origin - counted.origin },
    { content_type: 2, origin: 0 },
  );
  const after = await (await fetch(base + victim)).json();
  assert.deepEqual(after.events.map((e) => e.type), ['Placed', 'Shipped']);
  // A page the server serves itself (here its own health answer) is of the server's origin.
  await page.goto(`${base}/v1/health`);
  const own = await page.evaluate(
    async ({ victim }) =>
      (
        await fetch(victim, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ events: [{ type: 'Delivered', data: {} }] }),
        })
      ).status,
    { victim },
  );
  assert.equal(own, 200);
  await page.close();
});
