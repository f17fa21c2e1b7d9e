#!/usr/bin/env node
// Drives the supervisor's flow editor (Supervisor › Flows) in a real Chromium.
//
//   node flows.mjs BASE_URL        e.g. node flows.mjs http://localhost:8080
//
// Uses Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) through
// playwright-core, like routing.mjs. The server must serve the demo tenant
// (workspace `demo`, password `switchboard-demo`); its supervisor takes part,
// and the flow routes to its queue "Sales".
//
// The supervisor creates the flow `e2e-menu` in the console: a script with a
// syntax error first, whose error must show inline on the right line (gutter
// marker, underline, the list under the editor; clicking it moves the caret
// there) and which the server refuses to save; then a menu flow, typed partly
// on the keyboard (Tab indents in the editor), saved as version 1. The
// simulator runs it: Start, the menu waits for digits, key 1, the path ends
// in the queue Sales with priority 5. A test case written in the Tests tab
// passes; broken, it fails with a diff. Version 2 (with the tests) is saved
// and published, version 1 is viewed read-only and rolled back to; the
// history and the list show what the API says. The flow settings show
// read-only to the supervisor; an admin saves them. Any console error, uncaught exception or CSP violation fails the run.
//
// Prints one JSON summary line on stdout; exits 0 on success, 1 on a failed
// check, 2 on bad usage, 3 on the overall timeout.

import {
  summary, setup, step, pass, expect, noProblems, newPage, signIn, waitForPage, apiAs, waitUntil, runScript,
} from './common.mjs';

const FLOW = 'e2e-menu';
const QUEUE = 'Sales'; // a queue of the demo tenant (seed-data/demo.toml)
const OTHER_QUEUE = 'Support';

// Line 2 has the syntax error (a `let` without a name).
const BROKEN = `answer();
let = menu(#{ prompt: "main_menu", options: "12", retries: 2 });
`;
const BROKEN_LINE = 2;

const MENU = `// e2e: the main menu
answer();
let c = menu(#{ prompt: "main_menu", options: "12", retries: 2 });
if c == "1" {
    queue("${QUEUE}", #{ priority: 5 })
} else {
    hangup()
}`;

const testsToml = (queue) => `[[case]]
name = "sales by DTMF"
time = "2026-12-01T10:00:00+01:00"
caller = "+33612345678"
inputs = ["digits:1"]
[case.expect]
prompts = ["main_menu"]
queue = "${queue}"
priority = 5
end = "queue"
`;

let expectInvalidSave = false; // while true, a 422 from POST /flows/e2e-menu/versions is expected

setup({
  contextOptions: { viewport: { width: 1400, height: 1000 } },
  // This test saves a script that does not compile on purpose (a 422).
  expectedConsoleError: (text, url) => expectInvalidSave && /status of 422/.test(text) && url.endsWith(`/api/v1/flows/${FLOW}/versions`),
  // The list of flows and a flow's editor share the path /supervisor/flows.
  waitForHeading: true,
  // What a wait that timed out shows of the editor.
  pageState: () => ({
    validate: document.querySelector('[data-validate-status]')?.textContent,
    diagnostics: [...document.querySelectorAll('[data-diagnostics] .diag-item')].map((d) => d.textContent),
    sim: document.querySelector('[data-simulator]')?.innerText,
    tests: document.querySelector('[data-test-results]')?.innerText,
    save: document.querySelector('.flow-save')?.innerText,
  }),
});

// ---- the flow editor -------------------------------------------------------------------

