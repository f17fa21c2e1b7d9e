// Admin > Tenant: the workspace's name, time zone and default phone region.

import { h } from '/js/dom.js';
import { get, patch } from '/js/api.js';
import { pageHeader, card, field, errorRegion, showErrors, clearErrors, busy, toast } from '/js/ui.js';

export default async function tenant(root, ctx) {
  root.append(pageHeader('Tenant', 'Settings that apply to the whole workspace.', null, 'Admin'));
  const t = await get('/tenant');

  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  const region = errorRegion();
  const saved = h('span', { class: 'small muted', role: 'status', 'aria-live': 'polite' });
  const f = {
    slug: field({ label: 'Workspace', name: 'slug', value: t.slug, hint: 'People type this when they sign in. It cannot be changed.', attrs: { readonly: true } }),
    name: field({ label: 'Name', name: 'name', value: t.name, required: true, attrs: { maxlength: '120', autocomplete: 'organization' } }),
    timezone: field({ label: 'Time zone', name: 'timezone', value: t.timezone, required: true, hint: 'An IANA time zone, e.g. Europe/Berlin.', attrs: { list: 'tz-list', autocomplete: 'off', spellcheck: 'false' } }),
    region: field({ label: 'Default phone region', name: 'default_region', value: t.default_region, required: true, hint: 'Two letters (ISO 3166-1), e.g. US. Used to read local phone numbers.', attrs: { maxlength: '2', autocomplete: 'off', spellcheck: 'false' } }),
  };
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save changes');
  const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'Tenant settings' },
    region,
    h('div', { class: 'form-grid' }, f.slug, f.name, f.timezone, f.region),
    h('datalist', { id: 'tz-list' }, zones.map((z) => h('option', { value: z }))),
    h('div', { class: 'form-actions' }, submit, saved));

  f.region.input.addEventListener('input', () => {
    const el = f.region.input;
    const at = el.selectionStart;
    el.value = el.value.toUpperCase();
    el.setSelectionRange(at, at);
  });

  let current = t;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form, region);
    saved.textContent = '';
    const body = {};
    const name = f.name.input.value.trim();
    const tz = f.timezone.input.value.trim();
    const reg = f.region.input.value.trim().toUpperCase();
    if (name !== current.name) body.name = name;
    if (tz !== current.timezone) body.timezone = tz;
    if (reg !== current.default_region) body.default_region = reg;
    if (!Object.keys(body).length) {
      saved.textContent = 'Nothing to save: no changes.';
      return;
    }
    await busy(submit, async () => {
      try {
        current = await patch('/tenant', body);
        f.name.input.value = current.name;
        f.timezone.input.value = current.timezone;
        f.region.input.value = current.default_region;
        ctx.setTenant(current);
        saved.textContent = 'Saved.';
        toast('Tenant settings saved.');
      } catch (err) {
        showErrors(err, region, form);
      }
    }, 'Saving…');
  });

  root.append(card({ title: 'Workspace settings', body: form }));
}
