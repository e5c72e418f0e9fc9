// The launch-settings form, shared by the Create page (a new instance, from scratch or from a
// template) and the template editor.
//
// Each setting has a codec between its API value and the text of its control. A form filled
// from a template (the "base") remembers the template's exact values: a setting the user did
// not change is never read back from its control, and a value its control cannot show exactly
// (an argument with a line break, an env value with one, an empty argument list, a CR, …) is
// not put in the control at all: the field says that it is kept from the template, and only
// what the user types there replaces it.
//
// From a form, `settings()` is the complete settings (a template's body, or a create request
// without a template) and `overrides()` the create request over the base template: its name
// and only the settings the user changed (the server lays them over the template: scalars
// replace, env is merged with the request winning, Docker options are joined, ports added).
import { ApiError, field, h, replace } from './lib.js';

export const MODES = [
  ['entrypoint', 'Entrypoint', "Run the image as docker run would: its ENTRYPOINT and CMD, or yours."],
  ['ssh', 'SSH', "berth's init runs sshd with your keys, then your onstart script."],
  ['jupyter', 'Jupyter', 'Everything SSH does, plus Jupyter over HTTPS with a token.'],
];

/** The settings of an empty form: a create request's defaults. */
export const EMPTY_SETTINGS = Object.freeze({
  image: '', mode: 'entrypoint', entrypoint: null, args: null, docker_options: null, env: {},
  ports: [], label: null, gpus: 0, onstart: null, direct: false, jupyter_lab: false,
  jupyter_dir: null, http_ports: [],
});

/** The launch modes each mode-specific setting applies to (elsewhere it is dropped, as the
 *  server's merge drops a template's settings for another mode). */
const APPLIES = {
  entrypoint: ['entrypoint'], args: ['entrypoint'], onstart: ['ssh', 'jupyter'],
  direct: ['ssh', 'jupyter'], jupyter_lab: ['jupyter'], jupyter_dir: ['jupyter'],
};

export function applies(name, mode) {
  return !APPLIES[name] || APPLIES[name].includes(mode);
}

/** What each setting is called in messages. */
const WHAT = {
  image: 'image', entrypoint: 'entrypoint', args: 'arguments', onstart: 'onstart script',
  direct: 'direct connection', jupyter_lab: 'JupyterLab choice', jupyter_dir: 'Jupyter directory',
  docker_options: 'Docker options', env: 'environment', ports: 'ports', http_ports: 'HTTP ports',
  gpus: 'GPU count', label: 'label',
};

/** Settings the server's merge replaces with the request's; the others are added to. */
const SCALARS = ['image', 'entrypoint', 'args', 'onstart', 'direct', 'jupyter_lab', 'jupyter_dir', 'gpus', 'label'];
const FIELDS = [...SCALARS, 'docker_options', 'env', 'ports', 'http_ports'];

const bad = (f, m) => new ApiError(400, `${f}: ${m}`, f);
const orNull = (t) => (t.trim() === '' ? null : t);
const words = (t) => t.split(/[\s,]+/).filter(Boolean);
const text = { format: (v) => v ?? '', parse: orNull };
const flag = { format: (v) => !!v, parse: (b) => b };

function parseEnv(t) {
  const env = {};
  t.split(/\r?\n/).forEach((line, n) => {
    if (line.trim() === '') return;
    const eq = line.indexOf('=');
    if (eq <= 0) throw bad('env', `line ${n + 1}: write NAME=value`);
    env[line.slice(0, eq).trim()] = line.slice(eq + 1);
  });
  return env;
}

/** API value ⇄ control text (a boolean for checkboxes); `parse` throws an ApiError naming
 *  the field for text that cannot be sent at all (the server checks everything else). */
