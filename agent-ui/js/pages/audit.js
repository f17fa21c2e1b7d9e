// Admin > Audit log: newest first, paged, filterable by action.

import { h, clear, shortId, timeEl } from '/js/dom.js';
import { get, getAll, describeError } from '/js/api.js';
import { pageHeader, card, table, field, loadMoreButton, busy } from '/js/ui.js';

const ACTIONS = [
  'login.succeeded', 'login.failed', 'logout',
  'user.created', 'user.role_changed', 'user.activated', 'user.deactivated', 'user.password_reset', 'user.password_changed',
  'api_key.created', 'api_key.revoked', 'webhook.created', 'tenant.updated',
];

export default async function audit(root) {
  root.append(pageHeader('Audit log', 'Security-relevant actions in this workspace, newest first.', null, 'Admin'));

  const filter = field({
    label: 'Action',
    name: 'action',
    hint: 'An exact action, e.g. login.failed. Empty for all.',
    attrs: { list: 'audit-actions', autocomplete: 'off', spellcheck: 'false', placeholder: 'All actions' },
  });
  const apply = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Filter');
  const reset = h('button', { type: 'button', class: 'btn' }, 'Clear');
  const form = h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Filter the audit log' },
    filter, h('datalist', { id: 'audit-actions' }, ACTIONS.map((a) => h('option', { value: a }))),
    h('div', { class: 'btn-row' }, apply, reset));

  // Names for actor and target ids (users only; others show a short id).
  let names = new Map();
  try {
    names = new Map((await getAll('/users')).map((u) => [u.id, u.email]));
  } catch {
    // names are a nicety
  }
  const who = (type, id) => {
    if (!id) return h('span', { class: 'muted' }, type || '—');
    const n = names.get(id);
    return [h('span', null, n || `${type || ''} ${shortId(id)}`.trim()), h('span', { class: 'sub' }, type)];
  };

  const tableError = h('div', { class: 'form-error inset', role: 'alert', 'aria-live': 'assertive' });
  const status = h('span', { class: 'small muted', role: 'status', 'aria-live': 'polite' });
  const rows = [];
  const list = table({
    caption: 'Audit log entries',
    empty: 'No entries match.',
    columns: [
      { label: 'When', class: 'nowrap', cell: (a) => timeEl(a.created_at) },
      { label: 'Action', cell: (a) => h('code', null, a.action) },
      { label: 'Actor', cell: (a) => who(a.actor_type, a.actor_id) },
      { label: 'Target', cell: (a) => (a.target_type ? who(a.target_type, a.target_id) : h('span', { class: 'muted' }, '—')) },
      { label: 'IP', cell: (a) => (a.ip ? h('span', { class: 'mono' }, a.ip) : h('span', { class: 'muted' }, '—')) },
      { label: 'Details', cell: (a) => details(a.details) },
    ],
  });

  let cursor = null;
  let action = '';
  const more = loadMoreButton(() => loadPage());
  async function loadPage() {
    clear(tableError);
    try {
      const page = await get('/audit', { limit: 50, cursor, action: action || undefined });
      rows.push(...page.items);
      list.setRows(rows);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.textContent = `${rows.length}${cursor ? '+' : ''} entr${rows.length === 1 ? 'y' : 'ies'}${action ? ` for ${action}` : ''}`;
    } catch (err) {
      tableError.textContent = describeError(err);
    }
  }
  async function restart() {
    rows.length = 0;
    cursor = null;
    action = filter.input.value.trim();
    await loadPage();
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(apply, restart);
  });
  reset.addEventListener('click', () => {
    filter.input.value = '';
    restart();
    filter.input.focus();
  });

  root.append(card({ body: form }), card({ title: 'Entries', actions: status, flush: true, body: [tableError, list.el], foot: more }));
  await loadPage();
}

function details(d) {
  if (!d || typeof d !== 'object' || !Object.keys(d).length) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'small' }, Object.entries(d).map(([k, v], i) => [
    i ? ' · ' : '',
    h('span', { class: 'muted' }, `${k}: `),
    clip(typeof v === 'string' ? v : JSON.stringify(v)),
  ]));
}

function clip(text) {
  return text.length > 60 ? h('span', { title: text }, `${text.slice(0, 60)}…`) : text;
}
