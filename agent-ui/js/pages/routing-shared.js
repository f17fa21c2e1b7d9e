// Shared by the routing pages (supervisor live view, configuration, agent
// desk): the catalogue's names, durations, agent statuses and the SVG charts
// (drawn here; nothing is fetched from elsewhere).

import { h, s, append, clear, humanize, shortId, nextId } from '/js/dom.js';
import { get, getAll, ApiError, describeError } from '/js/api.js';
import { badge } from '/js/ui.js';

export const CHANNELS = ['voice', 'chat', 'sms', 'email'];
export const CHANNEL_LABEL = { voice: 'Voice', chat: 'Chat', sms: 'SMS', email: 'Email' };

export const STRATEGIES = [
  ['longest_idle', 'Longest idle', 'The agent idle the longest.'],
  ['least_occupied', 'Fewest interactions', 'The agent with the fewest interactions in hand; ties go to the longest idle.'],
  ['round_robin', 'Round robin', 'The next agent after the last one picked, in a fixed order.'],
  ['best_proficiency', 'Best proficiency', 'The highest sum of levels on the skills in force; ties go to the longest idle.'],
  ['ring_all', 'Ring all (voice)', 'Voice rings several free agents at once; the first to answer wins. Other channels use longest idle.'],
];

export function strategyLabel(id) {
  const found = STRATEGIES.find(([k]) => k === id);
  return found ? found[1] : humanize(id);
}

export const AWAY_REASONS = [
  ['break', 'Break'],
  ['lunch', 'Lunch'],
  ['meeting', 'Meeting'],
  ['training', 'Training'],
  ['admin', 'Admin work'],
];

export function reasonLabel(reason) {
  if (!reason) return '';
  if (reason === 'no_answer') return 'Missed an offer';
  const found = AWAY_REASONS.find(([k]) => k === reason);
  return found ? found[1] : humanize(reason);
}

/** The routing catalogue's names: skills, queues and agents by id. */
export async function loadCatalogue() {
  const [skills, queues, agents] = await Promise.all([getAll('/skills'), getAll('/queues'), getAll('/agents')]);
  return catalogue(skills, queues, agents);
}

export function catalogue(skills, queues, agents) {
  const cat = {
    skills,
    queues,
    agents,
    skill: new Map(skills.map((x) => [x.id, x])),
    queue: new Map(queues.map((x) => [x.id, x])),
    agent: new Map(agents.map((x) => [x.id, x])),
    skillName: (id) => (cat.skill.get(id) ? cat.skill.get(id).name : `skill ${shortId(id)}`),
    queueName: (id) => (cat.queue.get(id) ? cat.queue.get(id).name : `queue ${shortId(id)}`),
    agentName: (id) => {
      const a = cat.agent.get(id);
      return a ? a.display_name || `agent ${a.extension || shortId(id)}` : `agent ${shortId(id)}`;
    },
  };
  return cat;
}

// ---- durations -------------------------------------------------------------------

