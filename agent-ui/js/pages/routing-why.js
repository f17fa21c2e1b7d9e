// "Why did this interaction go to that agent?": a drawer over the page with
// every routing decision made for an interaction (trigger, escalation step,
// skills in force, strategy, the candidates with their scores, the winner)
// and where it is now. Reads GET /interactions/{id}/routing.

import { h, clear, humanize, shortId, fmtTime, fmtDate, nextId } from '/js/dom.js';
import { get, describeError } from '/js/api.js';
import { loading, badge, emptyState } from '/js/ui.js';
import { fmtDuration, strategyLabel, CHANNEL_LABEL } from './routing-shared.js';

const TRIGGER = {
  interaction_waiting: 'The interaction started waiting (it arrived, came back, escalated or the queue changed) and free agents were searched.',
  agent_available: 'An agent got a free slot and the waiting interactions were searched.',
};

const SCORE_HELP = {
  longest_idle: 'Score: milliseconds idle (higher first).',
  ring_all: 'Score: milliseconds idle; the longest idle ring together.',
  least_occupied: 'Score: minus the interactions in hand (fewer first); ties go to the longest idle.',
  round_robin: 'Score: minus the distance from the last agent picked (nearest next first).',
  best_proficiency: 'Score: the sum of levels on the skills in force (higher first); ties go to the longest idle.',
};

/**
 * Opens the drawer for interaction `id`. `cat` gives names; `onClose` runs
 * when it closes. Returns {close, refresh}.
 */
export function openWhyDrawer(id, cat, { onClose } = {}) {
  const titleId = nextId('why');
  const body = h('div', { class: 'drawer-body', 'data-why-body': '' }, loading('Loading the routing decisions…'));
  const closeBtn = h('button', { type: 'button', class: 'btn btn-ghost drawer-close', 'aria-label': 'Close' }, '✕');
  const refreshBtn = h('button', { type: 'button', class: 'btn btn-sm' }, 'Refresh');
  const dlg = h('dialog', { class: 'drawer', 'aria-labelledby': titleId, 'data-why': id },
    h('div', { class: 'drawer-head' },
      h('div', null,
        h('h2', { id: titleId }, 'Why it went where it went'),
        h('p', { class: 'small muted' }, 'Interaction ', h('span', { class: 'mono' }, shortId(id)))),
      h('div', { class: 'btn-row' }, refreshBtn, closeBtn)),
    body);
  closeBtn.addEventListener('click', () => dlg.close());
  // A click on the backdrop (outside the panel) closes it.
  dlg.addEventListener('click', (e) => {
    if (e.target === dlg) dlg.close();
  });
  dlg.addEventListener('close', () => {
    dlg.remove();
    if (onClose) onClose();
  });
  document.body.append(dlg);
  dlg.showModal();
  closeBtn.focus();

  async function refresh() {
    try {
      const [routing, interaction] = await Promise.all([
        get(`/interactions/${encodeURIComponent(id)}/routing`),
        get(`/interactions/${encodeURIComponent(id)}`),
      ]);
      if (!dlg.isConnected) return;
      clear(body);
      body.append(render(routing, interaction, cat));
      body.dataset.loaded = 'true';
    } catch (err) {
      if (!dlg.isConnected) return;
      clear(body);
      body.append(h('div', { class: 'form-error', role: 'alert' }, `Could not load the routing decisions: ${describeError(err)}`));
    }
  }
  refreshBtn.addEventListener('click', refresh);
  refresh();
  return { close: () => dlg.close(), refresh, el: dlg };
}

function render(routing, i, cat) {
  const out = h('div', { class: 'why' });
  out.append(h('dl', { class: 'dl why-summary' },
    h('dt', null, 'Channel'), h('dd', null, `${CHANNEL_LABEL[i.channel] || humanize(i.channel)} · ${humanize(i.direction)}`),
    h('dt', null, 'Customer'), h('dd', null, i.customer_address || h('span', { class: 'muted' }, 'Unknown')),
    i.subject ? [h('dt', null, 'Subject'), h('dd', null, i.subject)] : null,
    h('dt', null, 'State'), h('dd', null, badge(i.state)),
    h('dt', null, 'Now'), h('dd', { 'data-why-now': '' }, nowText(routing, i, cat))));

  const decisions = routing.decisions || [];
  if (!decisions.length) {
    out.append(emptyState({
      iconName: 'info',
      title: 'No routing decisions yet',
      text: i.queue_id
        ? 'It has not been offered to anyone: no eligible agent has been free since it started waiting.'
        : 'It has not been put in a queue, so the router has not decided anything about it.',
    }));
    return out;
  }
  out.append(h('h3', { class: 'why-title' }, decisions.length === 1 ? 'The decision' : `${decisions.length} decisions, newest first`));
  const list = h('ol', { class: 'decisions', reversed: true });
  for (const d of [...decisions].reverse()) list.append(decisionItem(d, cat));
  out.append(list);
  return out;
}

