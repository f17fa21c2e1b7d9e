#!/usr/bin/env node
// Drives the Switchboard console in a real Chromium.
//
//   node console.mjs BASE_URL        e.g. node console.mjs http://localhost:8080
//
// Uses Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) through
// playwright-core; nothing here downloads a browser. The server must serve
// the demo tenant (workspace `demo`, password `switchboard-demo`).
//
// Checks: the role-aware navigation of all four demo users (exactly the
// allowed [data-nav] items are rendered), that every page they can reach
// renders without errors, a wrong password, the admin's user table, an API
// key shown once, staying signed in across a reload, and signing out. Any
// console error, uncaught exception or CSP violation fails the run.
//
// Prints one JSON summary line on stdout; exits 0 on success, 1 on a failed
// check, 2 on bad usage, 3 on the overall timeout.

import {
  BASE, PASSWORD, summary, setup, step, pass, expect, noProblems, newPage, openConsole, submitLogin, waitForShell, waitForPage, runScript,
} from './common.mjs';

/**
 * Expected noise besides a 401 from GET /auth/me (common.mjs): a 401 from
 * POST /auth/login for a wrong password, and any API 401 once the session has
 * been ended behind the console's back.
 */
let sessionKilled = false; // while true, any API 401 is expected

setup({
  totalTimeoutMs: 150_000,
  stepTimeoutMs: 15_000,
  expectedConsoleError: (text, url) => /status of 401/.test(text)
    && (/\/api\/v1\/auth\/login$/.test(url) || (sessionKilled && /\/api\/v1\//.test(url))),
});
summary.nav = {}; // the navigation each role saw

/** Exactly the top-level navigation each role must see. */
const NAV_MATRIX = {
  admin: ['admin', 'agent', 'campaigns', 'contacts', 'supervisor'],
  supervisor: ['agent', 'contacts', 'supervisor'],
  agent: ['agent', 'contacts'],
  marketer: ['campaigns', 'contacts'],
};
const NAV_PAGES = {
  agent: { path: '/agent', title: 'Agent desk' },
  supervisor: { path: '/supervisor', title: 'Supervisor' },
  campaigns: { path: '/campaigns', title: 'Campaigns' },
  contacts: { path: '/contacts', title: 'Contacts' },
  admin: { path: '/admin/users', title: 'Users' },
};
const ADMIN_PAGES = [
  { path: '/admin/users', title: 'Users' },
  { path: '/admin/api-keys', title: 'API keys' },
  { path: '/admin/webhooks', title: 'Webhooks' },
  { path: '/admin/audit', title: 'Audit log' },
  { path: '/admin/tenant', title: 'Tenant' },
];
const USER_NAMES = { admin: 'Ada Admin', supervisor: 'Sam Supervisor', agent: 'Alex Agent', marketer: 'Mia Marketer' };

async function signIn(page, email, password) {
  await page.locator('#login-form').waitFor({ state: 'visible' });
  expect(await page.inputValue('#login-tenant') === 'demo', 'the Workspace field is not prefilled with "demo"');
  await submitLogin(page, email, password);
}

async function visibleNav(page) {
  const ids = await page.locator('[data-nav]:visible').evaluateAll((els) => els.map((e) => e.getAttribute('data-nav')));
  const all = await page.locator('[data-nav]').count();
  return { ids: ids.sort(), rendered: all };
}

// ---- scenarios ---------------------------------------------------------------------

async function wrongPassword() {
  step('wrong password');
  const { context, page } = await newPage('wrong-password');
  await openConsole(page, { csp: true });
  await signIn(page, 'admin@example.com', 'not-the-password');
  const error = page.locator('#login-error');
  await page.waitForFunction(() => document.getElementById('login-error')?.textContent.trim().length > 0);
  const text = (await error.innerText()).trim();
  expect(/wrong workspace, email or password/i.test(text), `unexpected error message: "${text}"`);
  expect(await page.locator('#login-form').isVisible(), 'the login form is gone after a failed sign-in');
  expect(!(await page.locator('[data-app-shell]').isVisible()), 'the app shell is visible after a failed sign-in');
  expect(await error.getAttribute('role') === 'alert', 'the login error is not in an alert (aria-live) region');
  noProblems();
  pass('wrong password shows an error and stays on the login page');
  await context.close();
}

async function roleTour(role) {
  step(`${role}: sign in`);
  const { context, page } = await newPage(role);
  await openConsole(page, { csp: true });
  await signIn(page, `${role}@example.com`, PASSWORD);
  await waitForShell(page);
  expect((await page.locator('#user-name').innerText()).trim() === USER_NAMES[role], `the header does not show ${USER_NAMES[role]}`);
  expect((await page.locator('#user-role').innerText()).trim().toLowerCase() === role, 'the header does not show the role');
  expect((await page.locator('#tenant-name').innerText()).trim().length > 0, 'the header does not show the tenant');

  step(`${role}: navigation`);
  const nav = await visibleNav(page);
  summary.nav[role] = nav.ids;
  const want = NAV_MATRIX[role];
  expect(JSON.stringify(nav.ids) === JSON.stringify(want), `visible nav is [${nav.ids}], expected exactly [${want}]`);
  expect(nav.rendered === want.length, `${nav.rendered} [data-nav] items are rendered, expected ${want.length} (forbidden items must not exist at all)`);
  pass(`${role}: navigation is exactly [${want.join(', ')}]`);

  // The default route is the first allowed item.
  const first = NAV_PAGES[want.includes('agent') ? 'agent' : want[0]];
  await waitForPage(page, first.path, first.title);

  step(`${role}: pages`);
  for (const id of want) {
    await page.locator(`[data-nav="${id}"]`).click();
    await waitForPage(page, NAV_PAGES[id].path, NAV_PAGES[id].title);
  }
  await page.locator('[data-link="jobs"]').click();
  await waitForPage(page, '/jobs', 'Jobs');
  // A page the role may not use falls back to the default one.
  if (!want.includes('admin')) {
    await page.evaluate(() => { location.hash = '#/admin/users'; });
    await waitForPage(page, first.path, first.title);
    expect(await page.locator('[data-page="/admin/users"]').count() === 0, 'a forbidden page was rendered');
  }
  noProblems();
  pass(`${role}: every reachable page renders`);
  return { context, page };
}

/** An interaction created elsewhere shows up live (SSE) in the table and the chart. */
async function liveUpdates(page) {
  step('supervisor: live updates');
  await page.locator('[data-nav="supervisor"]').click();
  await waitForPage(page, '/supervisor', 'Supervisor');
  await page.waitForFunction(() => document.getElementById('live-pill')?.dataset.state === 'live');
  const me = await (await page.request.get(`${BASE}/api/v1/auth/me`)).json();
  const subject = `Browser test chat ${Date.now()}`;
  const res = await page.request.post(`${BASE}/api/v1/interactions`, {
    headers: { 'X-CSRF-Token': me.csrf_token },
    data: { channel: 'chat', direction: 'inbound', customer_address: 'visitor-42', subject },
  });
  expect(res.status() === 201, `creating an interaction answered ${res.status()}`);
  await page.locator('.page[data-page="/supervisor"] table tbody').getByText(subject, { exact: true }).waitFor();
  await page.waitForFunction(() => Number(document.querySelector('[data-chart="states"] [data-state="created"]')?.dataset.count) >= 1);
  noProblems();
  pass('supervisor: a new interaction appears live in the table and the chart');
}

/** The session ends behind the console's back: the next request bounces to sign-in. */
async function sessionEnds(page) {
  step('agent: session ends elsewhere');
  const me = await (await page.request.get(`${BASE}/api/v1/auth/me`)).json();
  const out = await page.request.post(`${BASE}/api/v1/auth/logout`, { headers: { 'X-CSRF-Token': me.csrf_token } });
  expect(out.status() === 204, `logging out through the API answered ${out.status()}`);
  sessionKilled = true;
  await page.locator('[data-link="jobs"]').click();
  await page.locator('#login-form').waitFor({ state: 'visible' });
  const notice = (await page.locator('#login-notice').innerText()).trim();
  expect(/session has ended/i.test(notice), `no "session has ended" notice on the login page (got "${notice}")`);
  expect(!(await page.locator('[data-app-shell]').isVisible()), 'the app shell is still visible after a 401');
  sessionKilled = false;
  noProblems();
  pass('agent: a 401 anywhere returns to the login page');
}

async function adminExtras(page) {
  step('admin: sub-pages');
  for (const p of ADMIN_PAGES) {
    await page.locator(`[data-subnav="${p.path}"]`).click();
    await waitForPage(page, p.path, p.title);
  }
  noProblems();
  pass('admin: every admin page renders');

  step('admin: users table');
  await page.locator('[data-nav="admin"]').click();
  await waitForPage(page, '/admin/users', 'Users');
  const cell = page.locator('.page[data-page="/admin/users"] table tbody').getByText('agent@example.com', { exact: true });
  await cell.waitFor({ state: 'visible' });
  pass('admin: Users shows agent@example.com');

  step('admin: create an API key');
  await page.locator('[data-subnav="/admin/api-keys"]').click();
  await waitForPage(page, '/admin/api-keys', 'API keys');
  const keyName = `Browser test ${Date.now()}`;
  const form = page.getByRole('form', { name: 'New API key' });
  await form.getByLabel('Name').fill(keyName);
  await form.getByLabel('Role').selectOption('agent');
  await form.getByRole('button', { name: 'Create key' }).click();
  const panel = page.locator('[data-secret-panel="api-key-token"]');
  await panel.waitFor({ state: 'visible' });
  const token = (await panel.locator('[data-secret]').innerText()).trim();
  expect(/^sbk_\S{16,}$/.test(token), `the shown token does not look like an API key: "${token.slice(0, 12)}…"`);
  expect(/only time/i.test(await panel.innerText()), 'the token panel does not warn that it is shown only once');
  await page.locator('.page[data-page="/admin/api-keys"] table tbody .primary-cell', { hasText: keyName }).waitFor();
  // The token is real: it authenticates as an agent key.
  const me = await fetch(`${BASE}/api/v1/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
  expect(me.status === 200, `the shown token does not authenticate (GET /auth/me answered ${me.status})`);
  const meBody = await me.json();
  expect(meBody.role === 'agent', `the new key has role ${meBody.role}, expected agent`);
  await panel.getByRole('button', { name: /dismiss/i }).click();
  await panel.waitFor({ state: 'detached' });
  expect(!(await page.content()).includes(token), 'the token is still in the page after dismissing it');
  noProblems();
  pass('admin: a new API key is shown once, works, and is gone after dismissing');

  step('admin: reload');
  await page.reload();
  await waitForShell(page);
  expect(!(await page.locator('#login-form').isVisible()), 'the login form is shown after a reload');
  expect((await page.locator('#user-name').innerText()).trim() === USER_NAMES.admin, 'not signed in as the admin after a reload');
  await waitForPage(page, '/admin/api-keys', 'API keys');
  expect(!(await page.content()).includes(token), 'the token is shown again after a reload');
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  expect(!/csrf|session|token|sbk_/i.test(stored), `something sensitive is in web storage: ${stored.slice(0, 200)}`);
  noProblems();
  pass('admin: still signed in after a reload (and nothing sensitive in web storage)');

  step('admin: sign out');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#login-form').waitFor({ state: 'visible' });
  expect(!(await page.locator('[data-app-shell]').isVisible()), 'the app shell is still visible after signing out');
  const after = await page.request.get(`${BASE}/api/v1/auth/me`);
  expect(after.status() === 401, `the session still works after signing out (GET /auth/me answered ${after.status()})`);
  await page.reload();
  await page.locator('#login-form').waitFor({ state: 'visible' });
  noProblems();
  pass('admin: signing out returns to the login page and ends the session');
}

async function docsPage() {
  step('API reference');
  const { context, page } = await newPage('docs');
  const res = await page.goto(`${BASE}/docs`);
  expect(res && res.ok(), `GET /docs answered ${res ? res.status() : 'nothing'}`);
  await page.locator('[data-docs-ready="true"]').waitFor({ state: 'attached' });
  const ops = await page.locator('[data-op]').count();
  expect(ops > 10, `the API reference lists only ${ops} operations`);
  expect(await page.locator('[data-error-code="invalid_credentials"]').count() === 1, 'the error codes are not listed');
  await page.getByRole('searchbox').fill('api-keys');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-op]')].filter((e) => !e.hidden).length > 0
    && [...document.querySelectorAll('[data-op]')].some((e) => e.hidden));
  noProblems();
  pass(`API reference renders ${ops} operations and filters them`);
  await context.close();
}

// ---- main --------------------------------------------------------------------------

await runScript(async () => {
  await wrongPassword();
  for (const role of ['agent', 'supervisor', 'marketer']) {
    const { context, page } = await roleTour(role);
    if (role === 'agent') await sessionEnds(page);
    if (role === 'supervisor') await liveUpdates(page);
    await context.close();
  }
  const { context, page } = await roleTour('admin');
  await adminExtras(page);
  await context.close();
  await docsPage();
});
