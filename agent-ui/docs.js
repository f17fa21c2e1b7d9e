// The API reference, rendered in the browser from GET /api/v1/openapi.json
// (OpenAPI 3.1): operations grouped by tag, parameters, request and response
// schemas with $refs resolved, error codes and security schemes, plus search.
// Everything from the document is rendered as text, never as HTML.

import { h, clear } from '/js/dom.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];
const MAX_DEPTH = 4;

/** Human notes on the stable error codes (the codes themselves come from the document). */
const CODE_NOTES = {
  malformed_json: ['400', 'The body is not valid JSON.'],
  validation_failed: ['422', 'The request is well-formed but a value is invalid; details.fields lists each {path, message}.'],
  bad_request: ['400', 'The request cannot be understood.'],
  payload_too_large: ['413', 'The body is larger than the server accepts; details.limit_bytes says how large it may be.'],
  unsupported_media_type: ['415', 'Send the body as JSON with Content-Type: application/json.'],
  unauthenticated: ['401', 'No valid session or API key.'],
  invalid_credentials: ['401', 'Wrong workspace, email or password.'],
  forbidden: ['403', 'Signed in, but your role may not do this.'],
  csrf_failed: ['403', 'A cookie-authenticated write without the right X-CSRF-Token header.'],
  not_found: ['404', 'No such resource in your tenant.'],
  method_not_allowed: ['405', 'The route exists but not with this method; the Allow header and details.allowed list the methods.'],
  conflict: ['409', 'The change conflicts with the current state, e.g. a duplicate email.'],
  invalid_transition: ['409', 'The interaction cannot make this transition in its current state.'],
  rate_limited: ['429', 'Too many attempts; wait details.retry_after_secs (also the Retry-After header).'],
  unavailable: ['503', 'The service is starting or stopping, or a dependency is down.'],
  internal: ['500', 'An unexpected failure; quote the request id when you report it.'],
};

let doc = null;

// ---- text ------------------------------------------------------------------------

/** Renders `code` spans inside plain text; paragraphs on blank lines. */
function richText(text, cls = 'op-desc') {
  if (!text) return null;
  const paras = String(text).split(/\n\s*\n/);
  return paras.map((p) => h('p', { class: cls }, inlineCode(p.replace(/\s*\n\s*/g, ' '))));
}

