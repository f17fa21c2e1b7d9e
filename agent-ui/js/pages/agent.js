// The agent desk: presence (available, away with a reason, offline), the
// offers ringing now with Accept / Reject and a countdown, the connected
// interactions with Hang up, and wrap-up with its countdown and "End
// wrap-up". The state comes from GET /agents/me/desk, refreshed on every
// message of the event stream and every 2 s.

import { h, clear, humanize } from '/js/dom.js';
import { api, get, post, getAll, ApiError, describeError } from '/js/api.js';
import { pageHeader, card, emptyState, toast, announce, busy, icon } from '/js/ui.js';
import {
  hasEndpoint, catalogue, AWAY_REASONS, CHANNEL_LABEL, fmtClock, statusBadge, loadMeters, reasonLabel, setText,
} from './routing-shared.js';

const REFRESH_MS = 2000;

export default async function agentDesk(root, ctx) {
  root.append(pageHeader('Agent desk', 'Your presence, the interactions offered to you and the ones you are handling.'));

  const userId = ctx.me.user ? ctx.me.user.id : null;
  const [agents, queues, hasDesk] = await Promise.all([getAll('/agents'), getAll('/queues'), hasEndpoint('/agents/me/desk')]);
  const mine = userId ? agents.find((a) => a.user_id === userId) : null;
  const cat = catalogue([], queues, agents);

  if (!mine) {
    notAnAgent();
    return;
  }

  function notAnAgent() {
    const boss = ['admin', 'supervisor'].includes(ctx.me.role);
    clear(root);
    root.append(pageHeader('Agent desk', 'Your presence, the interactions offered to you and the ones you are handling.'));
    root.append(card({
      body: emptyState({
        iconName: 'headset',
        large: true,
        title: 'You are not set up as an agent',
        text: boss
          ? 'Interactions are only offered to agents. Make yourself (or anyone) an agent under Supervisor › Agents, with skills and capacity.'
          : 'Interactions are only offered to agents. Ask your supervisor to set you up as an agent, with your skills.',
        children: boss ? h('a', { class: 'btn btn-primary', href: '#/supervisor/agents' }, 'Set up agents') : null,
      }),
    }));
    root.dataset.desk = 'not-agent';
  }

  // ---- presence
  const presenceName = `presence-${mine.id}`;
  const radios = {};
  const options = [
    ['available', 'Available', 'Take interactions'],
    ['away', 'Away', 'A break, lunch, a meeting…'],
    ['offline', 'Offline', 'Not working now'],
  ].map(([value, label, hint]) => {
    const input = h('input', { type: 'radio', name: presenceName, value, 'data-presence-option': value });
    radios[value] = input;
    return h('label', { class: `presence-option presence-${value}` }, input, h('span', { class: 'presence-dot', 'aria-hidden': 'true' }),
      h('span', null, h('strong', null, label), h('span', { class: 'sub' }, hint)));
  });
  const reason = h('select', { id: 'away-reason', 'aria-label': 'Reason for being away', 'data-away-reason': '' },
    AWAY_REASONS.map(([v, l]) => h('option', { value: v }, l)));
  const reasonWrap = h('div', { class: 'field away-reason' }, h('label', { for: 'away-reason' }, 'Reason'), reason);
  const presenceError = h('div', { class: 'form-error', role: 'alert' });
  const presenceBox = h('fieldset', { class: 'presence', role: 'radiogroup', 'aria-label': 'Your presence' },
    h('legend', { class: 'sr-only' }, 'Your presence'), h('div', { class: 'presence-options' }, options), reasonWrap);
  const statusLine = h('div', { class: 'desk-status', 'aria-live': 'polite' });
  root.append(card({ title: 'Presence', subtitle: 'Interactions are offered only while you are available.', body: [presenceError, presenceBox, statusLine] }));

  let settingPresence = false;
  async function setPresence(value) {
    clear(presenceError);
    settingPresence = true;
    const body = value === 'away' ? { presence: 'away', reason: reason.value } : { presence: value };
    try {
      const res = await api('PUT', `/agents/${encodeURIComponent(mine.id)}/presence`, body);
      if (res && res.agent) fallbackPresence = res.agent.presence;
      announce(value === 'away' ? `You are away: ${reasonLabel(reason.value)}` : `You are ${value}`);
      await refresh();
    } catch (err) {
      presenceError.append(`Could not change your presence: ${describeError(err)}`);
      await refresh();
    } finally {
      settingPresence = false;
    }
  }
  for (const [value, input] of Object.entries(radios)) input.addEventListener('change', () => { if (input.checked) setPresence(value); });
  reason.addEventListener('change', () => { if (radios.away.checked) setPresence('away'); });

  // ---- work
  const offersBox = h('div', { class: 'desk-list', 'data-desk': 'offers' });
  const connectedBox = h('div', { class: 'desk-list', 'data-desk': 'connected' });
  const wrapBox = h('div', { class: 'desk-list', 'data-desk': 'wrap-ups' });
  root.append(h('div', { class: 'grid grid-2 desk-grid' },
    card({ title: 'Offered to you', subtitle: 'Accept before the time runs out, or reject to pass it on.', body: offersBox }),
    card({ title: 'In progress', body: connectedBox })));
  root.append(card({ title: 'Wrap-up', subtitle: 'Finish your notes; new interactions wait until wrap-up ends.', body: wrapBox }));

  // ---- state
  let desk = null;
  let fallbackPresence = null;
  const seenOffers = new Set();

  async function loadDesk() {
    if (hasDesk) {
      const d = await get('/agents/me/desk');
      // Offers carry `since` (offered) and `until` (stops ringing).
      d.offers = (d.offers || []).map((o) => ({ ...o, offered_at: o.offered_at ?? o.since, expires_at: o.expires_at ?? o.until ?? null }));
      return d;
    }
    // Older servers: the interactions in hand from the interactions list.
    const [offered, connected, wrapUp] = await Promise.all(['offered', 'connected', 'wrap_up']
      .map((state) => get('/interactions', { state, limit: 200 }).then((p) => p.items.filter((i) => i.agent_id === mine.id))));
    let presence = fallbackPresence;
    if (['admin', 'supervisor'].includes(ctx.me.role)) {
      const live = await get('/routing/live');
      const me = (live.agents || []).find((a) => a.id === mine.id);
      if (me) presence = me.presence;
    }
    const p = presence && typeof presence === 'object' ? presence : { presence: presence || null };
    const status = offered.length || connected.length ? 'busy' : (wrapUp.length ? 'wrap_up' : (p.presence === 'available' ? 'idle' : p.presence));
    return {
      agent: mine,
      presence: p.presence,
      reason: p.reason || null,
      status,
      offers: offered.map((i) => ({ interaction_id: i.id, channel: i.channel, queue_id: i.queue_id, queue_name: cat.queueName(i.queue_id), offered_at: i.updated_at, expires_at: null })),
      connected: connected.map((i) => ({ interaction_id: i.id, channel: i.channel, queue_id: i.queue_id, queue_name: cat.queueName(i.queue_id), since: i.updated_at })),
      wrap_ups: wrapUp.map((i) => ({ interaction_id: i.id, until: null })),
      capacity: mine.capacity,
      load: null,
    };
  }

  let inflight = null;
  async function refresh() {
    if (inflight) return inflight;
    inflight = (async () => {
      try {
        const d = await loadDesk();
        if (!ctx.isCurrent()) return;
        desk = d;
        render();
      } catch (err) {
        if (!ctx.isCurrent()) return;
        if (err instanceof ApiError && (err.status === 404 || err.status === 403) && hasDesk) {
          stop();
          notAnAgent();
        }
        // Other errors: the next refresh tries again.
      } finally {
        inflight = null;
      }
    })();
    return inflight;
  }

  function render() {
    const d = desk;
    root.dataset.desk = 'ready';
    root.dataset.presence = d.presence || '';
    root.dataset.status = d.status || '';
    if (!settingPresence) {
      for (const [v, input] of Object.entries(radios)) input.checked = v === d.presence;
      if (d.presence === 'away' && d.reason && [...reason.options].some((o) => o.value === d.reason)) reason.value = d.reason;
    }
    reasonWrap.hidden = !radios.away.checked;
    clear(statusLine);
    statusLine.append(h('span', { class: 'label' }, 'Status '), statusBadge({ status: d.status, reason: d.reason }),
      d.capacity ? h('div', { class: 'desk-load' }, loadMeters(d.load || {}, d.capacity)) : null);

    // Offers
    const offers = d.offers || [];
    for (const o of offers) {
      if (!seenOffers.has(o.interaction_id)) {
        seenOffers.add(o.interaction_id);
        announce(`New ${CHANNEL_LABEL[o.channel] || o.channel} offer from ${o.queue_name || 'a queue'}`);
      }
    }
    keyedList(offersBox, offers, 'offer', offerItem,
      emptyState({ iconName: 'phone', title: 'Nothing ringing', text: d.presence === 'available' ? 'Offers appear here as they arrive.' : 'Go available to receive offers.' }));
    keyedList(connectedBox, d.connected || [], 'connected', connectedItem,
      emptyState({ iconName: 'headset', title: 'No interaction in progress' }));
    keyedList(wrapBox, d.wrap_ups || [], 'wrap-up', wrapItem,
      emptyState({ iconName: 'list', title: 'No wrap-up', text: 'After an interaction ends you get time to finish up here.' }));
    tick();
  }

  /** Keeps items (by interaction id) so buttons keep focus across refreshes. */
  function keyedList(box, items, kind, make, empty) {
    const ids = new Set(items.map((x) => x.interaction_id));
    for (const el of [...box.children]) {
      if (!el.dataset.id || !ids.has(el.dataset.id)) el.remove();
    }
    if (!items.length) {
      box.append(empty);
      return;
    }
    let prev = null;
    for (const x of items) {
      let el = box.querySelector(`[data-id="${CSS.escape(x.interaction_id)}"]`);
      if (!el) el = make(x);
      el.item = x;
      if (prev) prev.after(el); else box.prepend(el);
      prev = el;
    }
  }

  function offerItem(o) {
    const clock = h('span', { class: 'countdown', 'data-countdown': '' });
    const bar = h('progress', { max: '100', value: '100', 'aria-hidden': 'true' });
    const accept = h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'accept' }, 'Accept');
    const reject = h('button', { type: 'button', class: 'btn', 'data-action': 'reject' }, 'Reject');
    const label = `${CHANNEL_LABEL[o.channel] || humanize(o.channel)} from ${o.queue_name || cat.queueName(o.queue_id)}`;
    const el = h('article', { class: 'desk-item is-ringing', 'data-id': o.interaction_id, 'data-offer': o.interaction_id, 'aria-label': `Offer: ${label}` },
      h('div', { class: 'desk-item-head' }, icon(o.channel === 'voice' ? 'phone' : 'inbox'), h('strong', null, label), clock),
      who(o),
      o.expires_at ? bar : null,
      h('div', { class: 'btn-row' }, accept, reject));
    el.tick = () => {
      const it = el.item;
      if (!it.expires_at) { setText(clock, 'ringing'); return; }
      const left = new Date(it.expires_at).getTime() - Date.now();
      const total = Math.max(1, new Date(it.expires_at).getTime() - new Date(it.offered_at || Date.now()).getTime());
      setText(clock, `${fmtClock(left)} left`);
      bar.value = Math.max(0, Math.min(100, (left / total) * 100));
      el.classList.toggle('is-urgent', left < 5000);
    };
    accept.addEventListener('click', () => act(accept, `/interactions/${encodeURIComponent(o.interaction_id)}/accept`, 'Accepted.', 'accept'));
    reject.addEventListener('click', () => act(reject, `/interactions/${encodeURIComponent(o.interaction_id)}/reject`, 'Rejected: it goes to someone else.', 'reject'));
    return el;
  }

  function connectedItem(c) {
    const clock = h('span', { class: 'countdown', 'data-since': '' });
    const hang = h('button', { type: 'button', class: 'btn btn-danger', 'data-action': 'hang-up' }, 'Hang up');
    const label = `${CHANNEL_LABEL[c.channel] || humanize(c.channel)} from ${c.queue_name || cat.queueName(c.queue_id)}`;
    const el = h('article', { class: 'desk-item is-connected', 'data-id': c.interaction_id, 'data-connected': c.interaction_id, 'aria-label': `In progress: ${label}` },
      h('div', { class: 'desk-item-head' }, icon(c.channel === 'voice' ? 'phone' : 'inbox'), h('strong', null, label), clock),
      who(c),
      h('div', { class: 'btn-row' }, hang,
        h('a', { class: 'btn btn-ghost btn-sm', href: `#/contacts` }, 'Find the contact')));
    el.tick = () => setText(clock, el.item.since ? fmtClock(Date.now() - new Date(el.item.since).getTime()) : '');
    hang.addEventListener('click', () => act(hang, `/interactions/${encodeURIComponent(c.interaction_id)}/hang-up`, 'Ended: you are in wrap-up.', 'hang up'));
    return el;
  }

  function who(x) {
    if (!x.customer_address && !x.subject) return null;
    return h('p', { class: 'desk-who' }, x.customer_address ? h('span', { class: 'mono' }, x.customer_address) : null,
      x.customer_address && x.subject ? ' · ' : '', x.subject || '');
  }

  function wrapItem(w) {
    const clock = h('span', { class: 'countdown', 'data-wrap-clock': '' });
    const end = h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'end-wrap-up' }, 'End wrap-up');
    const el = h('article', { class: 'desk-item is-wrap', 'data-id': w.interaction_id, 'data-wrap-up': w.interaction_id, 'aria-label': 'Wrap-up' },
      h('div', { class: 'desk-item-head' }, icon('list'), h('strong', null, 'Wrap-up'), clock),
      h('div', { class: 'btn-row' }, end));
    el.tick = () => {
      if (!el.item.until) { setText(clock, 'until you end it'); return; }
      setText(clock, `${fmtClock(new Date(el.item.until).getTime() - Date.now())} left`);
    };
    end.addEventListener('click', () => act(end, `/agents/${encodeURIComponent(mine.id)}/wrap-up/end`, 'Wrap-up ended.', 'end wrap-up'));
    return el;
  }

  async function act(button, path, done, what) {
    await busy(button, async () => {
      try {
        await post(path, {});
        announce(done);
        toast(done);
      } catch (err) {
        toast(err instanceof ApiError && err.status === 409
          ? `Could not ${what}: it has changed meanwhile (${describeError(err)}).`
          : `Could not ${what}: ${describeError(err)}`, 'error');
      }
    });
    await refresh();
    // Keep the keyboard somewhere useful when the item goes away.
    if (!button.isConnected) {
      const next = root.querySelector('.desk-item button');
      if (next) next.focus();
    }
  }

  function tick() {
    for (const el of root.querySelectorAll('.desk-item')) if (el.tick) el.tick();
  }

  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  const ticker = setInterval(tick, 1000);
  let evTimer = null;
  const unsubscribe = ctx.live.subscribe(() => {
    if (!evTimer) evTimer = setTimeout(() => { evTimer = null; refresh(); }, 100);
  });
  const unResync = ctx.live.onResync(refresh);
  function stop() {
    clearInterval(timer);
    clearInterval(ticker);
    clearTimeout(evTimer);
    unsubscribe();
    unResync();
  }
  ctx.onCleanup(stop);
}
