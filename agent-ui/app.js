// Switchboard console: sign-in, the role-aware shell and the hash router.
// Pages live in /js/pages/*.js and are loaded on demand.

import { h, clear, initials, humanize } from '/js/dom.js';
import { api, post, setCsrfToken, onUnauthorized, describeError, ApiError } from '/js/api.js';
import { createLiveFeed } from '/js/live.js';
import { icon, toast, busy, emptyState, announce } from '/js/ui.js';

// ---- what each role may see ------------------------------------------------------

const STAFF = ['agent', 'supervisor', 'admin'];
const ALL_ROLES = ['admin', 'supervisor', 'agent', 'marketer'];
const AUDIENCE = ['marketer', 'supervisor', 'admin'];

/** The top-level navigation: exactly these items, each for these roles. */
export const NAV = [
  { id: 'agent', label: 'Agent desk', path: '/agent', icon: 'headset', roles: ['agent', 'supervisor', 'admin'] },
  {
    id: 'supervisor', label: 'Supervisor', path: '/supervisor', icon: 'chart', roles: ['supervisor', 'admin'],
    children: [
      { path: '/supervisor', label: 'Live view' },
      { path: '/supervisor/queues', label: 'Queues' },
      { path: '/supervisor/skills', label: 'Skills' },
      { path: '/supervisor/agents', label: 'Agents' },
      { path: '/supervisor/flows', label: 'Flows' },
    ],
  },
  { id: 'campaigns', label: 'Campaigns', path: '/campaigns', icon: 'megaphone', roles: ['marketer', 'admin'] },
  {
    // Agents open contact cards (search and read, record consent); the
    // audience pages (lists, segments, imports) are for the back office.
    id: 'contacts', label: 'Contacts', path: '/contacts', icon: 'contacts', roles: ['marketer', 'supervisor', 'admin', 'agent'],
    children: [
      { path: '/contacts', label: 'All contacts', roles: ['marketer', 'supervisor', 'admin'] },
      { path: '/contacts/lists', label: 'Lists', roles: ['marketer', 'supervisor', 'admin'] },
      { path: '/contacts/segments', label: 'Segments', roles: ['marketer', 'supervisor', 'admin'] },
      { path: '/contacts/import', label: 'Import', roles: ['marketer', 'admin'] },
    ],
  },
  {
    id: 'admin', label: 'Admin', path: '/admin/users', icon: 'shield', roles: ['admin'],
    children: [
      { path: '/admin/users', label: 'Users' },
      { path: '/admin/api-keys', label: 'API keys' },
      { path: '/admin/webhooks', label: 'Webhooks' },
      { path: '/admin/audit', label: 'Audit log' },
      { path: '/admin/tenant', label: 'Tenant' },
    ],
  },
];

const ROUTES = {
  '/agent': { nav: 'agent', title: 'Agent desk', load: () => import('/js/pages/agent.js') },
  '/supervisor': { nav: 'supervisor', title: 'Supervisor', load: () => import('/js/pages/supervisor.js') },
  '/supervisor/queues': { nav: 'supervisor', title: 'Queues', load: () => import('/js/pages/routing-queues.js') },
  '/supervisor/skills': { nav: 'supervisor', title: 'Skills', load: () => import('/js/pages/routing-skills.js') },
  '/supervisor/agents': { nav: 'supervisor', title: 'Agents', load: () => import('/js/pages/routing-agents.js') },
  '/supervisor/flows': { nav: 'supervisor', title: 'Flows', load: () => import('/js/pages/flows.js') },
  '/campaigns': { nav: 'campaigns', title: 'Campaigns', load: () => import('/js/pages/campaigns.js') },
  '/contacts': { nav: 'contacts', title: 'Contacts', load: () => import('/js/pages/contacts.js') },
  '/contacts/card': { nav: 'contacts', sub: '/contacts', title: 'Contact', load: () => import('/js/pages/contact-card.js') },
  '/contacts/lists': { nav: 'contacts', roles: AUDIENCE, title: 'Lists', load: () => import('/js/pages/lists.js') },
  '/contacts/segments': { nav: 'contacts', roles: AUDIENCE, title: 'Segments', load: () => import('/js/pages/segments.js') },
  '/contacts/import': { nav: 'contacts', roles: ['marketer', 'admin'], title: 'Import contacts', load: () => import('/js/pages/imports.js') },
  '/admin/users': { nav: 'admin', title: 'Users', load: () => import('/js/pages/users.js') },
  '/admin/api-keys': { nav: 'admin', title: 'API keys', load: () => import('/js/pages/api-keys.js') },
  '/admin/webhooks': { nav: 'admin', title: 'Webhooks', load: () => import('/js/pages/webhooks.js') },
  '/admin/audit': { nav: 'admin', title: 'Audit log', load: () => import('/js/pages/audit.js') },
  '/admin/tenant': { nav: 'admin', title: 'Tenant', load: () => import('/js/pages/tenant.js') },
  '/jobs': { nav: null, roles: ALL_ROLES, title: 'Jobs', load: () => import('/js/pages/jobs.js') },
};

