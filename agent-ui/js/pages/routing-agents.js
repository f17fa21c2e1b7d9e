// Supervisor › Agents: who takes interactions, with which skills (levels
// 1-5) and how many at once per channel. List; create and edit; delete.

import { h, clear } from '/js/dom.js';
import { api, post, del, getAll, describeError } from '/js/api.js';
import { pageHeader, card, table, toast, announce, confirmDialog, errorRegion, busy, emptyState } from '/js/ui.js';
import { catalogue, CHANNELS, CHANNEL_LABEL, skillChips, fmtSecs, pathField, showPathErrors, clearPathErrors, numOrNull } from './routing-shared.js';

const ROUTING_DEFAULTS = { voice_blocks_other: true, max_no_answers: 1, wrap_up_secs: null };

export default async function agentsPage(root, ctx) {
  const canEdit = ['admin', 'supervisor'].includes(ctx.me.role);
  const newBtn = canEdit ? h('button', { type: 'button', class: 'btn btn-primary', onclick: () => openEditor(null) }, 'New agent') : null;
  root.append(pageHeader('Agents', 'Who takes interactions: their skills, how many they handle at once, and what happens between interactions.', newBtn));

  const [skills, agents, users] = await Promise.all([
    getAll('/skills'),
    getAll('/agents'),
    // Only admins may list users; supervisors type a user id instead.
    ctx.me.role === 'admin' ? getAll('/users') : Promise.resolve(null),
  ]);
  let cat = catalogue(skills, [], agents);

  const editorSlot = h('div', { 'data-slot': 'editor' });
  root.append(editorSlot);

  const list = table({
    caption: 'Agents',
    empty: 'No agents yet. Make a user an agent with “New agent”.',
    columns: [
      { label: 'Agent', cell: (a) => [h('span', { class: 'primary-cell' }, a.display_name || a.user_id), a.extension ? h('span', { class: 'sub mono' }, `ext. ${a.extension}`) : null] },
      { label: 'Skills', cell: (a) => skillChips(a.skills, cat, 'level') },
      { label: 'Capacity', cell: (a) => CHANNELS.filter((c) => (a.capacity || {})[c]).map((c) => `${CHANNEL_LABEL[c]} ${a.capacity[c]}`).join(', ') || h('span', { class: 'muted' }, 'None') },
      { label: 'Voice blocks others', cell: (a) => (routingOf(a).voice_blocks_other ? 'Yes' : 'No') },
      { label: 'Max no-answers', numeric: true, cell: (a) => String(routingOf(a).max_no_answers ?? '—') },
      { label: 'Wrap-up', numeric: true, cell: (a) => (routingOf(a).wrap_up_secs ? fmtSecs(routingOf(a).wrap_up_secs) : 'Until ended') },
      ...(canEdit ? [{
        label: 'Actions',
        class: 'actions',
        cell: (a) => [
          h('button', { type: 'button', class: 'btn btn-sm', 'aria-label': `Edit ${a.display_name}`, onclick: () => openEditor(a) }, 'Edit'),
          h('button', { type: 'button', class: 'btn btn-sm btn-danger', 'aria-label': `Delete ${a.display_name}`, onclick: (e) => remove(a, e.currentTarget) }, 'Delete'),
        ],
      }] : []),
    ],
    rowData: (a) => ({ agent: a.id }),
  });
  root.append(card({ title: 'All agents', flush: true, body: list.el }));

  function redraw() {
    agents.sort((a, b) => (a.display_name || '').localeCompare(b.display_name || ''));
    cat = catalogue(skills, [], agents);
    list.setRows(agents);
  }
  redraw();
  const wanted = ctx.params.get('id');
  if (wanted && canEdit) {
    const a = agents.find((x) => x.id === wanted);
    if (a) openEditor(a);
  }

  function openEditor(existing) {
    clear(editorSlot);
    const a = existing || { user_id: '', extension: '', skills: [], capacity: { voice: 1, chat: 0, sms: 0, email: 0 } };
    const r = { ...ROUTING_DEFAULTS, ...routingOf(a) };
    const region = errorRegion();
    region.tabIndex = -1;

    let user;
    if (existing) {
      user = pathField({ label: 'User', path: 'user_id', value: existing.display_name || existing.user_id, attrs: { readonly: true } });
    } else if (users) {
      const taken = new Set(agents.map((x) => x.user_id));
      const free = users.filter((u) => !taken.has(u.id));
      user = pathField({ label: 'User', path: 'user_id', required: true, options: [['', free.length ? 'Choose a user…' : 'Every user is already an agent'], ...free.map((u) => [u.id, `${u.display_name} (${u.email})`])] });
    } else {
      user = pathField({ label: 'User id', path: 'user_id', required: true, hint: 'Ask an admin for the user’s id (Admin › Users).', attrs: { class: 'mono', autocomplete: 'off' } });
    }
    const extension = pathField({ label: 'Extension', path: 'extension', value: a.extension || '', attrs: { maxlength: '16', autocomplete: 'off', inputmode: 'numeric' }, hint: 'Optional, e.g. 1001' });

    const skillRows = h('div', { class: 'skill-rows', 'data-rows': 'skills' });
    const skillBox = h('fieldset', { class: 'fieldset' },
      h('legend', null, 'Skills'),
      h('span', { class: 'hint' }, 'Level 1 (basic) to 5 (expert). Queues require a minimum level.'),
      skillRows,
      h('button', {
        type: 'button', class: 'btn btn-sm',
        onclick: () => { addSkillRow(null, 3); const s = skillRows.lastElementChild.querySelector('select'); s.focus(); },
      }, '+ Add skill'));
    for (const s of a.skills || []) addSkillRow(s.skill_id, s.level);

    const caps = CHANNELS.map((c) => pathField({ label: `${CHANNEL_LABEL[c]}`, path: `capacity.${c}`, type: 'number', value: (a.capacity || {})[c] ?? 0, attrs: { min: '0', max: '20', step: '1', inputmode: 'numeric', class: 'input-short', 'data-capacity': c } }));
    const capBox = h('fieldset', { class: 'fieldset' },
      h('legend', null, 'Capacity per channel'),
      h('span', { class: 'hint' }, 'How many interactions of each channel at once (0: none of that channel).'),
      h('div', { class: 'form-grid cap-grid' }, caps.map((c) => c.wrap)));

    const blocks = h('input', { type: 'checkbox', checked: r.voice_blocks_other, 'data-path': 'routing.voice_blocks_other' });
    const maxNo = pathField({ label: 'Missed offers before “away”', path: 'routing.max_no_answers', type: 'number', value: r.max_no_answers, hint: 'After this many unanswered offers in a row the agent is set away.', attrs: { min: '0', step: '1', inputmode: 'numeric' } });
    const wrap = pathField({ label: 'Wrap-up (seconds)', path: 'routing.wrap_up_secs', type: 'number', value: r.wrap_up_secs, hint: 'Empty: wrap-up lasts until the agent ends it.', attrs: { min: '0', step: '1', inputmode: 'numeric' } });

    const save = h('button', { type: 'submit', class: 'btn btn-primary' }, existing ? 'Save agent' : 'Create agent');
    const cancel = h('button', { type: 'button', class: 'btn', onclick: close }, 'Cancel');
    const form = h('form', { class: 'form', 'aria-label': existing ? 'Edit agent' : 'New agent', novalidate: true, 'data-agent-form': existing ? existing.id : 'new' },
      region,
      h('div', { class: 'form-grid' }, user.wrap, extension.wrap),
      skillBox,
      capBox,
      h('div', { class: 'form-grid' },
        h('div', { class: 'field' }, h('label', { class: 'check' }, blocks, 'A voice call blocks other channels'),
          h('span', { class: 'hint' }, 'While on a call, no chats, SMS or emails are offered.')),
        maxNo.wrap, wrap.wrap),
      h('div', { class: 'form-actions' }, save, cancel));
    form.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); close(); } });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearPathErrors(form, region);
      const body = {
        user_id: existing ? existing.user_id : user.input.value.trim(),
        extension: extension.input.value.trim() || null,
        skills: [...skillRows.querySelectorAll('.skill-row')].map((row) => ({ skill_id: row.querySelector('select').value, level: numOrNull(row.querySelector('input')) })),
        capacity: Object.fromEntries(caps.map((c) => [c.input.dataset.capacity, numOrNull(c.input) ?? 0])),
        routing: { voice_blocks_other: blocks.checked, max_no_answers: numOrNull(maxNo.input) ?? 0, wrap_up_secs: numOrNull(wrap.input) },
      };
      await busy(save, async () => {
        try {
          const saved = existing ? await api('PUT', `/agents/${encodeURIComponent(existing.id)}`, body) : await post('/agents', body);
          const idx = agents.findIndex((x) => x.id === saved.id);
          if (idx >= 0) agents[idx] = saved; else agents.push(saved);
          redraw();
          toast(`Agent ${saved.display_name || ''} ${existing ? 'saved' : 'created'}.`.replace('  ', ' '));
          announce(`Agent ${existing ? 'saved' : 'created'}`);
          close();
        } catch (err) {
          showPathErrors(err, region, form);
        }
      }, existing ? 'Saving…' : 'Creating…');
    });

    editorSlot.append(card({ title: existing ? `Edit agent ${existing.display_name || ''}`.trim() : 'New agent', body: form }));
    (existing ? extension.input : user.input).focus();

    function addSkillRow(skillId, level) {
      const idx = skillRows.children.length;
      const sel = pathField({ label: 'Skill', path: `skills[${idx}].skill_id`, value: skillId || '', options: [['', skills.length ? 'Choose a skill…' : 'No skills yet'], ...skills.map((x) => [x.id, x.name])] });
      const lvl = pathField({ label: 'Level (1-5)', path: `skills[${idx}].level`, type: 'number', value: level ?? 3, attrs: { min: '1', max: '5', step: '1', inputmode: 'numeric', class: 'input-short' } });
      const row = h('div', { class: 'skill-row' }, sel.wrap, lvl.wrap,
        h('button', {
          type: 'button', class: 'btn btn-sm btn-ghost remove-row', 'aria-label': 'Remove this skill',
          onclick: () => {
            row.remove();
            [...skillRows.children].forEach((rw, i) => {
              const [s1, s2] = rw.querySelectorAll('[data-path]');
              s1.dataset.path = `skills[${i}].skill_id`;
              s2.dataset.path = `skills[${i}].level`;
            });
          },
        }, 'Remove'));
      skillRows.append(row);
    }

    function close() {
      clear(editorSlot);
      if (newBtn) newBtn.focus();
    }
  }

  async function remove(a, button) {
    const ok = await confirmDialog({
      title: `Remove ${a.display_name || 'this agent'} as an agent?`,
      message: 'They stop receiving interactions. Their user account stays.',
      confirmLabel: 'Remove agent',
      danger: true,
    });
    if (!ok) return;
    await busy(button, async () => {
      try {
        await del(`/agents/${encodeURIComponent(a.id)}`);
        const idx = agents.findIndex((x) => x.id === a.id);
        if (idx >= 0) agents.splice(idx, 1);
        redraw();
        toast(`${a.display_name || 'The agent'} is no longer an agent.`);
      } catch (err) {
        toast(`Could not remove the agent: ${describeError(err)}`, 'error', 8000);
      }
    });
  }

  if (!skills.length && canEdit) {
    editorSlot.before(card({
      body: emptyState({
        iconName: 'info', title: 'No skills yet', text: 'Agents are matched to queues by skills: create some first.',
        children: h('a', { class: 'btn', href: '#/supervisor/skills' }, 'Go to Skills'),
      }),
    }));
  }
}

/** The agent's routing settings, with the defaults where unset (null). */
function routingOf(a) {
  const set = Object.entries((a && a.routing) || {}).filter(([, v]) => v !== null && v !== undefined);
  return { ...ROUTING_DEFAULTS, ...Object.fromEntries(set) };
}
