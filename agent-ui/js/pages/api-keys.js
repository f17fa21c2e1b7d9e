// Admin > API keys: list, create (the token is shown once), revoke.

import { h, clear, humanize, timeEl } from '/js/dom.js';
import { get, post, del, describeError } from '/js/api.js';
import {
  pageHeader, card, table, badge, field, errorRegion, showErrors, clearErrors, busy,
  confirmDialog, toast, loadMoreButton, secretPanel, ROLES,
} from '/js/ui.js';

function keyStatus(k) {
  if (k.revoked_at) return 'revoked';
  if (k.expires_at && new Date(k.expires_at).getTime() <= Date.now()) return 'expired';
  return 'active';
}

export default async function apiKeys(root) {
  root.append(pageHeader('API keys', 'Keys let programs call the Switchboard API. Each key acts with the role you give it.', null, 'Admin'));

  // ---- create
  const region = errorRegion();
  const f = {
    name: field({ label: 'Name', name: 'name', required: true, hint: 'What uses it, e.g. “CRM sync”.', attrs: { autocomplete: 'off', maxlength: '120' } }),
    role: field({ label: 'Role', name: 'role', value: 'agent', options: ROLES.map((r) => [r, humanize(r)]), hint: 'Give the least access that works.' }),
    expires: field({ label: 'Expires (optional)', name: 'expires_at', type: 'datetime-local', hint: 'Leave empty for a key that does not expire.' }),
  };
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create key');
  const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'New API key' },
    region,
    h('div', { class: 'form-grid' }, f.name, f.role, f.expires),
    h('div', { class: 'form-actions' }, submit));
  const secretSlot = h('div', { 'data-slot': 'secret' });
  root.append(secretSlot, card({ title: 'Create an API key', subtitle: 'The whole key is shown once, right after you create it.', body: form }));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form, region);
    const body = { name: f.name.input.value.trim(), role: f.role.input.value };
    if (f.expires.input.value) {
      // datetime-local is the user's local time; the API wants an instant.
      body.expires_at = new Date(f.expires.input.value).toISOString();
    }
    await busy(submit, async () => {
      try {
        const k = await post('/api-keys', body);
        const { token, ...view } = k;
        rows.unshift(view);
        list.setRows(rows);
        form.reset();
        f.role.input.value = 'agent';
        clear(secretSlot);
        const panel = secretPanel({
          title: `New API key “${view.name}”`,
          label: 'API key',
          secret: token,
          warning: 'this is the only time the whole key is shown. Store it in your secret manager; if you lose it, revoke it and create a new one.',
          testId: 'api-key-token',
          onDismiss: () => submit.focus(),
        });
        secretSlot.append(panel);
        panel.querySelector('[data-secret]').focus();
      } catch (err) {
        showErrors(err, region, form);
      }
    }, 'Creating…');
  });

  // ---- list
  const tableError = h('div', { class: 'form-error inset', role: 'alert', 'aria-live': 'assertive' });
  const rows = [];
  const list = table({
    caption: 'API keys',
    empty: 'No API keys yet. Create one above to connect a program.',
    rowClass: (k) => (keyStatus(k) === 'active' ? null : 'is-muted'),
    columns: [
      { label: 'Name', cell: (k) => [h('span', { class: 'primary-cell' }, k.name), h('span', { class: 'sub mono' }, `sbk_${k.prefix}_…`)] },
      { label: 'Role', cell: (k) => badge(k.role) },
      { label: 'Status', cell: (k) => badge(keyStatus(k)) },
      { label: 'Created', cell: (k) => timeEl(k.created_at) },
      { label: 'Expires', cell: (k) => (k.expires_at ? timeEl(k.expires_at) : h('span', { class: 'muted' }, 'Never')) },
      { label: 'Last used', cell: (k) => (k.last_used_at ? timeEl(k.last_used_at, true) : h('span', { class: 'muted' }, 'Never')) },
      { label: h('span', { class: 'sr-only' }, 'Actions'), class: 'actions', cell: (k) => (k.revoked_at ? null : revokeButton(k)) },
    ],
  });

  function revokeButton(k) {
    const btn = h('button', { type: 'button', class: 'btn btn-sm btn-danger' }, 'Revoke', h('span', { class: 'sr-only' }, ` ${k.name}`));
    btn.addEventListener('click', async () => {
      clear(tableError);
      const ok = await confirmDialog({
        title: `Revoke “${k.name}”?`,
        message: 'Programs using this key stop working at once. This cannot be undone.',
        confirmLabel: 'Revoke key',
        danger: true,
      });
      if (!ok) { btn.focus(); return; }
      try {
        const updated = await busy(btn, () => del(`/api-keys/${k.id}`));
        const i = rows.findIndex((r) => r.id === k.id);
        if (i >= 0) rows[i] = updated;
        list.setRows(rows);
        toast(`“${k.name}” was revoked.`);
      } catch (err) {
        tableError.textContent = `Could not revoke “${k.name}”: ${describeError(err)}`;
      }
    });
    return btn;
  }

  let cursor = null;
  const more = loadMoreButton(() => loadPage());
  async function loadPage() {
    try {
      const page = await get('/api-keys', { limit: 50, cursor });
      rows.push(...page.items);
      list.setRows(rows);
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (err) {
      tableError.textContent = describeError(err);
    }
  }
  root.append(card({ title: 'Keys', flush: true, body: [tableError, list.el], foot: more }));
  await loadPage();
}
