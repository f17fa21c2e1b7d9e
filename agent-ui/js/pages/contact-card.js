// The contact card (#/contacts/card?id=...): details, consent per channel
// with the can-contact answer and its reasons, opt-in / opt-out (an agent
// action, kept in the consent history), lists, interactions; editing and
// deleting for marketers and admins.

import { h, clear, nextId, humanize, shortId, timeEl } from '/js/dom.js';
import { get, post, patch, del, describeError, ApiError } from '/js/api.js';
import {
  pageHeader, card, table, badge, field, errorRegion, busy, toast, confirmDialog, formDialog,
  loadMoreButton, emptyState, announce,
} from '/js/ui.js';
import {
  canManage, isAudience, backToContactsHref, showFormErrors, clearFormErrors, attributeControl, attributeValue,
  splitList, consentBadge, CHANNELS, fmtNumber, sourceText,
} from '/js/pages/contacts-shared.js';

export default async function contactCard(root, ctx) {
  const id = (ctx.params.get('id') || '').trim();
  const role = ctx.me.role;
  const manage = canManage(role);
  const audience = isAudience(role);
  const back = h('a', { href: backToContactsHref(), class: 'crumb-link' }, '← Contacts');

  if (!id) {
    root.append(pageHeader('Contact', null, null, back),
      card({ body: emptyState({ iconName: 'contacts', title: 'No contact chosen', text: 'Search for a contact and open their card from the list.', children: h('a', { class: 'btn', href: backToContactsHref() }, 'Go to contacts') }) }));
    return;
  }

  let c;
  let defs;
  try {
    [c, defs] = await Promise.all([get(`/contacts/${encodeURIComponent(id)}`), get('/contact-attributes')]);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 422)) {
      root.append(pageHeader('Contact not found', null, null, back),
        card({ body: emptyState({ iconName: 'contacts', title: 'This contact does not exist', text: 'It may have been deleted, or the link is wrong.', children: h('a', { class: 'btn', href: backToContactsHref() }, 'Back to contacts') }) }));
      return;
    }
    throw err;
  }
  const attrLabel = Object.fromEntries(defs.map((d) => [d.key, d.label || humanize(d.key)]));
  const displayName = () => c.name || c.emails[0] || (c.phones[0] && c.phones[0].number) || 'Unnamed contact';

  // ---- header
  const editBtn = manage ? h('button', { type: 'button', class: 'btn', 'aria-expanded': 'false' }, 'Edit') : null;
  const deleteBtn = manage ? h('button', { type: 'button', class: 'btn btn-danger' }, 'Delete') : null;
  const header = pageHeader(displayName(), null, [editBtn, deleteBtn].filter(Boolean), back);
  const subtitle = h('p', { class: 'subtitle contact-sub' });
  header.firstChild.append(subtitle);
  root.append(header);
  root.dataset.contact = c.id;

  function renderHeader() {
    header.querySelector('h1').textContent = displayName();
    document.title = `${displayName()} · Switchboard`;
    clear(subtitle);
    const bits = [];
    if (c.phones[0]) bits.push(h('span', { class: 'mono', 'data-primary-phone': '' }, c.phones[0].number));
    if (c.emails[0]) bits.push(h('span', null, c.emails[0]));
    bits.push(h('span', null, 'Added ', timeEl(c.created_at)));
    bits.forEach((b, i) => subtitle.append(i ? h('span', { class: 'dot-sep', 'aria-hidden': 'true' }, '·') : '', b));
  }

  // ---- sections
  const detailsBody = h('div', { 'data-section': 'details' });
  const detailsCard = card({ title: 'Details', body: detailsBody });
  const consentBody = h('div', { class: 'consent-list', 'data-section': 'consent' });
  const consentCard = card({ title: 'Consent', subtitle: 'May we contact them now, on each channel?', body: consentBody });
  const listsBody = h('div', { 'data-section': 'lists' });
  const listsCard = card({ title: 'Lists', body: listsBody });
  const historyBody = h('div', { 'data-section': 'consent-history' });
  const historyCard = card({ title: 'Consent history', subtitle: 'Newest first', body: historyBody });
  const interactionsCard = interactionsSection();

  root.append(h('div', { class: 'grid grid-main-side' },
    h('div', { class: 'stack' }, detailsCard, interactionsCard),
    h('div', { class: 'stack' }, consentCard, listsCard, historyCard)));

  function renderDetails() {
    clear(detailsBody);
    const dl = h('dl', { class: 'dl' });
    const row = (label, value) => dl.append(h('dt', null, label), h('dd', null, value));
    const none = (text = '—') => h('span', { class: 'muted' }, text);
    row('Name', c.name || none('No name'));
    row('Phones', c.phones.length
      ? h('ul', { class: 'plain-list' }, c.phones.map((p) => h('li', null, h('span', { class: 'mono', 'data-phone': p.number }, p.number), p.label ? h('span', { class: 'muted' }, ` · ${p.label}`) : null)))
      : none());
    row('Emails', c.emails.length ? h('ul', { class: 'plain-list' }, c.emails.map((e) => h('li', { class: 'break' }, e))) : none());
    row('Time zone', c.timezone
      ? [c.timezone, h('span', { class: 'muted' }, c.timezone_source === 'phone' ? ' · from the phone number' : ' · given')]
      : none('Unknown'));
    row('Language', c.language || none());
    row('Tags', c.tags.length ? h('ul', { class: 'chips' }, c.tags.map((t) => h('li', { class: 'chip' }, t))) : none());
    row('External ID', c.external_id ? h('span', { class: 'mono' }, c.external_id) : none());
    const keys = Object.keys(c.attributes || {}).sort();
    for (const k of keys) {
      const v = c.attributes[k];
      row(attrLabel[k] || k, typeof v === 'boolean' ? (v ? 'Yes' : 'No') : String(v));
    }
    row('Updated', timeEl(c.updated_at, true));
    detailsBody.append(dl);
    if (!keys.length && defs.length) detailsBody.append(h('p', { class: 'small muted top-gap' }, 'No custom attributes set.'));
  }

  // ---- consent
  async function renderConsent() {
    const decisions = await Promise.all(CHANNELS.map((ch) => get(`/contacts/${c.id}/can-contact`, { channel: ch.id }).catch((err) => ({ error: err }))));
    if (!ctx.isCurrent()) return;
    clear(consentBody);
    CHANNELS.forEach((ch, i) => consentBody.append(consentRow(ch, decisions[i])));
  }

  function consentRow(ch, d) {
    const cons = c.consent ? c.consent[ch.id] : null;
    const titleId = nextId('ch');
    const answer = d.error
      ? h('p', { class: 'form-error' }, `Could not check: ${describeError(d.error)}`)
      : h('div', { class: d.allowed ? 'can-contact is-yes' : 'can-contact is-no', 'data-allowed': String(d.allowed) },
        h('strong', null, d.allowed ? '✓ Can be contacted now' : '✕ Cannot be contacted now'),
        d.address ? h('span', { class: 'small muted' }, ` at ${d.address}`) : null,
        d.reasons.length ? h('ul', { class: 'reasons' }, d.reasons.map((r) => h('li', { 'data-reason': r.code }, capital(r.message)))) : null,
        d.next_allowed_at ? h('p', { class: 'small' }, 'Next possible: ', timeEl(d.next_allowed_at)) : null);
    const optIn = h('button', { type: 'button', class: 'btn btn-sm', 'data-consent-action': `${ch.id}:opted_in` }, 'Record opt-in');
    const optOut = h('button', { type: 'button', class: 'btn btn-sm btn-danger', 'data-consent-action': `${ch.id}:opted_out` }, 'Record opt-out');
    optIn.addEventListener('click', () => recordConsent(ch, 'opted_in', optIn));
    optOut.addEventListener('click', () => recordConsent(ch, 'opted_out', optOut));
    return h('section', { class: 'consent-row', 'data-channel': ch.id, 'aria-labelledby': titleId },
      h('div', { class: 'consent-head' }, h('h3', { id: titleId }, ch.label), consentBadge(cons)),
      cons
        ? h('p', { class: 'small muted' }, `${cons.status === 'opted_in' ? 'Opted in' : 'Opted out'} via ${sourceText(cons.source)} · `, timeEl(cons.recorded_at, true), cons.detail ? ` · “${cons.detail}”` : '')
        : h('p', { class: 'small muted' }, 'No consent recorded.'),
      answer,
      h('div', { class: 'btn-row' }, optIn, optOut));
  }

  async function recordConsent(ch, status, btn) {
    const verb = status === 'opted_in' ? 'opt-in' : 'opt-out';
    const done = await formDialog({
      title: `Record ${ch.label.toLowerCase()} ${verb}`,
      description: status === 'opted_in'
        ? `${displayName()} agrees to be contacted by ${ch.label.toLowerCase()}. This is kept in their consent history with your name and the time.`
        : `${displayName()} does not want to be contacted by ${ch.label.toLowerCase()}. Campaigns stop at once. This is kept in their consent history.`,
      submitLabel: `Record ${verb}`,
      danger: status === 'opted_out',
      build: () => field({ label: 'Note', name: 'detail', hint: 'Optional, e.g. “Asked on the phone to stop texts”.', attrs: { maxlength: '1000', autocomplete: 'off' } }),
      submit: async (form) => {
        const detail = form.elements.detail.value.trim();
        return post(`/contacts/${c.id}/consent`, { channel: ch.id, status, ...(detail ? { detail } : {}) });
      },
    });
    if (!done) {
      btn.focus();
      return;
    }
    const lists = c.lists;
    c = { ...done, lists };
    toast(`${ch.label}: ${verb} recorded.`);
    announce(`${ch.label} ${verb} recorded.`);
    await Promise.all([renderConsent(), renderHistory()]);
    const again = consentBody.querySelector(`[data-consent-action="${ch.id}:${status}"]`);
    if (again) again.focus();
  }

  async function renderHistory() {
    let events;
    try {
      events = await get(`/contacts/${c.id}/consent-history`);
    } catch (err) {
      clear(historyBody);
      historyBody.append(h('p', { class: 'form-error' }, describeError(err)));
      return;
    }
    if (!ctx.isCurrent()) return;
    clear(historyBody);
    if (!events.length) {
      historyBody.append(h('p', { class: 'muted small' }, 'No consent changes yet.'));
      return;
    }
    const myActor = ctx.me.user ? `user:${ctx.me.user.id}` : null;
    historyBody.append(h('ol', { class: 'timeline' }, events.map((e) => h('li', { 'data-event': `${e.channel}:${e.status}` },
      h('div', { class: 'timeline-head' },
        h('strong', null, channelShort(e.channel)), ' ',
        e.status === 'opted_in' ? badge('Opted in', 'success') : e.status === 'opted_out' ? badge('Opted out', 'danger') : badge(e.status)),
      h('div', { class: 'small muted' },
        `Via ${sourceText(e.source)}`,
        e.actor ? ` · by ${e.actor === myActor ? 'you' : actorText(e.actor)}` : '',
        ' · ', timeEl(e.recorded_at, true)),
      e.detail ? h('div', { class: 'small' }, `“${e.detail}”`) : null))));
  }

  // ---- lists
  function renderLists() {
    clear(listsBody);
    if (!c.lists.length) listsBody.append(h('p', { class: 'muted small' }, 'Not on any list.'));
    else {
      listsBody.append(h('ul', { class: 'member-lists' }, c.lists.map((l) => {
        const name = audience ? h('a', { href: `#/contacts?list_id=${encodeURIComponent(l.id)}` }, l.name) : h('span', null, l.name);
        const item = h('li', { 'data-list': l.id }, name);
        if (manage) {
          const rm = h('button', { type: 'button', class: 'btn btn-sm btn-ghost' }, 'Remove', h('span', { class: 'sr-only' }, ` from ${l.name}`));
          rm.addEventListener('click', async () => {
            try {
              await busy(rm, () => post(`/lists/${l.id}/members/remove`, { contact_ids: [c.id] }));
              c.lists = c.lists.filter((x) => x.id !== l.id);
              toast(`Removed from ${l.name}.`);
              renderLists();
              listsBody.querySelector('select, button')?.focus();
            } catch (err) {
              toast(`Could not remove from ${l.name}: ${describeError(err)}`, 'error');
            }
          });
          item.append(rm);
        }
        return item;
      })));
    }
    if (manage) listsBody.append(addToList());
  }

  function addToList() {
    const wrap = h('div', { class: 'inline-form' });
    const selId = nextId('addlist');
    const sel = h('select', { id: selId, class: 'inline-select' }, h('option', { value: '' }, 'Loading lists…'));
    const btn = h('button', { type: 'button', class: 'btn btn-sm' }, 'Add');
    wrap.append(h('label', { for: selId, class: 'small' }, 'Add to list'), sel, btn);
    get('/lists', { limit: 200 }).then((page) => {
      clear(sel);
      const options = page.items.filter((l) => !c.lists.some((x) => x.id === l.id));
      sel.append(h('option', { value: '' }, options.length ? 'Choose a list…' : 'No other lists'),
        options.map((l) => h('option', { value: l.id }, `${l.name} (${fmtNumber(l.members)})`)));
      sel.disabled = !options.length;
      btn.disabled = !options.length;
    }).catch(() => {
      clear(sel);
      sel.append(h('option', { value: '' }, 'Lists could not be loaded'));
    });
    btn.addEventListener('click', async () => {
      if (!sel.value) {
        sel.focus();
        return;
      }
      const listId = sel.value;
      const name = sel.selectedOptions[0].textContent.replace(/ \([\d,.\s]+\)$/, '');
      try {
        await busy(btn, () => post(`/lists/${listId}/members`, { contact_ids: [c.id] }));
        c.lists = [...c.lists, { id: listId, name }];
        toast(`Added to ${name}.`);
        renderLists();
        listsBody.querySelector('select')?.focus();
      } catch (err) {
        toast(`Could not add to the list: ${describeError(err)}`, 'error');
      }
    });
    return wrap;
  }

  // ---- interactions
  function interactionsSection() {
    const rows = [];
    const err = h('div', { class: 'form-error inset', role: 'alert' });
    const t = table({
      caption: 'Interactions with this contact',
      empty: 'No interactions with this contact yet.',
      columns: [
        { label: 'When', class: 'nowrap', cell: (i) => timeEl(i.created_at, true) },
        { label: 'Channel', class: 'nowrap', cell: (i) => [humanize(i.channel), h('span', { class: 'sub' }, humanize(i.direction))] },
        { label: 'State', cell: (i) => [badge(i.state), i.close_reason ? h('span', { class: 'sub' }, humanize(i.close_reason)) : null] },
        { label: 'Subject', cell: (i) => i.subject || h('span', { class: 'muted' }, '—') },
        { label: 'Address', cell: (i) => (i.customer_address ? h('span', { class: 'mono' }, i.customer_address) : h('span', { class: 'muted' }, '—')) },
        { label: 'Ref', cell: (i) => h('span', { class: 'mono small', title: i.id }, shortId(i.id)) },
      ],
    });
    let cursor = null;
    const more = loadMoreButton(() => load());
    async function load() {
      try {
        const page = await get(`/contacts/${id}/interactions`, { limit: 25, cursor });
        rows.push(...page.items);
        t.setRows(rows);
        cursor = page.next_cursor;
        more.hidden = !cursor;
      } catch (e) {
        err.textContent = describeError(e);
      }
    }
    load();
    return card({ title: 'Interactions', subtitle: 'Calls, chats, texts and emails, newest first', flush: true, body: [err, t.el], foot: more });
  }

  // ---- edit (marketers and admins)
  let editing = false;
  function renderEdit() {
    clear(detailsBody);
    const region = errorRegion();
    const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
    const zoneListId = nextId('tz');
    const initial = {
      first_name: c.first_name,
      last_name: c.last_name,
      phones: c.phones.map((p) => p.number).join(', '),
      emails: c.emails.join(', '),
      tags: c.tags.join(', '),
      external_id: c.external_id || '',
      timezone: c.timezone || '',
      language: c.language || '',
    };
    const f = {
      first_name: field({ label: 'First name', name: 'first_name', value: initial.first_name, attrs: { autocomplete: 'off', maxlength: '200' } }),
      last_name: field({ label: 'Last name', name: 'last_name', value: initial.last_name, attrs: { autocomplete: 'off', maxlength: '200' } }),
      phones: field({ label: 'Phone numbers', name: 'phones', value: initial.phones, hint: 'Any format; separate several with commas.', attrs: { autocomplete: 'off', inputmode: 'tel' } }),
      emails: field({ label: 'Emails', name: 'emails', value: initial.emails, hint: 'Separate several with commas.', attrs: { autocomplete: 'off' } }),
      tags: field({ label: 'Tags', name: 'tags', value: initial.tags, hint: 'Separate with commas.', attrs: { autocomplete: 'off' } }),
      external_id: field({ label: 'External ID', name: 'external_id', value: initial.external_id, attrs: { autocomplete: 'off', maxlength: '200' } }),
      timezone: field({ label: 'Time zone', name: 'timezone', value: initial.timezone, hint: c.timezone_source === 'phone' ? 'Derived from the phone number; type one to set it.' : 'Empty: derive it from the phone number.', attrs: { autocomplete: 'off', list: zoneListId } }),
      language: field({ label: 'Language', name: 'language', value: initial.language, hint: 'e.g. en, es-MX', attrs: { autocomplete: 'off', maxlength: '35' } }),
    };
    const attrFields = defs.map((d) => {
      const fid = nextId('attr');
      const input = attributeControl(d, fid, c.attributes ? c.attributes[d.key] : undefined);
      input.setAttribute('aria-describedby', `${fid}-error`);
      return { def: d, input, wrap: h('div', { class: 'field' }, h('label', { for: fid }, d.label || d.key), input, h('span', { id: `${fid}-error`, class: 'field-error' })) };
    });
    const save = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save changes');
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'Edit contact' },
      region, h('datalist', { id: zoneListId }, zones.map((z) => h('option', { value: z }))),
      h('div', { class: 'form-grid' }, Object.values(f)),
      attrFields.length ? h('fieldset', { class: 'fieldset' }, h('legend', null, 'Custom attributes'), h('div', { class: 'form-grid' }, attrFields.map((a) => a.wrap))) : null,
      h('div', { class: 'form-actions' }, save, cancel));
    detailsBody.append(form);
    f.first_name.input.focus();
    cancel.addEventListener('click', () => setEditing(false));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearFormErrors(form, region);
      const body = {};
      const val = (k) => f[k].input.value.trim();
      for (const k of ['first_name', 'last_name']) if (val(k) !== initial[k]) body[k] = val(k);
      if (val('phones') !== initial.phones) {
        body.phones = splitList(val('phones')).map((n) => {
          const old = c.phones.find((p) => p.number === n);
          return old && old.label ? { number: n, label: old.label } : n;
        });
      }
      if (val('emails') !== initial.emails) body.emails = splitList(val('emails'));
      if (val('tags') !== initial.tags) body.tags = splitList(val('tags'));
      for (const k of ['external_id', 'timezone', 'language']) if (val(k) !== initial[k]) body[k] = val(k) || null;
      const attrs = {};
      for (const a of attrFields) {
        const before = c.attributes ? c.attributes[a.def.key] : undefined;
        const after = attributeValue(a.def, a.input);
        if (after === null && before !== undefined) attrs[a.def.key] = null;
        else if (after !== null && after !== before) attrs[a.def.key] = after;
      }
      if (Object.keys(attrs).length) body.attributes = attrs;
      if (!Object.keys(body).length) {
        toast('Nothing changed.');
        setEditing(false);
        return;
      }
      await busy(save, async () => {
        try {
          const updated = await patch(`/contacts/${c.id}`, body);
          c = { ...updated, lists: c.lists };
          toast('Contact saved.');
          setEditing(false);
          renderHeader();
          renderConsent();
        } catch (err) {
          showFormErrors(err, region, form);
        }
      }, 'Saving…');
    });
  }

  function setEditing(on) {
    editing = on;
    if (editBtn) {
      editBtn.setAttribute('aria-expanded', String(on));
      editBtn.disabled = on;
    }
    if (on) renderEdit();
    else {
      renderDetails();
      if (editBtn) editBtn.focus();
    }
  }

  if (editBtn) editBtn.addEventListener('click', () => { if (!editing) setEditing(true); });
  if (deleteBtn) {
    deleteBtn.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: `Delete ${displayName()}?`,
        message: 'Their details, list memberships and attributes are deleted for good. Their consent history is kept, unlinked, as a record.',
        confirmLabel: 'Delete contact',
        danger: true,
      });
      if (!ok) {
        deleteBtn.focus();
        return;
      }
      try {
        await busy(deleteBtn, () => del(`/contacts/${c.id}`));
        toast(`${displayName()} was deleted.`);
        location.hash = backToContactsHref();
      } catch (err) {
        toast(`Could not delete: ${describeError(err)}`, 'error');
      }
    });
  }

  renderHeader();
  renderDetails();
  renderLists();
  await Promise.all([renderConsent(), renderHistory()]);
}

function channelShort(ch) {
  return { voice: 'Voice', sms: 'SMS', email: 'Email' }[ch] || humanize(ch);
}

function actorText(actor) {
  const [kind, rest] = String(actor).split(':');
  if (kind === 'user') return `user …${shortId(rest)}`;
  if (kind === 'api_key') return `API key …${shortId(rest)}`;
  return actor;
}

function capital(s) {
  return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
}

