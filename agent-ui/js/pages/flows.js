// Supervisor › Flows: the IVR flows (Rhai scripts) that answer calls and
// chats. Without `?name=` the list of flows, "New flow" and the flow
// settings (fallback queue, apology prompt, hosts flows may call). With
// `?name=<flow>` the editor: the script and its tests (TOML) in small
// highlighting editors, validated while typing (diagnostics listed and marked
// inline), saved as versions; an interactive simulator (digits, speech,
// chat replies, silence, hang-up) showing the path taken; the flow's tests
// run against the editor's text; the version history, to view, publish and
// roll back.

import { h, clear, nextId, humanize, timeEl, shortId } from '/js/dom.js';
import { api, get, post, getAll, describeError, ApiError } from '/js/api.js';
import {
  pageHeader, card, table, toast, announce, confirmDialog, formDialog, field, errorRegion, showErrors, clearErrors,
  busy, emptyState, icon, loading,
} from '/js/ui.js';
import { createCodeEditor, countLabel } from '/js/flow-editor.js';

const NAME_RE = /^[a-z0-9_-]{1,64}$/;
const VALIDATE_DELAY_MS = 500;
const BASE = '/supervisor/flows';

const STARTER = `// Runs for each call (or chat). Prompts are played by name; queues are named
// as on the Queues page.
answer();
play("welcome");
hangup();
`;

const TESTS_PLACEHOLDER = `# Test cases for this flow, for example:
#
# [[case]]
# name = "sales by DTMF"
# inputs = ["digits:1"]
# [case.expect]
# prompts = ["main_menu"]
# queue = "Sales"
# end = "queue"`;

const enc = encodeURIComponent;

export default async function flowsPage(root, ctx) {
  const name = ctx.params.get('name');
  if (name !== null) return flowEditor(root, ctx, name);
  return flowList(root, ctx);
}

// ==== the list ==============================================================================

async function flowList(root, ctx) {
  const newBtn = h('button', { type: 'button', class: 'btn btn-primary', onclick: () => newFlow() }, 'New flow');
  root.append(pageHeader('Flows', 'IVR flows: scripts that answer calls and chats, ask callers what they need and send them to a queue.', newBtn));

  const data = await get('/flows');
  const flows = (data && data.items) || [];
  flows.sort((a, b) => a.name.localeCompare(b.name));

  const list = table({
    caption: 'Flows',
    empty: h('span', null, 'No flows yet. Create one with “New flow”.'),
    columns: [
      {
        label: 'Flow',
        cell: (f) => [
          h('a', { class: 'primary-cell row-link', href: `#${BASE}?name=${enc(f.name)}` }, f.name),
          f.description ? h('span', { class: 'sub' }, f.description) : null,
        ],
      },
      {
        label: 'Published',
        cell: (f) => (f.published_version === null || f.published_version === undefined
          ? h('span', { class: 'muted', 'data-published': 'none' }, 'Not published')
          : h('span', { class: 'badge badge-success', 'data-published': String(f.published_version) }, `Version ${f.published_version}`)),
      },
      { label: 'Latest', numeric: true, cell: (f) => `v${f.latest_version}` },
      { label: 'Updated', cell: (f) => timeEl(f.updated_at, true) },
      {
        label: 'Actions',
        class: 'actions',
        cell: (f) => h('a', { class: 'btn btn-sm', href: `#${BASE}?name=${enc(f.name)}`, 'aria-label': `Edit ${f.name}` }, 'Edit'),
      },
    ],
    rowData: (f) => ({ flow: f.name }),
  });
  list.setRows(flows);
  root.append(card({ title: 'All flows', flush: true, body: list.el }));

  root.append(await settingsCard(ctx));

  if (ctx.params.get('new')) newFlow();

  async function newFlow() {
    const chosen = await formDialog({
      title: 'New flow',
      description: 'Name the flow; you write its script next. Nothing is saved until you save a first version.',
      submitLabel: 'Create flow',
      build: () => {
        const f = field({
          label: 'Name', name: 'name', required: true,
          hint: '1 to 64 characters: lowercase letters, digits, “-” and “_”, e.g. main-menu.',
          attrs: { maxlength: '64', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none', pattern: '[a-z0-9_\\-]{1,64}' },
        });
        return f;
      },
      submit: async (form) => {
        const value = form.elements.name.value.trim();
        const fail = (message) => { throw new ApiError(422, 'validation_failed', message, { fields: [{ path: 'name', message }] }); };
        if (!value) fail('is required.');
        if (!NAME_RE.test(value)) fail('may only use a-z, 0-9, “-” and “_” (at most 64).');
        if (flows.some((f) => f.name === value)) fail('is taken by another flow: open it from the list.');
        return value;
      },
    });
    if (chosen) location.hash = `#${BASE}?name=${enc(chosen)}`;
    else newBtn.focus();
  }
}

/**
 * The flow settings form (GET/PUT /flow-settings). Admins change them (they
 * decide which hosts flows may call); supervisors see them.
 */
async function settingsCard(ctx) {
  const canEdit = ctx.me.role === 'admin';
  let settings;
  let queues = [];
  let prompts = [];
  try {
    [settings, queues, prompts] = await Promise.all([
      get('/flow-settings'),
      getAll('/queues').catch(() => []),
      get('/prompts').then((p) => (Array.isArray(p) ? p : (p && p.items) || [])).catch(() => []),
    ]);
  } catch (err) {
    return card({
      title: 'Flow settings',
      body: h('div', { class: 'form-error', role: 'alert' }, `The flow settings could not be loaded: ${describeError(err)}`),
    });
  }

  const region = errorRegion();
  const queueList = nextId('queues');
  const promptList = nextId('prompts');
  const fallback = field({
    label: 'Fallback queue', name: 'fallback_queue', value: settings.fallback_queue || '',
    hint: 'Where a call goes when its flow fails (an error or a flow that cannot run). Empty: none.',
    attrs: { list: queueList, autocomplete: 'off' },
  });
  const apology = field({
    label: 'Apology prompt', name: 'apology_prompt', value: settings.apology_prompt || '',
    hint: 'Played to the caller before the fallback. Empty: none.',
    attrs: { list: promptList, autocomplete: 'off' },
  });
  const hostsId = nextId('hosts');
  const hosts = h('textarea', {
    id: hostsId, name: 'http_allowed_hosts', rows: '4', spellcheck: 'false', autocapitalize: 'none',
    class: 'mono', 'aria-describedby': `${hostsId}-hint ${hostsId}-error`,
  });
  hosts.value = (settings.http_allowed_hosts || []).join('\n');
  const hostsField = h('div', { class: 'field' },
    h('label', { for: hostsId }, 'Hosts flows may call'),
    hosts,
    h('span', { id: `${hostsId}-hint`, class: 'hint' }, 'One host a line, e.g. api.example.com. http_get and http_post reach these hosts only.'),
    h('span', { id: `${hostsId}-error`, class: 'field-error' }));

  const save = h('button', { type: 'submit', class: 'btn btn-primary', hidden: !canEdit }, 'Save settings');
  if (!canEdit) {
    for (const el of [fallback.input, apology.input, hosts]) el.readOnly = true;
  }
  const form = h('form', { class: 'form', 'aria-label': 'Flow settings', novalidate: true, 'data-flow-settings': '' },
    region,
    h('div', { class: 'form-grid' }, fallback, apology),
    hostsField,
    h('datalist', { id: queueList }, queues.map((q) => h('option', { value: q.name }))),
    h('datalist', { id: promptList }, prompts.map((p) => h('option', { value: p.name }))),
    canEdit ? h('div', { class: 'form-actions' }, save) : h('p', { class: 'muted small', 'data-settings-readonly': '' }, 'Only admins can change these settings.'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!canEdit) return;
    clearErrors(form, region);
    const body = {
      fallback_queue: fallback.input.value.trim() || null,
      apology_prompt: apology.input.value.trim() || null,
      http_allowed_hosts: hosts.value.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean),
    };
    await busy(save, async () => {
      try {
        const saved = await api('PUT', '/flow-settings', body);
        fallback.input.value = saved.fallback_queue || '';
        apology.input.value = saved.apology_prompt || '';
        hosts.value = (saved.http_allowed_hosts || []).join('\n');
        toast('Flow settings saved.');
        announce('Flow settings saved');
      } catch (err) {
        showErrors(err, region, form);
      }
    }, 'Saving…');
  });
  return card({
    title: 'Flow settings',
    subtitle: 'For every flow of the workspace.',
    body: form,
  });
}

