// Supervisor: queues, agents and recent interactions, with a live chart of
// interactions by state drawn as SVG.

import { h, s, clear, humanize, shortId, timeEl } from '/js/dom.js';
import { get, getAll } from '/js/api.js';
import { pageHeader, card, table, badge, emptyState } from '/js/ui.js';

const STATES = ['created', 'in_flow', 'queued', 'offered', 'connected', 'wrap_up', 'closed'];
const RECENT = 20;

export default async function supervisor(root, ctx) {
  root.append(pageHeader('Supervisor', 'Queues, agents and interactions across your workspace, updated live.'));

  const [queues, agents, skills, recent] = await Promise.all([
    getAll('/queues'),
    getAll('/agents'),
    getAll('/skills'),
    get('/interactions', { limit: RECENT }),
  ]);
  const skillName = new Map(skills.map((x) => [x.id, x.name]));
  const queueName = new Map(queues.map((q) => [q.id, q.name]));
  const agentName = new Map(agents.map((a) => [a.id, a.display_name]));

  // Interactions we show, newest first; kept to RECENT and updated live.
  let interactions = recent.items.slice(0, RECENT);

  // ---- stats
  const statOpen = h('div', { class: 'stat-value' });
  const statQueued = h('div', { class: 'stat-value' });
  const stat = (label, value) => h('div', { class: 'card stat' }, h('div', { class: 'stat-label' }, label), value);
  root.append(h('div', { class: 'stats' },
    stat('Queues', h('div', { class: 'stat-value' }, String(queues.length))),
    stat('Agents', h('div', { class: 'stat-value' }, String(agents.length))),
    stat('Open interactions (recent)', statOpen),
    stat('Waiting in queue (recent)', statQueued)));

  // ---- chart + recent interactions
  const chartBox = h('div', { class: 'chart-box' });
  const chartCard = card({
    title: 'Interactions by state',
    subtitle: `The ${RECENT} most recent interactions, updated live`,
    body: chartBox,
  });
  const recentTable = table({
    caption: 'Recent interactions',
    empty: 'No interactions yet. They appear here as soon as a call, chat, SMS or email arrives.',
    columns: [
      { label: 'Started', class: 'nowrap', cell: (i) => timeEl(i.created_at, true) },
      { label: 'Channel', class: 'nowrap', cell: (i) => [humanize(i.channel), h('span', { class: 'sub' }, i.direction)] },
      { label: 'State', cell: (i) => badge(i.state) },
      { label: 'Customer', cell: (i) => i.customer_address || h('span', { class: 'muted' }, '—') },
      { label: 'Subject', cell: (i) => i.subject || h('span', { class: 'muted' }, '—') },
      { label: 'Queue / agent', cell: (i) => [i.queue_id ? queueName.get(i.queue_id) || shortId(i.queue_id) : '', i.agent_id ? ` · ${agentName.get(i.agent_id) || shortId(i.agent_id)}` : ''].join('') || h('span', { class: 'muted' }, '—') },
    ],
    rowClass: (i) => (i.state === 'closed' ? 'is-muted' : null),
  });
  const recentCard = card({ title: 'Recent interactions', subtitle: 'Newest first', flush: true, body: recentTable.el });
  root.append(h('div', { class: 'grid grid-main-side' }, recentCard, chartCard));

  function redraw() {
    clear(chartBox);
    chartBox.append(stateChart(interactions));
    recentTable.setRows(interactions);
    const open = interactions.filter((i) => i.state !== 'closed').length;
    statOpen.textContent = String(open);
    statQueued.textContent = String(interactions.filter((i) => i.state === 'queued').length);
  }
  redraw();

  // Live: update states in place; fetch interactions we have not seen.
  const pending = new Set();
  let timer = null;
  const unsubscribe = ctx.live.subscribe((ev) => {
    const known = interactions.find((i) => i.id === ev.interaction_id);
    if (known) {
      if (ev.seq >= (known.last_seq || 0)) {
        known.state = ev.state;
        known.last_seq = ev.seq;
        known.updated_at = ev.occurred_at;
        if (ev.data && ev.data.queue_id) known.queue_id = ev.data.queue_id;
        if (ev.data && ev.data.agent_id) known.agent_id = ev.data.agent_id;
      }
      schedule();
    } else {
      pending.add(ev.interaction_id);
      schedule();
    }
  });
  function schedule() {
    if (timer) return;
    timer = setTimeout(flush, 250);
  }
  async function flush() {
    timer = null;
    const ids = [...pending].slice(-RECENT);
    pending.clear();
    for (const id of ids) {
      try {
        const i = await get(`/interactions/${encodeURIComponent(id)}`);
        if (!interactions.some((x) => x.id === i.id)) interactions.unshift(i);
      } catch {
        // gone or not visible: ignore
      }
    }
    interactions.sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    interactions = interactions.slice(0, RECENT);
    if (ctx.isCurrent()) redraw();
  }
  // Missed events (the stream lagged or reconnected): reload the list.
  const unResync = ctx.live.onResync(async () => {
    try {
      const fresh = await get('/interactions', { limit: RECENT });
      if (!ctx.isCurrent()) return;
      interactions = fresh.items.slice(0, RECENT);
      redraw();
    } catch {
      // the next event or resync will try again
    }
  });
  ctx.onCleanup(() => {
    unsubscribe();
    unResync();
    clearTimeout(timer);
  });

  // ---- queues and agents
  const queuesTable = table({
    caption: 'Queues',
    empty: 'No queues are configured.',
    columns: [
      { label: 'Queue', cell: (q) => [h('span', { class: 'primary-cell' }, q.name), q.description ? h('span', { class: 'sub' }, q.description) : null] },
      { label: 'Strategy', cell: (q) => humanize(q.strategy) },
      { label: 'Priority', numeric: true, cell: (q) => String(q.priority) },
      { label: 'Service level', cell: (q) => `${q.sl_target_pct}% in ${q.sl_threshold_secs} s` },
      { label: 'Required skills', cell: (q) => skillChips(q.required_skills, skillName, 'min') },
    ],
    rows: queues,
  });
  const agentsTable = table({
    caption: 'Agents',
    empty: 'No agents are configured.',
    columns: [
      { label: 'Agent', cell: (a) => h('span', { class: 'primary-cell' }, a.display_name || shortId(a.id)) },
      { label: 'Extension', cell: (a) => (a.extension ? h('span', { class: 'mono' }, a.extension) : h('span', { class: 'muted' }, '—')) },
      { label: 'Capacity', cell: (a) => Object.entries(a.capacity || {}).map(([k, v]) => `${humanize(k)} ${v}`).join(', ') || '—' },
      { label: 'Skills', cell: (a) => skillChips(a.skills, skillName, 'level') },
    ],
    rows: agents,
  });
  root.append(
    card({ title: 'Queues', subtitle: `${queues.length} queue${queues.length === 1 ? '' : 's'}`, flush: true, body: queuesTable.el }),
    card({ title: 'Agents', subtitle: `${agents.length} agent${agents.length === 1 ? '' : 's'}`, flush: true, body: agentsTable.el }),
  );
}

