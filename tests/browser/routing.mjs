#!/usr/bin/env node
// Drives the routing pages of the Switchboard console in a real Chromium.
//
//   node routing.mjs BASE_URL        e.g. node routing.mjs http://localhost:8080
//
// Uses Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) through
// playwright-core, like console.mjs. The server must serve the demo tenant
// (workspace `demo`, password `switchboard-demo`): its supervisor and its
// agent Alex (agent@example.com) take part.
//
// The supervisor configures routing in the console's forms (not the API): a
// new skill, a voice queue requiring it (a level out of range first, whose
// error must show next to the level field), and gives Alex the skill. Alex
// signs in in a second browser context and goes available. The test routes
// a call to the queue through the API; Alex sees the offer ring and accepts
// it; the supervisor's live view shows Alex busy and the queue's figures
// change without a reload; the "why" drawer names Alex as the winner; Alex
// hangs up and ends wrap-up; the live view shows one answered. Any console
// error, uncaught exception or CSP violation fails the run.
//
// Prints one JSON summary line on stdout; exits 0 on success, 1 on a failed
// check, 2 on bad usage, 3 on the overall timeout.

import {
  summary, setup, step, pass, expect, noProblems, newPage, signIn, waitForPage, apiAs, waitUntil, runScript,
} from './common.mjs';

const SKILL = 'Mandarin';
const QUEUE = 'Mandarin line';
const AGENT_NAME = 'Alex Agent';

let expectInvalidQueue = false; // while true, a 422 from POST /queues is expected

setup({
  // This test provokes a 422 from POST /queues on purpose (a level out of range).
  expectedConsoleError: (text, url) => expectInvalidQueue && /status of 422/.test(text) && /\/api\/v1\/queues$/.test(url),
});

// ---- the supervisor configures routing -------------------------------------------------

