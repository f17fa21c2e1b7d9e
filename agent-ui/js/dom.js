// Tiny DOM helpers. Every piece of data reaches the page as text
// (textContent / text nodes), never as HTML. No inline styles: the page's
// CSP forbids them, so presentation is classes only.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Appends children: nodes, strings/numbers (as text), arrays; skips null/false. */
export function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false || c === true) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function applyProps(el, props) {
  if (!props) return;
  for (const [k, v] of Object.entries(props)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'style') throw new Error('inline styles are not allowed (CSP)');
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if ((k === 'checked' || k === 'selected' || k === 'disabled') && k in el) el[k] = Boolean(v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** h('button', {class: 'btn', onclick: fn}, 'Save') */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props);
  return append(el, children);
}

/** The SVG twin of h(). */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyProps(el, props);
  return append(el, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

let uid = 0;
/** A fresh id for label/aria wiring. */
export function nextId(prefix = 'f') {
  uid += 1;
  return `${prefix}-${uid}`;
}

// ---- formatting ------------------------------------------------------------

const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const tf = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

export function fmtDate(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dtf.format(d);
}

export function fmtTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : tf.format(d);
}

export function fmtRelative(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const secs = Math.round((d.getTime() - Date.now()) / 1000);
  const abs = Math.abs(secs);
  if (abs < 45) return rtf.format(secs, 'second');
  if (abs < 2700) return rtf.format(Math.round(secs / 60), 'minute');
  if (abs < 64800) return rtf.format(Math.round(secs / 3600), 'hour');
  if (abs < 86400 * 26) return rtf.format(Math.round(secs / 86400), 'day');
  return dtf.format(d);
}

/** A <time> element with the full date as a tooltip. */
export function timeEl(iso, relative = false) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: fmtDate(iso) }, relative ? fmtRelative(iso) : fmtDate(iso));
}

/** "wrap_up" -> "Wrap up" */
export function humanize(str) {
  if (!str) return '';
  const t = String(str).replace(/[_.-]+/g, ' ').trim();
  return t.charAt(0).toUpperCase() + t.slice(1);
}

/** The last 8 hex digits: ids are UUIDv7, whose first digits are a timestamp. */
export function shortId(id) {
  return id ? String(id).replace(/-/g, '').slice(-8) : '—';
}

export function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return letters.toUpperCase();
}
