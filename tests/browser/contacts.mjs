#!/usr/bin/env node
// Drives the contacts pages of the Switchboard console in a real Chromium.
//
//   node contacts.mjs BASE_URL        e.g. node contacts.mjs http://localhost:8080
//
// Uses Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) through
// playwright-core, like console.mjs. The server must serve the demo tenant
// (workspace `demo`, password `switchboard-demo`) with no contacts yet.
//
// A marketer imports a generated CSV (a few thousand rows, some invalid)
// through the console: upload with setInputFiles, the guessed column
// mapping, the live progress bar up to completion, the failed rows as a
// downloaded CSV (it must hold exactly the invalid rows). Then they build a
// segment (an error is pointed at its line and column; the live count and
// the saved segment's count must equal the API's), put its first contacts on
// a new list, and export the segment (the CSV must hold exactly its
// contacts). An agent signs in, finds a contact by a phone number typed in
// another format, opens the card (name and phone shown) and records an SMS
// opt-in. Any console error, uncaught exception or CSP violation fails the
// run.
//
// Prints one JSON summary line on stdout; exits 0 on success, 1 on a failed
// check, 2 on bad usage, 3 on the overall timeout.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  summary, setup, step, pass, expect, noProblems, newPage, signIn, waitForPage, apiAs, runScript,
} from './common.mjs';

let expectInvalidPreview = false; // while true, a 422 from POST /segments/preview is expected

setup({
  contextOptions: { viewport: { width: 1280, height: 900 }, acceptDownloads: true },
  // This test provokes a 422 from the segment preview on purpose (a bad expression).
  expectedConsoleError: (text, url) => expectInvalidPreview && /status of 422/.test(text) && /\/api\/v1\/segments\/preview$/.test(url),
});

// ---- the file to import -----------------------------------------------------------

const ROWS = 2500;
const isInvalid = (i) => i % 125 === 0;                 // 20 rows with a bad phone and a bad email
const plan = (i) => ['gold', 'silver', 'bronze'][i % 3];
const isVip = (i) => i % 4 === 0;
const AGENT_ROW = 7;                                    // the contact the agent looks up
const AGENT_NAME = 'Grace Hopper';
const AGENT_E164 = '+12015550007';
const AGENT_QUERY = '201.555.0007';                     // another format than the file's

function csvRows() {
  const lines = ['Customer ID,First Name,Last Name,Mobile,Email,Plan,Tags'];
  const invalid = [];
  const goldVip = [];
  for (let i = 1; i <= ROWS; i += 1) {
    const n = String(i).padStart(4, '0');
    const tags = isVip(i) ? 'vip;newsletter' : 'newsletter';
    if (isInvalid(i)) {
      lines.push(`BAD-${n},Broken,Row ${n},not-a-phone,broken${n}@,${plan(i)},${tags}`);
      invalid.push(`BAD-${n}`);
      continue;
    }
    const [first, last] = i === AGENT_ROW ? AGENT_NAME.split(' ') : [`First${n}`, `Last${n}`];
    lines.push(`C-${n},${first},${last},(201) 555-${n},person${n}@example.com,${plan(i)},${tags}`);
    if (plan(i) === 'gold' && isVip(i)) goldVip.push(`C-${n}`);
  }
  return { text: `${lines.join('\n')}\n`, invalid, goldVip };
}

// ---- helpers ------------------------------------------------------------------------

async function downloadText(page, trigger) {
  const [download] = await Promise.all([page.waitForEvent('download'), trigger.click()]);
  const failure = await download.failure();
  expect(!failure, `the download failed: ${failure}`);
  return { name: download.suggestedFilename(), text: readFileSync(await download.path(), 'utf8') };
}

/** CSV lines without the header (the test's data has no quoted newlines). */
function dataLines(text) {
  return text.split(/\r?\n/).filter((l) => l.length > 0).slice(1);
}

// ---- the marketer -----------------------------------------------------------------

