// Supervisor › Queues: where interactions wait for an agent with the right
// skills. List; create and edit (strategy, priority, service level, required
// skills, channels, escalation steps, offer timeout, limits, overflow);
// delete. The API's validation errors appear next to their fields (by JSON
// path); its "unservable" warning is shown after a save.

import { h, clear, nextId } from '/js/dom.js';
import { api, post, del, getAll, describeError } from '/js/api.js';
import { pageHeader, card, table, toast, announce, confirmDialog, errorRegion, busy, emptyState, icon } from '/js/ui.js';
import {
  catalogue, CHANNELS, CHANNEL_LABEL, STRATEGIES, strategyLabel, skillChips, fmtSecs,
  pathField, showPathErrors, clearPathErrors, numOrNull,
} from './routing-shared.js';

const DEFAULTS = {
  name: '', description: '', strategy: 'longest_idle', priority: 0, sl_target_pct: 80, sl_threshold_secs: 20,
  required_skills: [],
  routing: { channels: ['voice', 'chat', 'sms', 'email'], escalation: [], offer_timeout_secs: 15, max_wait_secs: null, max_length: null, overflow: null, ring_all_max: 8 },
};

export default async function queuesPage(root, ctx) {
  const canEdit = ['admin', 'supervisor'].includes(ctx.me.role);
  const newBtn = canEdit ? h('button', { type: 'button', class: 'btn btn-primary', onclick: () => openEditor(null) }, 'New queue') : null;
  root.append(pageHeader('Queues', 'Where interactions wait for an agent with the right skills, and how that agent is chosen.', newBtn));

  const [skills, queues] = await Promise.all([getAll('/skills'), getAll('/queues')]);
  let cat = catalogue(skills, queues, []);

  const editorSlot = h('div', { 'data-slot': 'editor' });
  root.append(editorSlot);

  const list = table({
    caption: 'Queues',
    empty: h('span', null, 'No queues yet. ', canEdit ? 'Create one with “New queue”.' : ''),
    columns: [
      { label: 'Queue', cell: (q) => [h('span', { class: 'primary-cell' }, q.name), q.description ? h('span', { class: 'sub' }, q.description) : null] },
      { label: 'Strategy', cell: (q) => strategyLabel(q.strategy) },
      { label: 'Priority', numeric: true, cell: (q) => String(q.priority) },
      { label: 'Service level', cell: (q) => `${q.sl_target_pct}% in ${fmtSecs(q.sl_threshold_secs)}` },
      { label: 'Required skills', cell: (q) => skillChips(q.required_skills, cat, 'min') },
      { label: 'Channels', cell: (q) => ((q.routing && q.routing.channels) || []).map((c) => CHANNEL_LABEL[c] || c).join(', ') || 'All' },
      { label: 'Warnings', cell: (q) => (q.unservable && q.unservable.length ? h('span', { class: 'text-warning', 'data-unservable': q.unservable.join(',') }, `No agent for ${q.unservable.map((c) => CHANNEL_LABEL[c] || c).join(', ')}`) : h('span', { class: 'muted' }, '—')) },
      ...(canEdit ? [{
        label: 'Actions',
        class: 'actions',
        cell: (q) => [
          h('button', { type: 'button', class: 'btn btn-sm', 'aria-label': `Edit ${q.name}`, onclick: () => openEditor(q) }, 'Edit'),
          h('button', { type: 'button', class: 'btn btn-sm btn-danger', 'aria-label': `Delete ${q.name}`, onclick: (e) => remove(q, e.currentTarget) }, 'Delete'),
        ],
      }] : []),
    ],
    rowData: (q) => ({ queue: q.id }),
  });
  root.append(card({ title: 'All queues', flush: true, body: list.el }));

  function redraw() {
    queues.sort((a, b) => a.name.localeCompare(b.name));
    cat = catalogue(skills, queues, []);
    list.setRows(queues);
  }
  redraw();

  if (ctx.params.get('new') && canEdit) openEditor(null);
  const wanted = ctx.params.get('id');
  if (wanted) {
    const q = queues.find((x) => x.id === wanted);
    if (q && canEdit) openEditor(q);
  }

  // ---- the editor -----------------------------------------------------------

  function openEditor(existing) {
    clear(editorSlot);
    const q = existing ? { ...DEFAULTS, ...existing, routing: { ...DEFAULTS.routing, ...(existing.routing || {}) } } : structuredClone(DEFAULTS);
    const region = errorRegion();
    region.tabIndex = -1;
    const warning = h('div', { 'data-slot': 'warning' });

    const name = pathField({ label: 'Name', path: 'name', value: q.name, required: true, attrs: { maxlength: '100', autocomplete: 'off' } });
    const description = pathField({ label: 'Description', path: 'description', value: q.description, attrs: { maxlength: '500', autocomplete: 'off' } });
    const strategy = pathField({ label: 'Strategy', path: 'strategy', value: q.strategy, options: STRATEGIES.map(([v, l]) => [v, l]), hint: ' ' });
    const strategyHint = strategy.wrap.querySelector('.hint');
    const explain = () => { strategyHint.textContent = (STRATEGIES.find(([k]) => k === strategy.input.value) || [])[2] || ''; };
    strategy.input.addEventListener('change', explain);
    explain();
    const priority = pathField({ label: 'Priority', path: 'priority', type: 'number', value: q.priority, hint: 'Higher first when an agent serves several queues.', attrs: { step: '1', inputmode: 'numeric' } });
    const slPct = pathField({ label: 'Service-level target (%)', path: 'sl_target_pct', type: 'number', value: q.sl_target_pct, attrs: { min: '1', max: '100', step: '1', inputmode: 'numeric' } });
    const slSecs = pathField({ label: 'Answered within (seconds)', path: 'sl_threshold_secs', type: 'number', value: q.sl_threshold_secs, attrs: { min: '1', step: '1', inputmode: 'numeric' } });

    // Required skills
    const reqList = h('div', { class: 'skill-rows', 'data-rows': 'required' });
    const reqBox = h('fieldset', { class: 'fieldset' },
      h('legend', null, 'Required skills'),
      h('span', { class: 'hint' }, 'Only agents with every skill at the minimum level or above are offered this queue’s interactions.'),
      reqList,
      h('button', { type: 'button', class: 'btn btn-sm', onclick: () => { addSkillRow(reqList, 'required_skills', null, 1); focusLast(reqList); } }, '+ Add required skill'));
    for (const r of q.required_skills || []) addSkillRow(reqList, 'required_skills', r.skill_id, r.level);

    // Channels
    const chanId = nextId('rf');
    const chanBox = h('fieldset', { class: 'fieldset', id: chanId, tabindex: '-1', 'data-path': 'routing.channels', 'aria-describedby': `${chanId}-error` },
      h('legend', null, 'Channels'),
      h('div', { class: 'check-row' }, CHANNELS.map((c) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'channel', value: c, checked: !(q.routing.channels || []).length || q.routing.channels.includes(c) }), CHANNEL_LABEL[c]))),
      h('span', { id: `${chanId}-error`, class: 'field-error' }));

    // Escalation
    const escList = h('ol', { class: 'esc-steps', 'data-rows': 'escalation' });
    const escBox = h('fieldset', { class: 'fieldset' },
      h('legend', null, 'Escalation steps'),
      h('span', { class: 'hint' }, 'After an interaction has waited this long, these requirements replace the queue’s (usually lower levels or other skills), widening who may take it.'),
      escList,
      h('button', { type: 'button', class: 'btn btn-sm', onclick: () => { addStep(null); focusLast(escList); } }, '+ Add escalation step'));
    for (const st of q.routing.escalation || []) addStep(st);

    const offerTimeout = pathField({ label: 'Offer timeout (seconds)', path: 'routing.offer_timeout_secs', type: 'number', value: q.routing.offer_timeout_secs, hint: 'Empty: 15 s. An offer not answered in time goes to the next agent.', attrs: { min: '1', step: '1', inputmode: 'numeric' } });
    const maxWait = pathField({ label: 'Maximum wait (seconds)', path: 'routing.max_wait_secs', type: 'number', value: q.routing.max_wait_secs, hint: 'Empty: no limit. Past it, the interaction overflows.', attrs: { min: '1', step: '1', inputmode: 'numeric' } });
    const maxLength = pathField({ label: 'Maximum length', path: 'routing.max_length', type: 'number', value: q.routing.max_length, hint: 'Empty: no limit. New arrivals beyond it overflow.', attrs: { min: '1', step: '1', inputmode: 'numeric' } });
    const ringAll = pathField({ label: 'Ring-all agents', path: 'routing.ring_all_max', type: 'number', value: q.routing.ring_all_max, hint: 'Empty: 8. How many agents ring at once with “Ring all”.', attrs: { min: '1', step: '1', inputmode: 'numeric' } });

    // Overflow
    const ov = q.routing.overflow || null;
    const ovKind = pathField({ label: 'Overflow to', path: 'routing.overflow', value: ov ? ('queue' in ov ? 'queue' : 'flow') : 'none', options: [['none', 'Nowhere (keep waiting)'], ['queue', 'Another queue'], ['flow', 'A flow']], hint: 'Where interactions go past the maximum wait or length.' });
    const ovQueue = pathField({ label: 'Overflow queue', path: 'routing.overflow.queue', value: ov && ov.queue ? ov.queue : '', options: [['', 'Choose a queue…'], ...queues.filter((x) => !existing || x.id !== existing.id).map((x) => [x.id, x.name])] });
    const ovFlow = pathField({ label: 'Overflow flow name', path: 'routing.overflow.flow', value: ov && ov.flow ? ov.flow : '', attrs: { maxlength: '100', autocomplete: 'off' }, hint: 'e.g. voicemail' });
    const syncOv = () => {
      ovQueue.wrap.hidden = ovKind.input.value !== 'queue';
      ovFlow.wrap.hidden = ovKind.input.value !== 'flow';
    };
    ovKind.input.addEventListener('change', syncOv);
    syncOv();

    const save = h('button', { type: 'submit', class: 'btn btn-primary' }, existing ? 'Save queue' : 'Create queue');
    const cancel = h('button', { type: 'button', class: 'btn', onclick: close }, existing ? 'Close' : 'Cancel');
    const title = existing ? `Edit queue “${existing.name}”` : 'New queue';
    const form = h('form', { class: 'form', 'aria-label': existing ? 'Edit queue' : 'New queue', novalidate: true, 'data-queue-form': existing ? existing.id : 'new' },
      region,
      warning,
      h('div', { class: 'form-grid' }, name.wrap, description.wrap, strategy.wrap, priority.wrap, slPct.wrap, slSecs.wrap),
      reqBox,
      chanBox,
      escBox,
      h('div', { class: 'form-grid' }, offerTimeout.wrap, maxWait.wrap, maxLength.wrap, ringAll.wrap, ovKind.wrap, ovQueue.wrap, ovFlow.wrap),
      h('div', { class: 'form-actions' }, save, cancel));
    form.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); close(); } });

    function body() {
      const skillMap = (rowsEl) => Object.fromEntries([...rowsEl.querySelectorAll('.skill-row')]
        .map((r) => [r.querySelector('select').value, numOrNull(r.querySelector('input'))]));
      const kind = ovKind.input.value;
      return {
        name: name.input.value.trim(),
        description: description.input.value.trim(),
        strategy: strategy.input.value,
        priority: numOrNull(priority.input) ?? 0,
        sl_target_pct: numOrNull(slPct.input),
        sl_threshold_secs: numOrNull(slSecs.input),
        required_skills: [...reqList.querySelectorAll('.skill-row')].map((r) => ({ skill_id: r.querySelector('select').value, level: numOrNull(r.querySelector('input')) })),
        routing: {
          channels: [...chanBox.querySelectorAll('input:checked')].map((c) => c.value),
          escalation: [...escList.querySelectorAll('.esc-step')].map((st) => ({
            after_secs: numOrNull(st.querySelector('[data-step-after]')),
            skills: skillMap(st.querySelector('.skill-rows')),
          })),
          offer_timeout_secs: numOrNull(offerTimeout.input),
          max_wait_secs: numOrNull(maxWait.input),
          max_length: numOrNull(maxLength.input),
          overflow: kind === 'queue' ? { queue: ovQueue.input.value || null } : (kind === 'flow' ? { flow: ovFlow.input.value.trim() } : null),
          ring_all_max: numOrNull(ringAll.input) ?? 8,
        },
      };
    }

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearPathErrors(form, region);
      clear(warning);
      await busy(save, async () => {
        try {
          const saved = existing
            ? await api('PUT', `/queues/${encodeURIComponent(existing.id)}`, body())
            : await post('/queues', body());
          const idx = queues.findIndex((x) => x.id === saved.id);
          if (idx >= 0) queues[idx] = saved; else queues.push(saved);
          redraw();
          toast(`Queue “${saved.name}” ${existing ? 'saved' : 'created'}.`);
          announce(`Queue ${saved.name} ${existing ? 'saved' : 'created'}`);
          if (saved.unservable && saved.unservable.length) {
            // Keep the form open on the saved queue, with the warning.
            openEditor(saved);
            const w = editorSlot.querySelector('[data-slot="warning"]');
            w.append(unservableWarning(saved));
            w.querySelector('[role="alert"]').focus();
          } else {
            close();
          }
        } catch (err) {
          showPathErrors(err, region, form);
        }
      }, existing ? 'Saving…' : 'Creating…');
    });

    const editor = card({ title, subtitle: existing ? null : 'Interactions are offered to free agents with the required skills, chosen by the strategy.', body: form });
    editorSlot.append(editor);
    name.input.focus();

    function close() {
      clear(editorSlot);
      if (newBtn) newBtn.focus();
    }

    function addStep(st) {
      const idx = escList.children.length;
      const after = pathField({ label: 'After waiting (seconds)', path: `routing.escalation[${idx}].after_secs`, type: 'number', value: st ? st.after_secs : '', attrs: { min: '1', step: '1', inputmode: 'numeric', 'data-step-after': '' } });
      const rows = h('div', { class: 'skill-rows' });
      const skillsId = nextId('rf');
      const li = h('li', { class: 'esc-step' },
        h('div', { class: 'esc-step-head' },
          h('strong', { class: 'esc-step-title' }, `Step ${idx + 1}`),
          h('button', { type: 'button', class: 'btn btn-sm btn-ghost', onclick: () => { li.remove(); renumber(); } }, 'Remove step')),
        after.wrap,
        h('div', { class: 'field', id: skillsId, tabindex: '-1', 'data-path': `routing.escalation[${idx}].skills`, 'aria-describedby': `${skillsId}-error` },
          h('span', { class: 'label' }, 'Skills from then on'),
          rows,
          h('button', { type: 'button', class: 'btn btn-sm', onclick: () => { addSkillRow(rows, `routing.escalation[${idx}].skills`, null, 1, true); focusLast(rows); } }, '+ Add skill'),
          h('span', { id: `${skillsId}-error`, class: 'field-error' })));
      escList.append(li);
      for (const [sid, lvl] of Object.entries((st && st.skills) || {})) addSkillRow(rows, `routing.escalation[${idx}].skills`, sid, lvl, true);
    }

    function renumber() {
      [...escList.children].forEach((li, i) => {
        li.querySelector('.esc-step-title').textContent = `Step ${i + 1}`;
        for (const el of li.querySelectorAll('[data-path]')) el.dataset.path = el.dataset.path.replace(/escalation\[\d+\]/, `escalation[${i}]`);
      });
    }
  }

  /** A row: skill (select) and level 1-5, matched to `base[i]` (or `base.<skill_id>`). */
  function addSkillRow(rowsEl, base, skillId, level, keyed = false) {
    const idx = rowsEl.children.length;
    const skillSel = pathField({
      label: 'Skill',
      path: keyed ? `${base}.${skillId || ''}` : `${base}[${idx}].skill_id`,
      value: skillId || '',
      options: [['', skills.length ? 'Choose a skill…' : 'No skills yet'], ...skills.map((x) => [x.id, x.name])],
    });
    const lvl = pathField({
      label: 'Minimum level (1-5)',
      path: keyed ? `${base}.${skillId || ''}` : `${base}[${idx}].level`,
      type: 'number',
      value: level ?? 1,
      attrs: { min: '1', max: '5', step: '1', inputmode: 'numeric', class: 'input-short' },
    });
    if (keyed) {
      // Errors are keyed by the skill's id: follow the chosen skill.
      lvl.input.dataset.path = `${base}.${skillSel.input.value}`;
      skillSel.input.dataset.path = `${base}.${skillSel.input.value}#skill`;
      skillSel.input.addEventListener('change', () => {
        lvl.input.dataset.path = `${base}.${skillSel.input.value}`;
        skillSel.input.dataset.path = `${base}.${skillSel.input.value}#skill`;
      });
    }
    const row = h('div', { class: 'skill-row' }, skillSel.wrap, lvl.wrap,
      h('button', {
        type: 'button', class: 'btn btn-sm btn-ghost remove-row', 'aria-label': 'Remove this skill',
        onclick: () => {
          row.remove();
          if (!keyed) {
            [...rowsEl.children].forEach((r, i) => {
              const [sel, inp] = r.querySelectorAll('[data-path]');
              sel.dataset.path = `${base}[${i}].skill_id`;
              inp.dataset.path = `${base}[${i}].level`;
            });
          }
        },
      }, 'Remove'));
    rowsEl.append(row);
  }

  function focusLast(el) {
    const last = el.lastElementChild;
    const input = last && last.querySelector('select, input');
    if (input) input.focus();
  }

  async function remove(q, button) {
    const ok = await confirmDialog({
      title: `Delete the queue “${q.name}”?`,
      message: 'It stops taking interactions. A queue with interactions in it, or that others overflow to, may be refused.',
      confirmLabel: 'Delete queue',
      danger: true,
    });
    if (!ok) return;
    await busy(button, async () => {
      try {
        await del(`/queues/${encodeURIComponent(q.id)}`);
        const idx = queues.findIndex((x) => x.id === q.id);
        if (idx >= 0) queues.splice(idx, 1);
        redraw();
        toast(`Queue “${q.name}” deleted.`);
        announce(`Queue ${q.name} deleted`);
      } catch (err) {
        toast(`Could not delete “${q.name}”: ${describeError(err)}`, 'error', 8000);
      }
    });
  }

  if (!skills.length && canEdit) {
    editorSlot.before(card({
      body: emptyState({
        iconName: 'info', title: 'Create skills first', text: 'Queues route on skills: create some, then require them here.',
        children: h('a', { class: 'btn', href: '#/supervisor/skills' }, 'Go to Skills'),
      }),
    }));
  }
}

function unservableWarning(q) {
  const chans = q.unservable.map((c) => CHANNEL_LABEL[c] || c).join(', ');
  return h('div', { class: 'callout callout-warning', role: 'alert', tabindex: '-1', 'data-unservable-warning': q.unservable.join(',') },
    icon('warning'),
    h('div', null,
      h('strong', null, `Saved, but no agent can serve ${chans} here`),
      h('p', null, 'No agent has all the required skills at those levels with capacity on that channel. Interactions on those channels go to the queue’s overflow, or are refused when it has none, until an agent is given the skills (Agents page), the requirements are lowered or the queue stops taking those channels.')));
}