/** A running clock: "0:42", "12:05", "1:02:03". */
export function fmtClock(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const t = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(t / 3600);
  const mm = Math.floor((t % 3600) / 60);
  const ss = String(t % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** An average or a threshold: "4.2 s", "42 s", "3 min 10 s", "1 h 5 min". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const t = Math.round(ms / 1000);
  if (t < 60) return `${t} s`;
  if (t < 3600) return t % 60 ? `${Math.floor(t / 60)} min ${t % 60} s` : `${t / 60} min`;
  const m = Math.round(t / 60);
  return m % 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m / 60} h`;
}

export function fmtPct(frac) {
  return frac === null || frac === undefined || !Number.isFinite(frac) ? '—' : `${Math.round(frac * 100)}%`;
}

// ---- agent status ----------------------------------------------------------------

export const STATUS_ORDER = ['idle', 'busy', 'wrap_up', 'away', 'offline'];
const STATUS_LABEL = { idle: 'Idle', busy: 'Busy', wrap_up: 'Wrap-up', away: 'Away', offline: 'Offline' };
const STATUS_TONE = { idle: 'success', busy: 'accent', wrap_up: 'violet', away: 'warning', offline: '' };

export function statusLabel(status) {
  return STATUS_LABEL[status] || humanize(status);
}

/** A badge for an agent's status (`{status, reason?}` from the live view). */
export function statusBadge(st) {
  const key = st && st.status ? st.status : 'offline';
  const text = key === 'away' && st.reason ? `Away · ${reasonLabel(st.reason)}` : statusLabel(key);
  const el = badge(text, STATUS_TONE[key] || '');
  el.classList.add('status-badge');
  el.dataset.status = key;
  // badge() capitalises; reasons are already worded.
  el.textContent = text;
  return el;
}

export function skillChips(reqs, cat, word = 'level', key = 'skill_id') {
  if (!reqs || !reqs.length) return h('span', { class: 'muted' }, 'None');
  return h('ul', { class: 'chips' }, reqs.map((r) => h('li', { class: 'chip' },
    cat.skillName(r[key]), h('span', { class: 'lvl' }, `${word} ${r.level ?? r.min_level}`))));
}

// ---- charts (SVG, drawn here) -------------------------------------------------------

/**
 * A sparkline of `points` ([{t, v}], t in ms) over the last `spanMs`, as an
 * area under a step line. `label` describes it for screen readers.
 */
export function sparkline(points, { spanMs, now, label, max: fixedMax }) {
  const W = 160;
  const H = 36;
  const pad = 2;
  const svg = s('svg', { class: 'spark', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
  const start = now - spanMs;
  const pts = points.filter((p) => p.t >= start - 5000);
  const max = Math.max(fixedMax || 1, ...pts.map((p) => p.v));
  const x = (t) => pad + ((Math.max(t, start) - start) / spanMs) * (W - 2 * pad);
  const y = (v) => H - pad - (v / max) * (H - 2 * pad);
  svg.append(s('line', { class: 'spark-base', x1: String(pad), x2: String(W - pad), y1: String(H - pad), y2: String(H - pad) }));
  if (pts.length) {
    let d = `M${x(pts[0].t).toFixed(1)},${y(pts[0].v).toFixed(1)}`;
    for (let i = 1; i < pts.length; i += 1) {
      d += ` H${x(pts[i].t).toFixed(1)} V${y(pts[i].v).toFixed(1)}`;
    }
    d += ` H${x(now).toFixed(1)}`;
    const area = `${d} V${H - pad} H${x(pts[0].t).toFixed(1)} Z`;
    svg.append(s('path', { class: 'spark-area', d: area }), s('path', { class: 'spark-line', d }));
    const last = pts[pts.length - 1];
    svg.append(s('circle', { class: 'spark-dot', cx: x(now).toFixed(1), cy: y(last.v).toFixed(1), r: '2.2' }));
  }
  return svg;
}

function arcPoint(cx, cy, r, frac) {
  const a = Math.PI * (1 - frac);
  return [cx + r * Math.cos(a), cy - r * Math.sin(a)];
}

function arcPath(cx, cy, r, from, to) {
  const [x1, y1] = arcPoint(cx, cy, r, from);
  const [x2, y2] = arcPoint(cx, cy, r, to);
  return `M${x1.toFixed(2)},${y1.toFixed(2)} A${r},${r} 0 0 1 ${x2.toFixed(2)},${y2.toFixed(2)}`;
}

/**
 * A half-circle gauge of the service level (0..1 or null) with a tick at the
 * target (0..100 %). Green at or above target, amber within 10 points, red
 * below.
 */
export function slGauge(level, targetPct, label) {
  const W = 120;
  const H = 68;
  const cx = 60;
  const cy = 60;
  const r = 48;
  const target = Math.max(0, Math.min(1, targetPct / 100));
  let tone = 'none';
  if (level !== null && level !== undefined) {
    if (level >= target) tone = 'good';
    else if (level >= target - 0.1) tone = 'near';
    else tone = 'bad';
  }
  const svg = s('svg', { class: `gauge gauge-${tone}`, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, 'data-sl-tone': tone });
  svg.append(s('path', { class: 'gauge-track', d: arcPath(cx, cy, r, 0, 1) }));
  if (tone !== 'none' && level > 0.001) {
    svg.append(s('path', { class: 'gauge-fill', d: arcPath(cx, cy, r, 0, Math.min(1, level) - 0.0001) }));
  }
  const [tx1, ty1] = arcPoint(cx, cy, r - 9, target);
  const [tx2, ty2] = arcPoint(cx, cy, r + 9, target);
  svg.append(s('line', { class: 'gauge-target', x1: tx1.toFixed(2), y1: ty1.toFixed(2), x2: tx2.toFixed(2), y2: ty2.toFixed(2) }));
  svg.append(s('text', { class: 'gauge-value', x: String(cx), y: String(cy - 6), 'text-anchor': 'middle' }, tone === 'none' ? '—' : fmtPct(level)));
  return svg;
}

/** A stacked horizontal bar of counts ([[key, n]]), with a legend. */
export function stackedBar(parts, label) {
  const total = parts.reduce((a, [, n]) => a + n, 0);
  const W = 400;
  const H = 14;
  const svg = s('svg', { class: 'stack-bar', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
  svg.append(s('rect', { class: 'stack-track', x: '0', y: '0', width: String(W), height: String(H), rx: '4' }));
  let x = 0;
  for (const [key, n] of parts) {
    if (!n) continue;
    const w = (n / Math.max(1, total)) * W;
    svg.append(s('rect', { class: `stack-seg seg-${key}`, x: x.toFixed(2), y: '0', width: w.toFixed(2), height: String(H), 'data-seg': key, 'data-count': String(n) }));
    x += w;
  }
  const legend = h('ul', { class: 'legend', 'aria-hidden': 'true' }, parts.map(([key, n]) => h('li', { 'data-legend': key },
    h('span', { class: `swatch seg-${key}` }), `${statusLabel(key)} `, h('strong', null, String(n)))));
  return h('div', { class: 'stack' }, svg, legend);
}

/** Per-channel load over capacity, as small meters ("Voice 1/1"). */
export function loadMeters(load, capacity) {
  const chans = CHANNELS.filter((c) => (capacity && capacity[c]) || (load && load[c]));
  if (!chans.length) return h('span', { class: 'muted' }, 'No capacity');
  return h('ul', { class: 'meters' }, chans.map((c) => {
    const used = (load && load[c]) || 0;
    const cap = (capacity && capacity[c]) || 0;
    const full = cap > 0 && used >= cap;
    return h('li', { class: full ? 'meter is-full' : 'meter', title: `${CHANNEL_LABEL[c]}: ${used} of ${cap} in use` },
      h('span', { class: 'meter-label' }, CHANNEL_LABEL[c]),
      h('progress', { max: String(Math.max(1, cap)), value: String(Math.min(used, Math.max(1, cap))), 'aria-label': `${CHANNEL_LABEL[c]} load ${used} of ${cap}` }),
      h('span', { class: 'meter-num' }, `${used}/${cap}`));
  }));
}

/** Sets an element's text only when it changes (keeps aria-live quiet otherwise). */
export function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

// ---- which routing endpoints this server has ------------------------------------------

let apiPaths = null;

/**
 * Whether the server serves `path` (e.g. `/routing/stream`), read once from
 * the OpenAPI document. Asking first keeps the browser from logging a 404
 * for an endpoint an older server does not have.
 */
export async function hasEndpoint(path) {
  if (!apiPaths) {
    apiPaths = get('/openapi.json')
      .then((doc) => new Set(Object.keys((doc && doc.paths) || {}).map((k) => k.replace(/^\/api\/v1/, ''))))
      .catch(() => new Set());
  }
  const paths = await apiPaths;
  return paths.has(path);
}

// ---- seconds -------------------------------------------------------------------

/** Seconds (possibly fractional, or null) as a duration: "4.2 s", "3 min 10 s". */
export function fmtSecs(secs) {
  return secs === null || secs === undefined || !Number.isFinite(Number(secs)) ? '—' : fmtDuration(Number(secs) * 1000);
}

// ---- the live view's figures --------------------------------------------------------

const presenceOf = (p) => (p && typeof p === 'object' ? p.presence : p) || 'offline';
const reasonOf = (p) => (p && typeof p === 'object' ? p.reason || null : null);
const statusOf = (st) => (st && typeof st === 'object' ? st.status : st) || 'offline';

/**
 * The body of GET /routing/metrics built from GET /routing/live (the
 * engine's snapshots), for servers without the metrics endpoint.
 */
export function metricsFromLive(live, cat) {
  const queues = (live.queues || []).map((q) => {
    const sl = q.service_level_target || {};
    const free = Object.fromEntries((q.free_agents || []).map(([ch, n]) => [ch, n]));
    return {
      queue_id: q.id,
      name: cat.queueName(q.id),
      waiting: q.waiting,
      offered: q.offered,
      longest_wait_secs: null,
      arrived: q.arrived,
      answered: q.answered,
      abandoned: q.abandoned,
      overflowed: q.overflowed,
      asa_secs: q.average_answer_ms === null || q.average_answer_ms === undefined ? null : q.average_answer_ms / 1000,
      service_level: q.service_level ?? null,
      service_level_target_pct: sl.target_pct ?? 80,
      sl_threshold_secs: sl.threshold_ms === undefined ? 20 : sl.threshold_ms / 1000,
      abandon_rate: q.arrived ? q.abandoned / q.arrived : null,
      aht_secs: q.average_handle_ms === null || q.average_handle_ms === undefined ? null : q.average_handle_ms / 1000,
      free_agents: free,
      unservable: q.unservable || [],
    };
  });
  const agents = (live.agents || []).map((a) => ({
    agent_id: a.id,
    display_name: cat.agentName(a.id),
    presence: presenceOf(a.presence),
    reason: reasonOf(a.presence) || reasonOf(a.status),
    status: statusOf(a.status),
    load: a.load || {},
    capacity: a.capacity || {},
    handled: null,
    aht_secs: null,
    occupancy: null,
  }));
  return { generated_at: new Date().toISOString(), since: null, queues, agents };
}

/** An agent row of the metrics body, normalised (presence/status may be objects). */
export function normAgent(a) {
  return {
    ...a,
    presence: presenceOf(a.presence),
    reason: a.reason ?? reasonOf(a.presence) ?? reasonOf(a.status),
    status: statusOf(a.status),
  };
}

// ---- more charts ---------------------------------------------------------------------

/**
 * A horizontal bar chart ([{key, label, value, tone}]), one bar per row,
 * with the value at the end of the bar.
 */
export function hBarChart(rows, { label, chart, unit = '' }) {
  const W = 360;
  const rowH = 28;
  const labelW = 110;
  const H = Math.max(1, rows.length) * rowH + 6;
  const barMax = W - labelW - 40;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const summary = rows.map((r) => `${r.label}: ${r.value}${unit}`).join(', ');
  const svg = s('svg', { class: 'chart hbar', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${label}. ${summary || 'Nothing yet'}.`, 'data-chart': chart });
  rows.forEach((r, idx) => {
    const y = idx * rowH + 3;
    const w = r.value === 0 ? 0 : Math.max(4, Math.round((r.value / max) * barMax));
    const name = r.label.length > 16 ? `${r.label.slice(0, 15)}…` : r.label;
    svg.append(
      s('text', { x: String(labelW - 8), y: String(y + rowH / 2 + 4), 'text-anchor': 'end' }, s('title', null, r.label), name),
      s('rect', { class: 'grid-line', x: String(labelW), y: String(y + 4), width: String(barMax), height: String(rowH - 10), fill: 'none' }),
      s('rect', { class: `bar${r.tone ? ` bar-${r.tone}` : ''}`, x: String(labelW), y: String(y + 4), width: String(w), height: String(rowH - 10), rx: '3', 'data-key': r.key, 'data-count': String(r.value) }),
      s('text', { class: 'value', x: String(labelW + w + 6), y: String(y + rowH / 2 + 4) }, `${r.value}${unit}`));
  });
  svg.append(s('line', { class: 'axis', x1: String(labelW), x2: String(labelW), y1: '2', y2: String(H - 2) }));
  return svg;
}

