// Campaigns: not built yet. An honest empty state, no sample data.

import { h } from '/js/dom.js';
import { pageHeader, card, emptyState } from '/js/ui.js';

export default function campaigns(root) {
  root.append(
    pageHeader('Campaigns', 'Outbound calling and messaging to lists of contacts.'),
    card({
      body: emptyState({
        large: true,
        iconName: 'megaphone',
        headingLevel: 'h2',
        title: 'Campaigns arrive in a later release',
        text: 'This is where you will create outbound campaigns, choose who to reach and when, and follow their results as they run.',
        children: h('ul', { class: 'roadmap' },
          h('li', null, 'Dial or message lists of contacts within calling hours'),
          h('li', null, 'Pacing that follows how many agents are free'),
          h('li', null, 'Live progress and outcomes for every campaign')),
      }),
    }),
  );
}