function navItem(id) {
  return NAV.find((n) => n.id === id);
}

function routeAllowed(route, role) {
  const roles = route.roles || navItem(route.nav).roles;
  return roles.includes(role);
}

function defaultPath(role) {
  const first = NAV.find((n) => n.roles.includes(role));
  return first ? first.path : '/jobs';
}

// ---- state -------------------------------------------------------------------------

const els = {};
let me = null;            // GET /auth/me, while signed in
let current = null;       // {path, cleanups}
let firstRoute = true;
const live = createLiveFeed();

// ---- sign-in -------------------------------------------------------------------------

function showView(name) {
  els.boot.hidden = true;
  els.login.hidden = name !== 'login';
  els.app.hidden = name !== 'app';
}

function showLogin(notice) {
  showView('login');
  document.title = 'Sign in · Switchboard';
  els.loginNotice.textContent = notice || '';
  clear(els.loginError);
  els.loginPassword.value = '';
  (els.loginEmail.value ? els.loginPassword : els.loginEmail).focus();
}

const LOGIN_FIELDS = { tenant: 'Workspace', email: 'Email', password: 'Password' };

function showLoginError(err) {
  clear(els.loginError);
  for (const el of [els.loginTenant, els.loginEmail, els.loginPassword]) el.removeAttribute('aria-invalid');
  if (err instanceof ApiError && err.code === 'validation_failed' && err.fields.length) {
    els.loginError.append('Check what you entered:',
      h('ul', null, err.fields.map((f) => h('li', null, `${LOGIN_FIELDS[f.path] || humanize(f.path)} ${f.message}`))));
    for (const f of err.fields) {
      const input = els.loginForm.querySelector(`[name="${CSS.escape(f.path)}"]`);
      if (input) input.setAttribute('aria-invalid', 'true');
    }
    return;
  }
  if (err instanceof ApiError && err.code === 'invalid_credentials') {
    els.loginError.append('Wrong workspace, email or password. Check them and try again.');
    return;
  }
  els.loginError.append(describeError(err));
}

let loginRetryTimer = null;

async function onLoginSubmit(e) {
  e.preventDefault();
  clear(els.loginError);
  els.loginNotice.textContent = '';
  const form = els.loginForm;
  if (!form.reportValidity()) return;
  const body = {
    tenant: els.loginTenant.value.trim(),
    email: els.loginEmail.value.trim(),
    password: els.loginPassword.value,
  };
  let wait = 0;
  await busy(els.loginSubmit, async () => {
    try {
      const res = await post('/auth/login', body, { expect401: true });
      setCsrfToken(res.csrf_token);
      const who = await api('GET', '/auth/me', undefined, { expect401: true });
      els.loginPassword.value = '';
      enter(who, true);
    } catch (err) {
      showLoginError(err);
      if (err instanceof ApiError && err.code === 'rate_limited') wait = Number(err.details.retry_after_secs) || 0;
      els.loginPassword.select();
      els.loginPassword.focus();
    }
  }, 'Signing in…');
  if (wait > 0) {
    // This account is throttled: wait, or sign in to another one.
    els.loginSubmit.disabled = true;
    clearTimeout(loginRetryTimer);
    loginRetryTimer = setTimeout(() => { els.loginSubmit.disabled = false; }, Math.min(wait, 900) * 1000);
  }
}