/** A donut of counts ([[key, n]]) with the total in the middle and a legend. */
export function donut(parts, { label, chart, centre = 'agents' }) {
  const total = parts.reduce((a, [, n]) => a + n, 0);
  const R = 42;
  const C = 2 * Math.PI * R;
  const summary = parts.map(([k, n]) => `${statusLabel(k)}: ${n}`).join(', ');
  const svg = s('svg', { class: 'donut', viewBox: '0 0 120 120', role: 'img', 'aria-label': `${label}. ${summary}.`, 'data-chart': chart });
  svg.append(s('circle', { class: 'donut-track', cx: '60', cy: '60', r: String(R) }));
  let offset = 0;
  for (const [key, n] of parts) {
    if (!n) continue;
    const len = (n / total) * C;
    svg.append(s('circle', {
      class: `donut-seg seg-${key}`, cx: '60', cy: '60', r: String(R),
      'stroke-dasharray': `${len.toFixed(2)} ${(C - len).toFixed(2)}`,
      'stroke-dashoffset': String((-offset + C / 4).toFixed(2)),
      'data-seg': key, 'data-count': String(n),
    }));
    offset += len;
  }
  svg.append(
    s('text', { class: 'donut-total', x: '60', y: '60', 'text-anchor': 'middle' }, String(total)),
    s('text', { class: 'donut-label', x: '60', y: '76', 'text-anchor': 'middle' }, centre));
  const legend = h('ul', { class: 'legend', 'aria-hidden': 'true' }, parts.map(([key, n]) => h('li', { 'data-legend': key },
    h('span', { class: `swatch seg-${key}` }), `${statusLabel(key)} `, h('strong', null, String(n)))));
  return h('div', { class: 'donut-wrap' }, svg, legend);
}