async function run() {
  const { context, page } = await newPage('supervisor');
  step('sign in');
  await signIn(page, 'supervisor');
  const api = await apiAs(page);

  step('navigation');
  await page.locator('[data-nav="supervisor"]').click();
  await waitForPage(page, '/supervisor', 'Supervisor');
  const link = page.locator('[data-subnav="/supervisor/flows"]');
  expect(await link.count() === 1, 'the Supervisor section has no Flows link');
  expect((await link.innerText()).trim() === 'Flows', `the link says "${await link.innerText()}"`);
  await link.click();
  const listPage = await waitForPage(page, '/supervisor/flows', 'Flows');
  expect(await listPage.locator(`tr[data-flow="${FLOW}"]`).count() === 0, `${FLOW} exists before the test`);
  noProblems();
  pass('Supervisor › Flows opens the list of flows');

  step('new flow: a bad name, then e2e-menu');
  await listPage.getByRole('button', { name: 'New flow' }).click();
  const dlg = page.getByRole('dialog', { name: 'New flow' });
  await dlg.waitFor({ state: 'visible' });
  await dlg.getByLabel(/^Name/).fill('Main Menu!');
  await dlg.getByRole('button', { name: 'Create flow' }).click();
  await waitUntil(page, () => document.querySelector('dialog input[name="name"]')?.getAttribute('aria-invalid') === 'true', null, 'the bad name to be marked invalid');
  const nameError = (await dlg.locator('.field-error').innerText()).trim();
  expect(/a-z/.test(nameError), `the name's error says "${nameError}"`);
  await dlg.getByLabel(/^Name/).fill(FLOW);
  await dlg.getByRole('button', { name: 'Create flow' }).click();
  await dlg.waitFor({ state: 'detached' });
  const ed = await waitForPage(page, '/supervisor/flows', FLOW);
  expect(/nothing is saved yet/.test(await ed.locator('[data-flow-status]').innerText()), 'the new flow does not say it is unsaved');
  noProblems();
  pass(`"New flow" refuses a bad name ("${nameError}") and opens the editor for ${FLOW}`);

  // ---- a syntax error, inline
  step('syntax error');
  const source = ed.locator('textarea[data-code-input="source"]');
  await source.fill(BROKEN);
  // Validation runs by itself (debounced): no button pressed.
  await waitUntil(page, (line) => document.querySelector(`[data-diagnostics="source"] .diag-item[data-diag-severity="error"][data-diag-line="${line}"]`),
    BROKEN_LINE, `an error listed on line ${BROKEN_LINE}`);
  const errItem = ed.locator(`[data-diagnostics="source"] .diag-item[data-diag-line="${BROKEN_LINE}"]`).first();
  const errText = (await errItem.innerText()).trim();
  expect(await ed.locator(`[data-code-editor="source"] .code-ln.has-error[data-gutter-line="${BROKEN_LINE}"]`).count() === 1, `no error marker in the gutter on line ${BROKEN_LINE}`);
  const tooltip = await ed.locator(`[data-code-editor="source"] .code-ln[data-gutter-line="${BROKEN_LINE}"]`).getAttribute('title');
  expect(tooltip && tooltip.length > 3, `the gutter marker has the title "${tooltip}"`);
  expect(await ed.locator(`[data-code-editor="source"] .code-diag-error[data-diag-line="${BROKEN_LINE}"]`).count() === 1, `line ${BROKEN_LINE} is not underlined`);
  expect(await ed.locator('[data-code-editor="source"] .code-diag-error').count() === 1, 'other lines are underlined too');
  expect(await ed.locator('[data-validate-status="error"]').count() === 1, 'the validation status does not show the error');
  // Clicking the problem moves the caret to its line.
  await errItem.click();
  const caretLine = await source.evaluate((t) => t.value.slice(0, t.selectionStart).split('\n').length);
  expect(caretLine === BROKEN_LINE, `clicking the error put the caret on line ${caretLine}`);
  expect(await source.evaluate((t) => document.activeElement === t), 'clicking the error did not focus the editor');
  summary.syntax_error = errText;
  noProblems();
  pass(`a syntax error shows on line ${BROKEN_LINE}: gutter marker, underline, "${errText}"; clicking it moves the caret there`);

  step('saving the broken script is refused');
  expectInvalidSave = true;
  await ed.getByRole('button', { name: 'Save version' }).click();
  await waitUntil(page, () => /Not saved/.test(document.querySelector('.flow-save .form-error')?.textContent || ''), null, 'the save to be refused');
  await ed.locator(`[data-diagnostics="source"] .diag-item[data-diag-line="${BROKEN_LINE}"]`).first().waitFor();
  expectInvalidSave = false;
  const listed = await api.get('/flows');
  expect(!(listed.items || []).some((f) => f.name === FLOW), 'the broken script was saved');
  noProblems();
  pass('saving it is refused (422) with the error inline; nothing is saved');

  // ---- the menu flow
  step('the menu flow');
  await source.fill(MENU);
  // The end typed on the keyboard: Enter, Tab (indents, focus stays), a comment.
  await source.focus();
  await page.keyboard.press('Control+End');
  await page.keyboard.press('Enter');
  await page.keyboard.press('Tab');
  await page.keyboard.type('// end of the menu');
  const typed = await source.inputValue();
  expect(typed.endsWith('\n    // end of the menu'), `the editor holds ${JSON.stringify(typed.slice(-40))} after Enter, Tab and typing`);
  expect(await source.evaluate((t) => document.activeElement === t), 'Tab moved the focus out of the editor');
  await waitUntil(page, () => {
    const st = document.querySelector('[data-validate-status]')?.dataset.validateStatus;
    return (st === 'ok' || st === 'warning') && !document.querySelector('[data-diagnostics="source"] .diag-item[data-diag-severity="error"]');
  }, null, 'the menu flow to validate without errors');
  expect(await ed.locator('[data-code-editor="source"] .code-diag-error').count() === 0, 'a line is still underlined');
  const hl = ed.locator('[data-code-editor="source"] .code-highlight');
  for (const fn of ['answer', 'menu', 'queue', 'hangup']) {
    expect(await hl.locator('.tok-api', { hasText: new RegExp(`^${fn}$`) }).count() >= 1, `${fn} is not highlighted as a flow function`);
  }
  expect(await hl.locator('.tok-keyword', { hasText: /^let$/ }).count() === 1, '"let" is not highlighted as a keyword');
  expect(await hl.locator('.tok-string', { hasText: '"main_menu"' }).count() === 1, 'the prompt is not highlighted as a string');
  expect(await hl.locator('.tok-comment', { hasText: '// end of the menu' }).count() === 1, 'the typed comment is not highlighted');
  expect(await hl.evaluate((e) => e.textContent) === `${await source.inputValue()}\n`, 'the highlighted text differs from the editor text');
  noProblems();
  pass('the menu flow validates; flow functions, keywords, strings and comments are highlighted; Tab indents');

  step('save version 1');
  await ed.getByLabel('Comment').fill('first menu');
  await ed.getByRole('button', { name: 'Save version' }).click();
  await ed.locator('[data-save-status="1"]').waitFor();
  await ed.locator('[data-flow-history] li[data-version="1"]').waitFor();
  const v1 = await api.get(`/flows/${FLOW}/versions/1`);
  expect(v1.source === typed, 'version 1 does not hold the editor text');
  expect(v1.comment === 'first menu', `version 1's comment is ${JSON.stringify(v1.comment)}`);
  expect(await ed.locator('[data-dirty]').isHidden(), '"Unsaved changes" still shows after saving');
  noProblems();
  pass('"Save version" saves version 1 with its comment; the history lists it');

  // ---- the simulator
  step('simulate');
  const sim = ed.locator('[data-simulator]');
  await sim.getByRole('button', { name: 'Start' }).click();
  await sim.locator('[data-sim-waiting="digits"]').waitFor();
  const waitingPath = await sim.locator('[data-sim-path] li').allInnerTexts();
  expect(waitingPath.length >= 2, `the path before the answer is ${JSON.stringify(waitingPath)}`);
  expect(/answer/.test(waitingPath[0]), `the path starts with ${JSON.stringify(waitingPath[0])}`);
  expect(/main_menu/.test(waitingPath.join('\n')), `the menu's prompt is not in the path: ${JSON.stringify(waitingPath)}`);
  await sim.locator('.keypad').getByRole('button', { name: '1', exact: true }).click();
  await sim.locator('[data-sim-end="queue"]').waitFor();
  const endText = (await sim.locator('[data-sim-end]').innerText()).trim();
  expect(endText.includes(QUEUE) && /priority 5/.test(endText), `the end says "${endText}"`);
  const path = await sim.locator('[data-sim-path] li').allInnerTexts();
  const last = path[path.length - 1];
  expect(new RegExp(`queue ${QUEUE}\\b.*priority 5`).test(last), `the path ends with "${last}"`);
  expect(path.some((l) => /gather.*→ 1/.test(l)), `the path does not show the key pressed: ${JSON.stringify(path)}`);
  expect(await sim.locator('[data-sim-waiting] .keypad').count() === 0, 'the keypad still shows after the end');
  summary.simulated_path = path;
  noProblems();
  pass(`the simulator: Start waits for digits, key 1 ends in "${last.replace(/\s+/g, ' ')}"`);

  // ---- tests
  step('tests pass');
  await ed.getByRole('tab', { name: 'Tests' }).click();
  const testsInput = ed.locator('textarea[data-code-input="tests"]');
  await testsInput.waitFor({ state: 'visible' });
  await testsInput.fill(testsToml(QUEUE));
  expect(await ed.locator('[data-code-editor="tests"] .tok-section', { hasText: '[[case]]' }).count() === 1, 'the TOML section is not highlighted');
  await page.getByRole('button', { name: 'Run tests' }).click();
  await page.locator('[data-test-results] [data-tests-result="passed"]').waitFor();
  const passCase = page.locator('[data-test-results] li[data-test-case="sales by DTMF"]');
  expect(await passCase.getAttribute('data-passed') === 'true', 'the case is not marked passed');
  noProblems();
  pass('a test case written in the Tests tab passes');

  step('tests fail with a diff');
  await testsInput.fill(testsToml(OTHER_QUEUE));
  await page.getByRole('button', { name: 'Run tests' }).click();
  await page.locator('[data-test-results] [data-tests-result="failed"]').waitFor();
  const failCase = page.locator('[data-test-results] li[data-test-case="sales by DTMF"]');
  expect(await failCase.getAttribute('data-passed') === 'false', 'the case is not marked failed');
  const diff = (await failCase.locator('pre[data-diff]').innerText()).trim();
  expect(diff.includes(OTHER_QUEUE) && diff.includes(QUEUE) && /queue/.test(diff), `the diff says "${diff}"`);
  summary.diff = diff;
  noProblems();
  pass(`the broken expectation fails with a diff ("${diff.split('\n')[0]}")`);

  // ---- version 2, publish, view, roll back
  step('save version 2 and publish it');
  await testsInput.fill(testsToml(QUEUE));
  await ed.getByLabel('Comment').fill('with tests');
  await ed.getByRole('button', { name: 'Save version' }).click();
  await ed.locator('[data-save-status="2"]').waitFor();
  const history = ed.locator('[data-flow-history]');
  await history.locator('li[data-version="2"]').waitFor();
  const order = await history.locator('li[data-version]').evaluateAll((els) => els.map((e) => e.dataset.version));
  expect(JSON.stringify(order) === '["2","1"]', `the history lists versions ${JSON.stringify(order)}, expected newest first`);
  expect(await history.locator('[data-published-marker]').count() === 0, 'a version shows as published before publishing');
  await history.getByRole('button', { name: 'Publish version 2' }).click();
  await history.locator('li[data-version="2"][data-published="true"] [data-published-marker]').waitFor();
  let f = await api.get(`/flows/${FLOW}`);
  expect(f.published_version === 2, `the API says version ${f.published_version} is published`);
  expect((await api.get(`/flows/${FLOW}/versions/2`)).tests.includes('sales by DTMF'), 'version 2 lacks the tests');
  await waitUntil(page, () => /Published: version 2/.test(document.querySelector('[data-flow-status]')?.textContent || ''), null, 'the header to say version 2 is published');
  noProblems();
  pass('version 2 (with its tests) is saved and published; the history marks it');

  step('view version 1');
  await history.getByRole('button', { name: 'View version 1' }).click();
  const view = page.locator('dialog[data-version-view="1"]');
  await view.waitFor({ state: 'visible' });
  const viewSrc = view.locator('textarea[data-code-input="version-source"]');
  expect(await viewSrc.inputValue() === typed, 'the viewer does not show version 1\'s text');
  expect(await viewSrc.getAttribute('readonly') !== null, 'the viewer is not read-only');
  await view.getByRole('button', { name: 'Close' }).click();
  await view.waitFor({ state: 'detached' });
  noProblems();
  pass('version 1 opens read-only');

  step('roll back to version 1');
  await history.getByRole('button', { name: 'Roll back to version 1' }).click();
  const confirm = page.getByRole('dialog', { name: 'Roll back to version 1?' });
  await confirm.waitFor({ state: 'visible' });
  await confirm.getByRole('button', { name: 'Roll back to version 1' }).click();
  await history.locator('li[data-version="1"][data-published="true"] [data-published-marker]').waitFor();
  expect(await history.locator('li[data-version="2"] [data-published-marker]').count() === 0, 'version 2 still shows as published');
  f = await api.get(`/flows/${FLOW}`);
  expect(f.published_version === 1, `after the roll back the API says version ${f.published_version} is published`);
  expect(f.versions.length === 2 && f.versions[0].version === 2, `the API lists ${JSON.stringify(f.versions.map((v) => v.version))}`);
  noProblems();
  pass('rolling back (confirmed) publishes version 1 again; the history follows');

  step('the list');
  await ed.getByRole('link', { name: 'Flows' }).first().click();
  const list2 = await waitForPage(page, '/supervisor/flows', 'Flows');
  const row = list2.locator(`tr[data-flow="${FLOW}"]`);
  await row.waitFor({ state: 'visible' });
  expect(await row.locator('[data-published="1"]').count() === 1, `the list row says "${await row.innerText()}"`);
  expect(/v2/.test(await row.innerText()), `the list row does not show the latest version: "${await row.innerText()}"`);
  noProblems();
  pass('the list shows e2e-menu with version 1 published and version 2 the latest');

  step('flow settings: supervisors read them');
  const supSettings = list2.locator('form[data-flow-settings]');
  await supSettings.waitFor({ state: 'visible' });
  expect(await supSettings.getByLabel('Fallback queue').getAttribute('readonly') !== null, 'a supervisor can edit the flow settings (PUT is for admins)');
  expect(await supSettings.locator('[data-settings-readonly]').count() === 1, 'the supervisor is not told only admins change the settings');
  noProblems();
  pass('the flow settings show read-only to a supervisor');
  await context.close();

  step('flow settings: an admin saves them');
  const adm = await newPage('admin');
  await signIn(adm.page, 'admin');
  const adminApi = await apiAs(adm.page);
  await adm.page.evaluate(() => { location.hash = '#/supervisor/flows'; });
  const admList = await waitForPage(adm.page, '/supervisor/flows', 'Flows');
  await admList.locator(`tr[data-flow="${FLOW}"]`).waitFor({ state: 'visible' });
  const settings = admList.locator('form[data-flow-settings]');
  await settings.getByLabel('Fallback queue').fill(OTHER_QUEUE);
  await settings.getByLabel('Hosts flows may call').fill('api.example.com\ncrm.example.com');
  await settings.getByRole('button', { name: 'Save settings' }).click();
  await adm.page.locator('#toasts', { hasText: 'Flow settings saved.' }).waitFor();
  const fs = await adminApi.get('/flow-settings');
  expect(fs.fallback_queue === OTHER_QUEUE, `the fallback queue is ${JSON.stringify(fs.fallback_queue)}`);
  expect(JSON.stringify(fs.http_allowed_hosts) === '["api.example.com","crm.example.com"]', `the hosts are ${JSON.stringify(fs.http_allowed_hosts)}`);
  noProblems();
  pass('an admin saves the flow settings (fallback queue, allowed hosts)');
  await adm.context.close();
}

// ---- main --------------------------------------------------------------------------

await runScript(run);