/** The session is gone (signed out, expired or revoked). */
function signedOut(notice, resetRoute = false) {
  const wasIn = me !== null;
  me = null;
  setCsrfToken(null);
  live.stop();
  leavePage();
  clear(els.main);
  clear(els.navList);
  document.querySelectorAll('dialog').forEach((d) => d.remove());
  if (resetRoute) history.replaceState(null, '', '/');
  if (wasIn || els.login.hidden) showLogin(notice);
}

async function signOut() {
  await busy(els.signOut, async () => {
    try {
      await post('/auth/logout', {});
    } catch (err) {
      if (err.status !== 401) {
        toast(`Could not sign out: ${describeError(err)}`, 'error');
        return;
      }
    }
    signedOut('You have signed out.', true);
  });
}

// ---- the shell -------------------------------------------------------------------------

/** Shows the console for `who`; `focusPage` moves focus to the page heading. */
function enter(who, focusPage = false) {
  me = who;
  setCsrfToken(who.csrf_token);
  const name = who.user ? who.user.display_name : (who.api_key ? who.api_key.name : 'API key');
  els.tenantName.textContent = who.tenant.name;
  els.tenantName.title = `${who.tenant.name} (${who.tenant.slug})`;
  els.userName.textContent = name;
  els.userAvatar.textContent = initials(name);
  els.userRole.textContent = humanize(who.role);
  els.userRole.title = `Signed in as ${who.user ? who.user.email : name}, role ${who.role}`;
  renderNav(who.role);
  showView('app');
  firstRoute = !focusPage;
  if (STAFF.includes(who.role)) {
    els.livePill.hidden = false;
    live.start();
  } else {
    els.livePill.hidden = true;
  }
  route();
}

function renderNav(role) {
  clear(els.navList);
  for (const item of NAV) {
    if (!item.roles.includes(role)) continue;
    const li = h('li', null,
      h('a', { href: `#${item.path}`, 'data-nav': item.id }, icon(item.icon), h('span', null, item.label)));
    const children = (item.children || []).filter((c) => !c.roles || c.roles.includes(role));
    if (children.length > 1) {
      li.append(h('ul', { class: 'subnav', 'aria-label': `${item.label} sections` },
        children.map((c) => h('li', null, h('a', { href: `#${c.path}`, 'data-subnav': c.path }, c.label)))));
    }
    els.navList.append(li);
  }
}

function markCurrent(path, route) {
  for (const a of els.app.querySelectorAll('.nav a')) {
    a.removeAttribute('aria-current');
    a.classList.remove('is-section');
  }
  const sub = els.app.querySelector(`.nav a[data-subnav="${route.sub || path}"]`);
  const section = route.nav ? els.app.querySelector(`.nav a[data-nav="${route.nav}"]`) : null;
  if (sub) {
    sub.setAttribute('aria-current', 'page');
    if (section) section.classList.add('is-section');
  } else if (section) {
    section.setAttribute('aria-current', 'page');
  } else if (path === '/jobs') {
    els.app.querySelector('.nav a[data-link="jobs"]').setAttribute('aria-current', 'page');
  }
}

function leavePage() {
  if (!current) return;
  for (const fn of current.cleanups.splice(0)) {
    try {
      fn();
    } catch {
      // cleanup must not block navigation
    }
  }
  current = null;
}