/**
 * The service level (0..1 or null) as a bar with a tick at the target
 * (percent); red below target, amber within 5 points, green at or above.
 */
export function slBar(level, targetPct, label) {
  const target = Math.max(0, Math.min(100, Number(targetPct) || 0));
  let tone = 'none';
  if (level !== null && level !== undefined) {
    const pct = level * 100;
    if (pct >= target) tone = 'good';
    else if (pct >= target - 5) tone = 'near';
    else tone = 'bad';
  }
  const W = 200;
  const H = 12;
  const svg = s('svg', { class: `sl-bar sl-${tone}`, viewBox: `0 0 ${W} ${H + 6}`, preserveAspectRatio: 'none', 'aria-hidden': 'true' });
  svg.append(s('rect', { class: 'sl-track', x: '0', y: '3', width: String(W), height: String(H), rx: '3' }));
  if (tone !== 'none') {
    svg.append(s('rect', { class: 'sl-fill', x: '0', y: '3', width: String(Math.max(0, Math.min(1, level)) * W), height: String(H), rx: '3' }));
  }
  svg.append(s('line', { class: 'sl-target', x1: String((target / 100) * W), x2: String((target / 100) * W), y1: '0', y2: String(H + 6) }));
  return h('div', {
    class: 'sl', role: 'meter', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100',
    'aria-valuenow': tone === 'none' ? null : String(Math.round(level * 100)),
    'aria-valuetext': tone === 'none' ? 'No answered or abandoned interactions yet' : `${fmtPct(level)}, target ${target}%${tone === 'bad' ? ', below target' : ''}`,
    'data-sl-tone': tone,
  }, svg, h('span', { class: 'sl-text' }, tone === 'none' ? '—' : fmtPct(level), h('span', { class: 'muted' }, ` / ${target}%`)));
}

