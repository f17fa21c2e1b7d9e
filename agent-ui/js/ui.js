// Reusable pieces of the console: page headers, cards, tables with sticky
// headers, empty states, form fields with inline errors, dialogs, toasts.

import { h, s, append, clear, nextId, humanize } from './dom.js';
import { ApiError, describeError } from './api.js';

// ---- icons (stroke icons, 20x20, decorative) ----------------------------------

const ICONS = {
  headset: ['M4 11a6 6 0 0 1 12 0', 'M4 11v3a1.5 1.5 0 0 0 1.5 1.5H7v-5H5.5A1.5 1.5 0 0 0 4 12', 'M16 11v3a1.5 1.5 0 0 1-1.5 1.5H13v-5h1.5A1.5 1.5 0 0 1 16 12', 'M13 16.5c0 1-1.3 1.5-3 1.5'],
  chart: ['M3 17h14', 'M5.5 14V9', 'M10 14V5', 'M14.5 14v-3'],
  megaphone: ['M3 8v4h3l6 4V4L6 8H3z', 'M15 7.5a3 3 0 0 1 0 5'],
  contacts: ['M4 3h11a1 1 0 0 1 1 1v12a1 1 0 0 1-1 1H4z', 'M7.5 9a2 2 0 1 0 4 0 2 2 0 0 0-4 0', 'M6.5 14c.6-1.6 1.8-2.4 3.5-2.4s2.9.8 3.5 2.4', 'M2.5 6h3M2.5 10h3M2.5 14h3'],
  shield: ['M10 2.5l6 2.3v4.6c0 3.8-2.6 6.6-6 8-3.4-1.4-6-4.2-6-8V4.8z', 'M7.5 10l1.8 1.8 3.4-3.6'],
  info: ['M10 17.5a7.5 7.5 0 1 0 0-15 7.5 7.5 0 0 0 0 15z', 'M10 9v5', 'M10 6.2v.1'],
  warning: ['M10 3l8 14H2z', 'M10 8v4', 'M10 14.5v.1'],
  key: ['M12.5 7.5a3.5 3.5 0 1 1-1 2.5', 'M9.3 10.7L3 17', 'M5 15l2 2', 'M6.5 13.5l1.5 1.5'],
  hook: ['M7 4a3 3 0 1 1 3 3', 'M10 7v3a4 4 0 1 1-6 3.5', 'M16 13.5a3 3 0 1 1-4.5-2.6'],
  list: ['M7 5h10M7 10h10M7 15h10', 'M3.5 5h.1M3.5 10h.1M3.5 15h.1'],
  users: ['M7.5 9a3 3 0 1 0 0-6 3 3 0 0 0 0 6z', 'M2 17c.7-3 2.8-4.5 5.5-4.5S12.3 14 13 17', 'M13 3.5a3 3 0 0 1 0 5.6', 'M15 12.8c1.5.6 2.5 2 3 4.2'],
  building: ['M4 17V4h8v13', 'M12 8h4v9', 'M2.5 17h15', 'M6.5 7h3M6.5 10h3M6.5 13h3'],
  inbox: ['M3 11l2.5-7h9L17 11v5H3z', 'M3 11h4l1 2h4l1-2h4'],
  activity: ['M2.5 10h3l2-5 4 10 2-5h4'],
  jobs: ['M3 5h14M3 10h9M3 15h5', 'M15 11a3 3 0 1 0 0 6 3 3 0 0 0 0-6z'],
  phone: ['M5 3h3l1.5 4-2 1.2a9 9 0 0 0 4.3 4.3L13 10.5l4 1.5v3a2 2 0 0 1-2 2A12 12 0 0 1 3 5a2 2 0 0 1 2-2z'],
};