function skillChips(reqs, skillName, word) {
  if (!reqs || !reqs.length) return h('span', { class: 'muted' }, 'None');
  return h('ul', { class: 'chips' }, reqs.map((r) => h('li', { class: 'chip' },
    humanize(skillName.get(r.skill_id) || shortId(r.skill_id)), h('span', { class: 'lvl' }, `${word} ${r.level}`))));
}

/** A bar chart (SVG) of how many interactions are in each state. */
function stateChart(interactions) {
  const counts = STATES.map((st) => [st, interactions.filter((i) => i.state === st).length]);
  const total = interactions.length;
  if (!total) {
    return emptyState({ iconName: 'chart', title: 'Nothing to chart yet', text: 'The chart fills in as interactions arrive.' });
  }
  const max = Math.max(1, ...counts.map(([, n]) => n));
  const W = 320;
  const rowH = 30;
  const labelW = 84;
  const H = counts.length * rowH + 8;
  const barMax = W - labelW - 34;
  const summary = counts.map(([st, n]) => `${humanize(st)}: ${n}`).join(', ');
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Interactions by state. ${summary}.`, 'data-chart': 'states' });
  counts.forEach(([st, n], idx) => {
    const y = idx * rowH + 4;
    const w = n === 0 ? 0 : Math.max(4, Math.round((n / max) * barMax));
    svg.append(
      s('text', { x: String(labelW - 8), y: String(y + rowH / 2 + 4), 'text-anchor': 'end' }, humanize(st)),
      s('rect', { class: 'grid-line', x: String(labelW), y: String(y + 4), width: String(barMax), height: String(rowH - 10), fill: 'none' }),
      s('rect', { class: st === 'closed' ? 'bar bar-closed' : 'bar', x: String(labelW), y: String(y + 4), width: String(w), height: String(rowH - 10), rx: '3', 'data-state': st, 'data-count': String(n) }),
      s('text', { class: 'value', x: String(labelW + w + 6), y: String(y + rowH / 2 + 4) }, String(n)));
  });
  svg.append(s('line', { class: 'axis', x1: String(labelW), x2: String(labelW), y1: '2', y2: String(H - 2) }));
  return svg;
}
