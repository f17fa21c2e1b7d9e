// Pieces shared by the contacts pages (contacts, contact card, lists,
// segments, import): who may do what, field names for people, form errors
// with full field paths, and small formatting helpers.

import { h, s, append, clear, humanize } from '/js/dom.js';
import { ApiError, describeError } from '/js/api.js';
import { badge } from '/js/ui.js';

// ---- roles -------------------------------------------------------------------------
// The API (src/contacts/http.rs) lets any role search, read and record
// consent; lists, segments, imports, exports and deletes need a marketer,
// supervisor or admin. The console keeps supervisors read-only and agents to
// search, the card and consent.

/** Marketers and admins: create, edit, delete, import, manage lists and segments. */
export function canManage(role) {
  return role === 'marketer' || role === 'admin';
}

/** The back office: the lists and segments pages, exports. */
export function isAudience(role) {
  return role === 'marketer' || role === 'admin' || role === 'supervisor';
}

// ---- where "back to contacts" goes ------------------------------------------------

let contactsHash = '#/contacts';

/** The contacts page remembers its filters here, for the card's way back. */
export function rememberContactsHash(hash) {
  contactsHash = hash;
}

export function backToContactsHref() {
  return contactsHash;
}

export function cardHref(id) {
  return `#/contacts/card?id=${encodeURIComponent(id)}`;
}

// ---- names of things ---------------------------------------------------------------

export const CHANNELS = [
  { id: 'voice', label: 'Voice calls' },
  { id: 'sms', label: 'Text messages (SMS)' },
  { id: 'email', label: 'Email' },
];

const FIELD_LABELS = {
  external_id: 'External ID',
  first_name: 'First name',
  last_name: 'Last name',
  name: 'Full name (split at the last space)',
  phone: 'Phone',
  phone_2: 'Phone 2',
  phone_3: 'Phone 3',
  email: 'Email',
  email_2: 'Email 2',
  email_3: 'Email 3',
  timezone: 'Time zone',
  language: 'Language',
  tags: 'Tags',
  'consent.voice': 'Consent: voice calls',
  'consent.sms': 'Consent: SMS',
  'consent.email': 'Consent: email',
};

/** A contact field (`phone_2`, `attributes.plan`, `consent.sms`) for people. */
export function fieldLabel(field, attrLabels = {}) {
  if (FIELD_LABELS[field]) return FIELD_LABELS[field];
  if (field.startsWith('attributes.')) {
    const key = field.slice('attributes.'.length);
    const label = attrLabels[key];
    if (!label || label.toLowerCase() === key.replace(/_/g, ' ')) return label || key;
    return `${label} (${key})`;
  }
  return humanize(field);
}

const SOURCES = {
  agent: 'an agent',
  user: 'the console',
  api: 'the API',
  import: 'an import',
  sms_keyword: 'an SMS keyword (STOP/START)',
  unsubscribe_link: 'the unsubscribe link',
  bounce: 'an email bounce',
  complaint: 'a spam complaint',
};

/** Where a consent came from, for people ("via an agent"). */
export function sourceText(source) {
  return SOURCES[source] || source;
}

export function consentBadge(consent) {
  if (!consent) return badge('unknown', '');
  return consent.status === 'opted_in' ? badge('Opted in', 'success') : badge('Opted out', 'danger');
}

export function fmtNumber(n) {
  return Number(n || 0).toLocaleString();
}

export function plural(n, one, many = `${one}s`) {
  return `${fmtNumber(n)} ${n === 1 ? one : many}`;
}