function inlineCode(text) {
  return String(text).split(/(`[^`]+`)/).map((part) => (part.startsWith('`') && part.endsWith('`') && part.length > 2
    ? h('code', null, part.slice(1, -1))
    : part));
}

function slug(s) {
  return String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

// ---- schemas ---------------------------------------------------------------------

function refName(ref) {
  return typeof ref === 'string' && ref.startsWith('#/components/schemas/') ? decodeURIComponent(ref.slice(21)) : null;
}

function resolve(schema) {
  if (schema && schema.$ref) {
    const name = refName(schema.$ref);
    const target = name && doc.components && doc.components.schemas ? doc.components.schemas[name] : null;
    return { name, schema: target || {}, missing: !target };
  }
  return { name: null, schema: schema || {} };
}

/** "string (date-time) | null", "array of UserView", "one of 4 shapes" */
function typeLabel(schema) {
  if (!schema) return 'any';
  if (schema.$ref) return refName(schema.$ref) || schema.$ref;
  if (schema.oneOf || schema.anyOf) return `one of ${(schema.oneOf || schema.anyOf).length} shapes`;
  if (schema.allOf) return schema.allOf.map(typeLabel).join(' & ');
  let types = Array.isArray(schema.type) ? schema.type : (schema.type ? [schema.type] : []);
  const nullable = types.includes('null') || schema.nullable === true;
  types = types.filter((t) => t !== 'null');
  let label;
  if (types.includes('array') || schema.items) label = `array of ${typeLabel(schema.items)}`;
  else if (types.length) label = types.join(' | ');
  else if (schema.properties) label = 'object';
  else if (schema.enum) label = 'enum';
  else label = 'any';
  if (schema.format) label += ` (${schema.format})`;
  return nullable ? `${label} | null` : label;
}

/** What to expand under a property: an object, a ref to one, or an array of those. */
function expandable(schema) {
  let s = schema;
  if (!s) return null;
  if (s.items) s = s.items;
  const r = resolve(s);
  const t = r.schema;
  if (t.properties || t.oneOf || t.anyOf || t.allOf || (t.items && expandable(t.items))) return r;
  return null;
}

function enumValues(schema) {
  const r = resolve(schema.items || schema).schema;
  const values = schema.enum || r.enum;
  if (!values || !values.length) return null;
  return h('div', { class: 'enum-values', 'aria-label': 'Allowed values' }, values.map((v) => h('code', null, v === null ? 'null' : String(v))));
}

function propertyList(schema, depth, seen) {
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  const names = Object.keys(props).sort((a, b) => Number(required.has(b)) - Number(required.has(a)) || a.localeCompare(b));
  if (!names.length) return null;
  return h('ul', { class: 'props' }, names.map((name) => {
    const p = props[name];
    const sub = expandable(p);
    const desc = p.description || (p.$ref ? resolve(p).schema.description : null);
    const li = h('li', null,
      h('div', { class: 'prop-line' },
        h('span', { class: 'prop-name' }, name),
        h('span', { class: 'prop-type' }, typeLabel(p)),
        required.has(name) ? h('span', { class: 'prop-req' }, 'required') : h('span', { class: 'prop-opt' }, 'optional')),
      desc ? h('p', { class: 'prop-desc' }, inlineCode(desc.replace(/\s*\n\s*/g, ' '))) : null,
      p.example !== undefined ? h('p', { class: 'prop-desc' }, 'Example: ', h('code', null, JSON.stringify(p.example))) : null,
      enumValues(p));
    if (sub && depth < MAX_DEPTH && !(sub.name && seen.has(sub.name))) {
      const next = new Set(seen);
      if (sub.name) next.add(sub.name);
      li.append(h('details', { class: 'nested' },
        h('summary', null, `Fields of ${sub.name || name}`),
        schemaBody(sub.schema, depth + 1, next)));
    }
    return li;
  }));
}

function schemaBody(schema, depth, seen) {
  const parts = [];
  if (schema.allOf) {
    const merged = { properties: {}, required: [] };
    for (const part of schema.allOf) {
      const r = resolve(part).schema;
      Object.assign(merged.properties, r.properties || {});
      merged.required.push(...(r.required || []));
    }
    parts.push(propertyList(merged, depth, seen));
  }
  const variants = schema.oneOf || schema.anyOf;
  if (variants) {
    variants.forEach((v, i) => {
      const r = resolve(v);
      const tag = discriminator(r.schema);
      parts.push(h('div', { class: 'variant-label' }, `Shape ${i + 1}${tag ? ` — ${tag}` : ''}${r.name ? ` (${r.name})` : ''}`));
      if (r.schema.description) parts.push(h('p', { class: 'schema-desc' }, inlineCode(r.schema.description)));
      parts.push(r.schema.properties ? propertyList(r.schema, depth + 1, seen) : h('p', { class: 'schema-desc' }, typeLabel(r.schema)));
    });
  }
  if (schema.properties) parts.push(propertyList(schema, depth, seen));
  if (schema.items) {
    const r = resolve(schema.items);
    if (r.schema.properties || r.schema.oneOf) parts.push(h('div', { class: 'variant-label' }, `Each item${r.name ? ` (${r.name})` : ''}`), schemaBody(r.schema, depth + 1, seen));
  }
  if (schema.enum) parts.push(h('div', { class: 'props' }, h('div', { class: 'prop-desc' }, 'One of:'), enumValues(schema)));
  return parts.filter(Boolean).length ? parts : h('p', { class: 'schema-desc' }, `Any ${typeLabel(schema)}.`);
}

/** For tagged unions: `type = "enqueue"` */
function discriminator(schema) {
  for (const [k, p] of Object.entries(schema.properties || {})) {
    if (p.enum && p.enum.length === 1 && (schema.required || []).includes(k)) return `${k} = "${p.enum[0]}"`;
  }
  return null;
}

function schemaBox(schema, contentType) {
  const r = resolve(schema);
  const seen = new Set(r.name ? [r.name] : []);
  const target = r.schema;
  const head = h('div', { class: 'schema-head' },
    contentType ? h('span', { class: 'muted' }, contentType) : null,
    r.name ? h('a', { href: `#schema-${slug(r.name)}` }, r.name) : h('span', null, typeLabel(target)));
  return h('div', { class: 'schema' },
    head,
    target.description ? h('p', { class: 'schema-desc' }, inlineCode(target.description.replace(/\s*\n\s*/g, ' '))) : null,
    schemaBody(target, 0, seen));
}

// ---- operations ------------------------------------------------------------------

function securityOf(op) {
  const reqs = op.security !== undefined ? op.security : doc.security;
  if (!reqs || !reqs.length) return 'None: this operation is public.';
  if (reqs.some((r) => !Object.keys(r).length)) return 'Optional.';
  return `Any one of: ${reqs.map((r) => Object.keys(r).join(' + ')).join(', ')}.`;
}

function parametersOf(path, pathItem, op) {
  const list = [...(pathItem.parameters || []), ...(op.parameters || [])].map((p) => (p.$ref ? resolveParam(p.$ref) : p)).filter(Boolean);
  // The path template is the truth: name any {placeholder} the document forgot.
  for (const m of path.matchAll(/\{([^}]+)\}/g)) {
    if (!list.some((p) => p.in === 'path' && p.name === m[1])) {
      list.unshift({ name: m[1], in: 'path', required: true, schema: { type: 'string' }, description: 'From the path.' });
    }
  }
  return list;
}

