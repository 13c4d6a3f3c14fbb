// The console's browser scenarios, run by tests/it/console.rs against a live `logoutd serve`
// with RPs shop and wiki (healthy) and billing (rejects its first three tokens with hostile
// error text, then recovers), users u-0..u-5 with one session each (u-0..u-2 also at billing)
// and s-hostile, a session whose metadata holds markup. The operate token has the metadata
// grant; the read token has not.
//
// Env: CONSOLE_BASE, CONSOLE_READ_TOKEN, CONSOLE_OPERATE_TOKEN, CONSOLE_ADMIN_TOKEN,
// CONSOLE_SHOTS (screenshot folder), CONSOLE_HOSTILE_ERROR, CONSOLE_CHROMIUM (optional).
// No sleeps: every wait is Playwright's wait for a selector or a condition, with a timeout.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import path from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env('CONSOLE_BASE');
const SHOTS = env('CONSOLE_SHOTS');
const HOSTILE = env('CONSOLE_HOSTILE_ERROR');
const TIMEOUT = 60_000;

async function api(method, route, tokenName = 'CONSOLE_ADMIN_TOKEN') {
  const res = await fetch(`${BASE}/api/v2${route}`, { method, headers: { Authorization: `Bearer ${env(tokenName)}` } });
  return { status: res.status, body: await res.json().catch(() => null) };
}

function step(name) {
  console.log(`console: ${name}`);
}

// A page that records every script error, console message and CSP violation, and fails the
// run if a hostile payload ever runs (it sets window.pwned).
async function openPage(browser, width) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/status of 40[34]/.test(msg.text())) page.problems.push(`console error: ${msg.text()}`);
  });
  return page;
}

async function assertInert(page) {
  const pwned = await page.evaluate(() => window.pwned ?? null);
  assert.equal(pwned, null, `a hostile payload ran: ${pwned}`);
  assert.equal(await page.locator('img[src="x"], #main script').count(), 0, 'hostile markup became elements');
  assert.deepEqual(page.problems, [], 'the page reported errors');
}

async function signIn(page, token, viaKeyboard = false, remember = false) {
  const response = await page.goto(`${BASE}/console`);
  const headers = response.headers();
  assert.match(headers['content-security-policy'], /default-src 'none'; script-src 'self'/);
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  assert.equal(headers['cache-control'], 'no-store');
  if (viaKeyboard) {
    await page.keyboard.type(token); // the token field has the focus on load
    await page.keyboard.press('Enter');
  } else {
    await page.fill('#token', token);
    if (remember) await page.check('#remember');
    await page.click('#sign-in-form button[type=submit]');
  }
  await page.waitForSelector('#scope:not(:empty)');
  assert.ok(!page.url().includes(token), 'the token reached the URL');
  assert.equal(await page.evaluate(() => document.cookie), '');
  assert.equal(await page.evaluate(() => localStorage.length), 0);
}

const tileValue = (page, id) => page.locator(`#count-${id} .value`).textContent();

async function shot(page, name) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`console: screenshot ${file}`);
}