export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GB`;
}

/** "a, b; c" -> ['a', 'b', 'c'] (trimmed, no empties, no duplicates). */
export function splitList(text, sep = /[,;\n]+/) {
  const out = [];
  for (const part of String(text || '').split(sep)) {
    const t = part.trim();
    if (t && !out.includes(t)) out.push(t);
  }
  return out;
}

export function debounce(fn, ms) {
  let timer = null;
  const d = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  d.cancel = () => clearTimeout(timer);
  return d;
}

// ---- form errors -------------------------------------------------------------------

function labelOf(form, input) {
  const label = input.id ? form.querySelector(`label[for="${CSS.escape(input.id)}"]`) : null;
  if (!label) return humanize(input.name);
  // The label without its "required" star.
  return [...label.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join('').trim();
}

/**
 * Like ui.showErrors, but matches a field error by its full path first
 * (`attributes.plan`, `phones[1]` -> `phones`), and words it with the
 * field's own label. Unmatched errors are listed in `region`.
 */
export function showFormErrors(err, region, form) {
  clearFormErrors(form, region);
  const fields = err instanceof ApiError ? err.fields : [];
  const unmatched = [];
  let first = null;
  for (const f of fields) {
    const path = String(f.path || '');
    const candidates = [path, path.replace(/\[\d+\]$/, ''), path.split(/[.[]/)[0]];
    let input = null;
    for (const c of candidates) {
      input = form && c ? form.querySelector(`[name="${CSS.escape(c)}"]`) : null;
      if (input) break;
    }
    const errEl = input ? form.querySelector(`#${CSS.escape(input.id)}-error`) : null;
    if (input && errEl) {
      input.setAttribute('aria-invalid', 'true');
      const idx = /\[(\d+)\]/.exec(path);
      const label = labelOf(form, input);
      append(errEl, errEl.textContent ? '; ' : '', idx ? `${label}: item ${Number(idx[1]) + 1} ${f.message}` : `${label} ${f.message}`);
      first = first || input;
    } else {
      unmatched.push(f);
    }
  }
  if (!fields.length) {
    region.append(describeError(err));
  } else if (unmatched.length) {
    region.append(fields.length === unmatched.length ? 'Please fix these problems:' : 'Please fix the highlighted fields and these problems:',
      h('ul', null, unmatched.map((f) => h('li', null, f.path === 'body' ? capital(f.message) : `${humanize(f.path)}: ${f.message}`))));
  } else {
    region.append(fields.length === 1 ? 'Please fix the highlighted field.' : `Please fix the ${fields.length} highlighted fields.`);
  }
  if (first) first.focus();
}

export function clearFormErrors(form, region) {
  if (region) clear(region);
  if (!form) return;
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.field-error')) clear(el);
}

function capital(s) {
  return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
}

/** An input for a typed custom attribute (string, number, boolean, date). */
export function attributeControl(def, id, value) {
  const name = `attributes.${def.key}`;
  if (def.kind === 'boolean') {
    const sel = h('select', { id, name },
      h('option', { value: '' }, '—'), h('option', { value: 'true' }, 'Yes'), h('option', { value: 'false' }, 'No'));
    sel.value = value === true ? 'true' : value === false ? 'false' : '';
    return sel;
  }
  const type = def.kind === 'number' ? 'number' : def.kind === 'date' ? 'date' : 'text';
  const attrs = { id, name, type, value: value === null || value === undefined ? '' : String(value), autocomplete: 'off' };
  if (def.kind === 'number') attrs.step = 'any';
  if (def.kind === 'string') attrs.maxlength = '1000';
  return h('input', attrs);
}

/** The JSON value of an attribute control, or null when empty. */
export function attributeValue(def, input) {
  const v = input.value.trim();
  if (v === '') return null;
  if (def.kind === 'boolean') return v === 'true';
  if (def.kind === 'number') {
    const n = Number(v);
    return Number.isFinite(n) ? n : v; // the API explains a bad number
  }
  return v;
}

/** A small stroke icon for buttons (download, upload). */
export function btnIcon(paths) {
  return s('svg', { viewBox: '0 0 20 20', fill: 'none', stroke: 'currentColor', 'stroke-width': '1.6', 'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'aria-hidden': 'true', focusable: 'false', class: 'btn-icon' },
    paths.map((d) => s('path', { d })));
}

export function downloadIcon() {
  return btnIcon(['M10 3v10', 'M6 9l4 4 4-4', 'M4 16h12']);
}

export function uploadIcon() {
  return btnIcon(['M10 14V4', 'M6 8l4-4 4 4', 'M4 16h12']);
}