// ==== the editor ==============================================================================

async function flowEditor(root, ctx, name) {
  const crumbs = [h('a', { href: `#${BASE}`, class: 'crumb-link' }, 'Flows'), ' › '];
  if (!NAME_RE.test(name)) {
    root.append(pageHeader('Flow not found', null, null, crumbs));
    root.append(card({ body: emptyState({ iconName: 'warning', title: 'That is not a flow name', text: 'Flow names are 1 to 64 of a-z, 0-9, “-” and “_”.', children: h('a', { class: 'btn', href: `#${BASE}` }, 'Back to the flows') }) }));
    return;
  }

  // ---- what the server has
  // (The list first: a new flow's GET /flows/{name} would be a 404.)
  let flow = null; // GET /flows/{name}, null while the flow has no version
  const all = await get('/flows');
  if (((all && all.items) || []).some((f) => f.name === name)) {
    try {
      flow = await get(`/flows/${enc(name)}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
  }
  let loaded = null; // the version in the editor, as loaded or saved
  if (flow && flow.versions && flow.versions.length) {
    loaded = await get(`/flows/${enc(name)}/versions/${flow.versions[0].version}`);
  }
  let saved = { source: loaded ? loaded.source || '' : STARTER, tests: loaded ? loaded.tests || '' : '' };

  // ---- header
  const subtitle = h('span', { 'data-flow-status': '' });
  root.append(pageHeader(name, subtitle, null, crumbs));
  const dirtyBadge = h('span', { class: 'badge badge-warning', hidden: true, 'data-dirty': '' }, 'Unsaved changes');

  // ---- the two editors, in tabs
  const srcDiagList = h('ul', { class: 'diag-list', 'aria-label': 'Problems in the flow script', 'data-diagnostics': 'source' });
  const testsDiagList = h('ul', { class: 'diag-list', 'aria-label': 'Problems in the tests', 'data-diagnostics': 'tests' });
  const src = createCodeEditor({ language: 'rhai', label: 'Flow script (Rhai)', value: saved.source, onChange: onSourceChange, rows: 22, testId: 'source' });
  const tests = createCodeEditor({ language: 'toml', label: 'Flow tests (TOML)', value: saved.tests, onChange: onTestsChange, rows: 22, testId: 'tests' });
  tests.input.placeholder = TESTS_PLACEHOLDER;

  const tabs = [
    { id: 'source', label: 'Flow script', panel: h('div', null, src.el, srcDiagList) },
    { id: 'tests', label: 'Tests', panel: h('div', null, tests.el, testsDiagList) },
  ];
  const tablist = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Flow parts' });
  for (const t of tabs) {
    const tabId = nextId('tab');
    const panelId = nextId('tabpanel');
    t.count = h('span', { class: 'tab-count', 'aria-hidden': 'true' });
    t.tab = h('button', { type: 'button', role: 'tab', id: tabId, class: 'tab', 'aria-controls': panelId, 'data-tab': t.id, onclick: () => selectTab(t.id) }, t.label, t.count);
    t.panel.id = panelId;
    t.panel.setAttribute('role', 'tabpanel');
    t.panel.setAttribute('aria-labelledby', tabId);
    t.panel.classList.add('tab-panel');
    tablist.append(t.tab);
  }
  tablist.addEventListener('keydown', (e) => {
    const i = tabs.findIndex((t) => t.tab === document.activeElement);
    if (i < 0) return;
    let j = null;
    if (e.key === 'ArrowRight') j = (i + 1) % tabs.length;
    else if (e.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
    else if (e.key === 'Home') j = 0;
    else if (e.key === 'End') j = tabs.length - 1;
    if (j === null) return;
    e.preventDefault();
    selectTab(tabs[j].id);
    tabs[j].tab.focus();
  });
  function selectTab(id) {
    for (const t of tabs) {
      const on = t.id === id;
      t.tab.setAttribute('aria-selected', String(on));
      t.tab.tabIndex = on ? 0 : -1;
      t.panel.hidden = !on;
    }
  }
  selectTab('source');

  const validateStatus = h('span', { class: 'validate-status', role: 'status', 'aria-live': 'polite', 'data-validate-status': 'idle' });
  const validateBtn = h('button', { type: 'button', class: 'btn', onclick: () => validate(true) }, 'Validate');
  const commentId = nextId('comment');
  const comment = h('input', { id: commentId, type: 'text', name: 'comment', maxlength: '500', autocomplete: 'off', placeholder: 'What changed (optional)' });
  const saveBtn = h('button', { type: 'button', class: 'btn btn-primary', onclick: () => saveVersion() }, 'Save version');
  const saveRegion = errorRegion();
  const saveStatus = h('span', { class: 'small', role: 'status', 'aria-live': 'polite', 'data-save-status': '' });

  const editorCard = card({
    title: 'Script',
    subtitle: 'Rhai, with the flow functions (answer, play, menu, queue…). Ctrl+S saves.',
    actions: [dirtyBadge, validateStatus],
    body: [tablist, ...tabs.map((t) => t.panel)],
    foot: h('div', { class: 'flow-save' },
      saveRegion,
      h('div', { class: 'flow-save-row' },
        h('label', { for: commentId, class: 'label' }, 'Comment'),
        comment,
        validateBtn,
        saveBtn),
      saveStatus),
  });
  editorCard.dataset.flowEditor = name;
  editorCard.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === 's') {
      e.preventDefault();
      saveVersion();
    }
  });

  // ---- the test results
  const runTestsBtn = h('button', { type: 'button', class: 'btn', onclick: () => runTests() }, 'Run tests');
  const testsOut = h('div', { class: 'test-results', 'data-test-results': '' },
    h('p', { class: 'muted small' }, 'Runs the cases of the Tests tab against the script in the editor (saved or not).'));
  const testsCard = card({ title: 'Tests', actions: runTestsBtn, body: testsOut });

  // ---- the simulator
  const sim = simulator();

  // ---- the history
  const historyBody = h('div');
  const historyAlert = h('div', { class: 'form-error inset', role: 'alert', 'data-publish-error': '' });
  const historyCard = card({ title: 'Versions', subtitle: 'Newest first. Calls run the published version.', body: historyBody, flush: true });
  historyCard.dataset.flowHistory = '';

  root.append(h('div', { class: 'grid grid-main-side grid-top flow-layout' },
    h('div', { class: 'stack' }, editorCard, testsCard),
    h('div', { class: 'stack' }, sim.card, historyCard)));

  renderStatus();
  renderHistory();
  updateDirty();

  // ---- leaving with unsaved changes
  const beforeUnload = (e) => {
    if (!isDirty()) return;
    e.preventDefault();
    e.returnValue = '';
  };
  window.addEventListener('beforeunload', beforeUnload);
  ctx.onCleanup(() => window.removeEventListener('beforeunload', beforeUnload));

  // ---- validation -----------------------------------------------------------------

  let vTimer = null;
  let vAbort = null;
  let vSeq = 0;
  const shown = { source: [], tests: [] }; // the diagnostics on display
  ctx.onCleanup(() => {
    clearTimeout(vTimer);
    if (vAbort) vAbort.abort();
  });

  // The script and the tests are checked together, a moment after typing.
  function onSourceChange() {
    updateDirty();
    setValidateStatus('pending', 'Checking soon…');
    clearTimeout(vTimer);
    vTimer = setTimeout(() => validate(false), VALIDATE_DELAY_MS);
  }
  function onTestsChange() {
    onSourceChange();
  }
  validate(false);

  function setValidateStatus(state, text) {
    validateStatus.dataset.validateStatus = state;
    clear(validateStatus);
    if (state === 'checking') validateStatus.append(h('span', { class: 'spinner', 'aria-hidden': 'true' }));
    else if (state === 'ok') validateStatus.append(icon('shield'));
    else if (state === 'error' || state === 'warning' || state === 'failed') validateStatus.append(icon('warning'));
    validateStatus.append(text);
  }

  async function validate(fromButton) {
    clearTimeout(vTimer);
    if (vAbort) vAbort.abort();
    const controller = new AbortController();
    vAbort = controller;
    const seq = ++vSeq;
    setValidateStatus('checking', 'Checking…');
    const run = async () => {
      try {
        const body = { source: src.getValue() };
        if (tests.getValue().trim()) body.tests = tests.getValue();
        const r = await api('POST', '/flows/validate', body, { signal: controller.signal });
        if (seq !== vSeq || !ctx.isCurrent()) return;
        applyDiagnostics(r.diagnostics || [], r.ok);
      } catch (err) {
        if (err && err.name === 'AbortError') return;
        if (seq !== vSeq || !ctx.isCurrent()) return;
        if (err instanceof ApiError && err.code === 'invalid_flow') {
          applyDiagnostics(diagnosticsOf(err), false);
          return;
        }
        setValidateStatus('failed', `Could not check: ${describeError(err)}`);
      }
    };
    if (fromButton) await busy(validateBtn, run);
    else await run();
  }

  /**
   * Shows the server's diagnostics: those about the tests ("tests: …",
   * their line in the message) in the Tests tab, the others in the script.
   */
  // `partial`: a refusal's details (a 422) only name what stopped it: the
  // other part keeps what the last check found.
  function applyDiagnostics(all, ok, partial = false) {
    const split = splitDiagnostics(all);
    const forSource = partial && !split.source.length ? shown.source : split.source;
    const forTests = partial && !split.tests.length ? shown.tests : split.tests;
    shown.source = forSource;
    shown.tests = forTests;
    showDiagnostics(src, srcDiagList, forSource, 'source');
    showDiagnostics(tests, testsDiagList, forTests, 'tests');
    setTabCount('source', forSource);
    setTabCount('tests', forTests);
    const merged = [...forSource, ...forTests];
    const hasError = ok === false || merged.some((d) => d.severity === 'error');
    if (!merged.length && !hasError) setValidateStatus('ok', 'No problems');
    else setValidateStatus(hasError ? 'error' : 'warning', countLabel(merged) === 'No problems' ? 'Errors' : countLabel(merged));
    return { forSource: split.source, forTests: split.tests };
  }

  function setTabCount(id, diags) {
    const t = tabs.find((x) => x.id === id);
    t.count.textContent = diags.length ? String(diags.length) : '';
    t.count.className = diags.some((d) => d.severity === 'error') ? 'tab-count is-error' : 'tab-count';
    t.tab.setAttribute('aria-label', diags.length ? `${t.label} (${countLabel(diags).toLowerCase()})` : t.label);
  }

  /** Lists `diags` under `editor` and marks them in it; a click moves the caret there. */
  function showDiagnostics(editor, listEl, diags, which) {
    editor.setDiagnostics(diags);
    clear(listEl);
    const sorted = [...diags].sort((a, b) => (a.line || 0) - (b.line || 0) || (a.column || 0) - (b.column || 0));
    for (const d of sorted) {
      const sev = d.severity === 'error' ? 'error' : 'warning';
      const where = d.line ? `Line ${d.line}${d.column ? `, column ${d.column}` : ''}` : (which === 'tests' ? 'Tests' : 'Script');
      listEl.append(h('li', null,
        h('button', {
          type: 'button',
          class: `diag-item is-${sev}`,
          'data-diag-line': String(d.line || 0),
          'data-diag-severity': sev,
          onclick: () => {
            selectTab(which);
            if (d.line) editor.goTo(d.line, d.column);
            else editor.focus();
          },
        },
        icon('warning'),
        h('span', { class: 'diag-pos' }, where),
        h('span', { class: 'diag-msg' }, `${sev === 'error' ? 'Error' : 'Warning'}: ${d.message}`))));
    }
  }

  // ---- saving --------------------------------------------------------------------------

  function isDirty() {
    return src.getValue() !== saved.source || tests.getValue() !== saved.tests;
  }

  function updateDirty() {
    dirtyBadge.hidden = !isDirty();
  }

  async function saveVersion() {
    if (saveBtn.disabled) return;
    clear(saveRegion);
    saveStatus.textContent = '';
    const body = { source: src.getValue() };
    const t = tests.getValue();
    if (t.trim()) body.tests = t;
    const c = comment.value.trim();
    if (c) body.comment = c;
    await busy(saveBtn, async () => {
      try {
        const r = await post(`/flows/${enc(name)}/versions`, body);
        saved = { source: body.source, tests: t };
        comment.value = '';
        applyDiagnostics(r.diagnostics || [], true);
        updateDirty();
        saveStatus.dataset.saveStatus = String(r.version);
        const problems = r.diagnostics || [];
        saveStatus.textContent = problems.some((d) => d.severity === 'error')
          ? `Saved as version ${r.version}, with ${countLabel(problems).toLowerCase()}: it cannot be published until the errors are fixed.`
          : `Saved as version ${r.version}${problems.length ? ` (${countLabel(problems).toLowerCase()})` : ''}.`;
        toast(`Flow “${name}”: version ${r.version} saved.`);
        await reloadFlow();
      } catch (err) {
        if (err instanceof ApiError && err.code === 'invalid_flow') {
          const { forSource, forTests } = applyDiagnostics(diagnosticsOf(err), false, true);
          const inTests = forTests.some((d) => d.severity === 'error') && !forSource.some((d) => d.severity === 'error');
          selectTab(inTests ? 'tests' : 'source');
          const errs = [...forSource, ...forTests].filter((d) => d.severity === 'error');
          saveRegion.append(`Not saved: ${inTests ? 'the tests have' : 'the script has'} ${countLabel(errs).toLowerCase()}. Fix ${errs.length === 1 ? 'it' : 'them'} and save again.`);
          return;
        }
        saveRegion.append(`Not saved: ${describeError(err)}`);
      }
    }, 'Saving…');
  }

  async function reloadFlow() {
    try {
      flow = await get(`/flows/${enc(name)}`);
    } catch (err) {
      toast(`Could not refresh the versions: ${describeError(err)}`, 'error');
      return;
    }
    if (!ctx.isCurrent()) return;
    renderStatus();
    renderHistory();
  }

  function renderStatus() {
    clear(subtitle);
    if (!flow || !flow.versions || !flow.versions.length) {
      subtitle.dataset.flowStatus = 'new';
      subtitle.append('A new flow: nothing is saved yet.');
      return;
    }
    const latest = flow.versions[0].version;
    subtitle.dataset.flowStatus = flow.published_version ? 'published' : 'unpublished';
    subtitle.append(flow.published_version
      ? `Published: version ${flow.published_version} · latest: version ${latest}.`
      : `Not published yet · latest: version ${latest}.`);
  }

  // ---- history, publishing ---------------------------------------------------------------

  function renderHistory() {
    clear(historyBody);
    const versions = (flow && flow.versions) || [];
    if (!versions.length) {
      historyBody.append(h('div', { class: 'card-body' }, h('p', { class: 'muted small' }, 'No versions yet: save the script to make version 1.')));
      return;
    }
    const published = flow.published_version;
    const list = h('ol', { class: 'version-list', 'aria-label': 'Versions' });
    for (const v of versions) {
      const isPub = v.version === published;
      const actions = h('div', { class: 'btn-row' },
        h('button', { type: 'button', class: 'btn btn-sm', 'aria-label': `View version ${v.version}`, onclick: () => viewVersion(v.version) }, 'View'));
      if (!isPub) {
        const older = published !== null && published !== undefined && v.version < published;
        const btn = h('button', {
          type: 'button',
          class: older ? 'btn btn-sm btn-danger' : 'btn btn-sm btn-primary',
          'aria-label': older ? `Roll back to version ${v.version}` : `Publish version ${v.version}`,
          'data-publish': String(v.version),
        }, older ? 'Roll back' : 'Publish');
        btn.addEventListener('click', () => publish(v.version, older, btn));
        actions.append(btn);
      }
      list.append(h('li', { class: isPub ? 'version is-published' : 'version', 'data-version': String(v.version), 'data-published': isPub ? 'true' : 'false' },
        h('div', { class: 'version-head' },
          h('strong', null, `Version ${v.version}`),
          isPub ? h('span', { class: 'badge badge-success', 'data-published-marker': '' }, 'Published') : null,
          !isPub && v.published_at ? h('span', { class: 'muted small' }, 'published before') : null),
        v.comment ? h('p', { class: 'version-comment' }, v.comment) : null,
        h('p', { class: 'version-meta muted small' }, v.created_by ? `${who(v.created_by)} · ` : '', timeEl(v.created_at, true)),
        actions));
    }
    historyBody.append(historyAlert, list);
  }

  /** "user:<id>" (the API's created_by) as a name where it is known. */
  function who(by) {
    const [kind, id] = String(by).split(':');
    if (kind === 'user' && ctx.me.user && id === ctx.me.user.id) return `${ctx.me.user.display_name} (you)`;
    if (kind === 'user' && id) return `user ${shortId(id)}`;
    if (kind === 'api_key' && id) return `API key ${shortId(id)}`;
    return String(by);
  }

  async function publish(version, rollback, btn) {
    const current = flow.published_version;
    clear(historyAlert);
    if (rollback) {
      const ok = await confirmDialog({
        title: `Roll back to version ${version}?`,
        message: `New calls will run version ${version} instead of version ${current}. Calls already in the flow keep their version.`,
        confirmLabel: `Roll back to version ${version}`,
        danger: true,
      });
      if (!ok) return;
    }
    await busy(btn, async () => {
      try {
        const r = await post(`/flows/${enc(name)}/publish`, { version });
        toast(rollback ? `Rolled back: version ${r.published_version} is published.` : `Version ${r.published_version} is published.`);
        announce(`Version ${r.published_version} published`);
        await reloadFlow();
        const row = historyBody.querySelector(`[data-version="${r.published_version}"] strong`);
        if (row) {
          row.tabIndex = -1;
          row.focus();
        }
      } catch (err) {
        if (err instanceof ApiError && err.code === 'invalid_flow') {
          // Errors (unknown queues, hosts not allowed) or failing tests.
          const { source: inScript, tests: inTests } = splitDiagnostics(diagnosticsOf(err));
          historyAlert.append(`Version ${version} cannot be published:`,
            h('ul', null, [...inScript, ...inTests].map((d) => h('li', null,
              inTests.includes(d) ? 'Tests: ' : (d.line ? `Line ${d.line}: ` : ''), d.message))));
          historyAlert.tabIndex = -1;
          historyAlert.focus();
          return;
        }
        toast(`Could not publish version ${version}: ${describeError(err)}`, 'error', 8000);
      }
    });
  }

  async function viewVersion(version) {
    let v;
    try {
      v = await get(`/flows/${enc(name)}/versions/${version}`);
    } catch (err) {
      toast(`Could not load version ${version}: ${describeError(err)}`, 'error');
      return;
    }
    if (!ctx.isCurrent()) return;
    const titleId = nextId('dlg');
    const srcView = createCodeEditor({ language: 'rhai', label: `Version ${version}: flow script (read only)`, value: v.source || '', readOnly: true, rows: 18, testId: 'version-source' });
    const testsView = v.tests && v.tests.trim()
      ? createCodeEditor({ language: 'toml', label: `Version ${version}: tests (read only)`, value: v.tests, readOnly: true, rows: 10, testId: 'version-tests' })
      : null;
    const close = h('button', { type: 'button', class: 'btn' }, 'Close');
    const copy = h('button', { type: 'button', class: 'btn btn-primary' }, 'Copy to the editor');
    const dlg = h('dialog', { class: 'dialog-wide', 'aria-labelledby': titleId, 'data-version-view': String(version) },
      h('div', { class: 'dialog-body' },
        h('h2', { id: titleId }, `${name}, version ${version}`),
        h('p', null, [
          v.published || v.version === flow.published_version ? 'The published version. ' : '',
          `Saved${v.created_by ? ` by ${who(v.created_by)}` : ''} `, timeEl(v.created_at, true), '.',
          v.comment ? ` “${v.comment}”` : '',
        ]),
        h('h3', null, 'Flow script'),
        srcView.el,
        testsView ? [h('h3', null, 'Tests'), testsView.el] : h('p', { class: 'muted small' }, 'No tests in this version.')),
      h('div', { class: 'dialog-actions' }, close, copy));
    close.addEventListener('click', () => dlg.close());
    copy.addEventListener('click', async () => {
      if (isDirty()) {
        dlg.close();
        const ok = await confirmDialog({
          title: 'Replace the editor’s text?',
          message: `The editor has unsaved changes; they are replaced by version ${version}.`,
          confirmLabel: 'Replace',
          danger: true,
        });
        if (!ok) return;
      } else {
        dlg.close();
      }
      src.setValue(v.source || '');
      tests.setValue(v.tests || '');
      comment.value = `From version ${version}`;
      updateDirty();
      validate(false);
      selectTab('source');
      src.focus();
      announce(`Version ${version} copied to the editor`);
    });
    dlg.addEventListener('close', () => dlg.remove());
    document.body.append(dlg);
    ctx.onCleanup(() => { if (dlg.open) dlg.close(); });
    dlg.showModal();
    close.focus();
  }

  // ---- tests ---------------------------------------------------------------------------

  async function runTests() {
    const body = { source: src.getValue(), tests: tests.getValue() };
    clear(testsOut);
    if (!body.tests.trim()) {
      testsOut.append(h('p', { class: 'form-error', role: 'alert', 'data-tests-result': 'empty' },
        'There are no test cases: write some in the Tests tab (its placeholder shows the format).'));
      selectTab('tests');
      return;
    }
    const status = h('div', { class: 'test-summary', role: 'status', 'aria-live': 'polite' }, loading('Running the tests…'));
    testsOut.append(status);
    await busy(runTestsBtn, async () => {
      let r;
      try {
        r = await post('/flows/test', body);
      } catch (err) {
        clear(status);
        if (err instanceof ApiError && err.code === 'invalid_flow') {
          // The script does not compile, or the tests' TOML is malformed.
          const { forTests } = applyDiagnostics(diagnosticsOf(err), false, true);
          const inTests = forTests.length > 0;
          selectTab(inTests ? 'tests' : 'source');
          status.dataset.testsResult = 'invalid';
          status.classList.add('text-danger');
          status.append(inTests
            ? 'The tests could not be read: see the problems in the Tests tab.'
            : 'The tests could not run: the script does not compile (see the problems under it).');
          return;
        }
        status.dataset.testsResult = 'error';
        status.classList.add('text-danger');
        status.append(`The tests could not run: ${describeError(err)}`);
        return;
      }
      shown.tests = [];
      showDiagnostics(tests, testsDiagList, [], 'tests');
      setTabCount('tests', []);
      const cases = r.cases || [];
      const failed = cases.filter((c) => !c.passed).length;
      clear(status);
      status.dataset.testsResult = r.passed ? 'passed' : 'failed';
      status.classList.toggle('text-danger', !r.passed);
      status.classList.toggle('text-success', Boolean(r.passed));
      status.append(!cases.length
        ? 'No test cases found.'
        : (r.passed ? `All ${cases.length} case${cases.length === 1 ? '' : 's'} passed.` : `${failed} of ${cases.length} case${cases.length === 1 ? '' : 's'} failed.`));
      testsOut.append(h('ul', { class: 'test-cases' }, cases.map((c) => h('li', {
        class: c.passed ? 'test-case is-pass' : 'test-case is-fail',
        'data-test-case': c.name,
        'data-passed': String(Boolean(c.passed)),
      },
      h('div', { class: 'test-case-head' },
        h('span', { class: c.passed ? 'test-mark pass' : 'test-mark fail', 'aria-hidden': 'true' }, c.passed ? '✓' : '✗'),
        h('strong', null, c.name || '(unnamed case)'),
        h('span', { class: c.passed ? 'badge badge-success' : 'badge badge-danger' }, c.passed ? 'Passed' : 'Failed')),
      c.diff ? diffView(c.diff) : null,
      c.path && c.path.length
        ? h('details', { class: 'test-path' }, h('summary', null, `Path (${c.path.length} step${c.path.length === 1 ? '' : 's'})`), pathList(c.path, gotoLine))
        : null))));
    });
  }

  function gotoLine(line, column) {
    selectTab('source');
    src.goTo(line, column);
  }

  // ---- the simulator ---------------------------------------------------------------------

  function simulator() {
    const defaultTz = (ctx.me.tenant && ctx.me.tenant.timezone) || Intl.DateTimeFormat().resolvedOptions().timeZone;
    let zones = [];
    try {
      zones = Intl.supportedValuesOf('timeZone');
    } catch {
      zones = [];
    }
    const zoneList = nextId('zones');
    const when = field({
      label: 'Date and time', name: 'time', type: 'datetime-local', value: nowIn(defaultTz),
      hint: 'When the call happens, in the time zone below (opening hours depend on it). Empty: the simulator’s fixed default.',
      attrs: { step: '60' },
    });
    const tz = field({ label: 'Time zone', name: 'tz', value: defaultTz, attrs: { list: zoneList, autocomplete: 'off', spellcheck: 'false' } });
    const caller = field({ label: 'Caller number', name: 'caller', hint: 'Empty: the simulator’s test number.', attrs: { placeholder: '+12015550123', autocomplete: 'off', inputmode: 'tel' } });
    const channel = field({ label: 'Channel', name: 'channel', value: 'voice', options: [['voice', 'Voice call'], ['chat', 'Chat']] });
    when.classList.add('field-span');
    tz.classList.add('field-span');
    const options = h('details', { class: 'sim-options' },
      h('summary', null, 'Caller, channel and time'),
      h('div', { class: 'form-grid sim-options-grid' }, when, tz, caller, channel),
      h('datalist', { id: zoneList }, zones.map((z) => h('option', { value: z }))));

    const startBtn = h('button', { type: 'button', class: 'btn btn-primary', onclick: () => start() }, 'Start');
    const undoBtn = h('button', { type: 'button', class: 'btn btn-sm btn-ghost', hidden: true, onclick: () => undo() }, 'Undo last answer');
    const status = h('p', { class: 'sim-status', role: 'status', 'aria-live': 'polite', tabindex: '-1', 'data-sim-status': 'idle' },
      'Runs the script in the editor as a caller would hear it. Nothing is dialled or queued.');
    const path = h('ol', { class: 'sim-path', 'aria-label': 'Path taken', 'data-sim-path': '' });
    const end = h('div', { class: 'sim-end', hidden: true, 'data-sim-end': '' });
    const answerArea = h('div', { class: 'sim-answer', 'data-sim-waiting': '' });
    const inputsLine = h('p', { class: 'sim-inputs muted small', 'data-sim-inputs': '' });
    const errors = errorRegion();
    let inputs = [];
    let running = false;

    const el = card({
      title: 'Simulate',
      actions: [startBtn],
      body: h('div', { class: 'sim' }, options, errors, status, path, end, answerArea, h('div', { class: 'sim-foot' }, inputsLine, undoBtn)),
    });
    el.dataset.simulator = '';

    function simCase() {
      const c = { channel: channel.input.value };
      const num = caller.input.value.trim();
      if (num) c.caller = num;
      const local = when.input.value;
      tz.input.removeAttribute('aria-invalid');
      clear(tz.querySelector('.field-error'));
      if (local) {
        const zone = tz.input.value.trim() || defaultTz;
        const iso = zonedIso(local, zone);
        if (!iso) {
          tz.input.setAttribute('aria-invalid', 'true');
          tz.querySelector('.field-error').textContent = 'Not a time zone: use a name such as Europe/Paris.';
          options.open = true;
          tz.input.focus();
          return null;
        }
        c.time = iso;
      }
      return c;
    }

    async function start() {
      inputs = [];
      await run(startBtn);
    }

    async function answer(input, btn) {
      inputs.push(input);
      const ok = await run(btn);
      if (!ok) inputs.pop();
    }

    async function undo() {
      if (!inputs.length) return;
      const last = inputs.pop();
      const ok = await run(undoBtn);
      if (!ok) inputs.push(last);
    }

    async function run(btn) {
      if (running) return false;
      const c = simCase();
      if (!c) return false;
      running = true;
      clear(errors);
      try {
        const r = await busy(btn, () => post('/flows/simulate', { source: src.getValue(), inputs: inputs.slice(), case: c }));
        if (!ctx.isCurrent()) return true;
        render(r);
        return true;
      } catch (err) {
        if (err instanceof ApiError && err.code === 'invalid_flow') {
          const diags = diagnosticsOf(err);
          applyDiagnostics(diags, false, true);
          errors.append(`The script does not compile: ${countLabel(diags).toLowerCase()}. See the problems under the editor.`);
        } else {
          errors.append(`The simulation failed: ${describeError(err)}`);
        }
        return false;
      } finally {
        running = false;
      }
    }

    function render(r) {
      // Focus follows the simulation only when it was in the simulator.
      const active = document.activeElement;
      const followFocus = !active || active === document.body || el.contains(active);
      clear(path);
      path.append(...pathList(r.path || [], gotoLine).childNodes);
      clear(answerArea);
      end.hidden = true;
      clear(end);
      startBtn.textContent = 'Start again';
      inputsLine.textContent = inputs.length ? `Answers so far: ${inputs.join(' · ')}` : '';
      if (r.unused_inputs && r.unused_inputs.length) inputsLine.append(` (not used: ${r.unused_inputs.join(' · ')})`);
      undoBtn.hidden = !inputs.length;
      if (r.end) {
        const e = r.end;
        end.hidden = false;
        end.dataset.simEnd = e.kind;
        end.append(h('strong', null, 'End: '), endText(e));
        if (e.kind === 'error' && e.line) {
          end.append(' ', lineLink(e.line, e.column, gotoLine));
        }
        setStatus('ended', `The flow ended: ${endText(e)}.`);
        if (followFocus) status.focus();
        return;
      }
      if (r.refused_input) {
        errors.append(`Answer not used: ${r.refused_input}. Undo it and answer again.`);
      }
      const w = r.waiting_for;
      if (!w) {
        end.hidden = false;
        if (r.caller_hung_up) {
          end.dataset.simEnd = 'caller_hangup';
          end.append(h('strong', null, 'End: '), 'the caller hung up');
          setStatus('ended', 'The caller hung up.');
        } else {
          end.dataset.simEnd = 'stopped';
          end.append(h('strong', null, 'Stopped: '), r.refused_input ? 'an answer did not fit' : 'the flow did not wait for an answer');
          setStatus('ended', 'The simulation stopped.');
        }
        if (followFocus) status.focus();
        return;
      }
      answerArea.dataset.simWaiting = w;
      if (w === 'digits') {
        setStatus('waiting', 'Waiting for the caller to press keys.');
        const keypad = h('div', { class: 'keypad', role: 'group', 'aria-label': 'Keypad: sends one key' });
        for (const k of ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#']) {
          const b = h('button', { type: 'button', class: 'btn key', 'data-key': k }, k);
          b.addEventListener('click', () => answer(`digits:${k}`, b));
          keypad.append(b);
        }
        answerArea.append(keypad, textAnswer('Several keys', 'digits', 'e.g. 1234#', (v) => (/^[0-9*#]+$/.test(v) ? null : 'Only 0-9, * and #.'), { inputmode: 'tel' }));
      } else if (w === 'speech') {
        setStatus('waiting', 'Waiting for the caller to speak.');
        answerArea.append(textAnswer('What the caller says', 'speech', 'e.g. I want to pay my bill'));
      } else if (w === 'reply') {
        setStatus('waiting', 'Waiting for the customer’s chat reply.');
        answerArea.append(textAnswer('The customer’s reply', 'text', 'Type a message'));
      } else {
        setStatus('waiting', `Waiting for ${humanize(w).toLowerCase()}.`);
        answerArea.append(textAnswer('Answer', w, ''));
      }
      const silence = h('button', { type: 'button', class: 'btn btn-sm' }, 'Silence (no answer)');
      silence.addEventListener('click', () => answer('silence', silence));
      const hangup = h('button', { type: 'button', class: 'btn btn-sm btn-danger' }, 'Hang up');
      hangup.addEventListener('click', () => answer('hangup', hangup));
      answerArea.append(h('div', { class: 'btn-row' }, silence, hangup));
      const first = answerArea.querySelector(w === 'digits' ? '[data-key="1"]' : 'input');
      if (first && followFocus) first.focus();
    }

    function textAnswer(label, prefix, placeholder, check, attrs = {}) {
      const id = nextId('sim');
      const input = h('input', { id, type: 'text', autocomplete: 'off', placeholder, 'aria-describedby': `${id}-error`, 'data-sim-text': prefix, ...attrs });
      const err = h('span', { id: `${id}-error`, class: 'field-error' });
      const send = h('button', { type: 'submit', class: 'btn' }, 'Send');
      const form = h('form', { class: 'sim-text-form', novalidate: true },
        h('label', { for: id, class: 'label' }, label),
        h('div', { class: 'inline-form' }, input, send),
        err);
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        const v = input.value.trim();
        const problem = !v ? 'Type something first.' : (check ? check(v) : null);
        if (problem) {
          input.setAttribute('aria-invalid', 'true');
          err.textContent = problem;
          input.focus();
          return;
        }
        answer(`${prefix}:${v}`, send);
      });
      return form;
    }

    function setStatus(state, text) {
      status.dataset.simStatus = state;
      status.textContent = text;
    }

    return { card: el };
  }
}

// ==== rendering helpers ============================================================================

/** The diagnostics of a 422 invalid_flow (its details: an array, or {diagnostics}). */
function diagnosticsOf(err) {
  const d = err.details;
  const list = Array.isArray(d) ? d : (d && (d.diagnostics || d.details || d.errors)) || [];
  const out = list.filter((x) => x && typeof x === 'object').map((x) => ({
    severity: x.severity === 'warning' ? 'warning' : 'error',
    line: Number(x.line) || 0,
    column: Number(x.column) || 0,
    message: String(x.message || ''),
  }));
  return out.length ? out : [{ severity: 'error', line: 0, column: 0, message: err.message }];
}

/**
 * {source, tests}: the diagnostics about the tests have messages starting
 * with "tests:" and their line, if any, as "(line N)" in the message.
 */
export function splitDiagnostics(all) {
  const source = [];
  const tests = [];
  for (const d of all) {
    const m = /^tests:\s*/.exec(d.message || '');
    if (!m) {
      source.push(d);
      continue;
    }
    const message = d.message.slice(m[0].length);
    const at = /\(line (\d+)\)/.exec(message);
    tests.push({ ...d, line: d.line || (at ? Number(at[1]) : 0), message });
  }
  return { source, tests };
}

function fmtValue(v) {
  if (v === null || v === undefined) return '';
  if (Array.isArray(v)) return v.map(fmtValue).join(', ');
  if (typeof v === 'object') {
    return Object.entries(v).map(([k, x]) => `${k}: ${fmtValue(x)}`).join(', ');
  }
  return String(v);
}

// Symbols common fonts have (no emoji: a missing glyph would show as a box).
const STEP_ICON = {
  answer: '✆', play: '▶', say: '❝', gather: '⌨', listen: '◎', ask: '❝', record: '●', set: '✎', log: '≡', http: '⇄',
  lookup: '⌕', now: '◷', queue: '→', transfer: '↗', hangup: '✕', finished: '■', error: '⚠', fallback: '↪',
};

// Fields that only make the line longer.
const QUIET = new Set(['kind', 'line', 'column', 'timeout_ms', 'max_digits', 'terminator', 'max_secs', 'transcribe', 'body', 'announce_secs', 'hold', 'waiting', 'caller_hung_up']);

/**
 * One step of a path ({kind, line, answer?, waiting?, caller_hung_up?, …the
 * command's or the end's fields}) as a readable line: [icon, text, the rest].
 */
export function stepParts(step) {
  const used = new Set(QUIET);
  const pick = (...keys) => {
    for (const k of keys) {
      if (step[k] !== undefined && step[k] !== null && step[k] !== '') {
        used.add(k);
        return step[k];
      }
    }
    return undefined;
  };
  const k = step.kind;
  const hasAnswer = Object.prototype.hasOwnProperty.call(step, 'answer');
  const ans = hasAnswer ? step.answer : undefined;
  used.add('answer');
  const prompt = () => {
    const p = pick('prompt');
    return p !== undefined ? ` ${fmtValue(p)}` : '';
  };
  let text;
  switch (k) {
    case 'answer':
      text = 'answer';
      break;
    case 'play':
      text = `play${prompt()}`;
      break;
    case 'say': {
      const t = pick('text');
      text = `say${t !== undefined ? ` “${fmtValue(t)}”` : ''}${step.prompt ? ` (prompt ${fmtValue(pick('prompt'))})` : ''}`;
      break;
    }
    case 'gather':
      text = `gather${prompt()}`;
      if (hasAnswer) text += ans === '' ? ' → no digits' : ` → ${fmtValue(ans)}`;
      break;
    case 'listen':
      text = `listen${prompt()}`;
      if (ans && typeof ans === 'object') {
        if (ans.text) text += ` → “${ans.text}”`;
        else if (ans.digits) text += ` → ${ans.digits}`;
        else text += ans.available === false ? ' → no speech recognition' : ' → silence';
      }
      break;
    case 'ask': {
      const t = pick('text');
      text = `ask${t !== undefined ? ` “${fmtValue(t)}”` : ''}`;
      if (hasAnswer) text += ans === '' ? ' → no reply' : ` → “${fmtValue(ans)}”`;
      break;
    }
    case 'record':
      text = `record${prompt()}`;
      if (ans && typeof ans === 'object') text += ans.recording ? ` → ${ans.secs || 0} s${ans.transcript ? ` “${ans.transcript}”` : ''}` : ' → nothing recorded';
      break;
    case 'lookup':
      text = 'lookup contact';
      if (hasAnswer) text += ans && typeof ans === 'object' ? ` → ${ans.name || ans.display_name || ans.id || 'found'}` : ' → unknown caller';
      else text += ' → unknown caller';
      break;
    case 'now':
      text = `now${hasAnswer ? ` → ${fmtValue(ans)}` : ''}`;
      break;
    case 'set': {
      const key = pick('name', 'key');
      used.add('value');
      text = `set ${fmtValue(key)} = ${JSON.stringify(step.value === undefined ? null : step.value)}`;
      break;
    }
    case 'log':
      text = `log ${fmtValue(pick('message')) || ''}`.trim();
      break;
    case 'http': {
      const method = pick('method');
      const url = pick('url');
      text = `http ${method ? `${fmtValue(method)} ` : ''}${fmtValue(url) || ''}`.trim();
      if (ans && typeof ans === 'object') text += ans.error ? ` → failed: ${ans.error}` : ` → ${ans.status}`;
      break;
    }
    case 'queue': {
      const q = pick('queue');
      const prio = pick('priority');
      const skills = pick('skills');
      const extra = [prio !== undefined ? `priority ${prio}` : null, skills !== undefined && fmtValue(skills) ? `skills ${fmtValue(skills)}` : null].filter(Boolean);
      text = `queue ${fmtValue(q) || ''}${extra.length ? ` (${extra.join(', ')})` : ''}`;
      break;
    }
    case 'transfer':
      text = `transfer to ${fmtValue(pick('to')) || '?'}`;
      break;
    case 'hangup':
      text = 'hang up';
      break;
    case 'finished':
      text = 'end of the script';
      break;
    case 'error':
      text = `error: ${fmtValue(pick('message')) || 'unknown'}`;
      break;
    case 'fallback': {
      const q = pick('queue', 'to');
      const reason = pick('reason', 'message');
      text = `fallback${q !== undefined ? ` → queue ${fmtValue(q)}` : ''}${reason !== undefined ? ` (${fmtValue(reason)})` : ''}`;
      break;
    }
    default:
      text = humanize(k || 'step').toLowerCase();
  }
  if (step.waiting) text += ' … waiting';
  if (step.caller_hung_up) text += ' → the caller hung up';
  const rest = Object.entries(step)
    .filter(([key, v]) => !used.has(key) && v !== null && v !== undefined && v !== '' && !(Array.isArray(v) && !v.length))
    .map(([key, v]) => `${key}: ${fmtValue(v)}`).join(' · ');
  return [STEP_ICON[k] || '•', text, rest];
}

/** An <ol> of steps; a step's line number moves the editor's caret there. */
function pathList(steps, gotoLine) {
  const ol = h('ol', { class: 'sim-path' });
  steps.forEach((st, i) => {
    const [ic, text, rest] = stepParts(st);
    ol.append(h('li', { class: st.kind === 'error' ? 'sim-step is-error' : `sim-step kind-${st.kind}`, 'data-step': String(i), 'data-step-kind': st.kind },
      h('span', { class: 'sim-icon', 'aria-hidden': 'true' }, ic),
      h('span', { class: 'sim-text' }, text, rest ? h('span', { class: 'sim-extra' }, ` · ${rest}`) : null),
      st.line ? lineLink(st.line, st.column, gotoLine) : h('span')));
  });
  return ol;
}

function lineLink(line, column, gotoLine) {
  return h('button', {
    type: 'button', class: 'line-link', 'aria-label': `Go to line ${line}${column ? `, column ${column}` : ''}`,
    onclick: () => gotoLine(line, column),
  }, `line ${line}`);
}

function endText(e) {
  switch (e.kind) {
    case 'queue': {
      const extra = [
        e.priority !== undefined && e.priority !== null ? `priority ${e.priority}` : null,
        e.skills && fmtValue(e.skills) ? `skills ${fmtValue(e.skills)}` : null,
      ].filter(Boolean);
      return `queued to ${e.queue}${extra.length ? ` (${extra.join(', ')})` : ''}`;
    }
    case 'transfer':
      return `transferred to ${e.to}`;
    case 'hangup':
      return 'hung up';
    case 'finished':
      return 'the script finished';
    case 'error':
      return `error${e.line ? ` at line ${e.line}${e.column ? `:${e.column}` : ''}` : ''}: ${e.message}`;
    case 'fallback':
      return `fallback${e.queue ? ` to ${e.queue}` : ''}`;
    default:
      return humanize(e.kind).toLowerCase();
  }
}

/** A test's diff, "-" lines (expected) and "+" lines (got) coloured. */
function diffView(diff) {
  const pre = h('pre', { class: 'diff', 'data-diff': '', tabindex: '0', 'aria-label': 'Difference between expected and actual' });
  String(diff).split('\n').forEach((line, i) => {
    if (i) pre.append('\n');
    const t = line.trimStart();
    const cls = t.startsWith('- ') || t === '-' ? 'diff-del' : t.startsWith('+ ') || t === '+' ? 'diff-add' : t.startsWith('(') || t.startsWith('@') ? 'diff-hunk' : null;
    pre.append(cls ? h('span', { class: cls }, line) : line);
  });
  return pre;
}

/** Now in `tz`, as a datetime-local value ("2026-12-01T10:00"); "" if `tz` is unknown. */
function nowIn(tz) {
  try {
    const p = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
    }).formatToParts(new Date()).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}T${String(+p.hour % 24).padStart(2, '0')}:${p.minute}`;
  } catch {
    return '';
  }
}

/**
 * "2026-12-01T10:00" in `tz` as RFC 3339 with that zone's offset then
 * ("2026-12-01T10:00:00+01:00"); null when `tz` is not a time zone.
 */
export function zonedIso(local, tz) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(local);
  if (!m) return null;
  let fmt;
  try {
    fmt = new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
  } catch {
    return null;
  }
  const naive = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  const wall = (t) => {
    const p = Object.fromEntries(fmt.formatToParts(new Date(t)).map((x) => [x.type, x.value]));
    return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour % 24, +p.minute, +p.second);
  };
  let off = wall(naive) - naive;
  off = wall(naive - off) - (naive - off);
  const mins = Math.round(off / 60000);
  const sign = mins < 0 ? '-' : '+';
  const abs = Math.abs(mins);
  const pad = (n) => String(n).padStart(2, '0');
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6] || '00'}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}
