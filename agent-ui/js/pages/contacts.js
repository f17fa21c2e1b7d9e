// Contacts: search (name, phone in any format, email), filters (tag, list,
// segment), cursor pagination, a "New contact" form, selection -> lists,
// export with the current filters; a row opens the contact card.

import { h, clear, nextId, timeEl } from '/js/dom.js';
import { get, getAll, post, describeError } from '/js/api.js';
import {
  pageHeader, card, table, field, errorRegion, busy, toast, loadMoreButton, emptyState, announce,
} from '/js/ui.js';
import {
  canManage, isAudience, rememberContactsHash, cardHref, showFormErrors, attributeControl, attributeValue,
  splitList, debounce, fmtNumber, plural, CHANNELS, clearFormErrors, downloadIcon,
} from '/js/pages/contacts-shared.js';

const PAGE_SIZE = 50;
const FILTER_KEYS = ['q', 'tag', 'list_id', 'segment_id'];

export default async function contacts(root, ctx) {
  const role = ctx.me.role;
  const manage = canManage(role);
  const audience = isAudience(role);
  const filters = Object.fromEntries(FILTER_KEYS.map((k) => [k, (ctx.params.get(k) || '').trim()]));

  // ---- header
  const exportLink = audience
    ? h('a', { class: 'btn', href: '/api/v1/contacts/export.csv', download: 'contacts.csv', 'data-action': 'export' }, downloadIcon(), 'Export CSV')
    : null;
  const importLink = manage ? h('a', { class: 'btn', href: '#/contacts/import' }, 'Import CSV') : null;
  const addBtn = manage ? h('button', { type: 'button', class: 'btn btn-primary', 'aria-expanded': 'false', 'aria-controls': 'new-contact-panel' }, 'New contact') : null;
  root.append(pageHeader('Contacts',
    role === 'agent' ? 'Find a customer by name, phone number or email and open their card.' : 'The people your contact center talks to: search, filter, import and export.',
    [exportLink, importLink, addBtn].filter(Boolean)));

  const [lists, segments, attrDefs] = await Promise.all([
    getAll('/lists'),
    getAll('/segments'),
    get('/contact-attributes'),
  ]);
  const listName = new Map(lists.map((l) => [l.id, l.name]));

  // ---- new contact
  if (manage) root.append(newContactPanel(attrDefs, addBtn));

  // ---- filters
  const searchField = field({ label: 'Search', name: 'q', type: 'search', value: filters.q, hint: 'Name, phone number in any format, email or external ID', attrs: { autocomplete: 'off', maxlength: '200', placeholder: 'e.g. Grace Hopper or (201) 555-0123', 'data-filter': 'q' } });
  const tagField = field({ label: 'Tag', name: 'tag', value: filters.tag, attrs: { autocomplete: 'off', maxlength: '64', placeholder: 'Any tag', 'data-filter': 'tag' } });
  const listField = field({ label: 'List', name: 'list_id', value: filters.list_id, options: [['', 'All lists'], ...lists.map((l) => [l.id, l.name])], attrs: { 'data-filter': 'list_id' } });
  const segmentField = field({ label: 'Segment', name: 'segment_id', value: filters.segment_id, options: [['', 'No segment'], ...segments.map((s) => [s.id, s.name])], attrs: { 'data-filter': 'segment_id' } });
  // A filter in the address that the selects do not know (deleted since) still shows.
  for (const [f, key] of [[listField, 'list_id'], [segmentField, 'segment_id']]) {
    if (filters[key] && f.input.value !== filters[key]) {
      f.input.append(h('option', { value: filters[key] }, 'Unknown (deleted?)'));
      f.input.value = filters[key];
    }
  }
  const clearBtn = h('button', { type: 'button', class: 'btn btn-sm btn-ghost', hidden: true }, 'Clear filters');
  const filterForm = h('form', { class: 'filters', role: 'search', 'aria-label': 'Search contacts' },
    h('div', { class: 'filters-grid' }, searchField, tagField, listField, segmentField));
  filterForm.addEventListener('submit', (e) => {
    e.preventDefault();
    readFilters();
    reload();
  });

  // ---- table
  const selected = new Set();
  const rows = [];
  const countEl = h('span', { class: 'small muted', role: 'status', 'aria-live': 'polite', 'data-count': '' });
  const tableError = h('div', { class: 'form-error inset', role: 'alert', 'aria-live': 'assertive' });
  const selectAll = manage ? h('input', { type: 'checkbox', 'aria-label': 'Select every contact shown' }) : null;
  const columns = [
    ...(manage ? [{ label: selectAll, headClass: 'select-col', class: 'select-col', cell: (c) => rowCheckbox(c) }] : []),
    { label: 'Name', cell: (c) => [h('a', { href: cardHref(c.id), class: 'primary-cell row-link' }, c.name || h('span', { class: 'muted' }, 'No name')), c.external_id ? h('span', { class: 'sub mono' }, c.external_id) : null] },
    { label: 'Phone', class: 'nowrap', cell: (c) => (c.phones.length ? [h('span', { class: 'mono', 'data-phone': c.phones[0].number }, c.phones[0].number), c.phones.length > 1 ? h('span', { class: 'sub' }, `+${c.phones.length - 1} more`) : null] : h('span', { class: 'muted' }, '—')) },
    { label: 'Email', class: 'nowrap', cell: (c) => (c.emails.length ? [h('span', null, c.emails[0]), c.emails.length > 1 ? h('span', { class: 'sub' }, `+${c.emails.length - 1} more`) : null] : h('span', { class: 'muted' }, '—')) },
    { label: 'Tags', cell: (c) => (c.tags.length ? h('ul', { class: 'chips' }, c.tags.slice(0, 4).map((t) => h('li', { class: 'chip' }, t)), c.tags.length > 4 ? h('li', { class: 'chip muted' }, `+${c.tags.length - 4}`) : null) : h('span', { class: 'muted' }, '—')) },
    { label: 'Consent', cell: (c) => consentChips(c) },
    { label: 'Added', class: 'nowrap', cell: (c) => timeEl(c.created_at, true) },
  ];
  const list = table({
    caption: 'Contacts',
    empty: 'No contacts match.',
    columns,
    rowData: (c) => ({ contact: c.id }),
    rowClass: () => 'is-clickable',
  });
  // A click anywhere on a row opens the card (the name is the keyboard way).
  list.tbody.addEventListener('click', (e) => {
    if (e.target.closest('a, button, input, select, label, textarea')) return;
    const tr = e.target.closest('tr[data-contact]');
    if (tr && !window.getSelection().toString()) location.hash = cardHref(tr.dataset.contact);
  });

  const emptyBox = h('div', { hidden: true });
  const more = loadMoreButton(() => loadPage(false));
  const shownText = h('span', { class: 'small muted' });

  // ---- selection bar (marketers and admins)
  const selBar = manage ? selectionBar() : null;

  root.append(card({
    title: 'People',
    actions: [clearBtn, countEl],
    flush: true,
    body: [h('div', { class: 'card-toolbar' }, filterForm), selBar ? selBar.el : null, tableError, emptyBox, list.el],
    foot: [shownText, more],
  }));

  function rowCheckbox(c) {
    const box = h('input', { type: 'checkbox', 'aria-label': `Select ${c.name || 'contact'}`, checked: selected.has(c.id), 'data-select': c.id });
    box.addEventListener('change', () => {
      if (box.checked) selected.add(c.id);
      else selected.delete(c.id);
      syncSelection();
    });
    // The row is not built yet: mark it once it is.
    queueMicrotask(() => box.closest('tr')?.classList.toggle('is-selected', box.checked));
    return box;
  }

  if (selectAll) {
    selectAll.addEventListener('change', () => {
      for (const c of rows) {
        if (selectAll.checked) selected.add(c.id);
        else selected.delete(c.id);
      }
      for (const box of list.tbody.querySelectorAll('input[data-select]')) box.checked = selectAll.checked;
      syncSelection();
    });
  }

  function syncSelection() {
    if (!selBar) return;
    for (const box of list.tbody.querySelectorAll('input[data-select]')) box.closest('tr').classList.toggle('is-selected', box.checked);
    selBar.update();
    if (selectAll) {
      const onPage = rows.filter((c) => selected.has(c.id)).length;
      selectAll.checked = rows.length > 0 && onPage === rows.length;
      selectAll.indeterminate = onPage > 0 && onPage < rows.length;
    }
  }

  function selectionBar() {
    const text = h('strong', { 'data-selected': '0' });
    const listSel = h('select', { class: 'inline-select', 'aria-label': 'List to add the selected contacts to' },
      h('option', { value: '' }, 'Choose a list…'), lists.map((l) => h('option', { value: l.id }, l.name)));
    const addBtnSel = h('button', { type: 'button', class: 'btn btn-sm btn-primary' }, 'Add to list');
    const removeBtn = h('button', { type: 'button', class: 'btn btn-sm btn-danger', hidden: true });
    const clearSel = h('button', { type: 'button', class: 'btn btn-sm btn-ghost' }, 'Clear selection');
    const el = h('div', { class: 'selection-bar', hidden: true, role: 'region', 'aria-label': 'Selected contacts' },
      text, listSel, addBtnSel, removeBtn, clearSel);
    addBtnSel.addEventListener('click', async () => {
      if (!listSel.value) {
        listSel.focus();
        toast('Choose a list first.', 'error');
        return;
      }
      const ids = [...selected];
      try {
        const r = await busy(addBtnSel, () => post(`/lists/${listSel.value}/members`, { contact_ids: ids }));
        toast(`${plural(r.changed, 'contact')} added to ${listName.get(listSel.value)} (${fmtNumber(r.members)} members now).`);
        announce(`${plural(r.changed, 'contact')} added to the list.`);
        if (filters.list_id === listSel.value) reload();
      } catch (err) {
        tableError.textContent = `Could not add to the list: ${describeError(err)}`;
      }
    });
    removeBtn.addEventListener('click', async () => {
      const ids = [...selected];
      try {
        const r = await busy(removeBtn, () => post(`/lists/${filters.list_id}/members/remove`, { contact_ids: ids }));
        toast(`${plural(r.changed, 'contact')} removed from ${listName.get(filters.list_id) || 'the list'}.`);
        selected.clear();
        reload();
      } catch (err) {
        tableError.textContent = `Could not remove from the list: ${describeError(err)}`;
      }
    });
    clearSel.addEventListener('click', () => {
      selected.clear();
      for (const box of list.tbody.querySelectorAll('input[data-select]')) box.checked = false;
      syncSelection();
      if (selectAll) selectAll.focus();
    });
    return {
      el,
      update() {
        el.hidden = selected.size === 0;
        text.textContent = `${plural(selected.size, 'contact')} selected`;
        text.dataset.selected = String(selected.size);
        const inList = filters.list_id && listName.has(filters.list_id);
        removeBtn.hidden = !inList;
        if (inList) removeBtn.textContent = `Remove from ${listName.get(filters.list_id)}`;
      },
    };
  }

  // ---- loading
  let cursor = null;
  let seq = 0;

  function readFilters() {
    filters.q = searchField.input.value.trim();
    filters.tag = tagField.input.value.trim();
    filters.list_id = listField.input.value;
    filters.segment_id = segmentField.input.value;
  }

  function query() {
    const q = {};
    for (const k of FILTER_KEYS) if (filters[k]) q[k] = filters[k];
    return q;
  }

  function syncAddress() {
    const qs = new URLSearchParams(query()).toString();
    const hash = qs ? `#/contacts?${qs}` : '#/contacts';
    if (location.hash !== hash) history.replaceState(null, '', hash);
    rememberContactsHash(hash);
    if (exportLink) exportLink.href = `/api/v1/contacts/export.csv${qs ? `?${qs}` : ''}`;
    clearBtn.hidden = !qs;
  }

  async function loadPage(first) {
    const mine = ++seq;
    // Busy until this page is in: a "select all" made meanwhile would pick the old rows.
    list.el.setAttribute('aria-busy', 'true');
    try {
      const page = await get('/contacts', { ...query(), limit: PAGE_SIZE, cursor: first ? undefined : cursor });
      if (mine !== seq || !ctx.isCurrent()) return;
      clear(tableError);
      if (first) {
        rows.length = 0;
        list.setRows([]);
      }
      rows.push(...page.items);
      if (first) list.setRows(rows);
      else list.addRows(page.items);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      const filtered = Object.keys(query()).length > 0;
      emptyBox.hidden = rows.length > 0;
      list.el.hidden = rows.length === 0;
      clear(emptyBox);
      if (!rows.length) {
        emptyBox.append(filtered
          ? emptyState({ iconName: 'contacts', title: 'No contacts match', text: 'Try another spelling, fewer digits of the phone number, or clear the filters.', children: h('button', { type: 'button', class: 'btn', onclick: () => clearFilters() }, 'Clear filters') })
          : emptyState({ iconName: 'contacts', title: 'No contacts yet', text: manage ? 'Add people one by one with “New contact”, or import a CSV file.' : 'Contacts appear here once your marketing team adds or imports them.', children: manage ? h('a', { class: 'btn btn-primary', href: '#/contacts/import' }, 'Import CSV') : null }));
      }
      updateShown();
      syncSelection();
      list.el.setAttribute('aria-busy', 'false');
    } catch (err) {
      if (mine !== seq || !ctx.isCurrent()) return;
      list.el.setAttribute('aria-busy', 'false');
      tableError.textContent = describeError(err);
      if (first) {
        rows.length = 0;
        list.setRows([]);
        more.hidden = true;
        shownText.textContent = '';
      }
    }
  }

  let countSeq = 0;
  async function loadCount() {
    const mine = ++countSeq;
    countEl.textContent = 'Counting…';
    countEl.dataset.count = '';
    try {
      const { count } = await get('/contacts/count', query());
      if (mine !== countSeq || !ctx.isCurrent()) return;
      countEl.textContent = Object.keys(query()).length ? `${plural(count, 'contact')} match` : plural(count, 'contact');
      countEl.dataset.count = String(count);
      updateShown();
    } catch {
      if (mine === countSeq) countEl.textContent = '';
    }
  }

  function updateShown() {
    const total = countEl.dataset.count;
    shownText.textContent = !rows.length ? '' : total !== undefined && total !== '' ? `Showing ${fmtNumber(rows.length)} of ${fmtNumber(Number(total))}` : `Showing ${fmtNumber(rows.length)}`;
  }

  async function reload() {
    syncAddress();
    cursor = null;
    await Promise.all([loadPage(true), loadCount()]);
    if (selBar) selBar.update();
  }

  function clearFilters() {
    searchField.input.value = '';
    tagField.input.value = '';
    listField.input.value = '';
    segmentField.input.value = '';
    readFilters();
    reload();
    searchField.input.focus();
  }
  clearBtn.addEventListener('click', clearFilters);

  const typed = debounce(() => {
    readFilters();
    reload();
  }, 300);
  searchField.input.addEventListener('input', typed);
  tagField.input.addEventListener('input', typed);
  listField.input.addEventListener('change', () => { readFilters(); reload(); });
  segmentField.input.addEventListener('change', () => { readFilters(); reload(); });
  ctx.onCleanup(() => typed.cancel());

  await reload();

  // ---- helpers that need the page's state

  function newContactPanel(defs, toggleBtn) {
    const region = errorRegion();
    const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
    const zoneList = h('datalist', { id: 'tz-list' }, zones.map((z) => h('option', { value: z })));
    const f = {
      first: field({ label: 'First name', name: 'first_name', attrs: { autocomplete: 'off', maxlength: '200' } }),
      last: field({ label: 'Last name', name: 'last_name', attrs: { autocomplete: 'off', maxlength: '200' } }),
      phones: field({ label: 'Phone numbers', name: 'phones', hint: 'Any format; numbers without a country code are read in your workspace’s region. Separate several with commas.', attrs: { autocomplete: 'off', inputmode: 'tel' } }),
      emails: field({ label: 'Emails', name: 'emails', hint: 'Separate several with commas.', attrs: { autocomplete: 'off' } }),
      tags: field({ label: 'Tags', name: 'tags', hint: 'Separate with commas, e.g. vip, newsletter.', attrs: { autocomplete: 'off' } }),
      external: field({ label: 'External ID', name: 'external_id', hint: 'Your CRM’s id, if any.', attrs: { autocomplete: 'off', maxlength: '200' } }),
      timezone: field({ label: 'Time zone', name: 'timezone', hint: 'Leave empty to derive it from the phone number.', attrs: { autocomplete: 'off', list: 'tz-list', placeholder: 'e.g. America/Chicago' } }),
      language: field({ label: 'Language', name: 'language', hint: 'e.g. en, es-MX', attrs: { autocomplete: 'off', maxlength: '35' } }),
    };
    const attrFields = defs.map((d) => {
      const id = nextId('attr');
      const input = attributeControl(d, id);
      input.setAttribute('aria-describedby', `${id}-error`);
      const wrap = h('div', { class: 'field' }, h('label', { for: id }, d.label || d.key), input, h('span', { id: `${id}-error`, class: 'field-error' }));
      return { def: d, input, wrap };
    });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create contact');
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'New contact' },
      region, zoneList,
      h('div', { class: 'form-grid' }, Object.values(f)),
      attrFields.length ? h('fieldset', { class: 'fieldset' }, h('legend', null, 'Custom attributes'), h('div', { class: 'form-grid' }, attrFields.map((a) => a.wrap))) : null,
      h('div', { class: 'form-actions' }, submit, cancel));
    const panel = card({ title: 'New contact', subtitle: 'Give at least a name, a phone number, an email or an external ID.', body: form });
    panel.id = 'new-contact-panel';
    panel.hidden = true;

    function toggle(open) {
      panel.hidden = !open;
      toggleBtn.setAttribute('aria-expanded', String(open));
      if (open) f.first.input.focus();
      else {
        form.reset();
        clearFormErrors(form, region);
      }
    }
    toggleBtn.addEventListener('click', () => toggle(panel.hidden));
    cancel.addEventListener('click', () => { toggle(false); toggleBtn.focus(); });

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = {
        first_name: f.first.input.value.trim(),
        last_name: f.last.input.value.trim(),
        phones: splitList(f.phones.input.value, /[,;\n]+/),
        emails: splitList(f.emails.input.value),
        tags: splitList(f.tags.input.value),
        attributes: {},
      };
      const ext = f.external.input.value.trim();
      if (ext) body.external_id = ext;
      const tz = f.timezone.input.value.trim();
      if (tz) body.timezone = tz;
      const lang = f.language.input.value.trim();
      if (lang) body.language = lang;
      for (const a of attrFields) {
        const v = attributeValue(a.def, a.input);
        if (v !== null) body.attributes[a.def.key] = v;
      }
      await busy(submit, async () => {
        try {
          const c = await post('/contacts', body);
          toast(`${c.name || 'The contact'} was created.`);
          location.hash = cardHref(c.id);
        } catch (err) {
          showFormErrors(err, region, form);
        }
      }, 'Creating…');
    });
    return panel;
  }
}

function consentChips(c) {
  const known = CHANNELS.filter((ch) => c.consent && c.consent[ch.id]);
  if (!known.length) return h('span', { class: 'muted small' }, 'Unknown');
  return h('ul', { class: 'chips' }, known.map((ch) => {
    const st = c.consent[ch.id].status;
    const short = ch.id === 'voice' ? 'Voice' : ch.id === 'sms' ? 'SMS' : 'Email';
    return h('li', { class: st === 'opted_in' ? 'chip chip-ok' : 'chip chip-no', title: `${ch.label}: ${st === 'opted_in' ? 'opted in' : 'opted out'}` },
      short, h('span', { class: 'sr-only' }, st === 'opted_in' ? ' opted in' : ' opted out'), h('span', { 'aria-hidden': 'true' }, st === 'opted_in' ? ' ✓' : ' ✕'));
  }));
}
