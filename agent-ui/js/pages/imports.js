// Contacts > Import: upload a CSV (file picker or drag and drop, with upload
// progress), preview it, map each column to a contact field or custom
// attribute (guessed from the headers), choose how duplicates are matched,
// start the import job and follow it live (rows done / failed / total),
// download the failed rows; the recent imports below.

import { h, clear, nextId, shortId, timeEl } from '/js/dom.js';
import { get, post, describeError, ApiError } from '/js/api.js';
import {
  pageHeader, card, table, badge, field, busy, toast, formDialog, emptyState, announce, loadMoreButton,
} from '/js/ui.js';
import {
  fieldLabel, fmtNumber, fmtBytes, plural, showFormErrors, downloadIcon, uploadIcon,
} from '/js/pages/contacts-shared.js';

const POLL_MS = 500;
const CONTACT_FIELDS = ['external_id', 'first_name', 'last_name', 'name', 'phone', 'phone_2', 'phone_3', 'email', 'email_2', 'email_3', 'timezone', 'language', 'tags'];
const CONSENT_FIELDS = ['consent.voice', 'consent.sms', 'consent.email'];
const IDENTITY = ['external_id', 'first_name', 'last_name', 'name', 'phone', 'phone_2', 'phone_3', 'email', 'email_2', 'email_3'];
const DEDUPE = [
  ['external_id', 'External ID'],
  ['phone', 'Phone number'],
  ['email', 'Email address'],
];
// Header spellings the server does not guess, mapped client-side.
const EXTRA_ALIASES = {
  phone: ['phone_1', 'phone1', 'cell_phone', 'cellphone', 'mobile_number', 'phone_no', 'number', 'msisdn'],
  phone_2: ['phone2', 'other_phone', 'secondary_phone'],
  email: ['email_1', 'email1', 'e_mail_address', 'emailaddress'],
  email_2: ['email2', 'secondary_email'],
  first_name: ['forename', 'given'],
  last_name: ['family', 'surname_name'],
  external_id: ['customer_number', 'account_id', 'record_id', 'crm_id'],
  language: ['preferred_language'],
  timezone: ['tz_name', 'zone'],
};
const FINAL = ['succeeded', 'failed', 'cancelled'];

