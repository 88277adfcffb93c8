// A per-user OAuth connection, connected and disconnected through the playground in a real headless
// Chromium (Debian's `chromium`, driven by playwright-core). Run by tests/per_user_oauth.rs:
//   node oauth_consent.mjs BASE_URL EMAIL LOGIN QUESTION SCREENSHOT_DIR [REASK_AFTER_MS]
// Signed in as EMAIL, the page asks QUESTION and shows the consent link; the Connections view's
// Connect button opens the provider's consent page in a new tab, where LOGIN allows; back on the
// playground the connection shows connected, the same question is answered with LOGIN's own data
// (and again after REASK_AFTER_MS, once the access token has expired), and Disconnect forgets the
// account. Prints one JSON line of what it saw; a failed check throws.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { WAIT, askAndRead, check, launch, open, signIn } from './page.mjs';

const [base, email, login, question, shots, reaskAfter = '0'] = process.argv.slice(2);
if (!shots) throw new Error('usage: node oauth_consent.mjs BASE_URL EMAIL LOGIN QUESTION SCREENSHOT_DIR');
mkdirSync(shots, { recursive: true });

const ACCOUNT = 'section.connection[data-connection="drive"] p.account';
const browser = await launch();
const errors = [];
try {
  const page = await open(browser, base, errors);
  await signIn(page, email);

  const before = await askAndRead(page, question);
  check(before.status === 'denied', `before consenting, the hop is refused: ${JSON.stringify(before)}`);
  check(before.text.includes('/oauth/connect/drive'), `the refusal carries the consent link: ${before.text}`);

  await page.click('#show-connections');
  await page.waitForSelector(`${ACCOUNT}[data-connected="false"]`, WAIT);
  const [provider] = await Promise.all([
    page.context().waitForEvent('page', WAIT),
    page.click(`${ACCOUNT} button.connect`),
  ]);
  await provider.waitForLoadState('load');
  check((await provider.locator('form button[value="allow"]').count()) === 1, 'the consent page has an Allow button');
  await provider.getByLabel('Login').fill(login);
  await Promise.all([
    provider.waitForURL(/\/oauth\/callback/, WAIT),
    provider.getByRole('button', { name: 'Allow' }).click(),
  ]);
  await provider.waitForLoadState('load');
  const heading = (await provider.locator('h1').textContent()) || '';
  await provider.screenshot({ path: join(shots, `callback-connected-${login}.png`), fullPage: true });
  await provider.close();

  await page.click('#connections-refresh');
  await page.waitForSelector(`${ACCOUNT}[data-connected="true"]`, WAIT);
  await page.screenshot({ path: join(shots, `playground-connected-${login}.png`), fullPage: true });

  await page.click('#show-chat');
  const after = await askAndRead(page, question);
  check(after.status === 'ok', `after consenting, the hop is answered: ${JSON.stringify(after)}`);
  await page.screenshot({ path: join(shots, `playground-answer-${login}.png`), fullPage: true });
  let reanswer = null;
  if (Number(reaskAfter) > 0) {
    await page.waitForTimeout(Number(reaskAfter));
    const again = await askAndRead(page, question);
    check(again.status === 'ok', `asked again after the token expired: ${JSON.stringify(again)}`);
    reanswer = again.text;
  }

  await page.click('#show-connections');
  await page.waitForSelector(`${ACCOUNT}[data-connected="true"]`, WAIT);
  await page.click(`${ACCOUNT} button.disconnect`);
  await page.waitForSelector(`${ACCOUNT}[data-connected="false"]`, WAIT);
  check(errors.length === 0, `no script errors or CSP violations in the page: ${errors.join(' | ')}`);
  console.log(JSON.stringify({ heading, answer: after.text, reanswer, disconnected: true }));
} finally {
  await browser.close();
}