export function icon(name, cls) {
  const paths = ICONS[name] || ICONS.info;
  return s('svg', { viewBox: '0 0 20 20', fill: 'none', stroke: 'currentColor', 'stroke-width': '1.6', 'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'aria-hidden': 'true', focusable: 'false', class: cls },
    paths.map((d) => s('path', { d })));
}

// ---- layout ----------------------------------------------------------------------

export function pageHeader(title, subtitle, actions, crumbs) {
  return h('div', { class: 'page-header' },
    h('div', null,
      crumbs ? h('div', { class: 'crumbs' }, crumbs) : null,
      h('h1', { tabindex: '-1', 'data-page-title': '' }, title),
      subtitle ? h('p', { class: 'subtitle' }, subtitle) : null),
    actions ? h('div', { class: 'btn-row' }, actions) : null);
}

/** card({title, subtitle, actions, body, flush, foot, labelledBy}) */
export function card({ title, subtitle, actions, body, flush = false, foot, tag = 'section', headingLevel = 'h2' } = {}) {
  const headId = title ? nextId('card') : null;
  const el = h(tag, { class: 'card', 'aria-labelledby': headId });
  if (title) {
    el.append(h('div', { class: 'card-head' },
      h('div', null, h(headingLevel, { id: headId }, title), subtitle ? h('p', null, subtitle) : null),
      actions ? h('div', { class: 'btn-row' }, actions) : null));
  }
  const bodyEl = h('div', { class: flush ? 'card-body flush' : 'card-body' }, body);
  el.append(bodyEl);
  if (foot) el.append(h('div', { class: 'card-foot' }, foot));
  el.body = bodyEl;
  return el;
}

export function emptyState({ iconName = 'inbox', title, text, children, large = false, headingLevel = 'h3' }) {
  return h('div', { class: large ? 'empty empty-lg' : 'empty' },
    icon(iconName),
    h(headingLevel, null, title),
    text ? h('p', null, text) : null,
    children);
}

export function loading(text = 'Loading…') {
  return h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

export function callout({ iconName = 'info', title, text, tone }) {
  return h('div', { class: tone === 'warning' ? 'callout callout-warning' : 'callout' },
    icon(iconName),
    h('div', null, h('strong', null, title), text ? h('p', null, text) : null));
}

const TONES = {
  admin: 'accent', supervisor: 'accent', agent: 'accent', marketer: 'accent',
  active: 'success', succeeded: 'success', delivered: 'success', connected: 'success', live: 'success',
  running: 'accent', queued: 'warning', pending: 'warning', offered: 'warning', in_flow: 'accent', created: '',
  wrap_up: 'accent', closed: '', inactive: '', revoked: 'danger', failed: 'danger', cancelled: '', expired: 'warning',
  disabled: '',
};

export function badge(text, tone) {
  const t = tone === undefined ? TONES[String(text).toLowerCase()] : tone;
  return h('span', { class: t ? `badge badge-${t}` : 'badge' }, humanize(text));
}

/**
 * table({caption, columns: [{label, cell(row) -> node|string, class, numeric}], rows, empty})
 * Returns {el, tbody, setRows(rows)}.
 */
export function table({ caption, columns, rows = [], empty = 'Nothing here yet.', tall = false, rowClass, rowData }) {
  const tbody = h('tbody');
  const tbl = h('table', { class: 'table' },
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.numeric ? 'num' : c.headClass }, c.label)))),
    tbody);
  const wrap = h('div', { class: tall ? 'table-wrap tall' : 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption || 'Table' }, tbl);
  function rowEl(r) {
    const tr = h('tr', { class: rowClass ? rowClass(r) : null, dataset: rowData ? rowData(r) : null });
    for (const c of columns) {
      const v = c.cell(r);
      tr.append(h('td', { class: [c.numeric ? 'num' : '', c.class || ''].join(' ').trim() || null }, v));
    }
    return tr;
  }
  function setRows(list) {
    clear(tbody);
    if (!list.length) {
      tbody.append(h('tr', null, h('td', { class: 'table-empty', colspan: String(columns.length) }, empty)));
      return;
    }
    for (const r of list) tbody.append(rowEl(r));
  }
  function addRows(list) {
    if (tbody.querySelector('.table-empty')) clear(tbody);
    for (const r of list) tbody.append(rowEl(r));
  }
  setRows(rows);
  return { el: wrap, table: tbl, tbody, setRows, addRows, rowEl };
}

// ---- forms -----------------------------------------------------------------------

/**
 * field({label, name, type, value, hint, required, options: [[value, label]], attrs})
 * Returns the wrapper; wrapper.input is the control.
 */
