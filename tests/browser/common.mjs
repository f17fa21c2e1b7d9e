// The harness the browser tests share (console.mjs, contacts.mjs, routing.mjs,
// flows.mjs): each is its own `node SCRIPT.mjs BASE_URL` process, so this
// module keeps one run's state.
//
// Importing it reads BASE_URL from the command line (exit 2 on bad usage) and
// $CHROMIUM (Debian's /usr/bin/chromium by default; nothing here downloads a
// browser). A script then calls setup() for what is its own, and runScript(main):
// it launches Chromium, runs main, and prints one JSON summary line on stdout
// (the last line; tests/it/browser.rs reads it). It exits 0 on success, 1 on
// a failed check, 3 on the overall timeout ($BROWSER_TEST_TIMEOUT_MS).
//
// Any console error, uncaught exception or CSP violation on a page made by
// newPage() is a problem, and noProblems() fails on it, except a 401 from
// GET /auth/me (the console asks it before anyone signs in) and what a script
// names as expected in setup().

import { chromium } from 'playwright-core';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

const SCRIPT = basename(process.argv[1] || 'test.mjs');

export const BASE = (process.argv[2] || '').replace(/\/+$/, '');
if (!/^https?:\/\/[^/]+/.test(BASE)) {
  console.error(`usage: node ${SCRIPT} BASE_URL   (e.g. http://localhost:8080)`);
  process.exit(2);
}
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** The demo tenant's password (workspace `demo`, users `<role>@example.com`). */
export const PASSWORD = 'switchboard-demo';

const started = Date.now();
export const summary = { ok: false, base: BASE, chromium: CHROMIUM, checks: [], problems: [], duration_ms: 0 };
/** What the browser reported that was not expected. */
export const problems = [];

const options = {
  totalTimeoutMs: 180_000,
  stepTimeoutMs: 20_000,
  contextOptions: { viewport: { width: 1280, height: 900 } },
  // Failed requests the script provokes on purpose: (text, url) => boolean.
  expectedConsoleError: () => false,
  // waitForPage also waits for the page's heading to show the title (when
  // two pages share a path).
  waitForHeading: false,
  // An in-page function whose result waitUntil shows when it times out.
  pageState: null,
};

/**
 * What is the script's own: totalTimeoutMs (the whole run, unless
 * $BROWSER_TEST_TIMEOUT_MS), stepTimeoutMs (each action and navigation),
 * contextOptions (of every browser context), expectedConsoleError,
 * waitForHeading, pageState.
 */
export function setup(own) {
  Object.assign(options, own);
}

let browser = null;
const pages = [];
let currentStep = 'start';

/** Names what the run does now: failures and the timeout report it. */
export function step(name) {
  currentStep = name;
}

export function pass(name) {
  summary.checks.push(name);
}

export class CheckFailed extends Error {}

export function expect(cond, message) {
  if (!cond) throw new CheckFailed(`${currentStep}: ${message}`);
}

export function noProblems() {
  expect(problems.length === 0, `browser reported problems:\n  ${problems.join('\n  ')}`);
}

/**
 * Expected noise: the browser logs failed requests as console errors. The
 * console expects a 401 from GET /auth/me before signing in; the rest is the
 * script's (setup's expectedConsoleError).
 */
function expectedConsoleError(msg) {
  const text = msg.text();
  const url = (msg.location() && msg.location().url) || '';
  if (/status of 401/.test(text) && /\/api\/v1\/auth\/me$/.test(url)) return true;
  return Boolean(options.expectedConsoleError(text, url));
}