async function configure(page) {
  step('supervisor: sign in');
  await signIn(page, 'supervisor');
  const api = await apiAs(page);

  step('supervisor: navigation');
  await page.locator('[data-nav="supervisor"]').click();
  await waitForPage(page, '/supervisor', 'Supervisor');
  for (const sub of ['/supervisor', '/supervisor/queues', '/supervisor/skills', '/supervisor/agents']) {
    expect(await page.locator(`[data-subnav="${sub}"]`).count() === 1, `the Supervisor section has no ${sub} link`);
  }
  pass('supervisor: the Supervisor section has Live view, Queues, Skills and Agents');

  step('supervisor: create a skill');
  await page.locator('[data-subnav="/supervisor/skills"]').click();
  const skillsPage = await waitForPage(page, '/supervisor/skills', 'Skills');
  const skillForm = page.getByRole('form', { name: 'New skill' });
  await skillForm.getByLabel('Name').fill(SKILL);
  await skillForm.getByLabel('Description').fill('Speaks Mandarin with customers');
  await skillForm.getByRole('button', { name: 'Create skill' }).click();
  const skillRow = skillsPage.locator('tr[data-skill]', { hasText: SKILL });
  await skillRow.waitFor({ state: 'visible' });
  const skillId = await skillRow.getAttribute('data-skill');
  expect((await api.get(`/skills/${skillId}`)).name === SKILL, 'the API does not have the new skill');
  noProblems();
  pass(`supervisor: creates the skill "${SKILL}" in the form`);

  step('supervisor: a queue with a bad level');
  await page.locator('[data-subnav="/supervisor/queues"]').click();
  const queuesPage = await waitForPage(page, '/supervisor/queues', 'Queues');
  await queuesPage.getByRole('button', { name: 'New queue' }).click();
  const qForm = page.getByRole('form', { name: 'New queue' });
  await qForm.waitFor({ state: 'visible' });
  await qForm.getByLabel(/^Name/).fill(QUEUE);
  await qForm.getByLabel('Strategy').selectOption('longest_idle');
  for (const ch of ['Chat', 'SMS', 'Email']) await qForm.getByRole('checkbox', { name: ch, exact: true }).uncheck();
  await qForm.getByRole('button', { name: '+ Add required skill' }).click();
  await qForm.getByLabel('Skill', { exact: true }).selectOption({ label: SKILL });
  const level = qForm.getByLabel('Minimum level (1-5)');
  await level.fill('7');
  expectInvalidQueue = true;
  await qForm.getByRole('button', { name: 'Create queue' }).click();
  await waitUntil(page, () => document.querySelector('[data-path="required_skills[0].level"]')?.getAttribute('aria-invalid') === 'true',
    null, 'the level field to be marked invalid');
  const levelError = await page.evaluate(() => {
    const input = document.querySelector('[data-path="required_skills[0].level"]');
    return document.getElementById(`${input.id}-error`)?.textContent || '';
  });
  expect(/level|between|1/.test(levelError), `the error next to the level says "${levelError}"`);
  const formAlert = (await qForm.locator('.form-error').innerText()).trim();
  expect(formAlert.length > 0, 'the form has no summary of the error');
  expectInvalidQueue = false;
  summary.level_error = levelError;
  noProblems();
  pass(`supervisor: a level of 7 is refused next to the field ("${levelError}")`);

  step('supervisor: create the queue');
  await level.fill('3');
  await qForm.getByRole('button', { name: 'Create queue' }).click();
  const queueRow = queuesPage.locator('tr[data-queue]', { hasText: QUEUE });
  await queueRow.waitFor({ state: 'visible' });
  const queueId = await queueRow.getAttribute('data-queue');
  const q = await api.get(`/queues/${queueId}`);
  expect(q.required_skills.length === 1 && q.required_skills[0].skill_id === skillId && q.required_skills[0].level === 3,
    `the queue requires ${JSON.stringify(q.required_skills)}`);
  expect(JSON.stringify((q.routing || {}).channels) === '["voice"]', `the queue takes ${JSON.stringify((q.routing || {}).channels)}`);
  // Nobody has the skill yet: the API says voice is unservable, and so does the page.
  if ((q.unservable || []).length) {
    await page.locator('[data-unservable-warning]').waitFor({ state: 'visible' });
    pass('supervisor: the page warns that nobody can serve the new queue yet');
    await page.getByRole('button', { name: 'Close' }).click();
  }
  noProblems();
  pass(`supervisor: creates the queue "${QUEUE}" requiring ${SKILL} ≥ 3 on voice`);

  step('supervisor: give Alex the skill');
  await page.locator('[data-subnav="/supervisor/agents"]').click();
  const agentsPage = await waitForPage(page, '/supervisor/agents', 'Agents');
  const alexRow = agentsPage.locator('tr[data-agent]', { hasText: AGENT_NAME });
  await alexRow.waitFor({ state: 'visible' });
  const agentId = await alexRow.getAttribute('data-agent');
  await alexRow.getByRole('button', { name: `Edit ${AGENT_NAME}` }).click();
  const aForm = page.getByRole('form', { name: 'Edit agent' });
  await aForm.waitFor({ state: 'visible' });
  await aForm.getByRole('button', { name: '+ Add skill' }).click();
  await aForm.locator('.skill-row').last().getByLabel('Skill', { exact: true }).selectOption({ label: SKILL });
  await aForm.locator('.skill-row').last().getByLabel('Level (1-5)').fill('4');
  await aForm.getByRole('button', { name: 'Save agent' }).click();
  await aForm.waitFor({ state: 'detached' });
  await alexRow.locator('.chip', { hasText: SKILL }).waitFor({ state: 'visible' });
  const a = await api.get(`/agents/${agentId}`);
  expect(a.skills.some((s) => s.skill_id === skillId && s.level === 4), `Alex's skills are ${JSON.stringify(a.skills)}`);
  noProblems();
  pass(`supervisor: gives ${AGENT_NAME} ${SKILL} at level 4 in the agent form`);

  step('supervisor: live view');
  await page.locator('[data-subnav="/supervisor"]').click();
  await waitForPage(page, '/supervisor', 'Supervisor');
  const card = page.locator(`[data-queue="${queueId}"]`);
  await card.waitFor({ state: 'visible' });
  await page.locator(`tr[data-agent="${agentId}"]`).waitFor({ state: 'visible' });
  await page.locator('[data-chart="waiting"]').waitFor({ state: 'visible' });
  await page.locator('[data-chart="agent-status"]').waitFor({ state: 'visible' });
  await waitUntil(page, (id) => !document.querySelector(`[data-queue="${id}"] [data-unservable]`), queueId, 'the queue to be servable once Alex has the skill');
  // Marks the document: a reload would drop it.
  await page.evaluate(() => { window.routingTestMark = 'same document'; });
  noProblems();
  pass('supervisor: the live view shows the queue card, the agents, and both charts');
  return { api, skillId, queueId, agentId };
}

// ---- the agent and the call ---------------------------------------------------------------

