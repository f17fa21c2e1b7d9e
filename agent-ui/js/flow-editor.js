// A small code editor for IVR flows (Rhai) and their tests (TOML): a
// <textarea> laid exactly over a <pre> that shows the highlighted text, a
// line-number gutter, Tab to indent, and diagnostics marked inline (a wavy
// underline on the line, a marker in the gutter whose title is the message).
// Everything reaches the page as text nodes (no innerHTML) and presentation
// is classes only (the console's CSP forbids style attributes).
//
//   const ed = createCodeEditor({ language: 'rhai', label: 'Flow script', value, onChange });
//   root.append(ed.el);
//   ed.setDiagnostics([{severity: 'error', line: 3, column: 5, message: '…'}]);
//   ed.goTo(3, 5);

import { h, clear, nextId } from '/js/dom.js';

const INDENT = '    ';

// ---- Rhai ------------------------------------------------------------------------

export const RHAI_KEYWORDS = new Set([
  'let', 'const', 'if', 'else', 'switch', 'while', 'loop', 'for', 'in', 'do', 'until', 'break', 'continue',
  'return', 'fn', 'throw', 'try', 'catch', 'true', 'false', 'import', 'export', 'as', 'private',
]);

/** The flow API's functions, highlighted apart from other calls. */
export const FLOW_API = new Set([
  'answer', 'play', 'say', 'gather', 'menu', 'listen', 'ask', 'record', 'get', 'set', 'lookup_contact',
  'open_now', 'now', 'queue', 'transfer', 'hangup', 'log', 'http_get', 'http_post',
]);

