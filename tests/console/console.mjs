// Drives the web console at /console in Debian's headless Chromium (puppeteer-core, no bundled
// browser) against a running `prism serve`, as server/tests/console.rs sets it up:
//
//   PRISM_URL        Prism's base URL (without /v1)
//   PRISM_KEY        the signed-in tenant's key
//   CONSOLE_EXPECT   JSON: {batch, batch_errors: {code: lines}, cancelled, completed,
//                    completed_content, scheduled, foreign: [ids of another tenant]}
//   CHROMIUM         the browser binary (default: chromium on PATH)
//   SCREENSHOT_DIR   where the 1280 and 390 px screenshots go
//
// Exits 0 when every check holds; otherwise prints the failed step and exits 1, keeping a
// screenshot of the page as it was.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import puppeteer from 'puppeteer-core';

const base = process.env.PRISM_URL;
const key = process.env.PRISM_KEY;
const expect = JSON.parse(process.env.CONSOLE_EXPECT || '{}');
const shots = process.env.SCREENSHOT_DIR || 'target/console-screenshots';
// Every wait ends: a console that never shows what it should fails the run instead of hanging.
const WAIT = { timeout: 90_000, polling: 200 };

// puppeteer-core wants a path, not a command name.
function chromium() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const dir of (process.env.PATH || '').split(delimiter)) {
    for (const name of ['chromium', 'chromium-browser']) {
      if (existsSync(join(dir, name))) return join(dir, name);
    }
  }
  throw new Error('no chromium on PATH: install Debian\'s chromium package (scripts/test.sh does)');
}

mkdirSync(shots, { recursive: true });
const browser = await puppeteer.launch({
  executablePath: chromium(),
  headless: true,
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});
const page = await browser.newPage();
const problems = [];
page.on('console', (message) => {
  // The wrong key's 401 is expected; anything else (a CSP refusal is one) is a problem.
  const text = message.text();
  if (message.type() === 'error' && !text.includes('status of 401')) problems.push(`console error: ${text}`);
});
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));

let step = 'start';
async function check(name, body) {
  step = name;
  await body();
  console.log(`ok - ${name}`);
}