export default async function imports(root, ctx) {
  const isAdmin = ctx.me.role === 'admin';
  root.append(pageHeader('Import contacts',
    'Bring people in from a CSV file. Existing contacts are matched and updated, new ones are created; rows with problems are kept aside for you to fix.',
    h('a', { class: 'btn', href: '/api/v1/contacts/export.csv', download: 'contacts.csv', 'data-action': 'export-all' }, downloadIcon(), 'Export all contacts'),
    h('a', { href: '#/contacts', class: 'crumb-link' }, 'Contacts')));

  const stepsEl = h('ol', { class: 'steps', 'aria-label': 'Import steps' },
    ['Upload a file', 'Map the columns', 'Import'].map((label, i) => h('li', { 'data-step': String(i + 1) }, h('span', { class: 'step-num', 'aria-hidden': 'true' }, String(i + 1)), label)));
  const stage = h('div', { class: 'import-stage' });
  const srStatus = h('div', { class: 'sr-only', role: 'status', 'aria-live': 'polite', 'data-import-announcer': '' });
  root.append(stepsEl, stage, srStatus);

  function setStep(n) {
    for (const li of stepsEl.children) {
      const k = Number(li.dataset.step);
      li.classList.toggle('is-done', k < n);
      if (k === n) li.setAttribute('aria-current', 'step');
      else li.removeAttribute('aria-current');
    }
  }

  function say(text) {
    srStatus.textContent = '';
    setTimeout(() => { srStatus.textContent = text; }, 30);
  }

  // Dropping a file outside the drop zone must not open it in the tab.
  const stopDrop = (e) => {
    if (e.dataTransfer && [...e.dataTransfer.types].includes('Files')) e.preventDefault();
  };
  window.addEventListener('dragover', stopDrop);
  window.addEventListener('drop', stopDrop);
  ctx.onCleanup(() => {
    window.removeEventListener('dragover', stopDrop);
    window.removeEventListener('drop', stopDrop);
  });

  let currentXhr = null;
  let pollTimer = null;
  ctx.onCleanup(() => {
    if (currentXhr) currentXhr.abort();
    clearTimeout(pollTimer);
  });

  const lists = await get('/lists', { limit: 200 }).then((p) => p.items).catch(() => []);

  // ---- step 1: upload -------------------------------------------------------------

  function showUpload(message) {
    setStep(1);
    clear(stage);
    history.replaceState(null, '', '#/contacts/import');
    const inputId = nextId('file');
    const input = h('input', { id: inputId, type: 'file', accept: '.csv,text/csv,text/plain', class: 'file-input', 'aria-describedby': `${inputId}-hint`, 'data-file-input': '' });
    const error = h('div', { class: 'form-error', role: 'alert', 'aria-live': 'assertive' }, message || '');
    const zone = h('div', { class: 'dropzone', 'data-dropzone': '' },
      uploadIcon(),
      h('p', { class: 'dropzone-title' }, 'Drop a CSV file here'),
      h('p', { class: 'muted' }, 'or'),
      h('label', { for: inputId, class: 'btn btn-primary' }, 'Choose a file'),
      input,
      h('p', { id: `${inputId}-hint`, class: 'small muted' }, 'A header row, then one contact per row. UTF-8 or Latin-1 text; comma-separated. Big files are fine: they are stored as they arrive.'));
    input.addEventListener('change', () => {
      if (input.files && input.files[0]) upload(input.files[0]);
    });
    let depth = 0;
    zone.addEventListener('dragenter', (e) => {
      e.preventDefault();
      depth += 1;
      zone.classList.add('is-dragover');
    });
    zone.addEventListener('dragover', (e) => {
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    zone.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) zone.classList.remove('is-dragover');
    });
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      depth = 0;
      zone.classList.remove('is-dragover');
      const files = e.dataTransfer && e.dataTransfer.files;
      if (!files || !files.length) return;
      if (files.length > 1) {
        error.textContent = 'Drop one file at a time.';
        return;
      }
      upload(files[0]);
    });
    stage.append(card({
      title: 'Upload a file',
      subtitle: 'Nothing is imported until you have checked the columns.',
      body: [error, zone, templateHint()],
    }));
  }

  function templateHint() {
    return h('details', { class: 'hint-details' },
      h('summary', null, 'What should the file look like?'),
      h('p', { class: 'small' }, 'The first row names the columns. Any column names work: you map them in the next step. For example:'),
      h('pre', { class: 'code-block' }, 'Customer ID,First name,Last name,Mobile,Email,Tags\nC-1001,Grace,Hopper,(201) 555-0123,grace@example.com,vip;newsletter'),
      h('p', { class: 'small' }, 'Phone numbers may be in any format; without a country code they are read in your workspace’s region. Several tags in one cell are separated by “;”.'));
  }

  function upload(file) {
    clear(stage);
    const progress = h('progress', { max: String(file.size || 1), value: '0', 'aria-label': `Upload of ${file.name}`, 'data-upload-progress': '' });
    const text = h('p', { class: 'small muted progress-text' }, `0 of ${fmtBytes(file.size)}`);
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel upload');
    stage.append(card({
      title: `Uploading ${file.name}`,
      body: h('div', { class: 'upload-progress' }, progress, text, h('div', { class: 'btn-row' }, cancel)),
    }));
    say(`Uploading ${file.name}.`);
    let lastMilestone = 0;
    const xhr = new XMLHttpRequest();
    currentXhr = xhr;
    xhr.open('POST', `/api/v1/uploads?filename=${encodeURIComponent(file.name.slice(0, 255))}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.setRequestHeader('Content-Type', file.type || 'text/csv');
    if (ctx.me.csrf_token) xhr.setRequestHeader('X-CSRF-Token', ctx.me.csrf_token);
    xhr.upload.addEventListener('progress', (e) => {
      if (!e.lengthComputable) return;
      progress.max = e.total || 1;
      progress.value = e.loaded;
      const pct = e.total ? Math.floor((e.loaded / e.total) * 100) : 0;
      text.textContent = `${fmtBytes(e.loaded)} of ${fmtBytes(e.total)} · ${pct}%`;
      if (pct - lastMilestone >= 25) {
        lastMilestone = pct - (pct % 25);
        say(`Upload ${lastMilestone}% done.`);
      }
    });
    xhr.addEventListener('load', async () => {
      currentXhr = null;
      if (!ctx.isCurrent()) return;
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status === 201 && body) {
        progress.value = progress.max;
        say(`${file.name} uploaded. Reading its columns.`);
        await showMapping(body);
        return;
      }
      if (xhr.status === 401) {
        get('/auth/me').catch(() => {}); // signs out through the API module
        return;
      }
      const e = body && body.error
        ? new ApiError(xhr.status, body.error.code, body.error.message, body.error.details)
        : new ApiError(xhr.status, `http_${xhr.status}`, `The server answered ${xhr.status}.`, {});
      showUpload(`The upload failed: ${uploadError(e)}`);
    });
    xhr.addEventListener('error', () => {
      currentXhr = null;
      if (ctx.isCurrent()) showUpload('The upload failed: the server could not be reached. Check your connection and try again.');
    });
    xhr.addEventListener('abort', () => {
      currentXhr = null;
      if (ctx.isCurrent()) {
        showUpload();
        say('Upload cancelled.');
      }
    });
    cancel.addEventListener('click', () => xhr.abort());
    xhr.send(file);
    cancel.focus();
  }

  function uploadError(e) {
    if (e.code === 'payload_too_large' && e.details.limit_bytes) return `the file is larger than the limit of ${fmtBytes(Number(e.details.limit_bytes))}.`;
    return describeError(e);
  }

  // ---- step 2: map the columns ------------------------------------------------------

  async function showMapping(up) {
    setStep(2);
    let preview;
    try {
      preview = await get(`/uploads/${up.id}/preview`);
    } catch (err) {
      showUpload(`${up.filename} cannot be imported: ${describeError(err)}`);
      return;
    }
    if (!ctx.isCurrent()) return;
    clear(stage);
    const attrDefs = await get('/contact-attributes').catch(() => []);
    const attrLabels = Object.fromEntries(attrDefs.map((d) => [d.key, d.label]));
    const attrFields = preview.fields.filter((f) => f.startsWith('attributes.'));
    const headers = preview.headers;
    const guesses = guessMapping(headers, preview.suggested_mapping, attrFields);

    const region = h('div', { class: 'form-error', role: 'alert', 'aria-live': 'assertive', tabindex: '-1' });
    const selects = [];
    const summary = h('p', { class: 'small', role: 'status', 'aria-live': 'polite', 'data-mapping-summary': '' });

    function optionsFor(sel) {
      clear(sel);
      sel.append(h('option', { value: '' }, 'Don’t import'),
        h('optgroup', { label: 'Contact' }, CONTACT_FIELDS.map((f) => h('option', { value: f }, fieldLabel(f)))),
        h('optgroup', { label: 'Custom attributes' },
          attrFields.map((f) => h('option', { value: f }, fieldLabel(f, attrLabels))),
          h('option', { value: '__new__' }, 'New custom attribute…')),
        h('optgroup', { label: 'Consent (yes / no, opted_in / opted_out)' }, CONSENT_FIELDS.map((f) => h('option', { value: f }, fieldLabel(f)))));
    }

    const mapTable = table({
      caption: 'Columns of the file and what they become',
      columns: [
        { label: 'Column in the file', cell: (c) => h('span', { class: 'primary-cell' }, c.header || h('span', { class: 'muted' }, `(column ${c.index + 1} has no name)`)) },
        { label: 'First values', cell: (c) => sampleValues(preview.rows, c.index) },
        { label: 'Import as', cell: (c) => c.select },
      ],
      rows: headers.map((hd, index) => {
        const sel = h('select', { class: 'map-select', 'aria-label': `Import column “${hd}” as`, 'data-column': hd });
        optionsFor(sel);
        sel.value = guesses[index] || '';
        sel.dataset.prev = sel.value;
        selects.push(sel);
        sel.addEventListener('change', () => onMapChange(sel, hd, index));
        return { header: hd, index, select: sel };
      }),
    });

    async function onMapChange(sel, hd, index) {
      if (sel.value === '__new__') {
        const created = await newAttribute(hd, index);
        if (!created) {
          sel.value = sel.dataset.prev || '';
          sel.focus();
          return;
        }
        attrFields.push(`attributes.${created.key}`);
        attrLabels[created.key] = created.label;
        for (const other of selects) {
          const v = other.value === '__new__' ? '' : other.value;
          optionsFor(other);
          other.value = v;
        }
        sel.value = `attributes.${created.key}`;
        sel.focus();
      }
      // One column per field: a field taken elsewhere moves here.
      if (sel.value) {
        for (const other of selects) {
          if (other !== sel && other.value === sel.value) {
            other.value = '';
            other.dataset.prev = '';
            say(`Column ${other.dataset.column} is no longer imported: ${fieldLabel(sel.value, attrLabels)} comes from ${hd} now.`);
          }
        }
      }
      sel.dataset.prev = sel.value;
      updateSummary();
    }

    async function newAttribute(hd, index) {
      const key = normalize(hd).replace(/^[^a-z]+/, '').slice(0, 64) || 'attribute';
      const kind = guessKind(preview.rows.map((r) => r[index]).filter((v) => v !== undefined && v !== ''));
      return formDialog({
        title: 'New custom attribute',
        description: `A typed field on every contact, filled from the column “${hd}”. Segments use it as attributes.<key>.`,
        submitLabel: 'Create attribute',
        build: () => [
          field({ label: 'Key', name: 'key', value: key, required: true, hint: 'Lower-case letters, digits and _, starting with a letter.', attrs: { maxlength: '64', autocomplete: 'off', pattern: '[a-z][a-z0-9_]*' } }),
          field({ label: 'Label', name: 'label', value: hd, attrs: { maxlength: '120', autocomplete: 'off' } }),
          field({ label: 'Kind', name: 'kind', value: kind, options: [['string', 'Text'], ['number', 'Number'], ['boolean', 'Yes / no'], ['date', 'Date']], hint: 'It cannot change later.' }),
        ],
        submit: (form) => post('/contact-attributes', { key: form.elements.key.value.trim(), label: form.elements.label.value.trim(), kind: form.elements.kind.value }),
      });
    }

    function mapping() {
      const m = {};
      selects.forEach((sel, i) => {
        if (sel.value && sel.value !== '__new__') m[sel.value] = headers[i];
      });
      return m;
    }

    function updateSummary() {
      const m = mapping();
      const n = Object.keys(m).length;
      summary.textContent = `${n} of ${plural(headers.length, 'column')} will be imported.`;
      summary.classList.toggle('text-warning', !IDENTITY.some((f) => m[f]));
    }

    // options
    const dedupeId = nextId('dedupe');
    const dedupe = h('fieldset', { class: 'fieldset', 'aria-describedby': `${dedupeId}-hint` },
      h('legend', null, 'Match existing contacts by'),
      h('div', { class: 'check-row' }, DEDUPE.map(([v, label]) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'dedupe_by', value: v, checked: true, 'data-dedupe': v }), label))),
      h('span', { id: `${dedupeId}-hint`, class: 'hint' }, 'Tried in this order. A row that matches an existing contact updates it; otherwise a new contact is created.'));
    const sep = field({ label: 'Tag separator', name: 'tag_separator', value: ';', hint: 'Between several tags in one cell.', attrs: { maxlength: '3', class: 'input-short', autocomplete: 'off' } });
    const enc = field({ label: 'Encoding', name: 'encoding', value: 'utf8', options: [['utf8', 'UTF-8 (most files)'], ['latin1', 'Latin-1 (older Excel exports)']] });
    const listSel = field({ label: 'Add everyone to a list', name: 'list_id', value: '', options: [['', 'No list'], ...lists.map((l) => [l.id, l.name])], hint: 'Optional.' });

    const start = h('button', { type: 'submit', class: 'btn btn-primary', 'data-action': 'start-import' }, 'Start import');
    const another = h('button', { type: 'button', class: 'btn' }, 'Choose another file');
    another.addEventListener('click', () => showUpload());

    const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'Import options' },
      region,
      h('div', { class: 'file-summary' }, h('strong', null, up.filename), h('span', { class: 'muted' }, ` · ${fmtBytes(up.size_bytes)} · ${plural(headers.length, 'column')}`)),
      mapTable.el,
      summary,
      rowsPreview(headers, preview.rows),
      h('div', { class: 'options-grid' }, dedupe, h('div', { class: 'form-grid' }, sep, enc, listSel)),
      h('div', { class: 'form-actions' }, start, another));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clear(region);
      const m = mapping();
      const dedupeBy = [...form.querySelectorAll('input[name="dedupe_by"]:checked')].map((x) => x.value);
      if (!Object.keys(m).length) {
        region.textContent = 'Choose what at least one column becomes.';
        region.focus();
        return;
      }
      if (!IDENTITY.some((f) => m[f])) {
        region.textContent = 'Map a name, phone, email or external ID column: a contact needs at least one of them.';
        region.focus();
        return;
      }
      if (!dedupeBy.length) {
        region.textContent = 'Choose at least one way to match existing contacts.';
        form.querySelector('input[name="dedupe_by"]').focus();
        return;
      }
      const body = {
        upload_id: up.id,
        mapping: m,
        dedupe_by: dedupeBy,
        tag_separator: sep.input.value || ';',
        encoding: enc.input.value,
      };
      if (listSel.input.value) body.list_id = listSel.input.value;
      await busy(start, async () => {
        try {
          const job = await post('/contacts/imports', body);
          uploadNames.set(up.id, up.filename);
          showProgress(job, up.filename);
        } catch (err) {
          showFormErrors(err, region, form);
          region.focus();
        }
      }, 'Starting…');
    });

    stage.append(card({
      title: 'Map the columns',
      subtitle: 'We guessed from the column names: check each one. Columns set to “Don’t import” are ignored.',
      body: form,
    }));
    updateSummary();
    const first = selects[0];
    if (first) first.focus();
    say(`${up.filename}: ${plural(headers.length, 'column')} found. Check what each becomes, then start the import.`);
  }

  // ---- step 3: the job -------------------------------------------------------------

  function showProgress(job, filename) {
    setStep(3);
    clear(stage);
    clearTimeout(pollTimer);
    history.replaceState(null, '', `#/contacts/import?job=${encodeURIComponent(job.id)}`);
    const name = filename || uploadNames.get(job.params && job.params.upload_id) || 'your file';
    const bar = h('progress', { 'aria-label': `Import of ${name}`, 'data-import-progress': '' });
    const statusBadge = h('span');
    const numbers = h('p', { class: 'progress-text', 'data-import-numbers': '' });
    const stats = h('div', { class: 'stats import-stats' });
    const results = h('div', { class: 'import-results' });
    const problem = h('div', { class: 'form-error', role: 'alert', 'aria-live': 'assertive' });
    const actions = h('div', { class: 'btn-row' });
    const box = h('div', { class: 'import-progress', 'data-import-job': job.id, 'data-import-status': job.status },
      h('div', { class: 'import-progress-head' }, statusBadge), bar, numbers, stats, problem, results, actions);
    const progressCard = card({ title: `Importing ${name}`, subtitle: `Job ${shortId(job.id)} · started ${new Date(job.created_at).toLocaleString()}`, body: box });
    stage.append(progressCard);
    const cardTitle = progressCard.querySelector('h2');

    const failed = failedCounter(job.id);
    let lastMilestone = -1;
    let errorsShown = false;
    let misses = 0;
    let cancelBtn = null;
    if (!FINAL.includes(job.status)) {
      cancelBtn = h('button', { type: 'button', class: 'btn btn-danger' }, 'Cancel import');
      cancelBtn.addEventListener('click', async () => {
        try {
          await busy(cancelBtn, () => post(`/jobs/${job.id}/cancel`, {}));
          toast('Cancellation requested: the import stops at its next checkpoint.');
        } catch (err) {
          problem.textContent = `Could not cancel: ${describeError(err)}`;
        }
      });
      actions.append(cancelBtn);
    }

    async function tick() {
      pollTimer = null;
      let j;
      let failedCount = null;
      try {
        j = await get(`/jobs/${job.id}`);
        // Newer servers report the failures with the progress; else count the error rows.
        failedCount = typeof j.progress_failed === 'number' ? j.progress_failed : await failed.count().catch(() => null);
        misses = 0;
        clear(problem);
      } catch (err) {
        if (!ctx.isCurrent()) return;
        if (err instanceof ApiError && err.status === 404) {
          problem.textContent = 'This import no longer exists, or it was started by someone else.';
          return;
        }
        misses += 1;
        problem.textContent = `Cannot reach the server (${describeError(err)}). Retrying…`;
        pollTimer = setTimeout(tick, Math.min(10_000, POLL_MS * 2 ** misses));
        return;
      }
      if (!ctx.isCurrent()) return;
      render(j, failedCount);
      if (FINAL.includes(j.status)) {
        finish(j);
        return;
      }
      pollTimer = setTimeout(tick, POLL_MS);
    }

    function render(j, failedSoFar) {
      box.dataset.importStatus = j.status;
      clear(statusBadge);
      statusBadge.append(badge(j.status));
      const total = j.progress_total;
      const done = j.progress_done;
      const failedN = j.result && typeof j.result.failed === 'number' ? j.result.failed : failedSoFar;
      if (total === null || total === undefined) {
        bar.removeAttribute('value');
        bar.removeAttribute('max');
        numbers.textContent = j.status === 'queued' ? 'Waiting for a worker…' : 'Counting the rows…';
      } else {
        bar.max = Math.max(total, 1);
        bar.value = total ? done : 1;
        const pct = total ? Math.floor((done / total) * 100) : 100;
        numbers.textContent = `${fmtNumber(done)} of ${plural(total, 'row')} · ${pct}%`;
        const milestone = pct - (pct % 25);
        if (milestone > lastMilestone && !FINAL.includes(j.status)) {
          lastMilestone = milestone;
          say(`Import ${milestone}% done: ${fmtNumber(done)} of ${fmtNumber(total)} rows${failedN ? `, ${fmtNumber(failedN)} failed` : ''}.`);
        }
      }
      bar.classList.toggle('is-done', j.status === 'succeeded');
      bar.classList.toggle('is-failed', j.status === 'failed');
      box.dataset.done = String(done);
      box.dataset.total = total === null || total === undefined ? '' : String(total);
      box.dataset.failed = failedN === null || failedN === undefined ? '' : String(failedN);
      clear(stats);
      const stat = (label, value, key, tone) => h('div', { class: tone ? `stat stat-${tone}` : 'stat', 'data-stat': key },
        h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value));
      if (j.result && typeof j.result === 'object' && FINAL.includes(j.status)) {
        stats.append(
          stat('Rows read', fmtNumber(j.result.rows ?? done), 'rows'),
          stat('Created', fmtNumber(j.result.created ?? 0), 'created', 'ok'),
          stat('Updated', fmtNumber(j.result.updated ?? 0), 'updated'),
          stat('Failed', fmtNumber(failedN ?? 0), 'failed', failedN ? 'bad' : null));
      } else {
        stats.append(
          stat('Rows done', fmtNumber(done), 'done'),
          stat('Failed so far', failedN === null || failedN === undefined ? '…' : fmtNumber(failedN), 'failed', failedN ? 'bad' : null),
          stat('Total rows', total === null || total === undefined ? '…' : fmtNumber(total), 'total'));
      }
    }

    async function finish(j) {
      if (cancelBtn) cancelBtn.remove();
      cardTitle.textContent = { succeeded: `Imported ${name}`, failed: `The import of ${name} failed`, cancelled: `The import of ${name} was cancelled` }[j.status];
      const failedN = j.result && typeof j.result.failed === 'number' ? j.result.failed : Number(box.dataset.failed || 0);
      clear(results);
      if (j.status === 'succeeded') {
        say(`Import finished: ${fmtNumber(j.result?.created ?? 0)} created, ${fmtNumber(j.result?.updated ?? 0)} updated, ${fmtNumber(failedN)} failed.`);
        results.append(h('p', { class: 'import-done' }, failedN
          ? `Done. ${plural(failedN, 'row')} could not be imported: download them, fix them and import that file.`
          : 'Done. Every row was imported.'));
      } else if (j.status === 'failed') {
        say(`Import failed: ${j.error || 'unknown error'}`);
        results.append(h('div', { class: 'form-error' }, `The import stopped: ${j.error || 'an unknown error'}. Rows before that point were imported.`));
      } else {
        say('Import cancelled.');
        results.append(h('p', null, 'The import was cancelled. Rows before that point were imported.'));
      }
      if (failedN > 0 && !errorsShown) {
        errorsShown = true;
        results.append(errorsPreview(j.id, failedN));
      }
      clear(actions);
      const listId = j.params && j.params.list_id;
      actions.append(
        h('a', { class: 'btn btn-primary', href: listId ? `#/contacts?list_id=${encodeURIComponent(listId)}` : '#/contacts' }, 'View contacts'),
        h('button', { type: 'button', class: 'btn', onclick: () => showUpload() }, 'Import another file'));
      loadRecent();
    }

    render(job, null);
    tick();
  }

  function errorsPreview(jobId, failedN) {
    const wrap = h('div', { class: 'errors-preview' });
    const link = h('a', { class: 'btn', href: `/api/v1/contacts/imports/${jobId}/errors.csv`, download: `import-${shortId(jobId)}-errors.csv`, 'data-action': 'download-errors' },
      downloadIcon(), `Download the ${plural(failedN, 'failed row')} (CSV)`);
    const t = table({
      caption: 'Rows that could not be imported',
      columns: [
        { label: 'Row', numeric: true, cell: (e) => fmtNumber(e.row_number) },
        { label: 'Problem', cell: (e) => h('ul', { class: 'plain-list' }, e.errors.map((m) => h('li', null, m))) },
        { label: 'The row', cell: (e) => h('code', { class: 'raw-row' }, e.raw) },
      ],
    });
    wrap.append(h('div', { class: 'errors-head' }, h('h3', null, 'Rows with problems'), link), t.el);
    get(`/contacts/imports/${jobId}/errors`, { limit: 20 }).then((p) => {
      t.setRows(p.items);
      if (p.next_cursor) wrap.append(h('p', { class: 'small muted' }, `The first ${p.items.length} of ${fmtNumber(failedN)}; the download has them all.`));
    }).catch((err) => wrap.append(h('p', { class: 'form-error' }, describeError(err))));
    return wrap;
  }

  /**
   * Counts an import's failed rows as it runs, for servers whose job view
   * has no `progress_failed` (the failures are its error rows). Pages forward
   * from where the last count stopped, so each poll reads only new errors.
   */
  function failedCounter(jobId) {
    let cursor;
    let counted = 0;
    return {
      async count() {
        for (let i = 0; i < 10; i += 1) {
          const page = await get(`/contacts/imports/${jobId}/errors`, { limit: 200, cursor });
          if (!page.next_cursor) return counted + page.items.length;
          counted += page.items.length;
          cursor = page.next_cursor;
        }
        return counted;
      },
    };
  }

  // ---- recent imports -----------------------------------------------------------------

  const uploadNames = new Map();
  const recentError = h('div', { class: 'form-error inset', role: 'alert' });
  const recent = table({
    caption: 'Recent imports',
    empty: 'No imports yet.',
    rowData: (j) => ({ job: j.id, status: j.status }),
    columns: [
      { label: 'File', cell: (j) => [h('span', { class: 'primary-cell', 'data-upload': j.params.upload_id }, uploadNames.get(j.params.upload_id) || `Upload ${shortId(j.params.upload_id)}`), h('span', { class: 'sub mono' }, `Job ${shortId(j.id)}`)] },
      { label: 'Status', cell: (j) => badge(j.status) },
      { label: 'Rows', numeric: true, class: 'nowrap', cell: (j) => (j.progress_total === null ? '—' : `${fmtNumber(j.progress_done)} / ${fmtNumber(j.progress_total)}`) },
      { label: 'Result', cell: (j) => resultText(j) },
      { label: 'Started', class: 'nowrap', cell: (j) => timeEl(j.created_at, true) },
      { label: h('span', { class: 'sr-only' }, 'Actions'), class: 'actions', cell: (j) => recentActions(j) },
    ],
  });
  const recentEmpty = emptyState({ iconName: 'jobs', title: 'No imports yet', text: 'Imports you start appear here with their results.' });
  let recentCursor = null;
  let recentRows = [];
  const recentMore = loadMoreButton(() => loadRecent(true));
  root.append(card({
    title: 'Recent imports',
    subtitle: isAdmin ? 'Everyone’s imports, newest first' : 'Your imports, newest first',
    flush: true,
    body: [recentError, recentEmpty, recent.el],
    foot: recentMore,
  }));

  function resultText(j) {
    if (j.error) return h('span', { class: 'small text-danger', title: j.error }, j.error.length > 60 ? `${j.error.slice(0, 60)}…` : j.error);
    if (j.result && typeof j.result === 'object') {
      const r = j.result;
      return h('span', { class: 'small' }, `${fmtNumber(r.created ?? 0)} created · ${fmtNumber(r.updated ?? 0)} updated · `,
        r.failed ? h('strong', { class: 'text-danger' }, `${fmtNumber(r.failed)} failed`) : '0 failed');
    }
    return h('span', { class: 'muted' }, '—');
  }

  function recentActions(j) {
    const open = h('button', { type: 'button', class: 'btn btn-sm' }, FINAL.includes(j.status) ? 'Details' : 'Follow', h('span', { class: 'sr-only' }, ` of job ${shortId(j.id)}`));
    open.addEventListener('click', () => {
      showProgress(j, uploadNames.get(j.params.upload_id));
      stage.scrollIntoView({ block: 'start', behavior: 'smooth' });
      const t = stage.querySelector('h2');
      if (t) {
        t.setAttribute('tabindex', '-1');
        t.focus();
      }
    });
    const out = [open];
    if (j.result && j.result.failed > 0) {
      out.push(h('a', { class: 'btn btn-sm', href: `/api/v1/contacts/imports/${j.id}/errors.csv`, download: `import-${shortId(j.id)}-errors.csv` }, 'Failed rows', h('span', { class: 'sr-only' }, ` of job ${shortId(j.id)}`)));
    }
    return out;
  }

  async function loadRecent(more = false) {
    try {
      // GET /jobs has every kind of job; keep the contact imports.
      const page = await get('/jobs', { limit: 100, cursor: more ? recentCursor : undefined });
      if (!ctx.isCurrent()) return;
      const items = page.items.filter((j) => j.kind === 'contact_import');
      recentRows = more ? [...recentRows, ...items] : items;
      recentCursor = page.next_cursor;
      recentMore.hidden = !recentCursor;
      await Promise.all([...new Set(recentRows.map((j) => j.params.upload_id))]
        .filter((id) => id && !uploadNames.has(id))
        .map((id) => get(`/uploads/${id}`).then((u) => uploadNames.set(id, u.filename)).catch(() => {})));
      if (!ctx.isCurrent()) return;
      recentEmpty.hidden = recentRows.length > 0;
      recent.el.hidden = recentRows.length === 0;
      recent.setRows(recentRows);
      clear(recentError);
    } catch (err) {
      recentError.textContent = `Could not load recent imports: ${describeError(err)}`;
    }
  }

  // ---- start ------------------------------------------------------------------------

  const jobId = ctx.params.get('job');
  await loadRecent();
  if (jobId) {
    try {
      const j = await get(`/jobs/${encodeURIComponent(jobId)}`);
      if (j.kind !== 'contact_import') throw new Error('That job is not a contact import.');
      showProgress(j, uploadNames.get(j.params.upload_id));
    } catch (err) {
      showUpload(`Could not open that import: ${describeError(err)}`);
    }
  } else {
    showUpload();
  }
  announce('Import contacts page');
}