const CODECS = {
  image: { format: (v) => v || '', parse: (t) => t.trim() },
  entrypoint: text,
  args: {
    format: (v) => (v ? v.join('\n') : ''),
    // One argument per line, kept exactly; a final newline ends the last line.
    parse: (t) => (t === '' ? null : t.replace(/\r\n?/g, '\n').replace(/\n$/, '').split('\n')),
  },
  onstart: text,
  direct: flag,
  jupyter_lab: flag,
  jupyter_dir: text,
  docker_options: text,
  env: { format: (v) => Object.entries(v || {}).map(([k, x]) => `${k}=${x}`).join('\n'), parse: parseEnv },
  ports: { format: (v) => (v || []).join(' '), parse: words },
  http_ports: {
    format: (v) => (v || []).join(' '),
    parse: (t) => words(t).map((p) => {
      const n = Number(p);
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw bad('http_ports', `${JSON.stringify(p)} is not a port (1-65535)`);
      return n;
    }),
  },
  gpus: {
    format: (v) => String(v || 0),
    parse: (t) => {
      const n = t.trim() === '' ? 0 : Number(t);
      if (!Number.isInteger(n) || n < 0) throw bad('gpus', 'a whole number, 0 or more');
      return n;
    },
  },
  label: text,
};

/** A setting's value with absent meaning the default, in a form fit for comparing. */
function norm(name, v) {
  const x = v === undefined || v === null ? EMPTY_SETTINGS[name] : v;
  if (name === 'env') return JSON.stringify(Object.entries(x || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return JSON.stringify(x);
}

export function same(name, a, b) {
  return norm(name, a) === norm(name, b);
}

const plural = (n, one, many) => (n === 1 ? `one ${one}` : `${n} ${many}`);

/** Why a value cannot be shown in its control, in a few words. */
function oddities(values) {
  const out = [];
  const count = (test) => values.filter(test).length;
  const lf = count((v) => v.includes('\n'));
  const cr = count((v) => v.includes('\r'));
  const empty = count((v) => v === '');
  if (lf) out.push(`${lf === 1 ? 'one' : lf} with ${lf === 1 ? 'a line break' : 'line breaks'}`);
  if (cr) out.push(`${cr === 1 ? 'one' : cr} with ${cr === 1 ? 'a carriage return' : 'carriage returns'}`);
  if (empty) out.push(`${empty === 1 ? 'one' : empty} empty`);
  return out;
}

/** "2 arguments, one with a line break", for a value kept from the template. */
export function describeKept(name, v) {
  if (name === 'args') {
    if (v.length === 0) return "an empty argument list (the image's CMD does not run)";
    return [plural(v.length, 'argument', 'arguments'), ...oddities(v)].join(', ');
  }
  if (name === 'env') {
    return Object.entries(v).map(([k, x]) => `${k} (${oddities([x]).join(', ').replace(/^one /, 'a value ')})`).join(', ');
  }
  if (typeof v === 'string') {
    const what = WHAT[name];
    return [`${/^[aeiou]/.test(what) ? 'an' : 'a'} ${what}`, ...oddities([v]).map((o) => o.replace(/^one /, ''))].join(' ');
  }
  return `${WHAT[name]} ${JSON.stringify(v)}`;
}

/** The form: `purpose` is 'create' (a new instance; a base template is laid under it) or
 *  'edit' (a template's settings, saved whole). `element` is its groups, to put in a form. */
export class SettingsForm {
  constructor(purpose) {
    this.purpose = purpose;
    this.base = null;
    this.initial = {};
    this.kept = {};
    this.keptEnv = {};
    this.dropped = {};

    const c = {};
    c.image = field({ label: 'Image', name: 'image', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. berth-test/busybox or pytorch/pytorch:latest' });
    const modeRadios = MODES.map(([value, label, hint]) => {
      const id = `mode-${value}`;
      return h('div', { class: 'choice-row' },
        h('input', { type: 'radio', name: 'mode', id, value, 'aria-describedby': `${id}-hint` }),
        h('label', { for: id }, label),
        h('span', { class: 'hint', id: `${id}-hint` }, hint));
    });
    this.modeField = h('fieldset', { class: 'field modes', 'data-field': 'mode' }, h('legend', null, 'Launch mode'), modeRadios,
      h('p', { class: 'field-error', id: 'mode-error', hidden: true }));
    c.entrypoint = field({ label: 'Entrypoint', name: 'entrypoint', autocomplete: 'off', spellcheck: 'false', hint: "Replaces the image's ENTRYPOINT (and, as in Docker, drops its CMD). Leave empty to keep it." });
    c.args = field({ label: 'Arguments', name: 'args', control: 'textarea', rows: '4', spellcheck: 'false', hint: "One argument per line, passed exactly as written (spaces and quotes included; no shell). Empty keeps the image's CMD." });
    c.onstart = field({ label: 'Onstart script', name: 'onstart', control: 'textarea', rows: '5', spellcheck: 'false', hint: 'Runs after sshd is up, on every start; its output is the onstart log.' });
    c.direct = field({ label: 'Direct connection (a host with open ports)', name: 'direct', type: 'checkbox' });
    c.jupyter_lab = field({ label: 'JupyterLab (instead of the classic Notebook)', name: 'jupyter_lab', type: 'checkbox' });
    c.jupyter_dir = field({ label: 'Jupyter directory', name: 'jupyter_dir', autocomplete: 'off', spellcheck: 'false', placeholder: '/', hint: "Jupyter's root directory (default /)." });
    c.docker_options = field({ label: 'Docker options', name: 'docker_options', autocomplete: 'off', spellcheck: 'false', placeholder: '-e HF_TOKEN=abc -p 8081 -p 7000/udp', hint: 'Only -e/--env NAME=VALUE and -p/--publish, quoted like a shell.' });
    c.env = field({ label: 'Environment', name: 'env', control: 'textarea', rows: '3', spellcheck: 'false', hint: 'One NAME=value per line (wins over -e in the Docker options).' });
    c.ports = field({ label: 'Ports', name: 'ports', autocomplete: 'off', spellcheck: 'false', placeholder: '8080 7000/udp', hint: 'PORT[/tcp|/udp], separated by spaces; each gets a free host port.' });
    c.http_ports = field({ label: 'HTTP ports', name: 'http_ports', autocomplete: 'off', inputmode: 'numeric', placeholder: '7860', hint: 'Served over HTTPS through the proxy (with an access link).' });
    c.gpus = field({ label: 'GPUs', name: 'gpus', type: 'number', min: '0', step: '1', inputmode: 'numeric' });
    c.label = field({ label: 'Label', name: 'label', autocomplete: 'off', placeholder: 'e.g. worker' });
    this.controls = c;

    // A note under each field for what the template keeps (filled by load()).
    for (const [name, wrap] of Object.entries(c)) {
      const note = h('div', { class: 'kept', id: `${wrap.control.id}-kept`, 'data-kept': name, hidden: true });
      wrap.insertBefore(note, wrap.querySelector('.field-error'));
      wrap.note = note;
      wrap.control.dataset.placeholder = wrap.control.placeholder || '';
    }

    this.element = [
      h('div', { class: 'group' }, c.image, this.modeField),
      h('div', { class: 'group', 'data-modes': 'entrypoint' }, h('h2', null, 'Command'), c.entrypoint, c.args),
      h('div', { class: 'group', 'data-modes': 'ssh jupyter' }, h('h2', null, 'SSH'), c.onstart, c.direct),
      h('div', { class: 'group', 'data-modes': 'jupyter' }, h('h2', null, 'Jupyter'), c.jupyter_lab, c.jupyter_dir),
      h('div', { class: 'group' }, h('h2', null, 'Options'),
        h('div', { class: 'cols' }, c.gpus, c.label), c.docker_options, c.env, h('div', { class: 'cols' }, c.ports, c.http_ports)),
    ];
    for (const g of this.element) {
      g.addEventListener('input', () => this.showModes());
      g.addEventListener('change', () => this.showModes());
    }
  }

  mode() {
    return this.modeField.querySelector('input[name=mode]:checked')?.value || 'entrypoint';
  }

  get(name) {
    const ctl = this.controls[name].control;
    return ctl.type === 'checkbox' ? ctl.checked : ctl.value;
  }

  set(name, value) {
    const ctl = this.controls[name].control;
    if (ctl.type === 'checkbox') ctl.checked = !!value;
    else ctl.value = value;
  }

  showModes() {
    const mode = this.mode();
    for (const g of this.element) if (g.dataset.modes) g.hidden = !g.dataset.modes.split(' ').includes(mode);
  }

  /** Fills the form from `base` (`{name, settings}` of a template, or null for an empty
   *  form), then puts back `texts` (what `texts()` gave: the user's edits) and `dropped`. */
  load(base, texts, dropped) {
    this.base = base;
    this.kept = {};
    this.keptEnv = {};
    this.dropped = { ...(dropped || {}) };
    const s = base ? base.settings : EMPTY_SETTINGS;
    this.initialMode = s.mode || 'entrypoint';
    for (const name of FIELDS) {
      const codec = CODECS[name];
      let v = s[name];
      if (name === 'env') {
        // Variables whose value fits on a line show; the others are kept.
        const shown = {};
        for (const [k, x] of Object.entries(v || {})) {
          if (/[\r\n]/.test(x)) this.keptEnv[k] = x;
          else shown[k] = x;
        }
        v = shown;
      }
      this.set(name, codec.format(v));
      // What the control holds now (browsers drop line breaks from text inputs and turn
      // CRs into LFs in text areas) must give back exactly the value, else it is kept.
      let exact;
      try {
        exact = same(name, codec.parse(this.get(name)), v);
      } catch {
        exact = false;
      }
      if (!exact) {
        if (name === 'env') this.keptEnv = { ...(s.env || {}) };
        this.kept[name] = s[name];
        this.set(name, codec.format(EMPTY_SETTINGS[name]));
      }
      this.initial[name] = this.get(name);
    }
    if (Object.keys(this.keptEnv).length && !this.kept.env) this.kept.env = this.keptEnv;
    if (texts) {
      for (const name of FIELDS) if (name in texts) this.set(name, texts[name]);
    }
    const mode = (texts && texts.mode) || this.initialMode;
    for (const r of this.modeField.querySelectorAll('input[name=mode]')) r.checked = r.value === mode;
    this.showModes();
    this.showNotes();
  }

  /** The controls' values (and the mode), to keep a draft across pages. */
  texts() {
    const t = { mode: this.mode() };
    for (const name of FIELDS) t[name] = this.get(name);
    return t;
  }

  /** The texts of what the user changed (and the mode, if changed): their edits, to lay
   *  over a newer version of the same template. */
  edits() {
    const t = {};
    if (this.mode() !== this.initialMode) t.mode = this.mode();
    for (const name of FIELDS) if (this.get(name) !== this.initial[name]) t[name] = this.get(name);
    return t;
  }

  changed(name) {
    return !!this.dropped[name] || this.get(name) !== this.initial[name];
  }

  /** The notes under the fields: what is kept from the template, and how the create request
   *  combines with it. */
  showNotes() {
    const additive = { docker_options: true, env: true, ports: true, http_ports: true };
    for (const [name, wrap] of Object.entries(this.controls)) {
      const note = wrap.note;
      const ctl = wrap.control;
      const kept = this.kept[name];
      const parts = [];
      if (this.base && kept !== undefined) {
        const v = name === 'env' ? this.keptEnv : kept;
        const shown = name === 'env' ? JSON.stringify(v) : JSON.stringify(kept);
        if (this.dropped[name]) {
          parts.push(h('p', null, `The template's ${name === 'env' ? 'variables that this field cannot show are' : `${WHAT[name]} is`} dropped when you save.`),
            h('button', { type: 'button', class: 'small', 'data-undrop': name, onclick: () => this.drop(name, false) }, 'Keep it'));
        } else {
          const how = name === 'env'
            ? 'A line NAME=… here replaces that variable.'
            : this.purpose === 'create' && additive[name]
              ? 'What you type here is added to it.'
              : 'What you type here replaces it.';
          parts.push(h('p', null, h('strong', null, 'Kept from the template: '), describeKept(name, v),
            '. This field cannot show that exactly, so it is used as saved. ', how),
          h('code', { class: 'kept-value' }, shown));
          if (this.purpose === 'edit') {
            parts.push(h('button', { type: 'button', class: 'small', 'data-drop': name, onclick: () => this.drop(name, true) }, `Drop it`));
          }
        }
      }
      if (this.base && this.purpose === 'create' && additive[name] && this.initial[name] !== '') {
        parts.push(h('p', null, name === 'env'
          ? "From the template: change a value or add variables; the template's variables cannot be removed here (edit the template)."
          : name === 'docker_options'
            ? "From the template: add options after its own; its own cannot be changed here (edit the template)."
            : "From the template: add ports; the template's cannot be removed here (edit the template)."));
      }
      replace(note, parts);
      note.hidden = parts.length === 0;
      const ids = (ctl.getAttribute('aria-describedby') || '').split(' ').filter((i) => i && i !== note.id);
      if (!note.hidden) ids.push(note.id);
      if (ids.length) ctl.setAttribute('aria-describedby', ids.join(' '));
      else ctl.removeAttribute('aria-describedby');
      if (ctl.tagName !== 'SELECT' && ctl.type !== 'checkbox' && ctl.type !== 'number') {
        ctl.placeholder = this.base && kept !== undefined ? `kept from the template (type to ${name === 'env' ? 'add or replace variables' : 'replace it'})` : ctl.dataset.placeholder;
      }
    }
  }

  drop(name, on) {
    if (on) this.dropped[name] = true;
    else delete this.dropped[name];
    this.showNotes();
    this.controls[name].control.dispatchEvent(new Event('input', { bubbles: true }));
    this.controls[name].control.focus();
  }

  parse(name) {
    return CODECS[name].parse(this.get(name));
  }

  /** The complete settings the form stands for (a template's body; without a base, the
   *  create request): the base's exact values where the user changed nothing. Throws an
   *  ApiError naming the field for text that cannot be sent. */
  settings() {
    const mode = this.mode();
    const s = { ...EMPTY_SETTINGS, ...(this.base ? this.base.settings : {}), mode };
    delete s.template;
    for (const name of FIELDS) {
      if (!this.changed(name)) continue;
      const v = this.parse(name);
      if (name === 'env') s.env = { ...(this.dropped.env ? {} : this.keptEnv), ...v };
      else s[name] = v;
    }
    for (const name of Object.keys(APPLIES)) if (!applies(name, mode)) s[name] = EMPTY_SETTINGS[name];
    return s;
  }

  /** The create request over the base template: `template` and only what the user changed
   *  (in the mode launched). Throws an ApiError naming the field for a change the server's
   *  merge cannot express (removing a template's variable or port, emptying a setting that
   *  an empty request value would leave as the template's). */
  overrides() {
    const t = this.base.settings;
    const who = `template ${this.base.name}`;
    const mode = this.mode();
    const req = { template: this.base.name };
    if (mode !== this.initialMode) req.mode = mode;
    for (const name of SCALARS) {
      if (!applies(name, mode) || !this.changed(name)) continue;
      let v = this.parse(name);
      if ((v === null || v === '') && !same(name, t[name], null)) {
        if (name === 'label' || name === 'onstart') {
          v = ''; // the server reads an empty label or onstart script as none
        } else {
          throw bad(name, `left empty, ${who}'s ${WHAT[name]} is used; to launch without it, edit the template or choose “No template”`);
        }
      }
      req[name] = v;
    }
    if (this.changed('env')) {
      const mine = this.parse('env');
      const shown = Object.fromEntries(Object.entries(t.env || {}).filter(([k]) => !(k in this.keptEnv)));
      for (const k of Object.keys(shown)) {
        if (!(k in mine)) throw bad('env', `${k} comes from ${who}, whose variables are merged with yours: it cannot be removed here (set another value, or edit the template)`);
      }
      const diff = Object.fromEntries(Object.entries(mine).filter(([k, v]) => (t.env || {})[k] !== v));
      if (Object.keys(diff).length) req.env = diff;
    }
    for (const name of ['ports', 'http_ports']) {
      if (!this.changed(name)) continue;
      const mine = this.parse(name);
      const theirs = t[name] || [];
      if (this.kept[name] === undefined) {
        const gone = theirs.filter((p) => !mine.includes(p));
        if (gone.length) throw bad(name, `${gone.join(' ')} ${gone.length === 1 ? 'comes' : 'come'} from ${who}, whose ${WHAT[name]} are added to yours: ${gone.length === 1 ? 'it' : 'they'} cannot be removed here (edit the template)`);
      }
      const added = mine.filter((p) => !theirs.includes(p));
      if (added.length) req[name] = added;
    }
    if (this.changed('docker_options')) {
      const mine = this.get('docker_options').trim();
      const theirs = this.kept.docker_options !== undefined ? '' : (t.docker_options || '').trim();
      if (theirs && !mine.startsWith(theirs)) {
        throw bad('docker_options', `${who}'s options (${theirs}) always come first and yours are added after them: keep them at the start, or edit the template`);
      }
      const rest = mine.slice(theirs.length).trim();
      if (rest) req.docker_options = rest;
    }
    return req;
  }
}