async function marketer(csvPath, file) {
  step('marketer: sign in');
  const { context, page } = await newPage('marketer');
  await signIn(page, 'marketer', { csp: true });
  const api = await apiAs(page);
  // A custom attribute, so that the "Plan" column is guessed as attributes.plan.
  await api.post('/contact-attributes', { key: 'plan', kind: 'string', label: 'Plan' });

  step('marketer: contacts page');
  await page.locator('[data-nav="contacts"]').click();
  await waitForPage(page, '/contacts', 'Contacts');
  for (const sub of ['/contacts', '/contacts/lists', '/contacts/segments', '/contacts/import']) {
    expect(await page.locator(`[data-subnav="${sub}"]`).count() === 1, `the Contacts section has no ${sub} link`);
  }
  pass('marketer: the Contacts section has All contacts, Lists, Segments and Import');

  step('marketer: upload');
  await page.locator('[data-subnav="/contacts/import"]').click();
  await waitForPage(page, '/contacts/import', 'Import contacts');
  expect(await page.locator('[data-dropzone]').isVisible(), 'there is no drop zone');
  await page.locator('[data-file-input]').setInputFiles(csvPath);
  await page.locator('[data-mapping-summary]').waitFor({ state: 'visible' });
  const guessed = {
    'Customer ID': 'external_id', 'First Name': 'first_name', 'Last Name': 'last_name', Mobile: 'phone', Email: 'email', Plan: 'attributes.plan', Tags: 'tags',
  };
  for (const [column, fieldName] of Object.entries(guessed)) {
    const value = await page.locator(`select[data-column="${column}"]`).inputValue();
    expect(value === fieldName, `column "${column}" is mapped to "${value}", expected "${fieldName}"`);
  }
  pass('marketer: the upload is previewed and every column is guessed right');

  step('marketer: import progress');
  await page.locator('[data-action="start-import"]').click();
  const box = page.locator('[data-import-job]');
  await box.waitFor({ state: 'visible' });
  const jobId = await box.getAttribute('data-import-job');
  // Watch the progress bar until the job is over.
  const seen = [];
  const deadline = Date.now() + 60_000;
  let last;
  for (;;) {
    last = await box.evaluate((el) => {
      const bar = el.querySelector('progress[data-import-progress]');
      return {
        status: el.dataset.importStatus,
        done: Number(el.dataset.done || 0),
        total: el.dataset.total === '' ? null : Number(el.dataset.total),
        failed: el.dataset.failed === '' ? null : Number(el.dataset.failed),
        value: bar.hasAttribute('value') ? bar.value : null,
        max: bar.hasAttribute('max') ? bar.max : null,
        numbers: el.querySelector('[data-import-numbers]').textContent,
      };
    });
    const key = `${last.status}:${last.done}/${last.total}`;
    if (!seen.length || seen[seen.length - 1] !== key) seen.push(key);
    if (['succeeded', 'failed', 'cancelled'].includes(last.status)) break;
    expect(Date.now() < deadline, `the import did not finish within 60 s (last: ${JSON.stringify(last)})`);
    await page.waitForTimeout(100);
  }
  summary.progress_seen = seen;
  expect(last.status === 'succeeded', `the import ended ${last.status}: ${await box.innerText()}`);
  expect(last.total === ROWS && last.done === ROWS, `the progress says ${last.done} of ${last.total}, expected ${ROWS} of ${ROWS}`);
  expect(last.value === last.max && last.max === ROWS, `the progress bar stopped at ${last.value} of ${last.max}`);
  expect(last.failed === file.invalid.length, `the page shows ${last.failed} failed rows, expected ${file.invalid.length}`);
  expect(/100%/.test(last.numbers), `the progress text does not say 100%: "${last.numbers}"`);
  expect(await box.locator('progress.is-done').count() === 1, 'the finished progress bar is not marked done');
  expect(await page.locator('[data-import-announcer][role="status"]').count() === 1, 'the progress has no aria-live status region');
  const failedStat = (await box.locator('[data-stat="failed"] .stat-value').innerText()).trim();
  expect(failedStat === String(file.invalid.length), `the Failed figure shows "${failedStat}"`);
  const job = await api.get(`/jobs/${jobId}`);
  expect(job.result && job.result.failed === file.invalid.length && job.result.created === ROWS - file.invalid.length,
    `the job's result is ${JSON.stringify(job.result)}`);
  noProblems();
  pass(`marketer: the progress bar reaches ${ROWS} of ${ROWS} rows with ${file.invalid.length} failed (seen: ${seen.length} states)`);

  step('marketer: failed rows download');
  const errors = await downloadText(page, box.locator('[data-action="download-errors"]'));
  const errLines = dataLines(errors.text);
  expect(/^row,errors,original/.test(errors.text), `the error CSV starts with "${errors.text.slice(0, 40)}"`);
  expect(errLines.length === file.invalid.length, `the error CSV has ${errLines.length} rows, expected ${file.invalid.length}`);
  for (const id of file.invalid) {
    expect(errLines.some((l) => l.includes(id)), `the error CSV lacks the invalid row ${id}`);
  }
  expect(!errLines.some((l) => /C-\d{4}/.test(l)), 'the error CSV holds a valid row');
  expect(errLines.every((l) => /phone|email/.test(l)), 'an error row does not say what was wrong');
  // The recent imports list has this one.
  await page.locator(`tr[data-job="${jobId}"]`).waitFor({ state: 'visible' });
  noProblems();
  pass(`marketer: the downloaded error CSV (${errors.name}) holds exactly the ${file.invalid.length} invalid rows`);

  step('marketer: segment error');
  await page.locator('[data-subnav="/contacts/segments"]').click();
  await waitForPage(page, '/contacts/segments', 'Segments');
  const editor = page.getByLabel('Expression', { exact: true });
  expectInvalidPreview = true;
  await editor.fill('tags has "vip" and\nplan = "gold"');
  const exprError = page.locator('[data-expr-error]');
  await exprError.waitFor({ state: 'visible' });
  const errText = await exprError.innerText();
  expect(/line 2, column 1/.test(errText), `the error does not point at line 2, column 1: "${errText}"`);
  expect(await exprError.locator('pre.expr-pointer').getAttribute('data-column') === '1', 'the pointer is not at column 1');
  expect(await editor.getAttribute('aria-invalid') === 'true', 'the expression is not marked invalid');
  expect((await page.locator('.expr-backdrop mark').innerText()) === 'p', 'the error is not highlighted in the editor');
  noProblems();
  pass('marketer: a bad expression is pointed at its line and column');

  step('marketer: segment count');
  const expression = 'attributes.plan = "gold" and tags has "vip"';
  await editor.fill('');
  // Build it with the field reference and the keyboard.
  await page.locator('[data-insert="attributes.plan"]').click();
  await editor.pressSequentially(' = "gold" and ', { delay: 5 });
  await page.locator('[data-insert="tags"]').click();
  await editor.pressSequentially(' has "vip"', { delay: 5 });
  expect(await editor.inputValue() === expression, `the editor holds "${await editor.inputValue()}"`);
  const live = page.locator('[data-live-count]');
  await page.waitForFunction((e) => {
    const el = document.querySelector('[data-live-count]');
    return el && el.dataset.state === 'ok' && el.dataset.expression === e;
  }, expression);
  // Half-typed expressions may have been previewed (and refused) on the way.
  expectInvalidPreview = false;
  const liveCount = Number(await live.getAttribute('data-count'));
  const apiPreview = await api.post('/segments/preview', { expression });
  expect(liveCount === apiPreview.count, `the live count is ${liveCount}, the API says ${apiPreview.count}`);
  expect(liveCount === file.goldVip.length, `the live count is ${liveCount}, the file has ${file.goldVip.length} gold VIPs`);
  expect(await live.getAttribute('aria-live') === 'polite', 'the live count is not an aria-live region');

  await page.getByRole('form', { name: 'Segment builder' }).getByLabel('Name').fill('Gold VIPs');
  await page.getByRole('button', { name: 'Save segment' }).click();
  const row = page.locator('tr[data-segment]', { hasText: 'Gold VIPs' });
  await row.waitFor({ state: 'visible' });
  const segmentId = await row.getAttribute('data-segment');
  await row.locator('[data-segment-count]:not([data-segment-count=""])').waitFor();
  const savedCount = Number(await row.locator('[data-segment-count]').getAttribute('data-segment-count'));
  const apiCount = (await api.get(`/segments/${segmentId}/count`)).count;
  expect(savedCount === apiCount && apiCount === liveCount, `the saved segment shows ${savedCount}, the API counts ${apiCount}`);
  noProblems();
  pass(`marketer: the segment counts ${liveCount} contacts live and saved, as the API does`);

  step('marketer: a list from the segment');
  await page.locator('[data-subnav="/contacts/lists"]').click();
  await waitForPage(page, '/contacts/lists', 'Lists');
  await page.getByRole('button', { name: 'New list' }).click();
  const listForm = page.getByRole('form', { name: 'New list' });
  await listForm.getByLabel('Name').fill('Gold VIP callbacks');
  await listForm.getByRole('button', { name: 'Create list' }).click();
  const listRow = page.locator('tr[data-list]', { hasText: 'Gold VIP callbacks' });
  await listRow.waitFor({ state: 'visible' });

  await page.locator('[data-subnav="/contacts"]').click();
  await waitForPage(page, '/contacts', 'Contacts');
  await page.locator('select[data-filter="segment_id"]').selectOption(segmentId);
  await page.waitForFunction((n) => document.querySelector('[data-count]')?.dataset.count === String(n), liveCount);
  // The count and the rows load apart: wait for the filtered rows too.
  await page.locator('.table-wrap[aria-busy="false"]:has(tr[data-contact])').waitFor();
  const shown = await page.locator('tr[data-contact]').count();
  expect(shown === Math.min(50, liveCount), `the filtered table shows ${shown} rows`);
  await page.getByLabel('Select every contact shown').check();
  const bar = page.getByRole('region', { name: 'Selected contacts' });
  await bar.getByRole('combobox').selectOption({ label: 'Gold VIP callbacks' });
  await bar.getByRole('button', { name: 'Add to list' }).click();
  await page.locator('.toast', { hasText: 'added to Gold VIP callbacks' }).waitFor();
  const lists = await api.get('/lists');
  const made = lists.items.find((l) => l.name === 'Gold VIP callbacks');
  expect(made && made.members === shown, `the list has ${made && made.members} members, expected ${shown}`);
  noProblems();
  pass(`marketer: a new list gets the ${shown} selected contacts`);

  step('marketer: export');
  const exportLink = page.locator('[data-action="export"]');
  expect((await exportLink.getAttribute('href')).includes(`segment_id=${segmentId}`), 'the export link does not carry the segment filter');
  const exported = await downloadText(page, exportLink);
  const header = exported.text.split(/\r?\n/)[0];
  expect(header.startsWith('id,external_id,first_name,last_name,phones,emails,tags'), `the export header is "${header}"`);
  const expLines = dataLines(exported.text);
  expect(expLines.length === liveCount, `the export has ${expLines.length} contacts, the segment ${liveCount}`);
  const ids = new Set(expLines.map((l) => l.split(',')[1]));
  expect(file.goldVip.every((id) => ids.has(id)), 'the export lacks a contact of the segment');
  noProblems();
  pass(`marketer: the export (${exported.name}) holds exactly the segment's ${liveCount} contacts`);
  await context.close();
}