async function route() {
  if (!me) return;
  const hash = location.hash;
  let path = hash.startsWith('#/') ? hash.slice(1).split('?')[0] : '';
  let query = hash.includes('?') ? hash.slice(hash.indexOf('?') + 1) : '';
  let r = ROUTES[path];
  if (!r || !routeAllowed(r, me.role)) {
    if (r) toast('That page is not available to your role.', 'error');
    path = defaultPath(me.role);
    r = ROUTES[path];
    query = '';
    history.replaceState(null, '', `#${path}`);
  }
  leavePage();
  els.sidebar.classList.remove('is-open');
  els.navToggle.setAttribute('aria-expanded', 'false');
  markCurrent(path, r);
  document.title = `${r.title} · Switchboard`;

  const cleanups = [];
  const mine = { path, cleanups };
  current = mine;
  clear(els.main);
  const page = h('div', { class: 'page', 'data-page': path, 'aria-busy': 'true' });
  els.main.append(page);
  const ctx = {
    me,
    live,
    /** The query of the hash, e.g. `#/contacts/card?id=...`. */
    params: new URLSearchParams(query),
    isCurrent: () => current === mine,
    onCleanup: (fn) => cleanups.push(fn),
    setTenant: (t) => {
      me.tenant = t;
      els.tenantName.textContent = t.name;
    },
  };
  const wasFirst = firstRoute;
  firstRoute = false;
  try {
    const mod = await r.load();
    if (current !== mine) return;
    await mod.default(page, ctx);
  } catch (err) {
    if (current !== mine || (err instanceof ApiError && err.status === 401)) return;
    page.dataset.pageError = err && err.code ? err.code : 'error';
    page.append(emptyState({
      iconName: 'warning',
      title: 'This page could not be loaded',
      text: describeError(err),
      children: h('button', { type: 'button', class: 'btn', onclick: () => route() }, 'Try again'),
    }));
  } finally {
    if (current === mine) {
      page.setAttribute('aria-busy', 'false');
      page.dataset.ready = 'true';
    }
  }
  if (current === mine && !wasFirst) {
    const title = page.querySelector('[data-page-title]');
    if (title) title.focus();
    announce(`${r.title} page`);
  }
}

function setLiveState(state) {
  els.livePill.dataset.state = state;
  els.liveText.textContent = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', off: 'Offline' }[state] || state;
  els.livePill.title = state === 'live' ? 'Receiving events as they happen' : 'The live event stream is not connected';
}

// ---- start -------------------------------------------------------------------------------

async function boot() {
  const byId = (id) => document.getElementById(id);
  Object.assign(els, {
    boot: byId('boot'),
    login: byId('login-view'),
    app: byId('app-view'),
    loginForm: byId('login-form'),
    loginTenant: byId('login-tenant'),
    loginEmail: byId('login-email'),
    loginPassword: byId('login-password'),
    loginSubmit: byId('login-submit'),
    loginError: byId('login-error'),
    loginNotice: byId('login-notice'),
    main: byId('main'),
    navList: byId('nav-list'),
    sidebar: byId('sidebar'),
    navToggle: byId('nav-toggle'),
    tenantName: byId('tenant-name'),
    userName: byId('user-name'),
    userRole: byId('user-role'),
    userAvatar: byId('user-avatar'),
    signOut: byId('sign-out'),
    livePill: byId('live-pill'),
    liveText: byId('live-text'),
  });

  els.loginForm.addEventListener('submit', onLoginSubmit);
  for (const el of [els.loginTenant, els.loginEmail]) {
    el.addEventListener('input', () => {
      clearTimeout(loginRetryTimer);
      els.loginSubmit.disabled = false;
    });
  }
  els.signOut.addEventListener('click', signOut);
  els.navToggle.addEventListener('click', () => {
    const open = !els.sidebar.classList.contains('is-open');
    els.sidebar.classList.toggle('is-open', open);
    els.navToggle.setAttribute('aria-expanded', String(open));
  });
  document.getElementById('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    const target = els.app.hidden ? els.loginEmail : els.main;
    target.focus();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && els.sidebar.classList.contains('is-open')) {
      els.sidebar.classList.remove('is-open');
      els.navToggle.setAttribute('aria-expanded', 'false');
      els.navToggle.focus();
    }
  });
  window.addEventListener('hashchange', () => {
    if (me && location.hash.startsWith('#/')) route();
  });
  live.onState(setLiveState);
  onUnauthorized(() => {
    if (me) signedOut('Your session has ended. Sign in again to continue.');
  });

  try {
    const who = await api('GET', '/auth/me', undefined, { expect401: true });
    enter(who);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) showLogin();
    else showLogin(`Switchboard could not check your session: ${describeError(err)}`);
  }
}

boot();
