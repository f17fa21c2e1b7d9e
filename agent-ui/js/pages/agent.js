// Agent desk: the signed-in agent's routing profile and live activity.

import { h, clear, humanize, shortId, fmtTime } from '/js/dom.js';
import { getAll } from '/js/api.js';
import { pageHeader, card, emptyState, loading, callout, badge } from '/js/ui.js';

const MAX_ITEMS = 50;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Filled once the catalogue has loaded; events before that show short ids.
const names = { queue: new Map(), agent: new Map() };

export default async function agentDesk(root, ctx) {
  const { me, live } = ctx;
  root.append(pageHeader('Agent desk', `Welcome, ${me.user ? me.user.display_name : 'there'}. Your routing profile and what is happening right now.`));

  root.append(callout({
    iconName: 'phone',
    title: 'The softphone and interaction offers arrive in a later release.',
    text: 'Soon, calls and chats routed to you will ring here and you will accept them from this page. Until then, this desk shows your profile and the live activity of your workspace.',
  }));

  const profileCard = card({ title: 'Your agent profile', subtitle: 'How routing sees you', body: loading('Loading your profile…') });
  const activityList = h('ol', { class: 'activity', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Live activity' });
  const activityEmpty = emptyState({
    iconName: 'activity',
    title: 'No activity yet',
    text: 'Interaction events in your workspace appear here the moment they happen.',
  });
  const counter = h('span', { class: 'small muted' });
  const activityCard = card({
    title: 'Activity',
    subtitle: 'Live interaction events in your workspace',
    actions: counter,
    flush: true,
    body: [activityEmpty, activityList],
  });
  root.append(h('div', { class: 'grid grid-main-side' }, activityCard, profileCard));

  // Live activity: subscribe first so nothing is missed while loading.
  let count = 0;
  const unsubscribe = live.subscribe((ev) => {
    count += 1;
    activityEmpty.hidden = true;
    activityList.prepend(activityItem(ev));
    while (activityList.children.length > MAX_ITEMS) activityList.lastElementChild.remove();
    counter.textContent = `${count} event${count === 1 ? '' : 's'} since you opened this page`;
  });
  ctx.onCleanup(unsubscribe);

  const [agents, skills, queues] = await Promise.all([getAll('/agents'), getAll('/skills'), getAll('/queues')]);
  const skillName = new Map(skills.map((s) => [s.id, s.name]));
  names.queue = new Map(queues.map((q) => [q.id, q.name]));
  names.agent = new Map(agents.map((a) => [a.id, a.display_name]));
  const mine = me.user ? agents.find((a) => a.user_id === me.user.id) : null;
  clear(profileCard.body);
  if (!mine) {
    profileCard.body.append(emptyState({
      iconName: 'headset',
      title: 'You are not set up as an agent',
      text: me.role === 'agent'
        ? 'Your user has no agent profile yet, so no interactions can be routed to you. Ask an admin to add you to routing.'
        : `You are signed in as a ${me.role}. Routing has no agent profile for you, so interactions are not offered to you.`,
    }));
    return;
  }
  profileCard.body.append(profile(mine, skillName));
}

function profile(agent, skillName) {
  const capacity = Object.entries(agent.capacity || {});
  const skills = [...agent.skills].sort((a, b) => b.level - a.level);
  return h('dl', { class: 'dl', 'data-agent-profile': agent.id },
    h('dt', null, 'Name'), h('dd', null, agent.display_name || '—'),
    h('dt', null, 'Extension'), h('dd', null, agent.extension ? h('span', { class: 'mono' }, agent.extension) : h('span', { class: 'muted' }, 'None')),
    h('dt', null, 'Capacity'),
    h('dd', null, capacity.length
      ? h('ul', { class: 'chips', 'aria-label': 'Capacity per channel' }, capacity.map(([ch, n]) => h('li', { class: 'chip' }, humanize(ch), h('span', { class: 'lvl' }, `× ${n}`))))
      : h('span', { class: 'muted' }, 'Not set')),
    h('dt', null, 'Skills'),
    h('dd', null, skills.length
      ? h('ul', { class: 'chips', 'aria-label': 'Skills and levels' }, skills.map((s) => h('li', { class: 'chip', title: `Level ${s.level} of 5` },
        humanize(skillName.get(s.skill_id) || shortId(s.skill_id)), h('span', { class: 'lvl' }, `level ${s.level}`))))
      : h('span', { class: 'muted' }, 'None')));
}

function describeData(data) {
  if (!data || typeof data !== 'object') return '';
  if (typeof data.text === 'string') return `“${data.text}”`;
  const parts = [];
  for (const [k, v] of Object.entries(data)) {
    if (v === null || typeof v === 'object' || k === 'type') continue;
    if (k === 'queue_id') parts.push(`Queue: ${names.queue.get(v) || shortId(v)}`);
    else if (k === 'agent_id') parts.push(`Agent: ${names.agent.get(v) || shortId(v)}`);
    else if (UUID.test(String(v))) continue;
    else parts.push(`${humanize(k)}: ${String(v).slice(0, 60)}`);
    if (parts.length === 3) break;
  }
  return parts.join(' · ');
}

function activityItem(ev) {
  const extra = describeData(ev.data);
  return h('li', { class: 'is-new', 'data-event-id': ev.id },
    h('span', { class: 'dot', 'aria-hidden': 'true' }),
    h('span', null, h('span', { class: 'kind' }, humanize(ev.kind)), ev.kind !== ev.state ? [' ', h('span', { class: 'sr-only' }, 'now '), badge(ev.state)] : null),
    h('time', { class: 'small muted', datetime: ev.occurred_at }, fmtTime(ev.occurred_at)),
    h('span', { class: 'meta' }, `Interaction ${shortId(ev.interaction_id)} · step ${ev.seq}`, extra ? ` · ${extra}` : ''));
}
