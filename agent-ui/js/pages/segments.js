// Contacts > Segments: an expression editor with the tenant's field
// reference beside it (click to insert), a live count as you type (debounced,
// POST /segments/preview), errors pointed at their line and column, and the
// saved segments with their counts. Supervisors can try expressions; saving
// is for marketers and admins.

import { h, clear, nextId, timeEl } from '/js/dom.js';
import { get, getAll, post, patch, del, describeError, ApiError } from '/js/api.js';
import {
  pageHeader, card, table, field, errorRegion, busy, toast, confirmDialog, emptyState, callout, announce,
} from '/js/ui.js';
import { canManage, showFormErrors, clearFormErrors, debounce, fmtNumber, plural, cardHref } from '/js/pages/contacts-shared.js';

const PREVIEW_DELAY_MS = 300;

const EXAMPLES = [
  ['VIPs who agreed to email', 'tags has "vip" and consent.email = "opted_in"'],
  ['Spanish or English speakers', 'language in ["es", "en"]'],
  ['Has a phone but no email', 'phone is set and email is not set'],
  ['Never opted out of texts', 'not consent.sms = "opted_out"'],
  ['Added since a date', 'created_at >= "2026-01-01"'],
];

const OPERATORS = [
  ['=', ' = ""', 'equals'],
  ['!=', ' != ""', 'differs from'],
  ['<  >', ' > ', 'compare numbers and dates (also <=, >=)'],
  ['has', ' has ""', 'a tag, phone or email is present'],
  ['in', ' in ["", ""]', 'one of several values'],
  ['contains', ' contains ""', 'text contains (case-sensitive)'],
  ['starts_with', ' starts_with ""', 'text starts with'],
  ['is set', ' is set', 'has any value'],
  ['is not set', ' is not set', 'has no value'],
  ['and', ' and ', 'both must match'],
  ['or', ' or ', 'either may match'],
  ['not', 'not ', 'the opposite'],
  ['( )', '()', 'group conditions'],
];

