// The web playground in a real headless Chromium (Debian's `chromium`, driven by playwright-core),
// against a running `switchboard serve`. Run by tests/playground.rs:
//   node scenarios.mjs BASE_URL SCREENSHOT_DIR
// Each scenario checks the page by its DOM, saves a screenshot, and prints one JSON line of what it
// saw; any failed check throws, which exits non-zero with the reason.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { WAIT, askAndRead, check, launch, open as openPage, signIn } from './page.mjs';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) throw new Error('usage: node scenarios.mjs BASE_URL SCREENSHOT_DIR');
mkdirSync(shots, { recursive: true });

const FAN_OUT = 'Total revenue by region, and who must approve a 25% discount on a 40000 deal?';
const AUDIT = 'show recent denied requests in the audit log';
const TICKETS = 'what are my open tickets?';

const browser = await launch();
const errors = [];
const open = () => openPage(browser, base, errors);

async function shot(page, name) {
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

function report(scenario, fields) {
  console.log(JSON.stringify({ scenario, ...fields }));
}

// Every control is labelled, for screen readers and for clicking the label.
async function checkLabels(page) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea')]
      .filter((e) => e.offsetParent !== null && e.labels.length === 0)
      .map((e) => e.id || e.name),
  );
  check(unlabelled.length === 0, `every visible control has a label (unlabelled: ${unlabelled})`);
}

// 1. alice: the fan-out question; both parts arrive as streamed deltas, and the waterfall shows
//    the two agents' spans overlapping in time.
{
  const page = await open();
  await checkLabels(page);
  const options = await page.$$eval('#identity option', (o) => o.map((x) => x.value));
  check(options.length === 6 && options.includes('frank@example.com'), `six demo identities offered: ${options}`);
  await signIn(page, 'alice@example.com');
  await checkLabels(page);
  // Every change the page makes to the answer while it streams, to count the renders.
  await page.evaluate(() => {
    window.renders = [];
    new MutationObserver(() => {
      const li = document.querySelector('#messages li.answer[data-status="streaming"]');
      if (li) window.renders.push(li.querySelector('.answer-text').textContent);
    }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });
  });
  const seen = await askAndRead(page, FAN_OUT);
  const renders = await page.evaluate(() => [...new Set(window.renders)].filter((t) => t));
  check(seen.status === 'ok', `alice's fan-out answered ok: ${JSON.stringify(seen)}`);
  check(/West/.test(seen.text) && /approv/i.test(seen.text), `both parts in the answer: ${seen.text}`);
  check(seen.deltas >= 2, `the answer arrived as several streamed deltas (${seen.deltas})`);
  const agents = Object.fromEntries(seen.agents.map((a) => [a.agent, a.status]));
  check(agents.sales === 'ok' && agents.deal_desk === 'ok', `both agents ok: ${JSON.stringify(agents)}`);
  check(/sales/.test(seen.route) && /deal_desk/.test(seen.route), `route names both: ${seen.route}`);
  const span = (name) => seen.spans.find((s) => s.name === name);
  const [sales, desk] = [span('invoke_agent sales'), span('invoke_agent deal_desk')];
  check(sales && desk, `both agents' spans in the waterfall: ${seen.spans.map((s) => s.name)}`);
  const overlap = Math.min(+sales.end, +desk.end) - Math.max(+sales.start, +desk.start);
  check(overlap > 0, `the agents' spans overlap: ${JSON.stringify({ sales, desk })}`);
  check(sales.depth === '1' && desk.depth === '1', 'both agent spans sit under the request span');
  const allowed = seen.audit.filter((r) => r.decision === 'allowed').map((r) => r.agent);
  check(allowed.includes('sales') && allowed.includes('deal_desk'), `audit rows for both: ${allowed}`);
  // The README's picture (`PLAYGROUND_DOCS_SHOT=docs/playground.png`): the page as it first shows an answer.
  if (process.env.PLAYGROUND_DOCS_SHOT) {
    await page.screenshot({ path: process.env.PLAYGROUND_DOCS_SHOT, clip: { x: 0, y: 0, width: 1440, height: 700 } });
  }
  // A span's attributes open from the keyboard.
  const toggle = page.locator('#waterfall li.span[data-name="invoke_agent sales"] button.span-toggle');
  await toggle.focus();
  await page.keyboard.press('Enter');
  check((await toggle.getAttribute('aria-expanded')) === 'true', 'Enter opens the span');
  const attrs = await page.locator('#waterfall li.span[data-name="invoke_agent sales"] dl.attrs').textContent();
  check(attrs.includes('enduser.id') || attrs.includes('gen_ai'), `the span's attributes are shown: ${attrs.slice(0, 200)}`);
  const path = await shot(page, 'alice-fan-out');
  report('alice-fan-out', {
    deltas: seen.deltas,
    intermediate_renders: renders.length,
    overlap_ms: overlap,
    spans: seen.spans.length,
    audit_rows: seen.audit.length,
    screenshot: path,
  });

  // Citations link to their passages.
  const cited = await askAndRead(page, 'What is the hotel limit in the travel policy?');
  check(cited.status === 'ok', `the policy question answered: ${cited.text}`);
  const link = page.locator('#messages li.answer').last().locator('a.cite').first();
  const href = await link.getAttribute('href');
  check(href && href.startsWith('#src-'), `a citation links to its source: ${href}`);
  const target = await page.locator(href).textContent();
  check(/Travel/i.test(target), `the linked source is the travel policy: ${target}`);
  await shot(page, 'alice-citations');
  report('alice-citations', { link: href, source: target.trim() });

  // A question no agent matches is answered with a clarifying question, shown as one (in a new
  // thread: in this one it would read as a follow-up to the policy question).
  await page.click('#new-thread');
  check((await page.locator('#thread-list button.thread').count()) === 2, 'the new thread is listed');
  const unclear = await askAndRead(page, "what's the weather on mars?");
  const label = await page.locator('#messages li.answer').last().locator('.who').textContent();
  check(unclear.status === 'clarify' && label === 'The supervisor asks', `a clarification: ${JSON.stringify(unclear)}`);
  check(/^clarify/.test(unclear.route), `the route says clarify: ${unclear.route}`);
  // Back to the first thread: its turns are there to continue.
  await page.locator('#thread-list button.thread').nth(1).click();
  const turns = await page.locator('#messages li.answer').count();
  check(turns === 2, `the first thread shows its two answers (${turns})`);
  check((await page.locator('#thread-list button.thread[aria-current="true"]').textContent()).startsWith('Total revenue'), 'it is the current thread');
  await page.context().close();
}