function resolveParam(ref) {
  const name = ref.split('/').pop();
  return doc.components && doc.components.parameters ? doc.components.parameters[name] : null;
}

function paramsTable(params) {
  return h('div', { class: 'table-wrap tall' },
    h('table', { class: 'table' },
      h('thead', null, h('tr', null, ['Name', 'In', 'Type', 'Description'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, params.map((p) => h('tr', null,
        h('td', null, h('span', { class: 'prop-name' }, p.name), ' ', p.required ? h('span', { class: 'prop-req' }, 'required') : h('span', { class: 'prop-opt' }, 'optional')),
        h('td', null, p.in),
        h('td', null, h('span', { class: 'prop-type' }, typeLabel(p.schema))),
        h('td', null, p.description ? inlineCode(p.description) : h('span', { class: 'muted' }, '—')))))));
}

function contentBlocks(content) {
  return Object.entries(content || {}).map(([type, media]) => (media.schema
    ? schemaBox(media.schema, type)
    : h('div', { class: 'schema' }, h('div', { class: 'schema-head' }, type))));
}

function operation(path, method, pathItem, op, tag) {
  const id = `op-${slug(op.operationId || `${method}-${path}`)}`;
  const summary = firstSentence(op.summary || op.description || '');
  const params = parametersOf(path, pathItem, op);
  const body = h('div', { class: 'op-body' });
  // The whole summary when the one-line version cut it short.
  if (op.summary && op.summary.replace(/\s*\n\s*/g, ' ').trim() !== summary) body.append(...richText(op.summary));
  if (op.description) body.append(...richText(op.description));
  body.append(h('div', null, h('h3', null, 'Authentication'), h('p', { class: 'op-desc' }, securityOf(op))));
  if (params.length) body.append(h('div', null, h('h3', null, 'Parameters'), paramsTable(params)));
  if (op.requestBody) {
    const rb = op.requestBody.$ref ? {} : op.requestBody;
    body.append(h('div', null,
      h('h3', null, `Request body${rb.required ? ' (required)' : ''}`),
      rb.description ? richText(rb.description) : null,
      contentBlocks(rb.content)));
  }
  const responses = Object.entries(op.responses || {});
  if (responses.length) {
    body.append(h('div', null, h('h3', null, 'Responses'),
      h('div', { class: 'responses' }, responses.map(([code, r]) => h('div', null,
        h('div', { class: 'response-line' },
          h('span', { class: `status-code status-${String(code)[0]}` }, code),
          h('span', null, r.description ? inlineCode(r.description) : statusText(code))),
        contentBlocks(r.content))))));
  }
  const search = [method, path, op.summary, op.description, op.operationId, tag].filter(Boolean).join(' ').toLowerCase();
  return h('details', { class: 'op', id, 'data-op': op.operationId || id, 'data-search': search },
    h('summary', null,
      h('span', { class: `method method-${method}` }, method.toUpperCase()),
      h('span', { class: 'path' }, path),
      summary ? h('span', { class: 'summary' }, summary) : null),
    body);
}

/** The first sentence, for the one-line summary of an operation. */
function firstSentence(text) {
  const joined = String(text).replace(/\s*\n\s*/g, ' ').trim();
  const m = joined.match(/^.*?[.!?](?=\s|$)/);
  return m ? m[0] : joined;
}

function statusText(code) {
  return ({
    200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No content', 400: 'Bad request', 401: 'Unauthenticated',
    403: 'Forbidden', 404: 'Not found', 409: 'Conflict', 413: 'Payload too large', 415: 'Unsupported media type',
    422: 'Validation failed', 429: 'Too many requests', 500: 'Internal error', 503: 'Unavailable',
  })[code] || '';
}

// ---- sections --------------------------------------------------------------------

function overview() {
  const info = doc.info || {};
  return h('section', { id: 'overview', class: 'docs-intro', 'aria-labelledby': 'overview-title' },
    h('h1', { id: 'overview-title' }, info.title || 'API reference', info.version ? h('span', { class: 'badge version' }, `v${info.version}`) : null),
    richText(info.description, 'desc'),
    h('p', { class: 'muted small' }, 'OpenAPI ', doc.openapi || '', ' · ', h('a', { href: '/api/v1/openapi.json' }, 'openapi.json'), ' · base path ', h('code', null, '/api/v1')));
}

function authentication() {
  const schemes = (doc.components && doc.components.securitySchemes) || {};
  const rows = Object.entries(schemes).map(([name, s]) => {
    let how = '';
    if (s.type === 'http') how = `HTTP ${s.scheme === 'bearer' ? 'Authorization: Bearer <token>' : s.scheme}${s.bearerFormat ? ` (${s.bearerFormat})` : ''}`;
    else if (s.type === 'apiKey') how = `${s.in === 'cookie' ? 'Cookie' : s.in === 'header' ? 'Header' : 'Query parameter'} ${s.name}`;
    else if (s.type === 'oauth2') how = 'OAuth 2';
    else if (s.type === 'openIdConnect') how = `OpenID Connect (${s.openIdConnectUrl})`;
    else how = s.type;
    return h('tr', { 'data-security-scheme': name },
      h('td', null, h('code', null, name)),
      h('td', null, s.type),
      h('td', null, how),
      h('td', null, s.description ? inlineCode(s.description) : (name === 'session' ? 'The console’s session cookie. Writes also need the X-CSRF-Token header (from GET /auth/me).' : name === 'api_key' ? 'An API key created by an admin (sbk_…).' : '—')));
  });
  return h('section', { id: 'authentication', 'aria-labelledby': 'auth-title' },
    h('div', { class: 'tag-head' }, h('h2', { id: 'auth-title' }, 'Authentication'),
      h('p', null, 'Unless an operation says otherwise: ', securityOf({}))),
    h('div', { class: 'card' }, h('div', { class: 'table-wrap tall' }, h('table', { class: 'table' },
      h('caption', { class: 'sr-only' }, 'Security schemes'),
      h('thead', null, h('tr', null, ['Scheme', 'Type', 'How to send it', 'Notes'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows.length ? rows : h('tr', null, h('td', { colspan: '4', class: 'table-empty' }, 'No security schemes are declared.')))))));
}

function errors() {
  const schemas = (doc.components && doc.components.schemas) || {};
  const codes = (schemas.ErrorCode && schemas.ErrorCode.enum) || [];
  return h('section', { id: 'errors', 'aria-labelledby': 'errors-title' },
    h('div', { class: 'tag-head' }, h('h2', { id: 'errors-title' }, 'Errors'),
      h('p', null, schemas.ErrorCode && schemas.ErrorCode.description ? schemas.ErrorCode.description : 'Every error has the same body; match on the code.')),
    schemas.ErrorBody ? schemaBox({ $ref: '#/components/schemas/ErrorBody' }, 'application/json') : null,
    h('div', { class: 'card codes-card' }, h('div', { class: 'table-wrap tall' }, h('table', { class: 'table codes-table' },
      h('caption', { class: 'sr-only' }, 'Error codes'),
      h('thead', null, h('tr', null, ['Code', 'Usual status', 'Meaning'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, codes.length
        ? codes.map((c) => h('tr', { 'data-error-code': c },
          h('td', null, h('code', null, c)),
          h('td', null, CODE_NOTES[c] ? CODE_NOTES[c][0] : '—'),
          h('td', null, CODE_NOTES[c] ? CODE_NOTES[c][1] : '')))
        : h('tr', null, h('td', { colspan: '3', class: 'table-empty' }, 'The document declares no ErrorCode enum.')))))));
}

function schemasSection() {
  const schemas = (doc.components && doc.components.schemas) || {};
  const names = Object.keys(schemas).sort((a, b) => a.localeCompare(b));
  return h('section', { id: 'schemas', 'aria-labelledby': 'schemas-title' },
    h('div', { class: 'tag-head' }, h('h2', { id: 'schemas-title' }, 'Schemas'), h('p', null, `${names.length} named types used by the operations above.`)),
    names.map((n) => h('details', { class: 'op', id: `schema-${slug(n)}` },
      h('summary', null, h('span', { class: 'path' }, n), h('span', { class: 'summary' }, typeLabel(schemas[n]))),
      h('div', { class: 'op-body' }, schemaBox({ $ref: `#/components/schemas/${n}` })))));
}

// ---- page ------------------------------------------------------------------------

function render() {
  const content = document.getElementById('docs-content');
  const toc = document.getElementById('docs-toc');
  clear(content);

  // Group operations by their first tag, in the order the document lists tags.
  const groups = new Map((doc.tags || []).map((t) => [t.name, { tag: t, ops: [] }]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = (op.tags && op.tags[0]) || 'other';
      if (!groups.has(tag)) groups.set(tag, { tag: { name: tag }, ops: [] });
      groups.get(tag).ops.push({ path, method, item, op });
    }
  }

  content.append(overview(), authentication(), errors());
  const tocItems = [];
  for (const { tag, ops } of groups.values()) {
    if (!ops.length) continue;
    ops.sort((a, b) => a.path.localeCompare(b.path) || METHODS.indexOf(a.method) - METHODS.indexOf(b.method));
    const id = `tag-${slug(tag.name)}`;
    const section = h('section', { id, class: 'tag-section', 'data-tag': tag.name, 'aria-labelledby': `${id}-title` },
      h('div', { class: 'tag-head' }, h('h2', { id: `${id}-title` }, tagTitle(tag.name)), tag.description ? h('p', null, tag.description) : null),
      ops.map((o) => operation(o.path, o.method, o.item, o.op, tag.name)));
    content.append(section);
    const count = h('span', { class: 'count' }, String(ops.length));
    tocItems.push({ tag: tag.name, count, total: ops.length });
    toc.append(h('li', null, h('a', { href: `#${id}`, 'data-toc': tag.name }, h('span', null, tagTitle(tag.name)), count)));
  }
  toc.append(h('li', null, h('a', { href: '#schemas' }, 'Schemas')));
  content.append(schemasSection());
  content.setAttribute('aria-busy', 'false');
  content.dataset.docsReady = 'true';
  wireSearch(tocItems);
  document.title = `${(doc.info && doc.info.title) || 'API'} reference`;

  // Open deep-linked operations and schemas, now and on every link followed.
  openFromHash();
  window.addEventListener('hashchange', openFromHash);
}

function openFromHash() {
  if (location.hash.length < 2) return;
  const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (!target) return;
  if (target.tagName === 'DETAILS') {
    target.open = true;
    if (target.hidden) {
      // A search hid it: clear the search so that it can be seen.
      const input = document.getElementById('docs-search');
      input.value = '';
      input.dispatchEvent(new Event('input'));
      target.hidden = false;
    }
  }
  target.scrollIntoView();
  const summary = target.querySelector('summary');
  (summary || target).focus({ preventScroll: true });
}

function tagTitle(name) {
  return ({ 'api-keys': 'API keys', auth: 'Authentication & sessions' })[name] || name.charAt(0).toUpperCase() + name.slice(1);
}

function wireSearch(tocItems) {
  const input = document.getElementById('docs-search');
  const status = document.getElementById('docs-count');
  const ops = [...document.querySelectorAll('[data-op]')];
  const total = ops.length;
  status.textContent = `${total} operations`;
  let timer = null;
  const apply = () => {
    const terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const op of ops) {
      const hit = terms.every((t) => op.dataset.search.includes(t));
      op.hidden = !hit;
      if (hit) shown += 1;
    }
    for (const section of document.querySelectorAll('.tag-section')) {
      const visible = section.querySelectorAll('[data-op]:not([hidden])').length;
      section.hidden = visible === 0;
      const item = tocItems.find((t) => t.tag === section.dataset.tag);
      if (item) {
        item.count.textContent = terms.length ? `${visible}/${item.total}` : String(item.total);
        item.count.closest('li').hidden = visible === 0;
      }
    }
    status.textContent = terms.length ? `${shown} of ${total} operations match` : `${total} operations`;
  };
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(apply, 120);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      input.value = '';
      apply();
    }
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === '/' && document.activeElement !== input && !/^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName)) {
      e.preventDefault();
      input.focus();
    }
  });
}

async function main() {
  const content = document.getElementById('docs-content');
  try {
    const res = await fetch('/api/v1/openapi.json', { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (!res.ok) throw new Error(`the server answered ${res.status}`);
    doc = await res.json();
    render();
  } catch (err) {
    clear(content);
    content.setAttribute('aria-busy', 'false');
    content.append(h('div', { class: 'empty empty-lg', role: 'alert' },
      h('h1', null, 'The API description could not be loaded'),
      h('p', null, `GET /api/v1/openapi.json failed: ${err.message}. Reload the page to try again.`)));
  }
}

main();