function nowText(routing, i, cat) {
  const now = routing.now;
  if (!now) {
    if (i.state === 'closed') return 'Closed — routing is over.';
    if (i.state === 'wrap_up') return `In wrap-up with ${i.agent_id ? cat.agentName(i.agent_id) : 'the agent'}.`;
    return 'The router is not handling it.';
  }
  if (now.state === 'waiting') {
    const p = routing.position;
    const place = p ? ` — place ${p.place} of ${p.waiting}${p.estimated_wait_ms !== null && p.estimated_wait_ms !== undefined ? `, about ${fmtDuration(p.estimated_wait_ms)} to wait` : ''}` : '';
    return `Waiting in ${cat.queueName(now.queue)}${now.step ? ` at escalation step ${now.step}` : ''}${now.callback ? ' (callback)' : ''}${place}.`;
  }
  if (now.state === 'offered') {
    const who = (now.agents || []).map((a) => cat.agentName(a)).join(', ');
    return `Ringing ${who} from ${cat.queueName(now.queue)}.`;
  }
  if (now.state === 'connected') return `Connected to ${cat.agentName(now.agent)} from ${cat.queueName(now.queue)}.`;
  return humanize(now.state);
}

function decisionItem(row, cat) {
  const d = row.decision || {};
  const winners = new Set(d.winners || row.agents || []);
  const strategy = d.strategy || '';
  const headId = nextId('dec');
  const li = h('li', { class: 'decision', 'aria-labelledby': headId, 'data-decision': String(row.id) });
  li.append(h('div', { class: 'decision-head' },
    h('h4', { id: headId },
      [...winners].length > 1 ? `Rang ${[...winners].map((a) => cat.agentName(a)).join(', ')}` : `Offered to ${[...winners].map((a) => cat.agentName(a)).join(', ') || 'nobody'}`),
    h('time', { class: 'small muted', datetime: row.decided_at, title: fmtDate(row.decided_at) }, fmtTime(row.decided_at))));
  li.append(h('dl', { class: 'dl dl-compact' },
    h('dt', null, 'Queue'), h('dd', null, cat.queueName(row.queue_id || d.queue)),
    h('dt', null, 'Why now'), h('dd', null, TRIGGER[d.trigger] || humanize(d.trigger)),
    h('dt', null, 'Step'), h('dd', { 'data-why-step': String(d.step ?? 0) }, d.step ? `Escalation step ${d.step} (the requirements widened as the wait grew)` : 'Step 0 — the queue’s own requirements'),
    h('dt', null, 'Skills in force'), h('dd', null, (d.required || []).length
      ? h('ul', { class: 'chips', 'data-why-skills': '' }, d.required.map((r) => h('li', { class: 'chip' }, cat.skillName(r.skill), h('span', { class: 'lvl' }, `≥ ${r.min_level}`))))
      : h('span', { class: 'muted' }, 'None (any agent of the channel)')),
    h('dt', null, 'Strategy'), h('dd', null, strategyLabel(strategy)),
    h('dt', null, 'Waited'), h('dd', null, fmtDuration(d.waited_ms ?? 0)),
    h('dt', null, 'Free eligible'), h('dd', null, `${d.eligible_free ?? (d.candidates || []).length} agent${d.eligible_free === 1 ? '' : 's'}`)));

  const cands = d.candidates || [];
  const tbl = h('table', { class: 'table candidates' },
    h('caption', { class: 'sr-only' }, `Candidates, in the strategy's order. ${SCORE_HELP[strategy] || ''}`),
    h('thead', null, h('tr', null,
      h('th', { scope: 'col', class: 'num' }, '#'),
      h('th', { scope: 'col' }, 'Agent'),
      h('th', { scope: 'col', class: 'num' }, 'Score'),
      h('th', { scope: 'col', class: 'num' }, 'Idle'),
      h('th', { scope: 'col', class: 'num' }, 'In hand'),
      h('th', { scope: 'col', class: 'num' }, 'Proficiency'))),
    h('tbody', null, cands.length ? cands.map((c, idx) => {
      const won = winners.has(c.agent);
      return h('tr', { class: won ? 'is-winner' : null, 'data-candidate': c.agent, 'data-winner': won ? 'true' : null },
        h('td', { class: 'num' }, String(idx + 1)),
        h('th', { scope: 'row' }, cat.agentName(c.agent), won ? [' ', h('span', { class: 'badge badge-success winner-badge' }, 'Winner')] : null),
        h('td', { class: 'num mono' }, Number(c.score).toLocaleString()),
        h('td', { class: 'num' }, fmtDuration(c.idle_ms)),
        h('td', { class: 'num' }, String(c.load)),
        h('td', { class: 'num' }, String(c.proficiency)));
    }) : h('tr', null, h('td', { class: 'table-empty', colspan: '6' }, 'No candidates were recorded.'))));
  li.append(h('div', { class: 'table-wrap tall', tabindex: '0', role: 'region', 'aria-label': 'Candidates' }, tbl));
  if (SCORE_HELP[strategy]) li.append(h('p', { class: 'small muted' }, SCORE_HELP[strategy], d.eligible_free > cands.length ? ` Only the first ${cands.length} of ${d.eligible_free} are kept.` : ''));
  return li;
}