// ---- the agent ----------------------------------------------------------------------

async function agent() {
  step('agent: sign in');
  const { context, page } = await newPage('agent');
  await signIn(page, 'agent', { csp: true });
  const nav = (await page.locator('[data-nav]:visible').evaluateAll((els) => els.map((e) => e.getAttribute('data-nav')))).sort();
  expect(JSON.stringify(nav) === JSON.stringify(['agent', 'contacts']), `the agent's navigation is [${nav}]`);
  expect(await page.locator('[data-subnav^="/contacts"]').count() === 0, 'the agent sees the back-office contacts pages');

  step('agent: search');
  await page.locator('[data-nav="contacts"]').click();
  const list = await waitForPage(page, '/contacts', 'Contacts');
  expect(await list.getByRole('button', { name: 'New contact' }).count() === 0, 'the agent can create contacts');
  expect(await list.locator('[data-action="export"]').count() === 0, 'the agent can export');
  expect(await list.locator('input[type="checkbox"]').count() === 0, 'the agent can select contacts for lists');
  await list.getByRole('searchbox', { name: 'Search' }).fill(AGENT_QUERY);
  await page.waitForFunction(() => document.querySelectorAll('tr[data-contact]').length === 1);
  const hit = page.locator('tr[data-contact]');
  expect((await hit.innerText()).includes(AGENT_NAME), `searching ${AGENT_QUERY} found "${(await hit.innerText()).slice(0, 80)}"`);
  pass(`agent: searching "${AGENT_QUERY}" finds ${AGENT_NAME}`);

  step('agent: contact card');
  await hit.locator(`[data-phone="${AGENT_E164}"]`).click(); // a click anywhere on the row opens the card
  const cardPage = await waitForPage(page, '/contacts/card', AGENT_NAME);
  expect((await cardPage.locator('[data-primary-phone]').innerText()).trim() === AGENT_E164, 'the card header does not show the phone');
  await cardPage.locator(`[data-section="details"] [data-phone="${AGENT_E164}"]`).waitFor({ state: 'visible' });
  for (const ch of ['voice', 'sms', 'email']) {
    await cardPage.locator(`.consent-row[data-channel="${ch}"] [data-allowed]`).waitFor({ state: 'visible' });
  }
  expect(await cardPage.getByRole('button', { name: 'Edit' }).count() === 0, 'the agent can edit the contact');
  expect(await cardPage.getByRole('button', { name: 'Delete' }).count() === 0, 'the agent can delete the contact');
  pass(`agent: the card shows ${AGENT_NAME}, ${AGENT_E164} and the can-contact answer per channel`);

  step('agent: opt-in');
  await cardPage.locator('[data-consent-action="sms:opted_in"]').click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Note').fill('Asked for texts on the phone');
  await dialog.getByRole('button', { name: 'Record opt-in' }).click();
  const event = cardPage.locator('[data-section="consent-history"] [data-event="sms:opted_in"]');
  await event.waitFor({ state: 'visible' });
  expect(/an agent/.test(await event.innerText()), `the history does not say an agent recorded it: "${await event.innerText()}"`);
  // The history and the consent rows re-render separately: wait for the row.
  await cardPage.locator('.consent-row[data-channel="sms"] .consent-head', { hasText: /opted in/i })
    .waitFor({ state: 'visible' })
    .catch(() => expect(false, 'the SMS consent is not shown as opted in'));

  step('agent: back office is closed');
  await page.evaluate(() => { location.hash = '#/contacts/import'; });
  await waitForPage(page, '/agent', 'Agent desk');
  noProblems();
  pass('agent: records an SMS opt-in (kept as an agent action) and cannot reach the import page');
  await context.close();
}

// ---- main --------------------------------------------------------------------------

await runScript(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-contacts-'));
  try {
    const file = csvRows();
    const csvPath = join(dir, 'customers.csv');
    writeFileSync(csvPath, file.text);
    summary.rows = ROWS;
    summary.invalid_rows = file.invalid.length;
    await marketer(csvPath, file);
    await agent();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
