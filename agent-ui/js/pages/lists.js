// Contacts > Lists: static lists with their member counts; create, rename,
// delete, and add or remove members by contact id (the contacts table adds
// its selection too).

import { h, clear, nextId, timeEl } from '/js/dom.js';
import { get, post, patch, del, describeError } from '/js/api.js';
import {
  pageHeader, card, table, field, errorRegion, busy, toast, confirmDialog, formDialog, loadMoreButton, emptyState,
} from '/js/ui.js';
import { canManage, showFormErrors, clearFormErrors, fmtNumber, plural } from '/js/pages/contacts-shared.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export default async function lists(root, ctx) {
  const manage = canManage(ctx.me.role);
  const addBtn = manage ? h('button', { type: 'button', class: 'btn btn-primary', 'aria-expanded': 'false', 'aria-controls': 'new-list-panel' }, 'New list') : null;
  root.append(pageHeader('Lists', manage
    ? 'Static lists of contacts: for campaigns, exports and filters. Add people from the contacts table or by id.'
    : 'Static lists of contacts and their sizes. Marketers and admins manage them.', addBtn, h('a', { href: '#/contacts', class: 'crumb-link' }, 'Contacts')));

  const rows = [];

  // ---- create
  if (manage) {
    const region = errorRegion();
    const name = field({ label: 'Name', name: 'name', required: true, attrs: { maxlength: '120', autocomplete: 'off' } });
    const description = field({ label: 'Description', name: 'description', hint: 'Optional, for your team.', attrs: { maxlength: '1000', autocomplete: 'off' } });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create list');
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'New list' },
      region, h('div', { class: 'form-grid' }, name, description), h('div', { class: 'form-actions' }, submit, cancel));
    const panel = card({ title: 'New list', body: form });
    panel.id = 'new-list-panel';
    panel.hidden = true;
    root.append(panel);
    const toggle = (open) => {
      panel.hidden = !open;
      addBtn.setAttribute('aria-expanded', String(open));
      if (open) name.input.focus();
      else {
        form.reset();
        clearFormErrors(form, region);
      }
    };
    addBtn.addEventListener('click', () => toggle(panel.hidden));
    cancel.addEventListener('click', () => { toggle(false); addBtn.focus(); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearFormErrors(form, region);
      await busy(submit, async () => {
        try {
          const l = await post('/lists', { name: name.input.value.trim(), description: description.input.value.trim() });
          rows.unshift(l);
          render();
          toast(`List “${l.name}” created.`);
          toggle(false);
          addBtn.focus();
        } catch (err) {
          showFormErrors(err, region, form);
        }
      }, 'Creating…');
    });
  }

  // ---- the table
  const tableError = h('div', { class: 'form-error inset', role: 'alert', 'aria-live': 'assertive' });
  const list = table({
    caption: 'Lists',
    empty: 'No lists yet.',
    rowData: (l) => ({ list: l.id }),
    columns: [
      { label: 'List', cell: (l) => [h('a', { class: 'primary-cell', href: `#/contacts?list_id=${encodeURIComponent(l.id)}` }, l.name), l.description ? h('span', { class: 'sub' }, l.description) : null] },
      { label: 'Members', numeric: true, cell: (l) => h('span', { 'data-members': String(l.members) }, fmtNumber(l.members)) },
      { label: 'Created', class: 'nowrap', cell: (l) => timeEl(l.created_at) },
      { label: h('span', { class: 'sr-only' }, 'Actions'), class: 'actions', cell: (l) => actions(l) },
    ],
  });
  const emptyBox = emptyState({
    iconName: 'list',
    title: 'No lists yet',
    text: manage ? 'Create a list, then add contacts to it from the contacts table or by id.' : 'Lists appear here when your marketing team creates them.',
  });

  function render() {
    emptyBox.hidden = rows.length > 0;
    list.el.hidden = rows.length === 0;
    list.setRows(rows);
    if (members) members.refreshLists();
  }

  function replace(l) {
    const i = rows.findIndex((r) => r.id === l.id);
    if (i >= 0) rows[i] = l;
    render();
  }

  function actions(l) {
    const view = h('a', { class: 'btn btn-sm', href: `#/contacts?list_id=${encodeURIComponent(l.id)}` }, 'View members', h('span', { class: 'sr-only' }, ` of ${l.name}`));
    if (!manage) return view;
    const rename = h('button', { type: 'button', class: 'btn btn-sm' }, 'Rename', h('span', { class: 'sr-only' }, ` ${l.name}`));
    rename.addEventListener('click', async () => {
      const updated = await formDialog({
        title: `Rename “${l.name}”`,
        submitLabel: 'Save',
        build: () => [
          field({ label: 'Name', name: 'name', value: l.name, required: true, attrs: { maxlength: '120', autocomplete: 'off' } }),
          field({ label: 'Description', name: 'description', value: l.description, attrs: { maxlength: '1000', autocomplete: 'off' } }),
        ],
        submit: (form) => patch(`/lists/${l.id}`, { name: form.elements.name.value.trim(), description: form.elements.description.value.trim() }),
      });
      if (updated) {
        replace(updated);
        toast(`List renamed to “${updated.name}”.`);
      }
      const again = list.tbody.querySelector(`tr[data-list="${CSS.escape(l.id)}"] button`);
      (again || rename).focus();
    });
    const remove = h('button', { type: 'button', class: 'btn btn-sm btn-danger' }, 'Delete', h('span', { class: 'sr-only' }, ` ${l.name}`));
    remove.addEventListener('click', async () => {
      clear(tableError);
      const ok = await confirmDialog({
        title: `Delete the list “${l.name}”?`,
        message: `Its ${plural(l.members, 'member')} stay as contacts; only the list goes. Segments that use in_list "${l.name}" stop working.`,
        confirmLabel: 'Delete list',
        danger: true,
      });
      if (!ok) {
        remove.focus();
        return;
      }
      try {
        await busy(remove, () => del(`/lists/${l.id}`));
        rows.splice(rows.findIndex((r) => r.id === l.id), 1);
        render();
        toast(`List “${l.name}” deleted.`);
        if (addBtn) addBtn.focus();
      } catch (err) {
        tableError.textContent = `Could not delete the list: ${describeError(err)}`;
      }
    });
    return [view, rename, remove];
  }

  let cursor = null;
  const more = loadMoreButton(() => loadPage());
  async function loadPage() {
    try {
      const page = await get('/lists', { limit: 100, cursor });
      rows.push(...page.items);
      render();
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (err) {
      tableError.textContent = describeError(err);
    }
  }
  root.append(card({ title: 'All lists', flush: true, body: [tableError, emptyBox, list.el], foot: more }));

  // ---- members by id
  const members = manage ? membersCard() : null;
  if (members) root.append(members.el);

  function membersCard() {
    const region = h('div', { class: 'form-error', role: 'alert', 'aria-live': 'assertive' });
    const status = h('p', { class: 'small', role: 'status', 'aria-live': 'polite' });
    const listId = nextId('mlist');
    const idsId = nextId('mids');
    const sel = h('select', { id: listId, name: 'list' });
    const ids = h('textarea', { id: idsId, name: 'contact_ids', rows: '4', class: 'mono', spellcheck: 'false', 'aria-describedby': `${idsId}-hint ${idsId}-error`, placeholder: '01a2…-…, one per line or separated by commas' });
    const addMembers = h('button', { type: 'button', class: 'btn btn-primary' }, 'Add to list');
    const removeMembers = h('button', { type: 'button', class: 'btn btn-danger' }, 'Remove from list');
    const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'Add or remove members' },
      region,
      h('div', { class: 'form-grid form-grid-wide' },
        h('div', { class: 'field' }, h('label', { for: listId }, 'List'), sel),
        h('div', { class: 'field field-span' },
          h('label', { for: idsId }, 'Contact IDs'),
          ids,
          h('span', { id: `${idsId}-hint`, class: 'hint' }, 'Up to 10,000 ids. A contact’s id is on its card’s address (…/contacts/card?id=…). To pick people by searching, select them in the contacts table and use “Add to list”.'),
          h('span', { id: `${idsId}-error`, class: 'field-error' }))),
      h('div', { class: 'form-actions' }, addMembers, removeMembers),
      status);
    form.addEventListener('submit', (e) => e.preventDefault());

    async function change(kind, btn) {
      clear(region);
      clear(status);
      ids.removeAttribute('aria-invalid');
      clear(form.querySelector(`#${idsId}-error`));
      const values = ids.value.split(/[\s,;]+/).map((x) => x.trim()).filter(Boolean);
      const bad = values.filter((v) => !UUID.test(v));
      const errEl = form.querySelector(`#${idsId}-error`);
      if (!sel.value) {
        region.textContent = 'Choose a list first.';
        sel.focus();
        return;
      }
      if (!values.length || bad.length) {
        errEl.textContent = !values.length ? 'Contact IDs: give at least one.' : `Contact IDs: these are not contact ids: ${bad.slice(0, 5).join(', ')}${bad.length > 5 ? '…' : ''}`;
        ids.setAttribute('aria-invalid', 'true');
        ids.focus();
        return;
      }
      try {
        const r = await busy(btn, () => post(`/lists/${sel.value}/members${kind === 'remove' ? '/remove' : ''}`, { contact_ids: [...new Set(values)] }));
        const l = rows.find((x) => x.id === sel.value);
        if (l) replace({ ...l, members: r.members });
        status.textContent = kind === 'remove'
          ? `${plural(r.changed, 'contact')} removed. The list has ${plural(r.members, 'member')}.`
          : `${plural(r.changed, 'contact')} added${r.changed < values.length ? ' (the others were already on it)' : ''}. The list has ${plural(r.members, 'member')}.`;
        ids.value = '';
      } catch (err) {
        showFormErrors(err, region, form);
      }
    }
    addMembers.addEventListener('click', () => change('add', addMembers));
    removeMembers.addEventListener('click', () => change('remove', removeMembers));

    return {
      el: card({ title: 'Add or remove members by id', subtitle: 'For ids from another system or a spreadsheet.', body: form }),
      refreshLists() {
        const was = sel.value;
        clear(sel);
        sel.append(h('option', { value: '' }, rows.length ? 'Choose a list…' : 'Create a list first'),
          rows.map((l) => h('option', { value: l.id }, `${l.name} (${fmtNumber(l.members)})`)));
        if (rows.some((l) => l.id === was)) sel.value = was;
      },
    };
  }

  await loadPage();
}