async function run() {
  const sup = await newPage('supervisor');
  const ids = await configure(sup.page);
  const { api, queueId, agentId } = ids;

  step('agent: sign in');
  const ag = await newPage('agent');
  await signIn(ag.page, 'agent');
  const desk = await waitForPage(ag.page, '/agent', 'Agent desk');
  await ag.page.locator('.page[data-desk="ready"]').waitFor();

  step('agent: go available');
  const available = desk.getByRole('radio', { name: /Available/ });
  await desk.locator('label.presence-available').click();
  expect(await available.isChecked(), 'the Available option is not checked after clicking it');
  await ag.page.locator('.page[data-presence="available"][data-status="idle"]').waitFor();
  noProblems();
  pass('agent: goes available on the desk');

  step('supervisor: sees Alex idle');
  await waitUntil(sup.page, (id) => document.querySelector(`tr[data-agent="${id}"]`)?.dataset.status === 'idle', agentId, 'Alex to show idle in the live view');

  step('a call is routed');
  const created = await api.post('/interactions', { channel: 'voice', direction: 'inbound', customer_address: '+12015550188', subject: 'Routing browser test' });
  const call = created.interaction || created;
  expect(call && call.id, `POST /interactions answered ${JSON.stringify(created).slice(0, 200)}`);
  const routed = await api.post(`/interactions/${call.id}/route`, { queue_id: queueId });
  summary.route_answer = routed;

  step('agent: the offer rings');
  const offer = ag.page.locator(`[data-offer="${call.id}"]`);
  await offer.waitFor({ state: 'visible' });
  const countdown = (await offer.locator('.countdown').innerText()).trim();
  expect(/left|ringing/.test(countdown), `the offer shows "${countdown}" instead of a countdown`);
  await offer.getByRole('button', { name: 'Accept' }).click();
  const connected = ag.page.locator(`[data-connected="${call.id}"]`);
  await connected.waitFor({ state: 'visible' });
  await offer.waitFor({ state: 'detached' });
  noProblems();
  pass(`agent: the offer rings (${countdown}) and is accepted`);

  step('supervisor: live view shows it without a reload');
  await waitUntil(sup.page, (id) => document.querySelector(`tr[data-agent="${id}"]`)?.dataset.status === 'busy', agentId, 'Alex to show busy in the live view');
  await waitUntil(sup.page, (id) => {
    const c = document.querySelector(`[data-queue="${id}"]`);
    return c && c.dataset.waiting === '0' && Number(c.dataset.answered) >= 1;
  }, queueId, 'the queue card to count the answered call');
  expect(await sup.page.evaluate(() => window.routingTestMark) === 'same document', 'the live view was reloaded');
  summary.metrics_source = await sup.page.locator('[data-metrics-source]').getAttribute('data-metrics-source');
  noProblems();
  pass(`supervisor: Alex shows busy and the queue counts the answer, without a reload (updates: ${summary.metrics_source})`);

  step('supervisor: why drawer');
  const why = sup.page.locator(`[data-why-open="${call.id}"]`);
  await why.waitFor({ state: 'visible' });
  await why.click();
  const drawer = sup.page.locator(`dialog[data-why="${call.id}"]`);
  await drawer.locator('[data-why-body][data-loaded="true"]').waitFor();
  const winner = drawer.locator(`tr[data-winner="true"][data-candidate="${agentId}"]`);
  await winner.waitFor({ state: 'visible' });
  expect((await winner.innerText()).includes(AGENT_NAME), `the winner row says "${await winner.innerText()}"`);
  const skillsInForce = await drawer.locator('[data-why-skills]').first().innerText();
  expect(skillsInForce.includes(SKILL), `the skills in force are "${skillsInForce}"`);
  await drawer.getByRole('button', { name: 'Close' }).click();
  await drawer.waitFor({ state: 'detached' });
  noProblems();
  pass(`supervisor: the why drawer shows ${AGENT_NAME} as the winner with ${SKILL} in force`);

  step('agent: hang up and wrap up');
  await connected.getByRole('button', { name: 'Hang up' }).click();
  const wrap = ag.page.locator(`[data-wrap-up="${call.id}"]`);
  await wrap.waitFor({ state: 'visible' });
  await wrap.getByRole('button', { name: 'End wrap-up' }).click();
  await wrap.waitFor({ state: 'detached' });
  await ag.page.locator('.page[data-status="idle"]').waitFor();
  noProblems();
  pass('agent: hangs up, then ends wrap-up and is idle again');

  step('supervisor: answered 1');
  await waitUntil(sup.page, (id) => document.querySelector(`tr[data-agent="${id}"]`)?.dataset.status === 'idle', agentId, 'Alex to show idle again');
  await waitUntil(sup.page, (id) => {
    const c = document.querySelector(`[data-queue="${id}"]`);
    return c && c.dataset.answered === '1' && c.querySelector('[data-figure="answered"] dd')?.textContent.trim() === '1';
  }, queueId, 'the queue card to show 1 answered');
  expect(await sup.page.evaluate(() => window.routingTestMark) === 'same document', 'the live view was reloaded');
  noProblems();
  pass('supervisor: the live view shows 1 answered');
  await ag.context.close();
  await sup.context.close();
}

// ---- main --------------------------------------------------------------------------

await runScript(run);