export function field({ label, name, type = 'text', value, hint, required = false, options, attrs = {}, id }) {
  const inputId = id || nextId(name || 'field');
  const hintId = hint ? `${inputId}-hint` : null;
  const errId = `${inputId}-error`;
  let input;
  if (options) {
    input = h('select', { id: inputId, name, required, ...attrs },
      options.map(([v, l]) => h('option', { value: v }, l)));
    if (value !== undefined && value !== null) input.value = String(value);
  } else {
    input = h('input', { id: inputId, name, type, required, value: value ?? '', ...attrs });
  }
  input.setAttribute('aria-describedby', [hintId, errId].filter(Boolean).join(' '));
  const wrap = h('div', { class: 'field' },
    h('label', { for: inputId }, label, required ? h('span', { class: 'req', 'aria-hidden': 'true' }, '*') : null),
    input,
    hint ? h('span', { id: hintId, class: 'hint' }, hint) : null,
    h('span', { id: errId, class: 'field-error' }));
  wrap.input = input;
  return wrap;
}

/** A form-level error region (role=alert) to pass to showErrors(). */
export function errorRegion() {
  return h('div', { class: 'form-error', role: 'alert', 'aria-live': 'assertive' });
}

export function clearErrors(form, region) {
  if (region) clear(region);
  if (!form) return;
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.field-error')) clear(el);
}

/**
 * Shows an error: field errors next to their inputs (matched by name, e.g.
 * `password` or `event_kinds[1]` -> `event_kinds`), the rest in the region.
 */
export function showErrors(err, region, form) {
  clearErrors(form, region);
  const fields = err instanceof ApiError ? err.fields : [];
  const unmatched = [];
  let firstInvalid = null;
  for (const f of fields) {
    const base = String(f.path || '').split(/[.[]/)[0];
    const input = form && base ? form.querySelector(`[name="${CSS.escape(base)}"]`) : null;
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      const errEl = form.querySelector(`#${CSS.escape(input.id)}-error`);
      if (errEl) append(errEl, errEl.textContent ? '; ' : '', `${humanize(base)} ${f.message}`);
      firstInvalid = firstInvalid || input;
    } else {
      unmatched.push(f);
    }
  }
  if (region) {
    const msg = fields.length
      ? (fields.length === 1 ? 'Please fix the highlighted field.' : `Please fix the ${fields.length} highlighted fields.`)
      : describeError(err);
    append(region, fields.length && !unmatched.length ? msg : (fields.length ? 'Please fix these problems:' : msg));
    if (unmatched.length) region.append(h('ul', null, unmatched.map((f) => h('li', null, `${f.path}: ${f.message}`))));
  }
  if (firstInvalid) firstInvalid.focus();
}

/** Marks a submit button busy while `fn` runs. */
export async function busy(button, fn, busyLabel) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  if (busyLabel) {
    clear(button);
    button.append(h('span', { class: 'spinner', 'aria-hidden': 'true' }), busyLabel);
  }
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    if (busyLabel) {
      clear(button);
      button.append(label);
    }
  }
}

// ---- dialogs ---------------------------------------------------------------------

/** A modal confirmation. Resolves true when confirmed. */
export function confirmDialog({ title, message, confirmLabel = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const titleId = nextId('dlg');
    const descId = nextId('dlg');
    const ok = h('button', { type: 'button', class: danger ? 'btn btn-danger-solid' : 'btn btn-primary' }, confirmLabel);
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const dlg = h('dialog', { 'aria-labelledby': titleId, 'aria-describedby': descId },
      h('div', { class: 'dialog-body' }, h('h2', { id: titleId }, title), h('p', { id: descId }, message)),
      h('div', { class: 'dialog-actions' }, cancel, ok));
    let result = false;
    ok.addEventListener('click', () => { result = true; dlg.close(); });
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => { dlg.remove(); resolve(result); });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

/**
 * A modal form. `build(form)` adds fields; `submit(form)` runs on submit and
 * may throw an ApiError, shown inline. Resolves with submit's result or null.
 */
export function formDialog({ title, description, submitLabel = 'Save', build, submit, danger = false }) {
  return new Promise((resolve) => {
    const titleId = nextId('dlg');
    const region = errorRegion();
    const form = h('form', { class: 'form', novalidate: true });
    const ok = h('button', { type: 'submit', class: danger ? 'btn btn-danger-solid' : 'btn btn-primary' }, submitLabel);
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    form.append(h('div', { class: 'dialog-body' },
      h('h2', { id: titleId }, title),
      description ? h('p', null, description) : null,
      region,
      build(form)));
    form.append(h('div', { class: 'dialog-actions' }, cancel, ok));
    const dlg = h('dialog', { 'aria-labelledby': titleId }, form);
    let result = null;
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        result = await busy(ok, () => submit(form));
        dlg.close();
      } catch (err) {
        showErrors(err, region, form);
      }
    });
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => { dlg.remove(); resolve(result); });
    document.body.append(dlg);
    dlg.showModal();
    const first = form.querySelector('input, select');
    if (first) first.focus();
  });
}