// Sticky patterns, tried in order at each position.
const RHAI_RULES = [
  ['comment', /\/\/[^\n]*/y],
  ['comment', /\/\*[\s\S]*?(?:\*\/|$)/y],
  ['string', /"(?:[^"\\\n]|\\[\s\S])*"?/y],
  ['string', /`(?:[^`\\]|\\[\s\S])*`?/y],
  ['string', /'(?:[^'\\\n]|\\.){1,8}'/y],
  ['number', /0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?/y],
  ['ident', /[A-Za-z_][A-Za-z0-9_]*/y],
  ['punct', /#\{|[{}()[\];,.]/y],
  ['op', /[=!<>+\-*/%&|^~?:]+/y],
  ['space', /\s+/y],
];

/**
 * The token at `i`: the first rule that matches there (a one-character
 * "plain" token when none does), as {type, text}.
 */
function tokenAt(src, i, rules) {
  for (const [type, re] of rules) {
    re.lastIndex = i;
    const m = re.exec(src);
    if (m && m[0].length) return { type, text: m[0] };
  }
  return { type: 'plain', text: src[i] };
}

/** [{type, text}] for Rhai source; the texts add up to `src`. */
export function tokenizeRhai(src) {
  const out = [];
  let i = 0;
  while (i < src.length) {
    const tok = tokenAt(src, i, RHAI_RULES);
    if (tok.type === 'ident') {
      const word = tok.text;
      if (RHAI_KEYWORDS.has(word)) tok.type = word === 'true' || word === 'false' ? 'bool' : 'keyword';
      else {
        // A call: the name followed by "(" (spaces allowed). Method calls
        // (after a dot) are plain calls, not the flow API.
        let j = i + word.length;
        while (src[j] === ' ' || src[j] === '\t') j += 1;
        if (src[j] === '(') {
          const prev = prevNonSpace(src, i);
          tok.type = FLOW_API.has(word) && prev !== '.' ? 'api' : 'call';
        } else {
          tok.type = 'plain';
        }
      }
    }
    out.push(tok);
    i += tok.text.length;
  }
  return out;
}

function prevNonSpace(src, i) {
  let j = i - 1;
  while (j >= 0 && (src[j] === ' ' || src[j] === '\t')) j -= 1;
  return j >= 0 ? src[j] : '';
}

// ---- TOML (light) --------------------------------------------------------------------

const TOML_RULES = [
  ['comment', /#[^\n]*/y],
  ['string', /"""[\s\S]*?(?:"""|$)/y],
  ['string', /'''[\s\S]*?(?:'''|$)/y],
  ['string', /"(?:[^"\\\n]|\\.)*"?/y],
  ['string', /'[^'\n]*'?/y],
  ['number', /\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?/y],
  ['number', /[+-]?\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?/y],
  ['bool', /\b(?:true|false)\b/y],
  ['key', /[A-Za-z0-9_-]+(?=\s*=)/y],
  ['plain', /[A-Za-z0-9_-]+/y],
  ['space', /\s+/y],
];

/** [{type, text}] for TOML; table headers ([x], [[x]]) at the start of a line are "section". */
export function tokenizeToml(src) {
  const out = [];
  let i = 0;
  let lineStart = true;
  while (i < src.length) {
    if (lineStart) {
      const header = /[ \t]*\[\[?[^\]\n]*\]\]?/y;
      header.lastIndex = i;
      const m = header.exec(src);
      if (m) {
        const lead = m[0].match(/^[ \t]*/)[0];
        if (lead) out.push({ type: 'space', text: lead });
        out.push({ type: 'section', text: m[0].slice(lead.length) });
        i += m[0].length;
        lineStart = false;
        continue;
      }
    }
    const tok = tokenAt(src, i, TOML_RULES);
    out.push(tok);
    i += tok.text.length;
    lineStart = src[i - 1] === '\n';
  }
  return out;
}

const TOKENIZERS = { rhai: tokenizeRhai, toml: tokenizeToml };

// ---- the editor ---------------------------------------------------------------------------

/**
 * createCodeEditor({language, label, value, readOnly, onChange, rows, describedBy, testId})
 * Returns {el, input, getValue, setValue, setDiagnostics, goTo, focus}.
 */
export function createCodeEditor({ language = 'rhai', label, value = '', readOnly = false, onChange, rows = 20, describedBy, testId } = {}) {
  const tokenize = TOKENIZERS[language] || ((s) => [{ type: 'plain', text: s }]);
  const id = nextId('code');
  const hintId = `${id}-hint`;
  let diagnostics = [];
  let escaped = false; // after Escape, Tab leaves the editor (no keyboard trap)

  // The gutter's numbers are positioned out of the flow: the textarea alone
  // sets the editor's height, and the numbers scroll with it.
  const gutter = h('div', { class: 'code-gutter-lines' });
  const gutterBox = h('div', { class: 'code-gutter', 'aria-hidden': 'true' }, gutter);
  const code = h('code');
  const pre = h('pre', { class: `code-highlight lang-${language}`, 'aria-hidden': 'true' }, code);
  const input = h('textarea', {
    id,
    class: 'code-input',
    rows: String(rows),
    wrap: 'off',
    spellcheck: 'false',
    autocapitalize: 'off',
    autocomplete: 'off',
    autocorrect: 'off',
    readonly: readOnly,
    'aria-label': label,
    'aria-describedby': [readOnly ? null : hintId, describedBy].filter(Boolean).join(' ') || null,
    'data-code-input': testId || language,
  });
  input.value = value;
  const body = h('div', { class: 'code-body' }, pre, input);
  const el = h('div', { class: readOnly ? 'code-editor is-readonly' : 'code-editor', 'data-code-editor': testId || language },
    h('div', { class: 'code-frame' }, gutterBox, body),
    readOnly ? null : h('p', { id: hintId, class: 'code-hint' },
      'Tab indents, Shift+Tab outdents; press Esc, then Tab, to leave the editor.'));

  function render() {
    const text = input.value;
    const lines = splitLines(tokenize(text));
    const byLine = new Map();
    for (const d of diagnostics) {
      if (!d.line) continue;
      const cur = byLine.get(d.line);
      if (!cur || (cur.severity !== 'error' && d.severity === 'error')) byLine.set(d.line, { ...d, messages: [...((cur && cur.messages) || []), d.message] });
      else cur.messages.push(d.message);
    }
    clear(code);
    const frag = document.createDocumentFragment();
    lines.forEach((toks, idx) => {
      if (idx) frag.append('\n');
      const nodes = toks.map((t) => (t.type === 'plain' || t.type === 'space' || t.type === 'op'
        ? document.createTextNode(t.text)
        : h('span', { class: `tok-${t.type}` }, t.text)));
      const diag = byLine.get(idx + 1);
      if (diag && nodes.length) {
        // Leading indentation stays out of the underline.
        let start = 0;
        while (start < toks.length && toks[start].type === 'space') start += 1;
        frag.append(...nodes.slice(0, start));
        frag.append(h('span', { class: `code-diag code-diag-${diag.severity === 'error' ? 'error' : 'warning'}`, 'data-diag-line': String(idx + 1) },
          ...(start < nodes.length ? nodes.slice(start) : [' '])));
      } else if (diag) {
        frag.append(h('span', { class: `code-diag code-diag-${diag.severity === 'error' ? 'error' : 'warning'}`, 'data-diag-line': String(idx + 1) }, ' '));
      } else {
        frag.append(...nodes);
      }
    });
    // A last newline keeps the last line's height; the padding keeps the
    // highlight scrollable as far as the textarea (its scrollbars).
    frag.append('\n');
    code.append(frag);

    // The gutter: one number per line; diagnostics marked, with their message.
    clear(gutter);
    const gfrag = document.createDocumentFragment();
    for (let n = 1; n <= lines.length; n += 1) {
      const diag = byLine.get(n);
      gfrag.append(h('div', {
        class: diag ? `code-ln has-${diag.severity === 'error' ? 'error' : 'warning'}` : 'code-ln',
        title: diag ? diag.messages.join('\n') : null,
        'data-gutter-line': diag ? String(n) : null,
      }, String(n)));
    }
    gutter.append(gfrag);
    syncScroll();
  }

  function syncScroll() {
    pre.scrollTop = input.scrollTop;
    pre.scrollLeft = input.scrollLeft;
    gutter.scrollTop = input.scrollTop;
  }

  input.addEventListener('input', () => {
    render();
    if (onChange) onChange(input.value);
  });
  input.addEventListener('scroll', syncScroll);

  input.addEventListener('keydown', (e) => {
    if (readOnly) return;
    if (e.key === 'Escape') {
      escaped = true;
      return;
    }
    if (e.key === 'Tab' && !e.ctrlKey && !e.metaKey && !e.altKey) {
      if (escaped) {
        escaped = false;
        return; // let focus move on
      }
      e.preventDefault();
      if (e.shiftKey) outdent();
      else indent();
      return;
    }
    escaped = false;
    if (e.key === 'Enter' && !e.shiftKey && !e.ctrlKey && !e.metaKey && !e.altKey && !e.isComposing) {
      // Keeps the current line's indentation, one more after "{" / "[" / "(".
      const { selectionStart: a } = input;
      const text = input.value;
      const lineStart = text.lastIndexOf('\n', a - 1) + 1;
      const line = text.slice(lineStart, a);
      let lead = line.match(/^[ \t]*/)[0];
      if (/[{[(]\s*$/.test(line)) lead += INDENT;
      if (!lead) return;
      e.preventDefault();
      insertText(`\n${lead}`);
    }
  });
  input.addEventListener('blur', () => { escaped = false; });

  /** Inserts at the selection, through the browser's editing (undo keeps working). */
  function insertText(t) {
    input.focus();
    let ok = false;
    try {
      ok = document.execCommand('insertText', false, t);
    } catch {
      ok = false;
    }
    if (!ok) {
      input.setRangeText(t, input.selectionStart, input.selectionEnd, 'end');
      input.dispatchEvent(new Event('input', { bubbles: true }));
    }
  }

  function selectedLines() {
    const text = input.value;
    const a = input.selectionStart;
    let b = input.selectionEnd;
    if (b > a && text[b - 1] === '\n') b -= 1;
    const start = text.lastIndexOf('\n', a - 1) + 1;
    let end = text.indexOf('\n', b);
    if (end < 0) end = text.length;
    return { start, end, text: text.slice(start, end) };
  }

  function indent() {
    const { selectionStart: a, selectionEnd: b } = input;
    const text = input.value;
    if (a === b || !text.slice(a, b).includes('\n')) {
      // Up to the next multiple of four columns.
      const col = a - (text.lastIndexOf('\n', a - 1) + 1);
      insertText(' '.repeat(INDENT.length - (col % INDENT.length)));
      return;
    }
    const sel = selectedLines();
    const lines = sel.text.split('\n');
    const out = lines.map((l) => (l.length ? INDENT + l : l)).join('\n');
    input.setSelectionRange(sel.start, sel.end);
    insertText(out);
    input.setSelectionRange(sel.start, sel.start + out.length);
  }

  function outdent() {
    const sel = selectedLines();
    const { selectionStart: a, selectionEnd: b } = input;
    const lines = sel.text.split('\n');
    let removedFirst = 0;
    let removed = 0;
    const out = lines.map((l, i) => {
      const n = Math.min(INDENT.length, l.match(/^ */)[0].length) || (l.startsWith('\t') ? 1 : 0);
      if (i === 0) removedFirst = n;
      removed += n;
      return l.slice(n);
    }).join('\n');
    if (!removed) return;
    input.setSelectionRange(sel.start, sel.end);
    insertText(out);
    if (a === b) {
      const p = Math.max(sel.start, a - removedFirst);
      input.setSelectionRange(p, p);
    } else {
      input.setSelectionRange(sel.start, sel.start + out.length);
    }
  }

  /** Moves the caret to line:column (1-based; 0 = unknown) and scrolls it into view. */
  function goTo(line, column) {
    const text = input.value;
    let off = 0;
    for (let n = 1; n < Math.max(1, line); n += 1) {
      const nl = text.indexOf('\n', off);
      if (nl < 0) break;
      off = nl + 1;
    }
    let end = text.indexOf('\n', off);
    if (end < 0) end = text.length;
    const pos = Math.min(end, off + Math.max(0, (column || 1) - 1));
    input.focus({ preventScroll: true });
    input.setSelectionRange(pos, pos);
    const lh = parseFloat(getComputedStyle(input).lineHeight) || 20;
    const top = (Math.max(1, line) - 1) * lh;
    if (top < input.scrollTop || top + lh > input.scrollTop + input.clientHeight) {
      input.scrollTop = Math.max(0, top - input.clientHeight / 3);
    }
    syncScroll();
    input.closest('.code-editor').scrollIntoView({ block: 'nearest' });
  }

  render();
  return {
    el,
    input,
    getValue: () => input.value,
    setValue(v) {
      input.value = v ?? '';
      input.scrollTop = 0;
      input.scrollLeft = 0;
      render();
    },
    setDiagnostics(list) {
      diagnostics = Array.isArray(list) ? list : [];
      render();
    },
    goTo,
    focus: () => input.focus(),
  };
}

/** Splits tokens at newlines: one array of tokens per line. */
function splitLines(tokens) {
  const lines = [[]];
  for (const t of tokens) {
    const parts = t.text.split('\n');
    parts.forEach((p, i) => {
      if (i) lines.push([]);
      if (p) lines[lines.length - 1].push({ type: t.type, text: p });
    });
  }
  return lines;
}

/** "3 errors, 1 warning" */
export function countLabel(diags) {
  const e = diags.filter((d) => d.severity === 'error').length;
  const w = diags.length - e;
  const parts = [];
  if (e) parts.push(`${e} error${e === 1 ? '' : 's'}`);
  if (w) parts.push(`${w} warning${w === 1 ? '' : 's'}`);
  return parts.join(', ') || 'No problems';
}
