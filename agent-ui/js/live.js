// The tenant's live event stream (Server-Sent Events), shared by every page.
// One EventSource while signed in; pages subscribe and unsubscribe.

import { get } from './api.js';

export function createLiveFeed() {
  let es = null;
  let retryTimer = null;
  let running = false;
  let state = 'off';
  const listeners = new Set();
  const stateListeners = new Set();
  const resyncListeners = new Set();
  let interrupted = false;

  function resync() {
    for (const fn of resyncListeners) fn();
  }

  function setState(next) {
    if (state === next) return;
    state = next;
    for (const fn of stateListeners) fn(state);
  }

  function connect() {
    if (!running) return;
    es = new EventSource('/api/v1/events/stream');
    es.addEventListener('open', () => {
      setState('live');
      // Events may have been missed while disconnected.
      if (interrupted) resync();
      interrupted = false;
    });
    es.addEventListener('interaction', (msg) => {
      let ev;
      try {
        ev = JSON.parse(msg.data);
      } catch {
        return;
      }
      for (const fn of listeners) {
        try {
          fn(ev);
        } catch (e) {
          // One broken subscriber must not starve the others.
          setTimeout(() => { throw e; });
        }
      }
    });
    es.addEventListener('lagged', resync);
    es.addEventListener('error', () => {
      if (!running) return;
      interrupted = true;
      setState('reconnecting');
      if (es && es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. a non-200 answer): check the session
        // (a 401 signs out through the API module), then try again.
        es = null;
        clearTimeout(retryTimer);
        retryTimer = setTimeout(recheck, 3000);
      }
      // Otherwise (CONNECTING) the browser retries by itself.
    });
  }

  async function recheck() {
    if (!running) return;
    try {
      await get('/auth/me');
      connect();
    } catch (e) {
      if (running && e.status !== 401) retryTimer = setTimeout(recheck, 5000);
    }
  }

  return {
    start() {
      if (running) return;
      running = true;
      interrupted = false;
      setState('connecting');
      connect();
    },
    stop() {
      running = false;
      clearTimeout(retryTimer);
      if (es) es.close();
      es = null;
      setState('off');
    },
    get state() {
      return state;
    },
    /** fn(TimelineEvent); returns an unsubscribe function. */
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    onState(fn) {
      stateListeners.add(fn);
      return () => stateListeners.delete(fn);
    },
    /** fn() when events may have been missed (the stream lagged or reconnected). */
    onResync(fn) {
      resyncListeners.add(fn);
      return () => resyncListeners.delete(fn);
    },
  };
}
