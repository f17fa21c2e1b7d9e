// Admin > Users: list (cursor-paged), create, change role, (de)activate,
// reset password. Errors (409, 422) are shown next to what caused them.

import { h, clear, humanize, timeEl } from '/js/dom.js';
import { get, post, patch, describeError } from '/js/api.js';
import {
  pageHeader, card, table, badge, field, errorRegion, showErrors, clearErrors, busy,
  confirmDialog, formDialog, toast, loadMoreButton, ROLES, ROLE_HELP,
} from '/js/ui.js';

export default async function users(root, ctx) {
  const myId = ctx.me.user ? ctx.me.user.id : null;
  const addBtn = h('button', { type: 'button', class: 'btn btn-primary', 'aria-expanded': 'false', 'aria-controls': 'new-user-panel' }, 'Add user');
  root.append(pageHeader('Users', 'Who can sign in to this workspace, and what they may do.', addBtn, 'Admin'));

  // ---- create form
  const region = errorRegion();
  const f = {
    email: field({ label: 'Email', name: 'email', type: 'email', required: true, attrs: { autocomplete: 'off', maxlength: '320' } }),
    name: field({ label: 'Display name', name: 'display_name', required: true, attrs: { autocomplete: 'off', maxlength: '120' } }),
    role: field({ label: 'Role', name: 'role', value: 'agent', options: ROLES.map((r) => [r, humanize(r)]), hint: 'You can change it later.' }),
    password: field({ label: 'Initial password', name: 'password', type: 'password', required: true, hint: 'At least 12 characters. Share it safely.', attrs: { autocomplete: 'new-password', minlength: '12' } }),
  };
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create user');
  const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'New user' },
    region,
    h('div', { class: 'form-grid' }, f.email, f.name, f.role, f.password),
    h('div', { class: 'form-actions' }, submit, cancel));
  const panel = card({ title: 'New user', subtitle: 'They can sign in as soon as you create them.', body: form });
  panel.id = 'new-user-panel';
  panel.hidden = true;
  root.append(panel);

  function togglePanel(open) {
    panel.hidden = !open;
    addBtn.setAttribute('aria-expanded', String(open));
    if (open) f.email.input.focus();
    else {
      form.reset();
      clearErrors(form, region);
    }
  }
  addBtn.addEventListener('click', () => togglePanel(panel.hidden));
  cancel.addEventListener('click', () => { togglePanel(false); addBtn.focus(); });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form, region);
    const body = {
      email: f.email.input.value.trim(),
      display_name: f.name.input.value.trim(),
      role: f.role.input.value,
      password: f.password.input.value,
    };
    await busy(submit, async () => {
      try {
        const u = await post('/users', body);
        rows.push(u);
        list.setRows(rows);
        toast(`${u.display_name} can now sign in as ${u.role}.`);
        togglePanel(false);
        addBtn.focus();
      } catch (err) {
        if (err.code === 'conflict') {
          region.textContent = describeError(err);
          f.email.input.setAttribute('aria-invalid', 'true');
          f.email.input.focus();
        } else {
          showErrors(err, region, form);
        }
      }
    }, 'Creating…');
  });

  // ---- the table
  const tableError = h('div', { class: 'form-error inset', role: 'alert', 'aria-live': 'assertive' });
  const rows = [];
  const list = table({
    caption: 'Users',
    empty: 'No users yet.',
    tall: false,
    rowClass: (u) => (u.active ? null : 'is-muted'),
    columns: [
      { label: 'User', cell: (u) => [h('span', { class: 'primary-cell' }, u.display_name, u.id === myId ? h('span', { class: 'muted' }, ' (you)') : null), h('span', { class: 'sub', 'data-email': u.email }, u.email)] },
      { label: 'Role', cell: (u) => roleSelect(u) },
      { label: 'Status', cell: (u) => badge(u.active ? 'active' : 'inactive') },
      { label: 'Last sign-in', cell: (u) => (u.last_login_at ? timeEl(u.last_login_at, true) : h('span', { class: 'muted' }, 'Never')) },
      { label: 'Created', class: 'nowrap', cell: (u) => timeEl(u.created_at) },
      { label: h('span', { class: 'sr-only' }, 'Actions'), class: 'actions', cell: (u) => actions(u) },
    ],
  });

  function replace(u) {
    const i = rows.findIndex((r) => r.id === u.id);
    if (i >= 0) rows[i] = u;
    list.setRows(rows);
  }

  function roleSelect(u) {
    const sel = h('select', { class: 'inline-select', 'aria-label': `Role of ${u.display_name}`, disabled: u.id === myId, title: u.id === myId ? 'You cannot change your own role here' : null },
      ROLES.map((r) => h('option', { value: r, title: ROLE_HELP[r] }, humanize(r))));
    sel.value = u.role;
    sel.addEventListener('change', async () => {
      const to = sel.value;
      clear(tableError);
      sel.disabled = true;
      try {
        const updated = await patch(`/users/${u.id}`, { role: to });
        replace(updated);
        toast(`${updated.display_name} is now ${updated.role}.`);
      } catch (err) {
        sel.value = u.role;
        tableError.textContent = `Could not change the role of ${u.display_name}: ${describeError(err)}`;
      } finally {
        sel.disabled = u.id === myId;
      }
    });
    return sel;
  }

  function actions(u) {
    const toggle = h('button', { type: 'button', class: u.active ? 'btn btn-sm btn-danger' : 'btn btn-sm', disabled: u.id === myId },
      u.active ? 'Deactivate' : 'Activate', h('span', { class: 'sr-only' }, ` ${u.display_name}`));
    toggle.addEventListener('click', async () => {
      clear(tableError);
      if (u.active) {
        const ok = await confirmDialog({
          title: `Deactivate ${u.display_name}?`,
          message: 'They are signed out everywhere at once and cannot sign in until you activate them again.',
          confirmLabel: 'Deactivate',
          danger: true,
        });
        if (!ok) return;
      }
      try {
        const updated = await busy(toggle, () => patch(`/users/${u.id}`, { active: !u.active }));
        replace(updated);
        toast(`${updated.display_name} is ${updated.active ? 'active again' : 'deactivated'}.`);
      } catch (err) {
        tableError.textContent = `Could not ${u.active ? 'deactivate' : 'activate'} ${u.display_name}: ${describeError(err)}`;
      }
    });
    const reset = h('button', { type: 'button', class: 'btn btn-sm' }, 'Reset password', h('span', { class: 'sr-only' }, ` of ${u.display_name}`));
    reset.addEventListener('click', async () => {
      clear(tableError);
      const done = await formDialog({
        title: `Reset the password of ${u.display_name}`,
        description: 'They are signed out everywhere and sign in with the new password.',
        submitLabel: 'Set password',
        build: () => field({ label: 'New password', name: 'password', type: 'password', required: true, hint: 'At least 12 characters.', attrs: { autocomplete: 'new-password', minlength: '12' } }),
        submit: async (fm) => patch(`/users/${u.id}`, { password: fm.elements.password.value }),
      });
      if (done) toast(`The password of ${u.display_name} was changed.`);
      reset.focus();
    });
    return [reset, toggle];
  }

  const more = loadMoreButton(() => loadPage());
  let cursor = null;
  async function loadPage() {
    try {
      const page = await get('/users', { limit: 50, cursor });
      rows.push(...page.items);
      list.setRows(rows);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      count.textContent = `${rows.length}${cursor ? '+' : ''} user${rows.length === 1 ? '' : 's'}`;
    } catch (err) {
      tableError.textContent = describeError(err);
    }
  }
  const count = h('span', { class: 'small muted' });
  root.append(card({ title: 'All users', flush: true, actions: count, body: [tableError, list.el], foot: more }));
  await loadPage();
}
