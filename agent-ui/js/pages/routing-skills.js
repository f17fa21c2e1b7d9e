// Supervisor › Skills: what agents know and queues ask for (languages,
// products, levels of support). List, create, rename, delete.

import { h, clear, timeEl } from '/js/dom.js';
import { api, post, del, getAll, ApiError, describeError } from '/js/api.js';
import { pageHeader, card, table, toast, announce, confirmDialog, errorRegion, busy } from '/js/ui.js';
import { pathField, showPathErrors, clearPathErrors } from './routing-shared.js';

export default async function skillsPage(root, ctx) {
  const canEdit = ['admin', 'supervisor'].includes(ctx.me.role);
  root.append(pageHeader('Skills', 'What agents know and queues ask for. Agents hold each skill at a level from 1 (basic) to 5 (expert).'));

  let skills = await getAll('/skills');

  // ---- create
  const region = errorRegion();
  region.tabIndex = -1;
  const name = pathField({ label: 'Name', path: 'name', required: true, attrs: { maxlength: '64', autocomplete: 'off' }, hint: 'e.g. Spanish, Billing, Premium support' });
  const description = pathField({ label: 'Description', path: 'description', attrs: { maxlength: '500', autocomplete: 'off' } });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create skill');
  const form = h('form', { class: 'form', 'aria-label': 'New skill', novalidate: true },
    region,
    h('div', { class: 'form-grid' }, name.wrap, description.wrap),
    h('div', { class: 'form-actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearPathErrors(form, region);
    await busy(submit, async () => {
      try {
        const made = await post('/skills', { name: name.input.value.trim(), description: description.input.value.trim() });
        skills.push(made);
        redraw(made.id);
        form.reset();
        toast(`Skill “${made.name}” created.`);
        announce(`Skill ${made.name} created`);
        name.input.focus();
      } catch (err) {
        showPathErrors(err, region, form);
      }
    }, 'Creating…');
  });
  if (canEdit) root.append(card({ title: 'New skill', body: form }));

  // ---- list
  const list = table({
    caption: 'Skills',
    empty: 'No skills yet. Create one above, then give it to agents and require it in queues.',
    columns: [
      { label: 'Skill', cell: (x) => h('span', { class: 'primary-cell', 'data-skill-name': '' }, x.name) },
      { label: 'Description', cell: (x) => x.description || h('span', { class: 'muted' }, '—') },
      { label: 'Created', class: 'nowrap', cell: (x) => timeEl(x.created_at, true) },
      ...(canEdit ? [{
        label: 'Actions',
        class: 'actions',
        cell: (x) => [
          h('button', { type: 'button', class: 'btn btn-sm', 'aria-label': `Rename ${x.name}`, onclick: () => rename(x) }, 'Rename'),
          h('button', { type: 'button', class: 'btn btn-sm btn-danger', 'aria-label': `Delete ${x.name}`, onclick: (e) => remove(x, e.currentTarget) }, 'Delete'),
        ],
      }] : []),
    ],
    rowData: (x) => ({ skill: x.id }),
  });
  const listCard = card({ title: 'All skills', flush: true, body: list.el });
  root.append(listCard);

  function redraw(newId) {
    skills.sort((a, b) => a.name.localeCompare(b.name));
    list.setRows(skills);
    if (newId) {
      const tr = list.tbody.querySelector(`tr[data-skill="${CSS.escape(newId)}"]`);
      if (tr) tr.classList.add('is-new');
    }
  }
  redraw();

  // Rename in place: the row turns into a small form.
  function rename(x) {
    const tr = list.tbody.querySelector(`tr[data-skill="${CSS.escape(x.id)}"]`);
    if (!tr) return;
    const r = errorRegion();
    const n = pathField({ label: 'Name', path: 'name', value: x.name, required: true, attrs: { maxlength: '64' } });
    const d = pathField({ label: 'Description', path: 'description', value: x.description, attrs: { maxlength: '500' } });
    const save = h('button', { type: 'submit', class: 'btn btn-primary btn-sm' }, 'Save');
    const cancel = h('button', { type: 'button', class: 'btn btn-sm', onclick: () => { redraw(); } }, 'Cancel');
    const f = h('form', { class: 'form inline-edit', 'aria-label': `Rename ${x.name}`, novalidate: true },
      r, h('div', { class: 'form-grid' }, n.wrap, d.wrap), h('div', { class: 'form-actions' }, save, cancel));
    f.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); redraw(); } });
    f.addEventListener('submit', async (e) => {
      e.preventDefault();
      await busy(save, async () => {
        try {
          const updated = await api('PUT', `/skills/${encodeURIComponent(x.id)}`, { name: n.input.value.trim(), description: d.input.value.trim() });
          skills = skills.map((k) => (k.id === x.id ? { ...k, ...updated } : k));
          redraw();
          toast(`Skill renamed to “${updated.name}”.`);
        } catch (err) {
          showPathErrors(err, r, f);
        }
      });
    });
    clear(tr);
    tr.append(h('td', { colspan: String(list.table.querySelectorAll('thead th').length) }, f));
    n.input.focus();
    n.input.select();
  }

  async function remove(x, button) {
    const ok = await confirmDialog({
      title: `Delete the skill “${x.name}”?`,
      message: 'Agents lose it and it can no longer be required. A skill that queues or agents still use cannot be deleted.',
      confirmLabel: 'Delete skill',
      danger: true,
    });
    if (!ok) return;
    await busy(button, async () => {
      try {
        await del(`/skills/${encodeURIComponent(x.id)}`);
        skills = skills.filter((k) => k.id !== x.id);
        redraw();
        toast(`Skill “${x.name}” deleted.`);
        announce(`Skill ${x.name} deleted`);
      } catch (err) {
        if (err instanceof ApiError && err.status === 409) {
          toast(`“${x.name}” is still in use: ${err.message}. Remove it from those queues and agents first.`, 'error', 8000);
        } else {
          toast(`Could not delete “${x.name}”: ${describeError(err)}`, 'error');
        }
      }
    });
  }
}