try {
  await page.setViewport({ width: 1280, height: 900 });

  await check('the page is served with a strict Content-Security-Policy', async () => {
    const response = await page.goto(`${base}/console`, { waitUntil: 'domcontentloaded' });
    assert.equal(response.status(), 200);
    const headers = response.headers();
    const csp = headers['content-security-policy'] || '';
    for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'",
      "connect-src 'self'", "frame-ancestors 'none'"]) {
      assert.ok(csp.includes(directive), `CSP ${JSON.stringify(csp)} lacks ${directive}`);
    }
    assert.equal(headers['x-content-type-options'], 'nosniff');
    assert.equal(headers['referrer-policy'], 'no-referrer');
  });

  await check('a wrong key is refused and not kept', async () => {
    await page.waitForSelector('#key', { visible: true });
    await page.type('#key', 'sk-prism-not-a-key');
    await page.click('#sign-in-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#sign-in-error').textContent.includes('refused'), WAIT);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('prism-console-key')), null);
    assert.ok(await page.$eval('#app', (app) => app.hidden), 'the lists are shown');
  });

  await check('signing in keeps the key in session storage only', async () => {
    await page.type('#key', key);
    await page.click('#sign-in-form button[type=submit]');
    await page.waitForSelector('#app:not([hidden])', WAIT);
    const where = await page.evaluate(() => ({
      url: location.href, cookie: document.cookie, stored: sessionStorage.getItem('prism-console-key'),
    }));
    assert.equal(where.stored, key);
    assert.ok(!where.url.includes(key), 'the key is in the URL');
    assert.equal(where.cookie, '');
    assert.equal((await page.cookies()).length, 0);
  });

  await check("the running batch's progress bar advances", async () => {
    const bar = `#batches tr[data-id="${expect.batch}"] progress`;
    await page.waitForSelector(bar, WAIT);
    const first = await page.$eval(bar, (p) => ({ value: p.value, max: p.max }));
    assert.ok(first.value < first.max, `the batch was already done (${first.value}/${first.max}) when first shown`);
    await page.waitForFunction(
      (selector, seen) => {
        const p = document.querySelector(selector);
        return p && p.value > seen;
      }, WAIT, bar, first.value);
  });

  await check('a cancelled job shows as cancelled', async () => {
    await page.waitForSelector(`#async-jobs tr[data-id="${expect.cancelled}"] [data-status="cancelled"]`, WAIT);
  });

  await check('a scheduled job is listed', async () => {
    await page.waitForSelector(`#scheduled-jobs tr[data-id="${expect.scheduled}"]`, WAIT);
  });

  await check("another tenant's objects are absent", async () => {
    const text = await page.evaluate(() => document.body.innerText);
    const ids = await page.$$eval('tbody tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
    assert.ok(ids.length >= 4, `only ${ids.length} rows listed`);
    for (const foreign of expect.foreign) {
      assert.ok(!text.includes(foreign), `${foreign} is shown`);
      assert.ok(!ids.includes(foreign), `${foreign} is listed`);
    }
  });

  await check("a job's detail shows timings and attempts, and its result only on click", async () => {
    await page.click(`#async-jobs tr[data-id="${expect.completed}"]`);
    await page.waitForSelector('#show-result', WAIT);
    const detail = await page.$eval('#detail-body', (d) => d.innerText);
    for (const label of ['Queue wait', 'Run time', 'Attempts', 'Started', 'Finished']) {
      assert.ok(detail.includes(label), `the detail lacks ${label}`);
    }
    assert.ok(!detail.includes(expect.completed_content), 'the result is shown before the click');
    await page.click('#show-result');
    await page.waitForSelector('#result', WAIT);
    const result = await page.$eval('#result', (r) => r.textContent);
    assert.ok(result.includes(expect.completed_content), 'the result lacks the completion');
  });

  await check("the finished batch's errors are broken down by code, with its files", async () => {
    await page.click(`#batches tr[data-id="${expect.batch}"]`);
    await page.waitForSelector(`#batches tr[data-id="${expect.batch}"] [data-status="completed"]`, WAIT);
    for (const [code, lines] of Object.entries(expect.batch_errors)) {
      await page.waitForFunction(
        (c, n) => {
          const row = document.querySelector(`#error-breakdown tr[data-code="${c}"]`);
          return row && row.lastChild.textContent === String(n);
        }, WAIT, code, lines);
    }
    const buttons = await page.$$eval('#detail-body button[data-file]', (b) => b.map((x) => x.textContent));
    assert.deepEqual(buttons, ['Download output', 'Download errors']);
    await page.click('#detail-body button[data-file]');
    await page.waitForFunction(() => {
      const b = document.querySelector('#detail-body button[data-file]');
      return b && Number(b.dataset.downloaded) > 0;
    }, WAIT);
  });

  await check('the charts show the last hour of finished jobs', async () => {
    await page.waitForFunction(() => Number(document.querySelector('#chart-throughput').dataset.total) >= 1, WAIT);
    assert.ok(await page.$('#chart-throughput rect'), 'no bars drawn');
  });

  await check('screenshots at 1280 and 390 px, with no sideways scrolling at 390', async () => {
    await page.screenshot({ path: join(shots, 'console-1280.png'), fullPage: true });
    // A mobile viewport reloads the page: still signed in (the tab's session storage), the
    // batch is chosen again to show its details at this width.
    await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
    await page.waitForSelector(`#batches tr[data-id="${expect.batch}"]`, WAIT);
    await page.click(`#batches tr[data-id="${expect.batch}"]`);
    await page.waitForSelector('#error-breakdown', WAIT);
    await page.waitForFunction(() => document.documentElement.scrollWidth <= window.innerWidth + 1, WAIT);
    const clipped = await page.$$eval('.scroll', (boxes) => boxes.filter((b) => b.scrollWidth > b.clientWidth + 1).length);
    assert.equal(clipped, 0, 'a list scrolls sideways at 390 px');
    await page.screenshot({ path: join(shots, 'console-390.png'), fullPage: true });
  });

  await check('signing out forgets the key', async () => {
    await page.click('#sign-out');
    await page.waitForSelector('#sign-in:not([hidden])', WAIT);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('prism-console-key')), null);
  });

  await check('the page logged no errors (a CSP refusal would be one)', async () => {
    assert.deepEqual(problems, []);
  });
  console.log('console: every check passed');
} catch (error) {
  console.error(`not ok - ${step}\n${error.stack || error}`);
  if (problems.length) console.error(problems.join('\n'));
  await page.screenshot({ path: join(shots, 'console-failure.png'), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