async function noSideScroll(page) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px`);
}

const browser = await chromium.launch({
  executablePath: process.env.CONSOLE_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
try {
  // 1. Sign in with an operate token and watch a mass logout move to delivered.
  const page = await openPage(browser, 1280);
  await signIn(page, env('CONSOLE_OPERATE_TOKEN'));
  step('signed in with an operate token');
  assert.match(await page.textContent('#scope'), /operate/);
  await page.waitForSelector('#count-delivered');
  assert.equal(await tileValue(page, 'delivered'), '0');
  for (let i = 0; i < 6; i += 1) {
    const { status } = await api('DELETE', `/users/u-${i}/sessions`);
    assert.equal(status, 202, `ending u-${i}`);
  }
  await page.waitForFunction(() => document.querySelector('#count-delivered .value')?.textContent === '12'
    && document.querySelector('#count-failed .value')?.textContent === '3', null, { timeout: TIMEOUT });
  step('mass logout: 12 delivered, 3 dead letters on the overview');
  await page.waitForSelector('#chart svg rect.delivered');
  await page.waitForSelector('#chart svg rect.failed');
  // The chart is a rate: its axis labels and legend are per second, never per minute.
  const yLabels = await page.locator('#chart svg text.y-label').allTextContents();
  assert.equal(yLabels.length, 3, yLabels.join(' | '));
  for (const label of yLabels) assert.match(label, /^\d+(\.\d+)?\/s$/, `axis label ${label}`);
  const caption = await page.textContent('#chart figcaption');
  assert.match(caption, /per second/);
  assert.match(caption, /delivered\/s/);
  assert.match(caption, /failed\/s/);
  assert.doesNotMatch(await page.textContent('#chart'), /\/min/);
  assert.match(await page.getAttribute('#chart svg', 'aria-label'), /per second/i);
  assert.match(await page.textContent('#count-oldest .label'), /due/);
  step('the chart plots deliveries/s and failures/s');

  // 2. Find the failing client among the healthy ones.
  await page.waitForSelector('#health-table tr[data-client="billing"]');
  const firstRow = page.locator('#health-table tbody tr').first();
  assert.equal(await firstRow.getAttribute('data-client'), 'billing', 'the failing client is listed first');
  assert.match(await firstRow.textContent(), /failing/);
  for (const ok of ['shop', 'wiki']) {
    assert.match(await page.locator(`#health-table tr[data-client="${ok}"]`).textContent(), /healthy/);
  }
  assert.doesNotMatch(await page.textContent('#health-caption'), /more exist/);
  await shot(page, 'overview-1280');
  await page.click('#health-table tr[data-client="billing"] a');
  await page.waitForSelector('#failure-groups table');
  const group = await page.locator('#failure-groups tbody tr').first().textContent();
  assert.ok(group.includes('<img src=x onerror='), `the RP's error text is shown as text: ${group}`);
  assert.ok(group.includes('3'), group);
  await assertInert(page);
  await shot(page, 'client-failing-1280');
  step('found billing failing, and why');

  // 3. Open a dead-lettered delivery and its attempts.
  await page.click('#failure-groups tbody tr a');
  await page.waitForSelector('#attempts tbody tr');
  assert.equal(await page.locator('#attempts tbody tr').count(), 1);
  const attempt = await page.locator('#attempts tbody tr').textContent();
  assert.ok(attempt.includes('400') && attempt.includes('<script>'), attempt);
  assert.match(await page.textContent('#detail-state'), /failed/);
  const deadId = decodeURIComponent(page.url().split('#/delivery/')[1]);
  await assertInert(page);
  await shot(page, 'delivery-dead-letter-1280');
  step(`opened dead letter ${deadId}`);

  // 4. A read token: no re-drive or pause buttons, and 403 from the route anyway.
  const reader = await openPage(browser, 1280);
  await reader.goto(`${BASE}/console`);
  await reader.fill('#token', 'not-a-token-of-this-server');
  await reader.click('#sign-in-form button[type=submit]');
  await reader.waitForFunction(() => /401/.test(document.querySelector('#sign-in-error')?.textContent ?? ''));
  assert.equal(await reader.locator('#view').isHidden(), true);
  reader.problems.length = 0; // the refused sign-in logs its 401
  await signIn(reader, env('CONSOLE_READ_TOKEN'), true);
  assert.match(await reader.textContent('#scope'), /read only/);
  await reader.goto(`${BASE}/console#/delivery/${encodeURIComponent(deadId)}`);
  await reader.waitForSelector('#attempts');
  assert.equal(await reader.locator('#redrive').count(), 0, 'a read token sees a re-drive button');
  await reader.goto(`${BASE}/console#/deliveries?state=failed`);
  await reader.waitForSelector('#delivery-list table');
  assert.equal(await reader.locator('#redrive-selected, #delivery-list input[type=checkbox]').count(), 0);
  await reader.goto(`${BASE}/console#/client/billing`);
  await reader.waitForSelector('#failure-groups');
  assert.equal(await reader.locator('#pause, #resume').count(), 0);
  const refused = await reader.evaluate(async ([id, token]) => {
    const res = await fetch(`/api/v2/logout-deliveries/${encodeURIComponent(id)}/retry`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    return res.status;
  }, [deadId, env('CONSOLE_READ_TOKEN')]);
  assert.equal(refused, 403);
  await assertInert(reader);
  step('a read token has no re-drive or pause, and the route answers 403');

  // 4b. Without the metadata grant: the keys, each value redacted, and a note saying why.
  assert.match(await reader.textContent('#scope'), /metadata values hidden/);
  await reader.goto(`${BASE}/console#/sessions?session_id=s-hostile`);
  await reader.waitForSelector('dl.metadata');
  const keys = await reader.locator('dl.metadata dt').allTextContents();
  const values = await reader.locator('dl.metadata dd').allTextContents();
  assert.deepEqual(keys, ['html', 'note']);
  assert.deepEqual(values, ['[redacted]', '[redacted]']);
  assert.equal(await reader.textContent('.metadata-hidden'), 'values hidden: this token lacks the metadata grant');
  assert.ok(!(await reader.textContent('#session-result')).includes('pwned'), 'a redacted value leaked');
  await assertInert(reader);
  await shot(reader, 'sessions-redacted-1280');
  step('a read token without the grant sees metadata keys, values redacted');

  // 5. Re-drive the dead letter (billing has recovered) and see it delivered.
  await page.click('#redrive');
  await page.waitForFunction(() => /delivered/.test(document.querySelector('#detail-state')?.textContent ?? ''), null, { timeout: TIMEOUT });
  assert.equal(await page.locator('#attempts tbody tr').count(), 2);
  step('re-driven and delivered');

  // 6. Did each user's logout reach every RP?
  const verdicts = [];
  for (let i = 0; i < 4; i += 1) {
    await page.goto(`${BASE}/console#/sessions?user_id=u-${i}`);
    await page.waitForSelector('#verdict');
    verdicts.push(await page.textContent('#verdict'));
  }
  assert.match(verdicts[3], /Reached every RP: 2 of 2/);
  assert.equal(verdicts.slice(0, 3).filter((v) => /Reached every RP: 3 of 3/.test(v)).length, 1, verdicts.join(' | '));
  assert.equal(verdicts.slice(0, 3).filter((v) => /2 of 3 deliveries delivered; 1 failed/.test(v)).length, 2, verdicts.join(' | '));
  await shot(page, 'sessions-user-1280');
  step('per-user verdicts');

  // 7. Hostile metadata is shown as text.
  await page.goto(`${BASE}/console#/sessions?session_id=s-hostile`);
  await page.waitForSelector('dl.metadata');
  const meta = await page.textContent('dl.metadata');
  assert.ok(meta.includes("<script>window.pwned='metadata-script'</script>"), meta);
  assert.ok(meta.includes('<img src=x onerror='), meta);
  assert.equal(await page.locator('.metadata-hidden').count(), 0, 'the granted token is told values are hidden');
  await assertInert(page);
  step('hostile metadata is inert');

  // 8. Re-drive the remaining dead letters from the list, the selection in one request.
  await page.goto(`${BASE}/console#/deliveries?state=failed`);
  await page.waitForSelector('#delivery-list input[type=checkbox]');
  const boxes = await page.locator('#delivery-list input[type=checkbox]').all();
  assert.equal(boxes.length, 2, 'two dead letters are left');
  for (const box of boxes) await box.check();
  const selectedIds = await page.locator('#delivery-list tbody tr:has(input[type=checkbox]:checked)').evaluateAll(
    (rows) => rows.map((r) => r.dataset.id));
  const retries = [];
  const onRequest = (req) => {
    if (req.method() === 'POST' && /\/api\/v2\/logout-deliveries(\/|$)/.test(new URL(req.url()).pathname)) retries.push(req);
  };
  page.on('request', onRequest);
  await page.click('#redrive-selected');
  await page.waitForSelector('#no-deliveries');
  page.off('request', onRequest);
  assert.deepEqual(retries.map((r) => new URL(r.url()).pathname), ['/api/v2/logout-deliveries/retry'],
    'the selection is re-driven in one request');
  const sent = JSON.parse(retries[0].postData());
  assert.deepEqual([...sent.ids].sort(), [...selectedIds].sort());
  assert.match(await retries[0].headerValue('idempotency-key'), /^console-[0-9a-f]{32}$/);
  const answer = await (await retries[0].response()).json();
  assert.deepEqual(answer, { redriven: 2 });
  // The outcome stays on the status line after the list is drawn again.
  assert.equal(await page.textContent('#status'), 'Re-drove 2 of 2 selected');
  // The list is read once, so first let each detail view (which follows a queued row) see its
  // delivery arrive.
  for (const id of selectedIds) {
    await page.goto(`${BASE}/console#/delivery/${encodeURIComponent(id)}`);
    await page.waitForFunction((want) => document.querySelector('#view h2 .mono')?.textContent === want
      && /delivered/.test(document.querySelector('#detail-state')?.textContent ?? ''), id, { timeout: TIMEOUT });
  }
  await page.goto(`${BASE}/console#/deliveries?client_id=billing&state=delivered`);
  await page.waitForFunction(() => document.querySelectorAll('#delivery-list tbody tr').length === 3, null, { timeout: TIMEOUT });
  // The filter form: initiator and creation time, through the keyboard-usable controls.
  await page.selectOption('#f-initiator', 'session-revoked');
  await page.click('#delivery-filters button[type=submit]');
  await page.waitForFunction(() => location.hash.includes('initiator=session-revoked'));
  await page.waitForFunction(() => document.querySelectorAll('#delivery-list tbody tr').length === 3, null, { timeout: TIMEOUT });
  await page.selectOption('#f-initiator', 'rp-logout');
  await page.click('#delivery-filters button[type=submit]');
  await page.waitForSelector('#no-deliveries');
  await page.goto(`${BASE}/console#/deliveries?created_before=2000-01-01T00:00`);
  await page.waitForSelector('#no-deliveries');
  step('bulk re-drive delivered the rest');

  // 9. The client list reads every page (here one) and says nothing more exists; then pause
  // and resume a client.
  await page.goto(`${BASE}/console#/clients`);
  await page.waitForSelector('#client-list table');
  assert.equal(await page.locator('#client-list tbody tr').count(), 3);
  assert.match(await page.textContent('#client-list caption'), /Registered clients: 3\./);
  await page.goto(`${BASE}/console#/client/wiki`);
  await page.click('#pause');
  await page.waitForFunction(() => /^yes/.test(document.querySelector('#paused')?.textContent ?? ''), null, { timeout: TIMEOUT });
  assert.equal((await api('GET', '/clients/wiki/health')).body.paused, true);
  await page.click('#resume');
  await page.waitForFunction(() => document.querySelector('#paused')?.textContent === 'no', null, { timeout: TIMEOUT });
  assert.equal((await api('GET', '/clients/wiki/health')).body.paused, false);
  step('paused and resumed wiki');

  // 10. Keyboard: the views are links and buttons reachable with Tab.
  await page.goto(`${BASE}/console#/overview`);
  await page.waitForSelector('#count-delivered');
  await page.focus('#nav a[data-view="deliveries"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#delivery-filters');
  assert.equal(await page.getAttribute('#nav a[data-view="deliveries"]', 'aria-current'), 'page');
  await assertInert(page);

  // 11. At 390 px wide.
  const narrow = await openPage(browser, 390);
  await signIn(narrow, env('CONSOLE_OPERATE_TOKEN'), false, true);
  await narrow.waitForSelector('#health-table');
  // "Keep it for this tab": sessionStorage only, so a reload stays signed in.
  assert.equal(await narrow.evaluate(() => localStorage.length), 0);
  await narrow.reload();
  await narrow.waitForSelector('#health-table');
  assert.match(await narrow.textContent('#scope'), /operate/);
  await noSideScroll(narrow);
  await shot(narrow, 'overview-390');
  await narrow.goto(`${BASE}/console#/delivery/${encodeURIComponent(deadId)}`);
  await narrow.waitForSelector('#attempts');
  await noSideScroll(narrow);
  await shot(narrow, 'delivery-390');
  await narrow.goto(`${BASE}/console#/deliveries`);
  await narrow.waitForSelector('#delivery-list table');
  await shot(narrow, 'deliveries-390');
  await assertInert(narrow);
  step('usable at 390 px');
  await narrow.click('#sign-out');
  await narrow.waitForSelector('#sign-in:not([hidden])');
  assert.equal(await narrow.evaluate(() => sessionStorage.length), 0, 'signing out forgets the token');
  assert.equal(await narrow.locator('#view').isHidden(), true);
  step('signed out; nothing kept');

  // 12. The admin token is shown as admin, with the operator's buttons and metadata values.
  const admin = await openPage(browser, 1280);
  await signIn(admin, env('CONSOLE_ADMIN_TOKEN'));
  assert.equal(await admin.textContent('#scope'), 'admin');
  await admin.goto(`${BASE}/console#/client/wiki`);
  await admin.waitForSelector('#pause');
  await admin.goto(`${BASE}/console#/sessions?session_id=s-hostile`);
  await admin.waitForSelector('dl.metadata');
  assert.ok((await admin.textContent('dl.metadata')).includes('<img src=x onerror='));
  await assertInert(admin);
  step('an admin token is shown as admin');
} catch (err) {
  // Leave what the browser showed, to see why.
  for (const [i, context] of browser.contexts().entries()) {
    for (const [j, p] of context.pages().entries()) {
      const file = path.join(SHOTS, `failure-${i}-${j}.png`);
      await p.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.error(`console: failed at ${p.url()}; screenshot ${file}; problems: ${JSON.stringify(p.problems)}`);
    }
  }
  throw err;
} finally {
  await browser.close();
}