// ---- toasts & announcements ---------------------------------------------------------

export function toast(message, tone = 'info', ms = 4000) {
  const region = document.getElementById('toasts');
  if (!region) return;
  const t = h('div', { class: tone === 'error' ? 'toast toast-error' : 'toast', role: tone === 'error' ? 'alert' : null }, message);
  region.append(t);
  setTimeout(() => t.remove(), ms);
}

export function announce(message) {
  const el = document.getElementById('announcer');
  if (!el) return;
  el.textContent = '';
  // A tick later, so that repeated messages are announced again.
  setTimeout(() => { el.textContent = message; }, 30);
}

// ---- one-time secrets ---------------------------------------------------------------

/**
 * A panel showing a secret once, with a copy button and a warning. Removing
 * the panel (Dismiss) drops the only reference to the secret.
 */
export function secretPanel({ title, label, secret, warning, onDismiss, testId }) {
  const valueId = nextId('secret');
  const status = h('span', { class: 'small', role: 'status', 'aria-live': 'polite' });
  const copyBtn = h('button', { type: 'button', class: 'btn btn-primary' }, 'Copy');
  const dismiss = h('button', { type: 'button', class: 'btn' }, 'I have stored it — dismiss');
  const value = h('code', { id: valueId, class: 'secret-value', 'data-secret': testId || 'secret', tabindex: '0' }, secret);
  const panel = h('section', { class: 'secret-panel', 'aria-labelledby': `${valueId}-title`, 'data-secret-panel': testId || 'secret' },
    h('h2', { id: `${valueId}-title` }, title),
    h('p', null, h('strong', null, 'Copy it now: '), warning),
    h('div', { class: 'label', id: `${valueId}-label` }, label),
    h('div', { class: 'secret-row' }, value, copyBtn),
    h('div', { class: 'btn-row' }, dismiss, status));
  value.setAttribute('aria-labelledby', `${valueId}-label`);
  copyBtn.addEventListener('click', async () => {
    const ok = await copyText(secret, value);
    status.textContent = ok ? 'Copied to the clipboard.' : 'Could not copy automatically: select the text and copy it.';
  });
  dismiss.addEventListener('click', () => {
    panel.remove();
    if (onDismiss) onDismiss();
  });
  return panel;
}

async function copyText(text, node) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the selection fallback
  }
  try {
    const range = document.createRange();
    range.selectNodeContents(node);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    const ok = document.execCommand && document.execCommand('copy');
    return Boolean(ok);
  } catch {
    return false;
  }
}

/** A "Load more" footer for cursor-paged lists. */
export function loadMoreButton(onClick) {
  const btn = h('button', { type: 'button', class: 'btn btn-sm', hidden: true }, 'Load more');
  btn.addEventListener('click', async () => {
    await busy(btn, onClick, 'Loading…');
  });
  return btn;
}

export const ROLES = ['admin', 'supervisor', 'agent', 'marketer'];
export const ROLE_HELP = {
  admin: 'Admin — everything, including users, keys and settings',
  supervisor: 'Supervisor — queues, agents, interactions and contacts',
  agent: 'Agent — handles interactions',
  marketer: 'Marketer — contacts and campaigns',
};
