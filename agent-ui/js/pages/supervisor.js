// Supervisor: the routing live view. Per queue the waiting, longest wait,
// service level against its target, ASA, abandon rate, AHT, free agents and
// an "unservable" warning; per agent presence, status, load per channel,
// handled and occupancy; charts of waiting per queue and agents by status
// (inline SVG). Pushed by GET /routing/stream (SSE, `event: metrics`), with
// polling every 5 s when the stream fails. Recent interactions (updated from
// the event stream) open the "why" drawer.

import { h, s, clear, humanize, shortId, timeEl, fmtTime } from '/js/dom.js';
import { get, ApiError, describeError } from '/js/api.js';
import { pageHeader, card, table, badge, emptyState, toast, announce, icon } from '/js/ui.js';
import {
  loadCatalogue, hasEndpoint, metricsFromLive, normAgent, fmtSecs, fmtPct, fmtClock, hBarChart, donut,
  slBar, loadMeters, statusBadge, reasonLabel, STATUS_ORDER, CHANNEL_LABEL, setText,
} from './routing-shared.js';
import { openWhyDrawer } from './routing-why.js';

const STATES = ['created', 'in_flow', 'queued', 'offered', 'connected', 'wrap_up', 'closed'];
const RECENT = 20;
const POLL_MS = 5000;
const EXPLAINABLE = new Set(['queued', 'offered', 'connected', 'wrap_up', 'closed']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export default async function supervisor(root, ctx) {
  const [cat, recent, hasStream, hasMetrics] = await Promise.all([
    loadCatalogue(),
    get('/interactions', { limit: RECENT }),
    hasEndpoint('/routing/stream'),
    hasEndpoint('/routing/metrics'),
  ]);

  // ---- "why" by pasted id
  const whyInput = h('input', { type: 'text', id: 'why-id', name: 'interaction_id', class: 'mono', placeholder: 'Interaction id', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'why-id-error' });
  const whyError = h('span', { id: 'why-id-error', class: 'field-error' });
  const whyForm = h('form', { class: 'inline-form why-form', 'aria-label': 'Explain an interaction', novalidate: true },
    h('label', { for: 'why-id', class: 'sr-only' }, 'Interaction id'),
    whyInput,
    h('button', { type: 'submit', class: 'btn' }, 'Why did it go there?'),
    whyError);
  whyForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const id = whyInput.value.trim();
    if (!UUID.test(id)) {
      whyInput.setAttribute('aria-invalid', 'true');
      whyError.textContent = 'Paste the interaction’s full id (a UUID, e.g. from its webhook or the API).';
      whyInput.focus();
      return;
    }
    whyInput.removeAttribute('aria-invalid');
    whyError.textContent = '';
    openWhy(id);
  });

  root.append(pageHeader('Supervisor', 'Routing live: queues, agents and where each interaction went.', whyForm));

  // ---- freshness line
  const sourceText = h('span', null, 'Connecting…');
  const updatedText = h('span', { class: 'muted' });
  const freshness = h('p', { class: 'freshness small', 'data-metrics-source': 'none' }, icon('activity'), sourceText, ' ', updatedText);
  root.append(freshness);

  // ---- headline figures
  const stat = (label, key) => {
    const v = h('div', { class: 'stat-value', 'data-total': key }, '—');
    return [h('div', { class: 'card stat' }, h('div', { class: 'stat-label' }, label), v), v];
  };
  const [waitingCard, waitingVal] = stat('Waiting now', 'waiting');
  const [longestCard, longestVal] = stat('Longest wait', 'longest');
  const [idleCard, idleVal] = stat('Agents idle', 'idle');
  const [answeredCard, answeredVal] = stat('Answered', 'answered');
  root.append(h('div', { class: 'stats' }, waitingCard, longestCard, idleCard, answeredCard));

  // ---- charts
  const waitingChart = h('div', { class: 'chart-box' });
  const statusChart = h('div', { class: 'chart-box' });
  root.append(h('div', { class: 'grid grid-2' },
    card({ title: 'Waiting per queue', subtitle: 'Interactions waiting for an agent now', body: waitingChart }),
    card({ title: 'Agents by status', subtitle: 'Everyone configured as an agent', body: statusChart })));

  // ---- queues
  const queueGrid = h('div', { class: 'queue-grid', 'data-queues': '' });
  root.append(h('section', { class: 'stack', 'aria-labelledby': 'queues-title' },
    h('div', { class: 'section-head' },
      h('h2', { id: 'queues-title' }, 'Queues'),
      h('a', { class: 'btn btn-sm', href: '#/supervisor/queues' }, 'Configure queues')),
    queueGrid));

  // ---- agents
  const agentsTable = table({
    caption: 'Agents, live',
    empty: h('span', null, 'No agents yet. ', h('a', { href: '#/supervisor/agents' }, 'Set up agents'), ' to route interactions to them.'),
    columns: [
      { label: 'Agent', cell: (a) => h('span', { class: 'primary-cell' }, a.display_name || shortId(a.agent_id)) },
      { label: 'Presence', cell: (a) => [humanize(a.presence), a.reason ? h('span', { class: 'sub' }, reasonLabel(a.reason)) : null] },
      { label: 'Status', cell: (a) => statusBadge({ status: a.status, reason: a.reason }) },
      { label: 'Load / capacity', cell: (a) => loadMeters(a.load, a.capacity) },
      { label: 'Handled', numeric: true, cell: (a) => h('span', { 'data-figure': 'handled' }, a.handled ?? '—') },
      { label: 'AHT', numeric: true, cell: (a) => fmtSecs(a.aht_secs) },
      { label: 'Occupancy', numeric: true, cell: (a) => fmtPct(a.occupancy) },
    ],
    rowData: (a) => ({ agent: a.agent_id, status: a.status }),
  });
  root.append(card({ title: 'Agents', subtitle: 'Presence, work in hand and what they handled', flush: true, body: agentsTable.el,
    actions: h('a', { class: 'btn btn-sm', href: '#/supervisor/agents' }, 'Configure agents') }));

  // ---- recent interactions (the event stream) and their states
  let interactions = recent.items.slice(0, RECENT);
  const chartBox = h('div', { class: 'chart-box' });
  const recentTable = table({
    caption: 'Recent interactions',
    empty: 'No interactions yet. They appear here as soon as a call, chat, SMS or email arrives.',
    columns: [
      { label: 'Started', class: 'nowrap', cell: (i) => timeEl(i.created_at, true) },
      { label: 'Channel', class: 'nowrap', cell: (i) => [CHANNEL_LABEL[i.channel] || humanize(i.channel), h('span', { class: 'sub' }, i.direction)] },
      { label: 'State', cell: (i) => badge(i.state) },
      { label: 'Customer', cell: (i) => i.customer_address || h('span', { class: 'muted' }, '—') },
      { label: 'Subject', cell: (i) => i.subject || h('span', { class: 'muted' }, '—') },
      { label: 'Queue / agent', cell: (i) => [i.queue_id ? cat.queueName(i.queue_id) : '', i.agent_id ? ` · ${cat.agentName(i.agent_id)}` : ''].join('') || h('span', { class: 'muted' }, '—') },
      {
        label: 'Routing',
        class: 'actions',
        cell: (i) => (EXPLAINABLE.has(i.state) && i.queue_id
          ? h('button', { type: 'button', class: 'btn btn-sm', 'data-why-open': i.id, 'aria-label': `Why: routing of the ${i.channel} from ${i.customer_address || 'unknown'}`, onclick: () => openWhy(i.id) }, 'Why?')
          : null),
      },
    ],
    rowClass: (i) => (i.state === 'closed' ? 'is-muted' : null),
    rowData: (i) => ({ interaction: i.id, state: i.state }),
  });
  root.append(h('div', { class: 'grid grid-main-side' },
    card({ title: 'Recent interactions', subtitle: 'Newest first; “Why?” shows each routing decision', flush: true, body: recentTable.el }),
    card({ title: 'Interactions by state', subtitle: `The ${RECENT} most recent interactions, updated live`, body: chartBox })));

  function redrawRecent() {
    clear(chartBox);
    chartBox.append(stateChart(interactions));
    recentTable.setRows(interactions);
  }
  redrawRecent();

  let drawer = null;
  function openWhy(id) {
    if (drawer) drawer.close();
    drawer = openWhyDrawer(id, cat, { onClose: () => { drawer = null; } });
  }
  ctx.onCleanup(() => { if (drawer) drawer.close(); });

  // ---- the figures
  let metrics = null;
  let shownUnservable = '';

  function render(m) {
    metrics = m;
    const queues = [...(m.queues || [])].sort((a, b) => a.name.localeCompare(b.name));
    const agents = (m.agents || []).map(normAgent).sort((a, b) => (a.display_name || '').localeCompare(b.display_name || ''));

    setText(waitingVal, queues.reduce((n, q) => n + (q.waiting || 0), 0));
    setText(idleVal, `${agents.filter((a) => a.status === 'idle').length} of ${agents.length}`);
    setText(answeredVal, queues.reduce((n, q) => n + (q.answered || 0), 0));
    tick();

    clear(waitingChart);
    waitingChart.append(queues.length
      ? hBarChart(queues.map((q) => ({ key: q.queue_id, label: q.name, value: q.waiting || 0, tone: q.unservable && q.unservable.length ? 'bad' : null })), { label: 'Waiting per queue', chart: 'waiting' })
      : emptyState({ iconName: 'chart', title: 'No queues yet', text: 'Create a queue to see who waits in it.' }));
    clear(statusChart);
    const counts = STATUS_ORDER.map((st) => [st, agents.filter((a) => a.status === st).length]);
    statusChart.append(agents.length
      ? donut(counts, { label: 'Agents by status', chart: 'agent-status' })
      : emptyState({ iconName: 'users', title: 'No agents yet', text: 'Agents appear here once they are set up.' }));

    clear(queueGrid);
    if (!queues.length) {
      queueGrid.append(emptyState({
        iconName: 'inbox', title: 'No queues yet', text: 'Queues hold interactions until an agent with the right skills is free.',
        children: h('a', { class: 'btn btn-primary', href: '#/supervisor/queues' }, 'Create a queue'),
      }));
    }
    for (const q of queues) queueGrid.append(queueCard(q));
    agentsTable.setRows(agents);

    const unservable = queues.filter((q) => q.unservable && q.unservable.length).map((q) => q.name).join(', ');
    if (unservable && unservable !== shownUnservable) announce(`No agent can serve: ${unservable}`);
    shownUnservable = unservable;
    setText(updatedText, `· updated ${fmtTime(m.generated_at || new Date().toISOString())}`);
  }

  function queueCard(q) {
    const fig = (label, value, key, extra) => h('div', { class: 'fig', 'data-figure': key },
      h('dt', null, label), h('dd', extra || null, value));
    const longest = h('span', { 'data-longest': '' }, fmtSecs(q.longest_wait_secs));
    const el = h('article', { class: 'card queue-card', 'aria-labelledby': `q-${q.queue_id}`, 'data-queue': q.queue_id, 'data-waiting': String(q.waiting || 0), 'data-answered': String(q.answered || 0) },
      h('div', { class: 'queue-card-head' },
        h('h3', { id: `q-${q.queue_id}` }, q.name),
        h('span', { class: 'waiting-big', 'aria-label': `${q.waiting || 0} waiting` }, h('strong', null, String(q.waiting || 0)), ' waiting')),
      slBar(q.service_level, q.service_level_target_pct, `Service level of ${q.name}: answered within ${fmtSecs(q.sl_threshold_secs)}`),
      h('p', { class: 'small muted sl-caption' }, `Service level: ${q.service_level_target_pct}% answered within ${fmtSecs(q.sl_threshold_secs)}`),
      h('dl', { class: 'figs' },
        fig('Longest wait', longest, 'longest'),
        fig('Ringing', String(q.offered || 0), 'offered'),
        fig('ASA', fmtSecs(q.asa_secs), 'asa'),
        fig('Abandoned', q.abandon_rate === null || q.abandon_rate === undefined ? '—' : `${fmtPct(q.abandon_rate)} (${q.abandoned})`, 'abandon'),
        fig('AHT', fmtSecs(q.aht_secs), 'aht'),
        fig('Free agents', freeAgents(q.free_agents), 'free'),
        fig('Arrived', String(q.arrived ?? 0), 'arrived'),
        fig('Answered', String(q.answered ?? 0), 'answered')));
    if (metrics && q.longest_wait_secs !== null && q.longest_wait_secs !== undefined && q.waiting) {
      longest.dataset.base = String(q.longest_wait_secs);
    }
    if (q.unservable && q.unservable.length) {
      el.classList.add('is-unservable');
      el.append(h('div', { class: 'unservable', role: 'note', 'data-unservable': q.unservable.join(',') },
        icon('warning'),
        h('span', null, h('strong', null, 'Unservable: '),
          `no agent has the skills for ${q.unservable.map((c) => CHANNEL_LABEL[c] || c).join(', ')}. Interactions there go to the overflow (refused without one) until someone is given the skills.`)));
    }
    return el;
  }

  // The longest wait keeps counting between updates.
  function tick() {
    if (!metrics) return;
    const age = (Date.now() - new Date(metrics.generated_at || Date.now()).getTime()) / 1000;
    let longest = null;
    for (const q of metrics.queues || []) {
      if (q.waiting && q.longest_wait_secs !== null && q.longest_wait_secs !== undefined) longest = Math.max(longest ?? 0, q.longest_wait_secs + Math.max(0, age));
    }
    setText(longestVal, longest === null ? '—' : fmtClock(longest * 1000));
    for (const el of queueGrid.querySelectorAll('[data-longest][data-base]')) {
      setText(el, fmtClock((Number(el.dataset.base) + Math.max(0, age)) * 1000));
    }
  }
  const ticker = setInterval(tick, 1000);
  ctx.onCleanup(() => clearInterval(ticker));

  // ---- getting the figures: stream, else polling
  let es = null;
  let pollTimer = null;
  let pending = null;
  let lastError = '';

  function setSource(kind, text) {
    freshness.dataset.metricsSource = kind;
    setText(sourceText, text);
  }

  async function fetchMetrics() {
    if (hasMetrics) return get('/routing/metrics');
    return metricsFromLive(await get('/routing/live'), cat);
  }

  async function refresh() {
    if (pending) return pending;
    pending = (async () => {
      try {
        const m = await fetchMetrics();
        if (!ctx.isCurrent()) return;
        render(m);
        lastError = '';
      } catch (err) {
        if (!ctx.isCurrent() || (err instanceof ApiError && err.status === 401)) return;
        const msg = `Could not update the figures: ${describeError(err)}`;
        if (msg !== lastError) toast(msg, 'error');
        lastError = msg;
      } finally {
        pending = null;
      }
    })();
    return pending;
  }

  function startPolling(reason) {
    if (pollTimer) return;
    setSource('poll', reason);
    const loop = async () => {
      await refresh();
      if (ctx.isCurrent()) pollTimer = setTimeout(loop, POLL_MS);
    };
    pollTimer = setTimeout(loop, POLL_MS);
  }

  function startStream() {
    es = new EventSource('/api/v1/routing/stream');
    es.addEventListener('open', () => setSource('stream', 'Live: figures are pushed as they change.'));
    es.addEventListener('metrics', (msg) => {
      try {
        render(JSON.parse(msg.data));
      } catch {
        // a broken message: the next one replaces it
      }
    });
    es.addEventListener('error', () => {
      if (!es) return;
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        es = null;
        startPolling('The live stream is unavailable: updating every 5 s.');
      } else {
        setSource('reconnecting', 'Reconnecting to the live stream…');
      }
    });
  }

  await refresh();
  if (!metrics) render({ queues: [], agents: [] });
  if (hasStream) {
    startStream();
  } else {
    // No metrics stream on this server: poll, and refresh on every
    // interaction event so changes still show at once.
    startPolling('Updating on every routing event and every 5 s.');
  }

  // Live interaction events: the recent table, and (without the metrics
  // stream) the figures.
  const pendingIds = new Set();
  let evTimer = null;
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
    } else {
      pendingIds.add(ev.interaction_id);
    }
    if (!evTimer) evTimer = setTimeout(flush, 250);
  });
  async function flush() {
    evTimer = null;
    if (!es) refresh();
    const ids = [...pendingIds].slice(-RECENT);
    pendingIds.clear();
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
    if (ctx.isCurrent()) redrawRecent();
  }
  const unResync = ctx.live.onResync(async () => {
    try {
      const fresh = await get('/interactions', { limit: RECENT });
      if (!ctx.isCurrent()) return;
      interactions = fresh.items.slice(0, RECENT);
      redrawRecent();
      refresh();
    } catch {
      // the next event or resync will try again
    }
  });
  ctx.onCleanup(() => {
    unsubscribe();
    unResync();
    clearTimeout(evTimer);
    clearTimeout(pollTimer);
    if (es) es.close();
    es = null;
  });
}

/** Free agents: a number, or per channel ({voice: 1, chat: 2}) as "3 (Voice 1, Chat 2)". */
function freeAgents(free) {
  if (free === null || free === undefined) return '—';
  if (typeof free !== 'object') return String(free);
  const parts = Object.entries(free).filter(([, n]) => n > 0);
  const total = parts.reduce((a, [, n]) => a + n, 0);
  if (!parts.length) return '0';
  return parts.length === 1 ? `${total} (${CHANNEL_LABEL[parts[0][0]] || parts[0][0]})`
    : h('span', { title: parts.map(([c, n]) => `${CHANNEL_LABEL[c] || c} ${n}`).join(', ') }, String(total));
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
