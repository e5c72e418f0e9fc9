// Shared helpers of berth's GUI: the API client, a small DOM builder, the error line,
// form fields with their error messages, copy buttons, a confirmation dialog and tables
// that update in place (so that polling never steals the keyboard focus).

/** An error answer of the API: `message` is the server's one line, `field` the request
 *  field at fault (for 400s), `status` the HTTP status (0 when the server was unreachable). */
export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field || null;
  }
}

// The session's proof goes with the cookie on every call: browsers send a host's cookies to
// all its ports (an instance's web server may see the cookie), but this origin's storage
// stays here.
const PROOF_KEY = 'berth_session_proof';

/** Remembers (or, with null, forgets) the proof of the current session. */
export function setSessionProof(proof) {
  if (proof) localStorage.setItem(PROOF_KEY, proof);
  else localStorage.removeItem(PROOF_KEY);
}

function authHeaders() {
  const proof = localStorage.getItem(PROOF_KEY);
  return proof ? { 'X-Berth-Session-Proof': proof } : {};
}

/** Calls the REST API with the session cookie; resolves to the parsed JSON (null for 204). */
export async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json', ...authHeaders() }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the berth server (${e.message})`);
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) throw errorOf(resp, data, path);
  return data;
}

function errorOf(resp, data, path) {
  const message = (data && data.error) || `${resp.status} ${resp.statusText}`.trim();
  if (resp.status === 401 && path !== '/api/v1/session') {
    setSessionProof(null);
    window.dispatchEvent(new CustomEvent('berth:unauthorized'));
  }
  return new ApiError(resp.status, message, data && data.field);
}

/** Reads a streaming text answer (logs), calling `onText` with each decoded chunk until
 *  the server ends it or `signal` aborts it. */
export async function streamText(path, signal, onText) {
  const resp = await fetch(path, { credentials: 'same-origin', signal, headers: authHeaders() });
  if (!resp.ok) {
    let data = null;
    try {
      data = await resp.json();
    } catch {
      data = null;
    }
    throw errorOf(resp, data, path);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}

/** Builds an element: `h('a', {href: '#/x', class: 'button'}, 'text', child, [more])`.
 *  `on<event>` attributes add listeners; `null`/`false` attributes are left out; `true`
 *  sets an empty attribute; `value` and `checked` are set as properties. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** The one-line error under the header. */
export function showError(message) {
  const line = document.getElementById('error');
  line.textContent = message;
  line.hidden = false;
}

export function clearError() {
  const line = document.getElementById('error');
  line.textContent = '';
  line.hidden = true;
}

/** A short message for screen readers and a glance (polite live region). */
export function announce(message) {
  const status = document.getElementById('status');
  status.textContent = message;
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => (status.textContent = ''), 6000);
}

let fieldSeq = 0;

/** A labelled form control with a hint and a place for its error:
 *  `field({label, name, hint, control: 'input'|'textarea'|'select', ...attributes}, options)`.
 *  Returns the wrapper; `wrapper.control` is the input. */
export function field(spec, options) {
  const { label, name, hint, control = 'input', ...attrs } = spec;
  const id = `f-${name}-${++fieldSeq}`;
  const hintId = hint ? `${id}-hint` : null;
  const input = h(control, { id, name, 'aria-describedby': hintId, ...attrs }, options || []);
  const checkbox = attrs.type === 'checkbox';
  const wrap = h(
    'div',
    { class: checkbox ? 'field check' : 'field', 'data-field': name },
    checkbox ? [input, h('label', { for: id }, label)] : [h('label', { for: id }, label), input],
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    h('p', { class: 'field-error', id: `${id}-error`, hidden: true }),
  );
  wrap.control = input;
  return wrap;
}

/** Shows `message` next to the control named `name` in `form`; false if the form has no
 *  visible control of that name (the caller then shows it in the error line). */