export default async function segments(root, ctx) {
  const manage = canManage(ctx.me.role);
  root.append(pageHeader('Segments', 'Audiences defined by rules: who matches is worked out when a segment is used, so it stays current.', null,
    h('a', { href: '#/contacts', class: 'crumb-link' }, 'Contacts')));

  const [fields, attrDefs, initial] = await Promise.all([
    get('/segments/fields'),
    get('/contact-attributes'),
    getAll('/segments'),
  ]);
  const attrLabel = Object.fromEntries(attrDefs.map((d) => [d.key, d.label]));
  const rows = initial;
  let editingId = null;

  // ---- the builder
  const region = errorRegion();
  const nameField = field({ label: 'Name', name: 'name', required: true, attrs: { maxlength: '120', autocomplete: 'off' } });
  const descField = field({ label: 'Description', name: 'description', hint: 'Optional, for your team.', attrs: { maxlength: '1000', autocomplete: 'off' } });
  const exprId = nextId('expr');
  const expr = h('textarea', {
    id: exprId, name: 'expression', rows: '5', class: 'expr-input', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off',
    'aria-describedby': `${exprId}-hint ${exprId}-error ${exprId}-count`, placeholder: 'e.g. tags has "vip" and consent.sms = "opted_in"', maxlength: '4096',
  });
  const backdrop = h('div', { class: 'expr-backdrop', 'aria-hidden': 'true' });
  expr.addEventListener('scroll', () => {
    backdrop.scrollTop = expr.scrollTop;
    backdrop.scrollLeft = expr.scrollLeft;
  });
  const exprError = h('div', { id: `${exprId}-error`, class: 'expr-error', 'data-expr-error': '', hidden: true });
  const liveCount = h('div', { id: `${exprId}-count`, class: 'live-count', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true', 'data-live-count': '' });
  const sampleBox = h('div', { class: 'sample', 'data-sample': '' });
  const saveBtn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save segment');
  const newBtn = h('button', { type: 'button', class: 'btn', hidden: true }, 'Cancel editing');
  const editingNote = h('p', { class: 'small muted', hidden: true });

  const builderForm = h('form', { class: 'form', novalidate: true, 'aria-label': 'Segment builder' },
    region,
    manage ? h('div', { class: 'form-grid' }, nameField, descField) : null,
    h('div', { class: 'field' },
      h('label', { for: exprId }, 'Expression'),
      h('div', { class: 'expr-wrap' }, backdrop, expr),
      h('span', { id: `${exprId}-hint`, class: 'hint' }, 'Combine conditions with and, or, not and parentheses; put text in quotes. Click a field or operator on the right to insert it.'),
      exprError),
    liveCount,
    sampleBox,
    manage ? h('div', { class: 'form-actions' }, saveBtn, newBtn, editingNote) : null);

  const builderCard = card({
    title: 'Segment builder',
    subtitle: manage ? 'The count updates as you type.' : 'Try an expression; the count updates as you type. Saving segments is for marketers and admins.',
    body: builderForm,
  });
  const refCard = card({ title: 'Field reference', subtitle: 'Click to insert at the cursor', body: reference() });
  refCard.classList.add('ref-card');
  root.append(h('div', { class: 'grid grid-main-side grid-top' }, builderCard, refCard));

  // ---- live count
  let previewSeq = 0;
  let previewAbort = null;
  let lastError = null;

  function setCountIdle() {
    clear(liveCount);
    liveCount.dataset.state = 'idle';
    delete liveCount.dataset.count;
    delete liveCount.dataset.expression;
    liveCount.append(h('span', { class: 'muted' }, 'Type an expression to see how many contacts match.'));
    clear(sampleBox);
  }

  async function preview() {
    const text = expr.value;
    const mine = ++previewSeq;
    if (previewAbort) previewAbort.abort();
    if (!text.trim()) {
      showExprError(null);
      setCountIdle();
      return;
    }
    previewAbort = new AbortController();
    liveCount.dataset.state = 'loading';
    liveCount.setAttribute('aria-busy', 'true');
    try {
      const r = await post('/segments/preview', { expression: text }, { signal: previewAbort.signal });
      if (mine !== previewSeq || !ctx.isCurrent()) return;
      showExprError(null);
      clear(liveCount);
      liveCount.dataset.state = 'ok';
      liveCount.dataset.count = String(r.count);
      liveCount.dataset.expression = text;
      liveCount.append(h('span', { class: 'live-number' }, fmtNumber(r.count)), ' ', r.count === 1 ? 'contact matches' : 'contacts match');
      clear(sampleBox);
      if (r.sample.length) {
        sampleBox.append(h('h3', null, r.count > r.sample.length ? `The first ${r.sample.length}` : 'They are'),
          h('ul', { class: 'sample-list' }, r.sample.map((c) => h('li', null,
            h('a', { href: cardHref(c.id) }, c.name || c.emails[0] || (c.phones[0] && c.phones[0].number) || 'Unnamed contact'),
            c.phones[0] ? h('span', { class: 'muted mono small' }, ` ${c.phones[0].number}`) : null))));
      }
    } catch (err) {
      if ((err && err.name === 'AbortError') || mine !== previewSeq || !ctx.isCurrent()) return;
      clear(liveCount);
      clear(sampleBox);
      delete liveCount.dataset.count;
      delete liveCount.dataset.expression;
      if (err instanceof ApiError && err.code === 'validation_failed') {
        liveCount.dataset.state = 'invalid';
        liveCount.append(h('span', { class: 'muted' }, 'No count: the expression has a problem.'));
        showExprError(err);
      } else {
        liveCount.dataset.state = 'error';
        liveCount.append(h('span', { class: 'text-danger' }, `Could not count: ${describeError(err)}`));
      }
    } finally {
      if (mine === previewSeq) liveCount.removeAttribute('aria-busy');
    }
  }
  const typed = debounce(preview, PREVIEW_DELAY_MS);
  expr.addEventListener('input', () => {
    // Old error marks would point at the wrong place while the user types.
    if (lastError) paintBackdrop(null);
    typed();
  });
  ctx.onCleanup(() => {
    typed.cancel();
    if (previewAbort) previewAbort.abort();
  });

  /** Index into the JS string of the API's character position (code points). */
  function jsIndex(text, position) {
    return Array.from(text).slice(0, position).join('').length;
  }

  function paintBackdrop(err) {
    clear(backdrop);
    const text = expr.value;
    if (!err) {
      backdrop.append(text);
      return;
    }
    const at = Math.min(jsIndex(text, err.position), text.length);
    const cp = text.codePointAt(at);
    const len = at < text.length && text[at] !== '\n' ? String.fromCodePoint(cp).length : 0;
    backdrop.append(text.slice(0, at),
      h('mark', { class: 'expr-mark' }, len ? text.slice(at, at + len) : ' '),
      text.slice(at + len));
  }

  function showExprError(err) {
    clear(exprError);
    const pos = err && err.details && Number.isInteger(err.details.position) ? err.details : null;
    lastError = pos;
    if (err) expr.setAttribute('aria-invalid', 'true');
    else expr.removeAttribute('aria-invalid');
    paintBackdrop(pos);
    if (!err) {
      exprError.hidden = true;
      return;
    }
    exprError.hidden = false;
    const f = err.fields.find((x) => x.path === 'expression');
    const message = f ? f.message : describeError(err);
    exprError.append(h('p', { class: 'expr-error-message' }, capital(message)));
    if (pos) {
      const text = expr.value;
      const lines = text.split('\n');
      const line = lines[pos.line - 1] ?? '';
      const col = Math.max(1, pos.column);
      const chars = Array.from(line);
      const before = chars.slice(0, col - 1).join('');
      const at = chars[col - 1] ?? ' ';
      const after = chars.slice(col).join('');
      const pointer = h('pre', { class: 'expr-pointer', 'aria-hidden': 'true', 'data-column': String(col) },
        h('span', { class: 'expr-lineno' }, `${pos.line} │ `), before, h('mark', null, at), after, '\n',
        h('span', { class: 'expr-lineno' }, `${' '.repeat(String(pos.line).length)} │ `), ' '.repeat(Array.from(before).length), h('span', { class: 'expr-caret' }, '^'));
      const go = h('button', { type: 'button', class: 'btn btn-sm' }, `Go to line ${pos.line}, column ${col}`);
      go.addEventListener('click', () => {
        const start = jsIndex(expr.value, pos.position);
        expr.focus();
        expr.setSelectionRange(start, Math.min(expr.value.length, start + (expr.value[start] && expr.value[start] !== '\n' ? 1 : 0)));
      });
      exprError.append(pointer, go);
    }
  }

  function insert(text, cursorBack = 0) {
    const start = expr.selectionStart ?? expr.value.length;
    const end = expr.selectionEnd ?? start;
    const before = expr.value.slice(0, start);
    const after = expr.value.slice(end);
    let t = text;
    let back = cursorBack;
    if (!before) t = t.trimStart();
    else if (!/[\s([]$/.test(before) && !/^\s/.test(t)) t = ` ${t}`;
    if (after && !/^[\s)\],]/.test(after) && !/\s$/.test(t)) {
      t = `${t} `;
      if (back) back += 1;
    }
    expr.setRangeText(t, start, end, 'end');
    if (back) {
      const p = expr.selectionEnd - back;
      expr.setSelectionRange(p, p);
    }
    expr.focus();
    expr.dispatchEvent(new Event('input', { bubbles: true }));
  }

  function refButton(label, onClick, title, data) {
    const b = h('button', { type: 'button', class: 'ref-btn', title, dataset: data }, label);
    b.addEventListener('click', onClick);
    return b;
  }

  function reference() {
    const builtIn = fields.fields.filter((f) => f !== 'attributes.<key>');
    const box = h('div', { class: 'ref' });
    box.append(h('h3', null, 'Fields'),
      h('div', { class: 'ref-group' }, builtIn.map((f) => refButton(f, () => insert(f), `Insert ${f}`, { insert: f }))));
    box.append(h('h3', null, 'Custom attributes'),
      fields.attributes.length
        ? h('div', { class: 'ref-group' }, fields.attributes.map((a) => refButton(
          [h('span', null, `attributes.${a.key}`), h('span', { class: 'ref-kind' }, a.kind)],
          () => insert(`attributes.${a.key}`), `${attrLabel[a.key] || a.key} (${a.kind})`, { insert: `attributes.${a.key}` })))
        : h('p', { class: 'small muted' }, 'None defined yet. Import a CSV to create some.'));
    box.append(h('h3', null, 'Lists'),
      fields.lists.length
        ? h('div', { class: 'ref-group' }, fields.lists.map((l) => refButton(`in_list "${l}"`, () => insert(`in_list ${quote(l)}`), `Members of ${l}`)))
        : h('p', { class: 'small muted' }, 'No lists yet.'));
    box.append(h('h3', null, 'Operators'),
      h('div', { class: 'ref-group' }, OPERATORS.map(([label, text, help]) => refButton(label, () => {
        const back = text.endsWith('"", ""]') ? 6 : text.endsWith('""') ? 1 : text === '()' ? 1 : 0;
        insert(text, back);
      }, help))));
    box.append(h('h3', null, 'Consent values'),
      h('p', { class: 'small muted' }, h('code', null, 'consent.sms = "opted_in"'), ', ', h('code', null, '"opted_out"'), ' or ', h('code', null, '"unknown"'), '.'));
    box.append(h('h3', null, 'Examples'),
      h('ul', { class: 'ref-examples' }, EXAMPLES.map(([label, text]) => h('li', null,
        refButton(h('code', null, text), () => {
          expr.value = text;
          expr.focus();
          expr.setSelectionRange(text.length, text.length);
          expr.dispatchEvent(new Event('input', { bubbles: true }));
        }, `Use: ${label}`),
        h('span', { class: 'small muted' }, label)))));
    return box;
  }

  // ---- save
  builderForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!manage) return;
    clearFormErrors(builderForm, region);
    const body = { name: nameField.input.value.trim(), description: descField.input.value.trim(), expression: expr.value };
    if (!body.name) {
      nameField.input.setAttribute('aria-invalid', 'true');
      builderForm.querySelector(`#${CSS.escape(nameField.input.id)}-error`).textContent = 'Name: give the segment a name.';
      nameField.input.focus();
      return;
    }
    await busy(saveBtn, async () => {
      try {
        const saved = editingId ? await patch(`/segments/${editingId}`, body) : await post('/segments', body);
        const i = rows.findIndex((r) => r.id === saved.id);
        if (i >= 0) rows[i] = saved;
        else rows.unshift(saved);
        counts.delete(saved.id);
        renderTable();
        toast(editingId ? `Segment “${saved.name}” saved.` : `Segment “${saved.name}” created.`);
        announce(`Segment ${saved.name} saved.`);
        startNew(false);
        const row = savedTable.tbody.querySelector(`tr[data-segment="${CSS.escape(saved.id)}"]`);
        if (row) row.classList.add('is-new');
      } catch (err) {
        showFormErrors(err, region, builderForm);
        if (err instanceof ApiError && err.fields.some((f) => f.path === 'expression')) showExprError(err);
      }
    }, 'Saving…');
  });

  function startNew(focus = true) {
    editingId = null;
    builderForm.reset();
    clearFormErrors(builderForm, region);
    showExprError(null);
    setCountIdle();
    saveBtn.textContent = 'Save segment';
    newBtn.hidden = true;
    editingNote.hidden = true;
    if (focus) (manage ? nameField.input : expr).focus();
  }
  newBtn.addEventListener('click', () => startNew());

  function edit(sg) {
    editingId = manage ? sg.id : null;
    clearFormErrors(builderForm, region);
    nameField.input.value = sg.name;
    descField.input.value = sg.description;
    expr.value = sg.expression;
    if (manage) {
      saveBtn.textContent = 'Save changes';
      newBtn.hidden = false;
      editingNote.hidden = false;
      editingNote.textContent = `Editing “${sg.name}”.`;
    }
    builderCard.scrollIntoView({ block: 'start', behavior: 'smooth' });
    expr.focus();
    preview();
  }

  // ---- saved segments
  const counts = new Map();
  const tableError = h('div', { class: 'form-error inset', role: 'alert', 'aria-live': 'assertive' });
  const savedTable = table({
    caption: 'Saved segments',
    empty: 'No saved segments yet.',
    rowData: (sg) => ({ segment: sg.id }),
    columns: [
      { label: 'Segment', cell: (sg) => [h('span', { class: 'primary-cell' }, sg.name), sg.description ? h('span', { class: 'sub' }, sg.description) : null] },
      { label: 'Expression', cell: (sg) => h('code', { class: 'expr-cell', title: sg.expression }, sg.expression) },
      { label: 'Contacts', numeric: true, cell: (sg) => countCell(sg) },
      { label: 'Updated', class: 'nowrap', cell: (sg) => timeEl(sg.updated_at, true) },
      { label: h('span', { class: 'sr-only' }, 'Actions'), class: 'actions', cell: (sg) => actions(sg) },
    ],
  });
  const emptyBox = emptyState({ iconName: 'users', title: 'No saved segments yet', text: manage ? 'Write an expression above, check the count, give it a name and save it.' : 'Segments appear here when your marketing team saves them.' });

  function countCell(sg) {
    const el = h('span', { 'data-segment-count': '' }, '…');
    el.setAttribute('aria-label', 'Counting');
    const known = counts.get(sg.id);
    const show = (v) => {
      el.removeAttribute('aria-label');
      if (typeof v === 'number') {
        el.textContent = fmtNumber(v);
        el.dataset.segmentCount = String(v);
      } else {
        el.textContent = 'Error';
        el.title = v;
        el.classList.add('text-danger');
      }
    };
    if (known !== undefined) show(known);
    else {
      get(`/segments/${sg.id}/count`).then((r) => {
        counts.set(sg.id, r.count);
        show(r.count);
      }).catch((err) => show(describeError(err)));
    }
    return el;
  }

  function actions(sg) {
    const open = h('button', { type: 'button', class: 'btn btn-sm' }, manage ? 'Edit' : 'Open', h('span', { class: 'sr-only' }, ` ${sg.name}`));
    open.addEventListener('click', () => edit(sg));
    const view = h('a', { class: 'btn btn-sm', href: `#/contacts?segment_id=${encodeURIComponent(sg.id)}` }, 'View contacts', h('span', { class: 'sr-only' }, ` in ${sg.name}`));
    if (!manage) return [open, view];
    const remove = h('button', { type: 'button', class: 'btn btn-sm btn-danger' }, 'Delete', h('span', { class: 'sr-only' }, ` ${sg.name}`));
    remove.addEventListener('click', async () => {
      clear(tableError);
      const ok = await confirmDialog({
        title: `Delete the segment “${sg.name}”?`,
        message: 'No contact is deleted: only the rule goes.',
        confirmLabel: 'Delete segment',
        danger: true,
      });
      if (!ok) {
        remove.focus();
        return;
      }
      try {
        await busy(remove, () => del(`/segments/${sg.id}`));
        rows.splice(rows.findIndex((r) => r.id === sg.id), 1);
        if (editingId === sg.id) startNew(false);
        renderTable();
        toast(`Segment “${sg.name}” deleted.`);
        builderCard.querySelector('textarea').focus();
      } catch (err) {
        tableError.textContent = `Could not delete the segment: ${describeError(err)}`;
      }
    });
    return [open, view, remove];
  }

  const savedCount = h('span', { class: 'small muted' });
  function renderTable() {
    emptyBox.hidden = rows.length > 0;
    savedTable.el.hidden = rows.length === 0;
    savedTable.setRows(rows);
    savedCount.textContent = plural(rows.length, 'segment');
  }
  root.append(card({ title: 'Saved segments', subtitle: 'Counts are worked out now', actions: savedCount, flush: true, body: [tableError, emptyBox, savedTable.el] }));
  if (!manage) root.insertBefore(callout({ title: 'Read-only', text: 'You can try expressions and see counts. Marketers and admins save and change segments.' }), root.children[1]);

  renderTable();
  setCountIdle();
  paintBackdrop(null);
}

function quote(s) {
  return `"${String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function capital(s) {
  return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
}