// ---- helpers ------------------------------------------------------------------------

function normalize(header) {
  return String(header || '').trim().toLowerCase().replace(/[^\p{L}\p{N}]+/gu, '_').replace(/^_+|_+$/g, '');
}

/** Column index -> field, from the server's guesses, then a few more spellings. */
function guessMapping(headers, suggested, attrFields) {
  const out = {};
  const taken = new Set();
  for (const [f, col] of Object.entries(suggested || {})) {
    const i = headers.indexOf(col);
    if (i >= 0 && out[i] === undefined && !taken.has(f)) {
      out[i] = f;
      taken.add(f);
    }
  }
  headers.forEach((hd, i) => {
    if (out[i] !== undefined) return;
    const n = normalize(hd);
    let f = null;
    if (CONTACT_FIELDS.includes(n)) f = n;
    else if (CONSENT_FIELDS.includes(n.replace('_', '.'))) f = n.replace('_', '.');
    if (!f) f = Object.keys(EXTRA_ALIASES).find((k) => EXTRA_ALIASES[k].includes(n)) || null;
    if (!f && attrFields.includes(`attributes.${n}`)) f = `attributes.${n}`;
    if (f && !taken.has(f)) {
      out[i] = f;
      taken.add(f);
    }
  });
  return out;
}

function guessKind(values) {
  if (!values.length) return 'string';
  if (values.every((v) => /^-?\d+(\.\d+)?$/.test(v.trim()))) return 'number';
  if (values.every((v) => /^(true|false|yes|no|y|n|0|1)$/i.test(v.trim()))) return 'boolean';
  if (values.every((v) => /^\d{4}-\d{2}-\d{2}/.test(v.trim()))) return 'date';
  return 'string';
}

function sampleValues(rows, index) {
  const vals = rows.slice(0, 3).map((r) => r[index]).filter((v) => v !== undefined && v !== '');
  if (!vals.length) return h('span', { class: 'muted small' }, 'Empty in the first rows');
  return h('ul', { class: 'samples' }, vals.map((v) => h('li', null, v)));
}

function rowsPreview(headers, rows) {
  const t = table({
    caption: 'The first rows of the file',
    columns: headers.map((hd, i) => ({ label: hd || `Column ${i + 1}`, cell: (r) => (r[i] === undefined ? '' : r[i]) })),
    rows,
    empty: 'The file has a header row but no data.',
  });
  return h('details', { class: 'rows-preview' }, h('summary', null, `Preview the first ${plural(rows.length, 'row')}`), t.el);
}
