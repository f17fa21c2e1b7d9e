// Contacts: not built yet. An honest empty state, no sample data.

import { h } from '/js/dom.js';
import { pageHeader, card, emptyState } from '/js/ui.js';

export default function contacts(root) {
  root.append(
    pageHeader('Contacts', 'The people your contact center talks to.'),
    card({
      body: emptyState({
        large: true,
        iconName: 'contacts',
        headingLevel: 'h2',
        title: 'Contacts arrive in a later release',
        text: 'This is where you will find, import and manage customer contacts, and see each person’s interaction history across calls, chats, SMS and email.',
        children: h('ul', { class: 'roadmap' },
          h('li', null, 'Search contacts by name, phone number or email'),
          h('li', null, 'Import contacts from CSV as a background job, with progress under Jobs'),
          h('li', null, 'Consent and do-not-contact flags that campaigns respect')),
      }),
    }),
  );
}