/** A page in a browser context of its own; `label` names it in problems and failures. */
export async function newPage(label) {
  const context = await browser.newContext(options.contextOptions);
  context.setDefaultTimeout(options.stepTimeoutMs);
  context.setDefaultNavigationTimeout(options.stepTimeoutMs);
  // Report CSP violations loudly (Chromium also logs them as console errors).
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile || '?'}:${e.lineNumber || 0}`);
    });
  });
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() !== 'error' || expectedConsoleError(msg)) return;
    const loc = msg.location() || {};
    problems.push(`[${label}] console error: ${msg.text()}${loc.url ? ` (${loc.url}:${loc.lineNumber || 0})` : ''}`);
  });
  page.on('pageerror', (err) => problems.push(`[${label}] uncaught exception: ${err.message}`));
  page.on('crash', () => problems.push(`[${label}] the page crashed`));
  pages.push({ label, page });
  return { context, page };
}

/** Opens the console (GET /); with `csp`, checks it is served with the strict CSP. */
export async function openConsole(page, { csp = false } = {}) {
  const res = await page.goto(`${BASE}/`);
  expect(res && res.ok(), `GET / answered ${res ? res.status() : 'nothing'}`);
  if (csp) {
    const policy = res.headers()['content-security-policy'] || '';
    expect(policy.includes("script-src 'self'") && policy.includes("style-src 'self'"), `the page is not served with the strict CSP (got: ${policy || 'none'})`);
  }
  return res;
}

/** Fills in the login form and presses "Sign in" (it waits for nothing after). */
export async function submitLogin(page, email, password) {
  await page.locator('#login-form').waitFor({ state: 'visible' });
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export async function waitForShell(page) {
  await page.locator('[data-app-shell]').waitFor({ state: 'visible' });
  await page.locator('#nav-list [data-nav]').first().waitFor({ state: 'visible' });
}

/** Signs in as the demo user `<role>@example.com` and waits for the app shell. */
export async function signIn(page, role, { csp = false } = {}) {
  await openConsole(page, { csp });
  await submitLogin(page, `${role}@example.com`, PASSWORD);
  await waitForShell(page);
}

/** Waits until the page for `path` has finished loading and checks its heading. */
export async function waitForPage(page, path, title) {
  const el = page.locator(`.page[data-page="${path}"][data-ready="true"]`,
    options.waitForHeading ? { has: page.locator('h1', { hasText: title }) } : {});
  await el.waitFor({ state: 'visible' });
  const failed = await el.getAttribute('data-page-error');
  expect(!failed, `${path} shows its error state (${failed}): ${(await el.innerText()).slice(0, 300)}`);
  const h1 = (await el.locator('h1').first().innerText()).trim();
  expect(h1 === title, `${path} has the heading "${h1}", expected "${title}"`);
  return el;
}

/** The API, as the signed-in user of `page` (cookie + CSRF token). */
export async function apiAs(page) {
  const me = await (await page.request.get(`${BASE}/api/v1/auth/me`)).json();
  const headers = { 'X-CSRF-Token': me.csrf_token };
  const check = async (res, what) => {
    expect(res.ok(), `${what} answered ${res.status()}: ${(await res.text()).slice(0, 300)}`);
    return res.status() === 204 ? null : res.json();
  };
  // A kept-alive connection the server closed while idle (its keep-alive
  // timeout) can reset the next request on it: a GET is tried once more.
  const getOnce = async (path) => {
    try {
      return await page.request.get(`${BASE}/api/v1${path}`);
    } catch (e) {
      if (!/ECONNRESET|socket hang up/.test(String(e))) throw e;
      return page.request.get(`${BASE}/api/v1${path}`);
    }
  };
  return {
    get: async (path) => check(await getOnce(path), `GET ${path}`),
    post: async (path, data) => check(await page.request.post(`${BASE}/api/v1${path}`, { headers, data }), `POST ${path}`),
  };
}

/** Waits for fn(arg) (in the page) to be truthy; fails with `what` (and setup's pageState). */
export async function waitUntil(page, fn, arg, what, timeout = options.stepTimeoutMs) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  } catch {
    if (!options.pageState) expect(false, `timed out waiting for ${what}`);
    const state = await page.evaluate(options.pageState).catch(() => ({}));
    expect(false, `timed out waiting for ${what}; the page shows ${JSON.stringify(state).slice(0, 1500)}`);
  }
}

/** Screenshots and the visible text of every page still open, for a failed run. */
async function showPages() {
  const name = SCRIPT.replace(/\.mjs$/, '');
  for (const { label, page } of pages) {
    if (page.isClosed()) continue;
    try {
      const shot = join(tmpdir(), `switchboard-${name}-${label}-failure-${process.pid}.png`);
      await page.screenshot({ path: shot, fullPage: true, timeout: 5000 });
      console.error(`[${label}] page: ${page.url()}\nscreenshot: ${shot}`);
      console.error(`[${label}] visible text: ${(await page.locator('body').innerText({ timeout: 2000 })).slice(0, 800)}`);
    } catch {
      // best effort
    }
  }
}

/** Launches Chromium, runs `main`, prints the summary and exits (never returns). */
export async function runScript(main) {
  const totalTimeoutMs = Number(process.env.BROWSER_TEST_TIMEOUT_MS || options.totalTimeoutMs);
  const watchdog = setTimeout(async () => {
    summary.problems = [...problems, `timed out after ${totalTimeoutMs / 1000}s during: ${currentStep}`];
    summary.duration_ms = Date.now() - started;
    console.error(`FAIL: timed out after ${totalTimeoutMs / 1000}s during: ${currentStep}`);
    console.log(JSON.stringify(summary));
    process.exit(3);
  }, totalTimeoutMs);

  let code = 0;
  try {
    step('launch Chromium');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
      timeout: 60_000,
    });
    summary.browser_version = browser.version();
    await main();
    summary.ok = true;
  } catch (err) {
    code = 1;
    summary.problems = [...problems, err instanceof CheckFailed ? err.message : `${currentStep}: ${err.stack || err}`];
    console.error(`FAIL: ${summary.problems[summary.problems.length - 1]}`);
    if (problems.length) console.error(`browser problems:\n  ${problems.join('\n  ')}`);
    await showPages();
  } finally {
    clearTimeout(watchdog);
    summary.duration_ms = Date.now() - started;
    if (browser) await browser.close().catch(() => {});
  }
  console.log(JSON.stringify(summary));
  process.exit(code);
}
