// Admin > Webhooks: list, create (the signing secret is shown once),
// enable/disable, delete, and each webhook's delivery attempts.

import { h, clear, timeEl } from '/js/dom.js';
import { get, post, patch, del, describeError } from '/js/api.js';
import {
  pageHeader, card, table, badge, field, errorRegion, showErrors, clearErrors, busy,
  confirmDialog, toast, loadMoreButton, secretPanel,
} from '/js/ui.js';

const KNOWN_KINDS = ['created', 'flow_entered', 'queued', 'offered', 'offer_rejected', 'offer_timed_out', 'connected', 'transferred', 'wrap_up_started', 'abandoned', 'closed', 'note'];

export default async function webhooks(root) {
  root.append(pageHeader('Webhooks', 'Switchboard POSTs your workspace’s events, signed, to these URLs.', null, 'Admin'));

  // ---- create
  const region = errorRegion();
  const kindsList = h('datalist', { id: 'webhook-kinds' }, KNOWN_KINDS.map((k) => h('option', { value: k })));
  const f = {
    url: field({ label: 'Endpoint URL', name: 'url', type: 'url', required: true, hint: 'http or https; it must answer 2xx quickly.', attrs: { placeholder: 'https://example.com/hooks/switchboard', autocomplete: 'off' } }),
    description: field({ label: 'Description', name: 'description', hint: 'Optional, for your team.', attrs: { maxlength: '500', autocomplete: 'off' } }),
    kinds: field({ label: 'Event kinds', name: 'event_kinds', hint: `Comma-separated, e.g. queued, closed. Empty for all. Known: ${KNOWN_KINDS.join(', ')}.`, attrs: { autocomplete: 'off', list: 'webhook-kinds' } }),
  };
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Add webhook');
  const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'New webhook' },
    region, kindsList,
    h('div', { class: 'form-grid' }, f.url, f.description, f.kinds),
    h('div', { class: 'form-actions' }, submit));
  const secretSlot = h('div', { 'data-slot': 'secret' });
  root.append(secretSlot, card({ title: 'Add a webhook', subtitle: 'Verify each delivery’s Switchboard-Signature header with the signing secret.', body: form }));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form, region);
    const body = {
      url: f.url.input.value.trim(),
      description: f.description.input.value.trim(),
      event_kinds: f.kinds.input.value.split(/[\s,]+/).map((k) => k.trim()).filter(Boolean),
    };
    await busy(submit, async () => {
      try {
        const w = await post('/webhooks', body);
        const { secret, ...view } = w;
        rows.unshift(view);
        render();
        form.reset();
        clear(secretSlot);
        const panel = secretPanel({
          title: 'Signing secret for the new webhook',
          label: `Secret for ${view.url}`,
          secret,
          warning: 'this is the only time the secret is shown. Store it where your endpoint can read it; you can rotate it later through the API.',
          testId: 'webhook-secret',
          onDismiss: () => submit.focus(),
        });
        secretSlot.append(panel);
        panel.querySelector('[data-secret]').focus();
      } catch (err) {
        showErrors(err, region, form);
      }
    }, 'Adding…');
  });

  // ---- list
  const tableError = h('div', { class: 'form-error inset', role: 'alert', 'aria-live': 'assertive' });
  const rows = [];
  const open = new Set();
  const list = table({
    caption: 'Webhooks',
    empty: 'No webhooks yet. Add one above to receive events.',
    rowClass: (w) => (w.active ? null : 'is-muted'),
    rowData: (w) => ({ webhook: w.id }),
    columns: [
      { label: 'Endpoint', cell: (w) => [h('span', { class: 'primary-cell mono' }, w.url), w.description ? h('span', { class: 'sub' }, w.description) : null] },
      { label: 'Events', cell: (w) => (w.event_kinds.length ? h('ul', { class: 'chips' }, w.event_kinds.map((k) => h('li', { class: 'chip' }, k))) : h('span', { class: 'muted' }, 'All events')) },
      { label: 'Status', cell: (w) => badge(w.active ? 'active' : 'disabled') },
      { label: 'Created', cell: (w) => timeEl(w.created_at) },
      { label: h('span', { class: 'sr-only' }, 'Actions'), class: 'actions', cell: (w) => actions(w) },
    ],
  });

  function render() {
    list.setRows(rows);
    // Delivery panels go in a row under their webhook.
    for (const w of rows) {
      if (!open.has(w.id)) continue;
      const tr = [...list.tbody.children].find((r) => r.dataset.webhook === w.id);
      if (tr) tr.after(deliveriesRow(w));
    }
  }

  function actions(w) {
    const toggle = h('button', { type: 'button', class: 'btn btn-sm' }, w.active ? 'Disable' : 'Enable', h('span', { class: 'sr-only' }, ` ${w.url}`));
    toggle.addEventListener('click', async () => {
      clear(tableError);
      try {
        const updated = await busy(toggle, () => patch(`/webhooks/${w.id}`, { active: !w.active }));
        rows[rows.findIndex((r) => r.id === w.id)] = updated;
        render();
        toast(`Webhook ${updated.active ? 'enabled' : 'disabled'}.`);
      } catch (err) {
        tableError.textContent = `Could not change the webhook: ${describeError(err)}`;
      }
    });
    const shown = open.has(w.id);
    const deliveries = h('button', { type: 'button', class: 'btn btn-sm', 'aria-expanded': String(shown) }, shown ? 'Hide deliveries' : 'Deliveries');
    deliveries.addEventListener('click', () => {
      if (open.has(w.id)) open.delete(w.id);
      else open.add(w.id);
      render();
      const again = [...list.tbody.querySelectorAll('tr')].find((r) => r.dataset.webhook === w.id);
      const btn = again && again.querySelector('[aria-expanded]');
      if (btn) btn.focus();
    });
    const remove = h('button', { type: 'button', class: 'btn btn-sm btn-danger' }, 'Delete', h('span', { class: 'sr-only' }, ` ${w.url}`));
    remove.addEventListener('click', async () => {
      clear(tableError);
      const ok = await confirmDialog({
        title: 'Delete this webhook?',
        message: `Events stop going to ${w.url}, and its delivery history is deleted.`,
        confirmLabel: 'Delete webhook',
        danger: true,
      });
      if (!ok) { remove.focus(); return; }
      try {
        await busy(remove, () => del(`/webhooks/${w.id}`));
        rows.splice(rows.findIndex((r) => r.id === w.id), 1);
        open.delete(w.id);
        render();
        toast('Webhook deleted.');
      } catch (err) {
        tableError.textContent = `Could not delete the webhook: ${describeError(err)}`;
      }
    });
    return [deliveries, toggle, remove];
  }

  function deliveriesRow(w) {
    const box = h('div', { class: 'deliveries' });
    const tr = h('tr', { class: 'row-detail' }, h('td', { colspan: '5' }, box));
    const err = h('div', { class: 'form-error', role: 'alert' });
    const dRows = [];
    const dt = table({
      caption: `Deliveries to ${w.url}`,
      empty: 'No deliveries yet. Deliveries appear when events happen.',
      columns: [
        { label: 'Event', cell: (d) => h('span', { class: 'mono' }, `#${d.event_id}`) },
        { label: 'Status', cell: (d) => badge(d.status) },
        { label: 'Attempts', numeric: true, cell: (d) => String(d.attempts) },
        { label: 'Last answer', cell: (d) => (d.last_status_code ? h('span', { class: 'mono' }, String(d.last_status_code)) : h('span', { class: 'muted' }, '—')) },
        { label: 'Last error', cell: (d) => d.last_error || h('span', { class: 'muted' }, '—') },
        { label: 'Created', cell: (d) => timeEl(d.created_at, true) },
        { label: 'Delivered / next try', cell: (d) => (d.delivered_at ? timeEl(d.delivered_at, true) : (d.status === 'pending' ? timeEl(d.next_attempt_at, true) : '—')) },
      ],
    });
    let cursor = null;
    const more = loadMoreButton(() => load());
    async function load() {
      try {
        const page = await get(`/webhooks/${w.id}/deliveries`, { limit: 25, cursor });
        dRows.push(...page.items);
        dt.setRows(dRows);
        cursor = page.next_cursor;
        more.hidden = !cursor;
      } catch (e) {
        err.textContent = describeError(e);
      }
    }
    box.append(h('h3', null, 'Delivery attempts, newest first'), err, dt.el, more);
    load();
    return tr;
  }

  let cursor = null;
  const more = loadMoreButton(() => loadPage());
  async function loadPage() {
    try {
      const page = await get('/webhooks', { limit: 50, cursor });
      rows.push(...page.items);
      render();
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (err) {
      tableError.textContent = describeError(err);
    }
  }
  root.append(card({ title: 'Endpoints', flush: true, body: [tableError, list.el], foot: more }));
  await loadPage();
}
