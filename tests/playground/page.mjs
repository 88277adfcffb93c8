// What the playground's browser tests share: launching Debian's Chromium through playwright-core,
// opening the page, signing in and asking from the keyboard, and reading what an answer shows.

import { chromium } from 'playwright-core';

export const WAIT = { timeout: 60_000 };

/** Throws `check failed: what` unless `condition` holds. */
export function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

/** Debian's Chromium, headless. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // Running as root in CI containers, where Chromium's sandbox cannot start.
    args: ['--no-sandbox'],
  });
}

/** A fresh page on the playground at `base`; script errors and CSP violations go to `errors`. */
export async function open(browser, base, errors) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page = await context.newPage();
  // A Content-Security-Policy violation or a script error is a failure of the page itself.
  // (The browser also logs each non-2xx response; those are the denials the scenarios expect.)
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base);
  await page.waitForSelector('body[data-ready="true"]', WAIT);
  return page;
}

/** Signs in with the keyboard only: the identity list, Tab to the button, Enter. */
export async function signIn(page, email) {
  await page.focus('#identity');
  await page.selectOption('#identity', email);
  await page.keyboard.press('Tab');
  check((await page.evaluate(() => document.activeElement.textContent)) === 'Sign in', 'Tab reaches Sign in');
  await page.keyboard.press('Enter');
  await page.waitForFunction((e) => document.getElementById('whoami').textContent.includes(e), email, WAIT);
}

/** Asks `question` from the keyboard and waits for the answer and its details; returns what they show. */
export async function askAndRead(page, question) {
  const before = await page.locator('#messages li.answer').count();
  await page.focus('#question');
  await page.keyboard.type(question);
  await page.keyboard.press('Enter');
  await page.waitForFunction(
    (n) => {
      const li = document.querySelectorAll('#messages li.answer')[n];
      return li && li.dataset.status !== 'streaming';
    },
    before,
    WAIT,
  );
  const requestId = await page.locator('#messages li.answer').nth(before).getAttribute('data-request-id');
  await page.waitForSelector(`#details-body[data-loaded="true"][data-request-id="${requestId}"]`, WAIT);
  return page.evaluate((n) => {
    const li = document.querySelectorAll('#messages li.answer')[n];
    const data = (e) => ({ ...e.dataset });
    return {
      status: li.dataset.status,
      requestId: li.dataset.requestId,
      deltas: Number(li.dataset.deltas),
      role: li.getAttribute('role'),
      text: li.querySelector('.answer-text').textContent,
      route: document.getElementById('d-route').textContent,
      agents: [...document.querySelectorAll('#agents li.agent')].map(data),
      spans: [...document.querySelectorAll('#waterfall li.span')].map(data),
      audit: [...document.querySelectorAll('#audit tr.audit-row')].map(data),
      auditScope: document.getElementById('audit-scope').textContent,
    };
  }, before);
}
