// Jobs: long-running work with progress, refreshed every 2 s while any job
// is queued or running.

import { h, clear, humanize, timeEl, shortId } from '/js/dom.js';
import { get, post, describeError } from '/js/api.js';
import { pageHeader, card, table, badge, emptyState, toast, busy, loadMoreButton } from '/js/ui.js';

const REFRESH_MS = 2000;

export default async function jobs(root, ctx) {
  const status = h('span', { class: 'small muted', role: 'status', 'aria-live': 'off' });
  const refresh = h('button', { type: 'button', class: 'btn' }, 'Refresh');
  root.append(pageHeader('Jobs', 'Long-running work such as webhook replays and imports, with live progress.', refresh));

  const tableError = h('div', { class: 'form-error inset', role: 'alert', 'aria-live': 'assertive' });
  const emptyBox = emptyState({
    iconName: 'jobs',
    title: 'No jobs yet',
    text: 'Long-running work, such as replaying events to a webhook, appears here with its progress.',
  });
  let rows = [];
  let extra = []; // older pages, loaded on demand; not refreshed
  let cursor = null;
  const list = table({
    caption: 'Jobs',
    empty: 'No jobs yet.',
    rowData: (j) => ({ job: j.id, status: j.status }),
    columns: [
      { label: 'Job', cell: (j) => [h('span', { class: 'primary-cell' }, humanize(j.kind)), h('span', { class: 'sub mono' }, shortId(j.id))] },
      { label: 'Status', cell: (j) => [badge(j.status), j.cancel_requested && !isFinal(j) ? h('span', { class: 'sub' }, 'Cancelling…') : null] },
      { label: 'Progress', cell: (j) => progress(j) },
      { label: 'Created', cell: (j) => timeEl(j.created_at, true) },
      { label: 'Finished', cell: (j) => (j.finished_at ? timeEl(j.finished_at, true) : h('span', { class: 'muted' }, '—')) },
      { label: 'Result', cell: (j) => outcome(j) },
      // Admins and supervisors see every job; others see (and may cancel) their own.
      { label: h('span', { class: 'sr-only' }, 'Actions'), class: 'actions', cell: (j) => cancelButton(j) },
    ],
  });
  const more = loadMoreButton(async () => {
    const page = await get('/jobs', { limit: 50, cursor });
    extra.push(...page.items);
    cursor = page.next_cursor;
    more.hidden = !cursor;
    draw();
  });
  const tableBox = h('div', null, tableError, list.el);
  root.append(card({ title: 'All jobs', subtitle: 'Newest first', actions: status, flush: true, body: [emptyBox, tableBox], foot: more }));

  function draw() {
    const all = [...rows, ...extra.filter((x) => !rows.some((r) => r.id === x.id))];
    emptyBox.hidden = all.length > 0;
    tableBox.hidden = all.length === 0;
    list.setRows(all);
  }

  function cancelButton(j) {
    if (isFinal(j) || j.cancel_requested) return null;
    const btn = h('button', { type: 'button', class: 'btn btn-sm btn-danger' }, 'Cancel', h('span', { class: 'sr-only' }, ` job ${shortId(j.id)}`));
    btn.addEventListener('click', async () => {
      try {
        await busy(btn, () => post(`/jobs/${j.id}/cancel`, {}));
        toast('Cancellation requested.');
        await load();
      } catch (err) {
        tableError.textContent = `Could not cancel the job: ${describeError(err)}`;
      }
    });
    return btn;
  }

  let timer = null;
  async function load() {
    clearTimeout(timer);
    timer = null;
    try {
      const page = await get('/jobs', { limit: 50 });
      if (!ctx.isCurrent()) return;
      clear(tableError);
      rows = page.items;
      if (!extra.length) {
        cursor = page.next_cursor;
        more.hidden = !cursor;
      }
      draw();
    } catch (err) {
      if (!ctx.isCurrent()) return;
      tableError.textContent = `Could not refresh: ${describeError(err)}`;
    }
    const activeJobs = rows.filter((j) => !isFinal(j)).length;
    status.textContent = activeJobs
      ? `${activeJobs} active · refreshing every ${REFRESH_MS / 1000} s`
      : `Updated ${new Date().toLocaleTimeString()}`;
    if (activeJobs && ctx.isCurrent()) timer = setTimeout(load, REFRESH_MS);
  }
  refresh.addEventListener('click', () => busy(refresh, load));
  ctx.onCleanup(() => clearTimeout(timer));
  await load();
}

function isFinal(j) {
  return j.status === 'succeeded' || j.status === 'failed' || j.status === 'cancelled';
}

function progress(j) {
  const pct = typeof j.percent === 'number' ? Math.max(0, Math.min(100, j.percent)) : null;
  const label = `Progress of job ${shortId(j.id)}`;
  const bar = pct === null && !isFinal(j)
    ? h('progress', { 'aria-label': label })                                   // indeterminate
    : h('progress', { max: '100', value: String(pct === null ? 100 : pct), 'aria-label': label });
  if (j.status === 'succeeded') bar.classList.add('is-done');
  if (j.status === 'failed') bar.classList.add('is-failed');
  const text = j.progress_total === null || j.progress_total === undefined
    ? `${j.progress_done.toLocaleString()} done${isFinal(j) ? '' : ' so far'}`
    : `${j.progress_done.toLocaleString()} of ${j.progress_total.toLocaleString()}${pct === null ? '' : ` · ${pct}%`}`;
  return h('div', { class: 'progress-cell' }, bar, h('span', { class: 'small' }, text));
}

function outcome(j) {
  if (j.error) return h('span', { class: 'small', title: j.error }, j.error.length > 80 ? `${j.error.slice(0, 80)}…` : j.error);
  if (j.result && typeof j.result === 'object') {
    const parts = Object.entries(j.result).filter(([, v]) => v === null || typeof v !== 'object').slice(0, 3)
      .map(([k, v]) => `${humanize(k)}: ${v}`);
    if (parts.length) return h('span', { class: 'small' }, parts.join(' · '));
  }
  return h('span', { class: 'muted' }, '—');
}