// 2. bob: the audit question is denied, plainly, and the denial is in the request's audit rows.
const bob = await open();
await signIn(bob, 'bob@example.com');
{
  const seen = await askAndRead(bob, AUDIT);
  check(seen.status === 'denied' && seen.role === 'alert', `bob is denied, as an alert: ${JSON.stringify(seen)}`);
  check(seen.text.includes('may not use agent `audit`'), `the denial says why: ${seen.text}`);
  const row = seen.audit.find((r) => r.agent === 'audit' && r.decision === 'access_denied');
  check(row && row.caller === 'bob@example.com', `the denial's audit row: ${JSON.stringify(seen.audit)}`);
  check(/own calls/.test(seen.auditScope), `bob reads only his own rows: ${seen.auditScope}`);
  check(seen.agents.some((a) => a.agent === 'audit' && a.status === 'access_denied'), `audit agent shown denied`);
  const path = await shot(bob, 'bob-audit-denied');
  report('bob-audit-denied', { request_id: seen.requestId, screenshot: path });

  // Bob may not administer connections: the page says so instead of offering buttons.
  await bob.click('#show-connections');
  await bob.waitForSelector('section.connection[data-connection="tickets_mcp"]', WAIT);
  check((await bob.locator('button.revoke').count()) === 0, 'no revoke buttons for bob');
  check((await bob.locator('p.denied-note[data-status="403"]').count()) > 0, 'the 403 is shown plainly');
  await bob.click('#show-chat');
}

// 3. frank revokes tickets_mcp from east_sales: bob's next tickets question is denied; a re-grant
//    restores it.
{
  const before = await askAndRead(bob, TICKETS);
  check(before.status === 'ok' && before.text.includes('TCK-'), `bob sees his tickets first: ${before.text}`);

  const frank = await open();
  await signIn(frank, 'frank@example.com');
  await frank.click('#show-connections');
  const eastSales = 'section.connection[data-connection="tickets_mcp"] tr.grant[data-principal="east_sales"]';
  await frank.waitForSelector(eastSales, WAIT);
  await frank.click(`${eastSales} button.revoke`);
  await frank.waitForFunction(() => /Revoked/.test(document.getElementById('connections-status').textContent), null, WAIT);
  await frank.waitForSelector(eastSales, { state: 'detached', ...WAIT });
  const revokedShot = await shot(frank, 'frank-revoked');

  const denied = await askAndRead(bob, TICKETS);
  check(denied.status === 'denied', `bob is denied after the revoke: ${JSON.stringify(denied)}`);
  check(denied.text.includes('holds no USE CONNECTION grant on `tickets_mcp`'), `why: ${denied.text}`);
  const deniedShot = await shot(bob, 'bob-tickets-denied');

  await frank.fill('#grant-tickets_mcp', 'east_sales');
  await frank.press('#grant-tickets_mcp', 'Enter');
  await frank.waitForSelector(eastSales, WAIT);
  const grantedBy = await frank.locator(`${eastSales} td`).nth(1).textContent();
  check(grantedBy === 'frank@example.com', `the re-grant is frank's: ${grantedBy}`);

  const restored = await askAndRead(bob, TICKETS);
  check(restored.status === 'ok' && restored.text.includes('TCK-'), `the re-grant restores it: ${restored.text}`);
  const restoredShot = await shot(bob, 'bob-tickets-restored');
  report('frank-revoke-regrant', {
    denied_request: denied.requestId,
    screenshots: [revokedShot, deniedShot, restoredShot],
  });
  await frank.context().close();
}
await bob.context().close();
await browser.close();
check(errors.length === 0, `no script errors or CSP violations in the page: ${errors.join(' | ')}`);
report('done', { ok: true });