export function setFieldError(form, name, message) {
  const wrap = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (!wrap || wrap.closest('[hidden]')) return false;
  const input = wrap.control || wrap.querySelector('input, textarea, select');
  const err = wrap.querySelector('.field-error');
  err.textContent = message;
  err.hidden = false;
  const targets = wrap.tagName === 'FIELDSET' ? wrap.querySelectorAll('input') : [input];
  for (const t of targets) {
    t.setAttribute('aria-invalid', 'true');
    const ids = (t.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
    if (!ids.includes(err.id)) t.setAttribute('aria-describedby', [...ids, err.id].join(' '));
  }
  wrap.classList.add('invalid');
  return true;
}

export function clearFieldErrors(form) {
  for (const wrap of form.querySelectorAll('.invalid')) {
    wrap.classList.remove('invalid');
    const err = wrap.querySelector('.field-error');
    err.hidden = true;
    err.textContent = '';
    for (const t of wrap.querySelectorAll('[aria-invalid]')) {
      t.removeAttribute('aria-invalid');
      const ids = (t.getAttribute('aria-describedby') || '').split(' ').filter((i) => i && i !== err.id);
      if (ids.length) t.setAttribute('aria-describedby', ids.join(' '));
      else t.removeAttribute('aria-describedby');
    }
  }
}

/** Shows an API error: next to its field when the form has it (and focuses that field),
 *  and always as the one error line, prefixed with what failed. The field is the error's
 *  `field`, else the `NAME: ` its message starts with, else (for a 409, "already exists")
 *  `options.conflict`; `options.map` turns the API's field name into the form's. */
export function showApiError(form, err, what, options = {}) {
  let msg = err.message || String(err);
  const map = options.map || ((f) => f);
  const prefix = /^([A-Za-z_][\w.]*): /.exec(msg);
  const named = err.field || (prefix && prefix[1]) || null;
  const name = named ? map(named) : err.status === 409 ? options.conflict : null;
  if (form && name) {
    const local = named && msg.startsWith(`${named}: `) ? msg.slice(named.length + 2) : msg;
    if (setFieldError(form, name, local)) {
      const wrap = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
      const label = wrap.querySelector('legend, label');
      if (label) msg = `${label.textContent}: ${local}`;
      (wrap.control || wrap.querySelector('input, textarea, select')).focus();
    }
  }
  showError(what ? `${what}: ${msg}` : msg);
}

/** A "Copy" button for the text of `target`. Uses the Clipboard API where the page may
 *  (a secure context); otherwise selects the text so that Ctrl+C copies it. */
export function copyButton(target, what) {
  const button = h('button', { type: 'button', class: 'small', 'aria-label': `Copy ${what}` }, 'Copy');
  button.addEventListener('click', async () => {
    const text = target.textContent;
    let copied = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        copied = true;
      } catch {
        copied = false;
      }
    }
    if (copied) {
      flash(button, 'Copied');
      announce(`Copied ${what}`);
    } else {
      const range = document.createRange();
      range.selectNodeContents(target);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      flash(button, 'Selected: press Ctrl+C');
      announce(`${what} selected: press Ctrl+C to copy`);
    }
  });
  return button;
}

function flash(button, text) {
  button.textContent = text;
  clearTimeout(button.flashTimer);
  button.flashTimer = setTimeout(() => (button.textContent = 'Copy'), 2000);
}

/** An in-page confirmation (a modal <dialog>: focus stays inside, Escape cancels);
 *  resolves to true when the user confirms. */
export function confirmDialog(message, confirmLabel) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'button', class: 'danger', id: 'confirm-ok' }, confirmLabel);
    const cancel = h('button', { type: 'button', id: 'confirm-cancel' }, 'Cancel');
    const dialog = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': 'confirm-message' },
      h('p', { id: 'confirm-message' }, message),
      h('div', { class: 'actions' }, cancel, ok),
    );
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    ok.addEventListener('click', () => done(true));
    cancel.addEventListener('click', () => done(false));
    dialog.addEventListener('cancel', (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** "12s", "5m", "3h", "2d" since an RFC 3339 time. */
export function age(iso) {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** A local date and time for an RFC 3339 time. */
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '';
}

/** A table whose rows are keyed and updated in place: `columns` are
 *  `{label, render(item) -> string|Node, sig?(item) -> string, class?}`; a cell is
 *  rebuilt only when its signature (by default its text) changes. */
export function liveTable(caption, columns, key) {
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'list' },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
    tbody,
  );
  const update = (items) => {
    const seen = new Set();
    let prev = null;
    for (const item of items) {
      const k = String(key(item));
      seen.add(k);
      let row = tbody.querySelector(`tr[data-key="${CSS.escape(k)}"]`);
      if (!row) {
        row = h('tr', { 'data-key': k }, columns.map((c) => h('td', { 'data-label': c.label, class: c.class })));
      }
      columns.forEach((c, i) => {
        const td = row.children[i];
        const out = c.render(item);
        const sig = c.sig ? c.sig(item) : typeof out === 'string' ? out : null;
        if (sig !== null && td.dataset.sig === sig) return;
        td.dataset.sig = sig === null ? '' : sig;
        replace(td, out);
      });
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== row) tbody.insertBefore(row, want);
      prev = row;
    }
    for (const row of [...tbody.children]) if (!seen.has(row.dataset.key)) row.remove();
  };
  return { table, update };
}

/** Runs `tick` now and every `ms` until the returned stop function is called; a failing
 *  tick shows its error but polling goes on. */
export function poll(ms, tick) {
  let stopped = false;
  let timer = null;
  let shown = null;
  let busy = false;
  const run = async () => {
    if (busy) return;
    busy = true;
    clearTimeout(timer);
    try {
      // A hidden tab does not poll (it catches up when shown again).
      if (!document.hidden) {
        await tick();
        // The trouble is over: take down the error this poll put up, if still shown.
        const line = document.getElementById('error');
        if (shown !== null && !line.hidden && line.textContent === shown) clearError();
        shown = null;
      }
    } catch (e) {
      if (!stopped && e.status !== 401) {
        shown = e.message;
        showError(e.message);
      }
    }
    busy = false;
    if (!stopped) timer = setTimeout(run, ms);
  };
  const onShow = () => {
    if (!document.hidden && !stopped) run();
  };
  document.addEventListener('visibilitychange', onShow);
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onShow);
  };
}

/** A page heading that takes the focus after navigation (keyboard and screen reader
 *  users land on the new page). */
export function heading(text) {
  return h('h1', { tabindex: '-1' }, text);
}