// ---- validation errors by JSON path ---------------------------------------------------

/**
 * Shows a 422's field errors next to the controls whose `data-path` is the
 * error's path (`required_skills[0].level`), or the nearest enclosing path
 * (`routing.escalation[1]`); the rest, and any other error, in `region`.
 */
export function showPathErrors(err, region, form) {
  clearPathErrors(form, region);
  const fields = err instanceof ApiError ? err.fields : [];
  const controls = [...form.querySelectorAll('[data-path]')];
  const unmatched = [];
  let first = null;
  for (const f of fields) {
    const path = String(f.path || '');
    let target = controls.find((c) => c.dataset.path === path);
    if (!target) {
      // The longest data-path that starts the error's path.
      target = controls
        .filter((c) => path.startsWith(c.dataset.path) && /^[.[]|^$/.test(path.slice(c.dataset.path.length)))
        .sort((a, b) => b.dataset.path.length - a.dataset.path.length)[0];
    }
    const errEl = target && target.id ? form.querySelector(`#${CSS.escape(target.id)}-error`) : null;
    if (target && errEl) {
      target.setAttribute('aria-invalid', 'true');
      append(errEl, errEl.textContent ? '; ' : '', capital(f.message));
      first = first || target;
    } else {
      unmatched.push(f);
    }
  }
  if (fields.length) {
    append(region, unmatched.length
      ? 'Please fix these problems:'
      : (fields.length === 1 ? 'Please fix the highlighted field.' : `Please fix the ${fields.length} highlighted fields.`));
    if (unmatched.length) region.append(h('ul', null, unmatched.map((f) => h('li', { 'data-error-path': f.path }, `${pathLabel(f.path)}: ${f.message}`))));
  } else {
    append(region, describeError(err));
  }
  if (first) first.focus();
  else region.focus();
}

export function clearPathErrors(form, region) {
  if (region) clear(region);
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.field-error')) clear(el);
}

function capital(m) {
  const t = String(m || '');
  return t.charAt(0).toUpperCase() + t.slice(1);
}

/** `routing.escalation[0].after_secs` -> "Escalation step 1, after secs". */
function pathLabel(path) {
  return String(path || '')
    .replace(/^routing\./, '')
    .replace(/escalation\[(\d+)\]/, (_, i) => `escalation step ${Number(i) + 1}`)
    .replace(/required_skills\[(\d+)\]/, (_, i) => `required skill ${Number(i) + 1}`)
    .replace(/skills\[(\d+)\]/, (_, i) => `skill ${Number(i) + 1}`)
    .replace(/[._]/g, ' ')
    .trim() || 'Request';
}

/**
 * A labelled control whose errors are matched by `path`: {wrap, input}.
 * `options` makes a select; `control` passes a ready element.
 */
export function pathField({ label, path, type = 'text', value, hint, required = false, options, attrs = {}, control, wide = false }) {
  const id = nextId('rf');
  const input = control || (options
    ? h('select', { id, ...attrs }, options.map(([v, l]) => h('option', { value: v }, l)))
    : h('input', { id, type, value: value ?? '', ...attrs }));
  input.id = id;
  if (required) input.required = true;
  if (options && value !== undefined && value !== null) input.value = String(value);
  input.dataset.path = path;
  input.setAttribute('aria-describedby', [hint ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(' '));
  const wrap = h('div', { class: wide ? 'field field-span' : 'field' },
    h('label', { for: id }, label, required ? h('span', { class: 'req', 'aria-hidden': 'true' }, '*') : null),
    input,
    hint ? h('span', { id: `${id}-hint`, class: 'hint' }, hint) : null,
    h('span', { id: `${id}-error`, class: 'field-error' }));
  return { wrap, input };
}

/** A number input's value, or null when empty. */
export function numOrNull(input) {
  const v = input.value.trim();
  return v === '' ? null : Number(v);
}
