// The one way the console talks to the server: same-origin fetch with the
// session cookie, the CSRF token (kept in memory only) on every write, and
// the API's single error shape {"error": {"code", "message", "details"}}.

const BASE = '/api/v1';

let csrfToken = null;
let unauthorizedHandler = null;

export function setCsrfToken(token) {
  csrfToken = token || null;
}

/** Called with the error whenever a request answers 401 (the session is gone). */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details && typeof details === 'object' ? details : {};
  }

  /** [{path, message}] for validation errors, else []. */
  get fields() {
    return Array.isArray(this.details.fields) ? this.details.fields : [];
  }
}

/**
 * api('GET', '/users', undefined, {query: {limit: 50}})
 * Options: query (object), expect401 (do not treat a 401 as "signed out").
 */
export async function api(method, path, body, opts = {}) {
  let url = BASE + path;
  if (opts.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) {
      if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    }
    const qs = q.toString();
    if (qs) url += (url.includes('?') ? '&' : '?') + qs;
  }
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken;

  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      signal: opts.signal,
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.', {});
  }

  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const e = data && data.error && typeof data.error === 'object'
      ? new ApiError(res.status, data.error.code || `http_${res.status}`, data.error.message || res.statusText, data.error.details)
      : new ApiError(res.status, `http_${res.status}`, `The server answered ${res.status} ${res.statusText}.`.replace(' .', '.'), {});
    if (res.status === 401 && !opts.expect401 && unauthorizedHandler) unauthorizedHandler(e);
    throw e;
  }
  return data;
}

export const get = (path, query, opts = {}) => api('GET', path, undefined, { ...opts, query });
export const post = (path, body, opts) => api('POST', path, body ?? {}, opts);
export const patch = (path, body, opts) => api('PATCH', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

/** Every item of a paged list (follows next_cursor; bounded). */
export async function getAll(path, query = {}, maxPages = 20) {
  const items = [];
  let cursor;
  for (let i = 0; i < maxPages; i += 1) {
    const page = await get(path, { ...query, limit: 200, cursor });
    items.push(...(page.items || []));
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  return items;
}

/** A sentence for any error, for alerts and toasts. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return (err && err.message) || 'Something went wrong.';
  switch (err.code) {
    case 'rate_limited': {
      const secs = Number(err.details.retry_after_secs);
      return Number.isFinite(secs) && secs > 0
        ? `Too many attempts. Try again in ${formatWait(secs)}.`
        : 'Too many attempts. Try again later.';
    }
    case 'forbidden':
      return `You do not have access to this: ${err.message}`;
    case 'csrf_failed':
      return 'Your session’s security token is out of date. Reload the page and try again.';
    case 'internal':
      return 'The server hit an unexpected error. Try again; if it keeps happening, tell your admin.';
    default:
      return err.message ? capitalize(err.message) : 'Something went wrong.';
  }
}

function capitalize(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function formatWait(secs) {
  if (secs < 90) return `${Math.ceil(secs)} second${Math.ceil(secs) === 1 ? '' : 's'}`;
  const mins = Math.ceil(secs / 60);
  return `${mins} minute${mins === 1 ? '' : 's'}`;
}
