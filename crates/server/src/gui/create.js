// Create an instance: the launch mode decides which fields show; a template fills the form;
// the API's field errors show next to their fields. The form's values are kept while the
// GUI is open (the draft), so the Templates page can save them as a template.
import {
  ApiError, announce, api, clearError, clearFieldErrors, field, h, heading, replace,
  setFieldError, showApiError,
} from './lib.js';

const MODES = [
  ['entrypoint', 'Entrypoint', "Run the image as docker run would: its ENTRYPOINT and CMD, or yours."],
  ['ssh', 'SSH', "berth's init runs sshd with your keys, then your onstart script."],
  ['jupyter', 'Jupyter', 'Everything SSH does, plus Jupyter over HTTPS with a token.'],
];

const EMPTY = {
  mode: 'entrypoint', image: '', entrypoint: '', args: '', onstart: '', direct: false,
  jupyter_lab: false, jupyter_dir: '', docker_options: '', env: '', ports: '', http_ports: '',
  gpus: '0', label: '',
};

/** The form's values as typed (strings and booleans). */
let draft = { ...EMPTY };

/** Form values for a create request (a template's settings). */
export function fromSettings(s) {
  return {
    mode: s.mode || 'entrypoint',
    image: s.image || '',
    entrypoint: s.entrypoint || '',
    args: s.args ? s.args.join('\n') : '',
    onstart: s.onstart || '',
    direct: !!s.direct,
    jupyter_lab: !!s.jupyter_lab,
    jupyter_dir: s.jupyter_dir || '',
    docker_options: s.docker_options || '',
    env: Object.entries(s.env || {}).map(([k, v]) => `${k}=${v}`).join('\n'),
    ports: (s.ports || []).join(' '),
    http_ports: (s.http_ports || []).join(' '),
    gpus: String(s.gpus || 0),
    label: s.label || '',
  };
}

/** The create request the form's values stand for; throws an ApiError naming the field
 *  for values that cannot be sent at all (the server checks everything else). */
export function toRequest(d) {
  const bad = (f, m) => new ApiError(400, `${f}: ${m}`, f);
  const opt = (v) => (v.trim() === '' ? undefined : v);
  const req = { image: d.image.trim(), mode: d.mode };
  if (d.mode === 'entrypoint') {
    req.entrypoint = opt(d.entrypoint);
    if (d.args !== '') {
      // One argument per line, kept exactly; a final newline ends the last line.
      req.args = d.args.replace(/\r\n?/g, '\n').replace(/\n$/, '').split('\n');
    }
  } else {
    req.onstart = opt(d.onstart);
    req.direct = d.direct;
    if (d.mode === 'jupyter') {
      req.jupyter_lab = d.jupyter_lab;
      req.jupyter_dir = opt(d.jupyter_dir);
    }
  }
  req.docker_options = opt(d.docker_options);
  const env = {};
  d.env.split(/\r?\n/).forEach((line, n) => {
    if (line.trim() === '') return;
    const eq = line.indexOf('=');
    if (eq <= 0) throw bad('env', `line ${n + 1}: write NAME=value`);
    env[line.slice(0, eq).trim()] = line.slice(eq + 1);
  });
  req.env = env;
  req.ports = d.ports.split(/[\s,]+/).filter(Boolean);
  req.http_ports = d.http_ports.split(/[\s,]+/).filter(Boolean).map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw bad('http_ports', `${JSON.stringify(p)} is not a port (1-65535)`);
    return n;
  });
  const gpus = d.gpus.trim() === '' ? 0 : Number(d.gpus);
  if (!Number.isInteger(gpus) || gpus < 0) throw bad('gpus', 'a whole number, 0 or more');
  req.gpus = gpus;
  req.label = opt(d.label);
  return req;
}

/** The draft as a create request, for "save as template" (throws like toRequest). */
export function draftRequest() {
  return toRequest(draft);
}

export function render(main, { arg, navigate }) {
  const picker = field(
    { label: 'Start from a template', name: 'template', control: 'select', hint: 'Fills in the form; change anything before you create.' },
    [h('option', { value: '' }, 'No template')],
  );
  const readme = h('div', { class: 'readme', hidden: true });

  const image = field({ label: 'Image', name: 'image', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. berth-test/busybox or pytorch/pytorch:latest' });

  const modeError = h('p', { class: 'field-error', id: 'mode-error', hidden: true });
  const modeRadios = MODES.map(([value, label, hint]) => {
    const id = `mode-${value}`;
    return h('div', { class: 'choice-row' },
      h('input', { type: 'radio', name: 'mode', id, value, 'aria-describedby': `${id}-hint` }),
      h('label', { for: id }, label),
      h('span', { class: 'hint', id: `${id}-hint` }, hint));
  });
  const mode = h('fieldset', { class: 'field modes', 'data-field': 'mode' }, h('legend', null, 'Launch mode'), modeRadios, modeError);

  const entrypoint = field({ label: 'Entrypoint', name: 'entrypoint', autocomplete: 'off', spellcheck: 'false', hint: "Replaces the image's ENTRYPOINT (and, as in Docker, drops its CMD). Leave empty to keep it." });
  const args = field({ label: 'Arguments', name: 'args', control: 'textarea', rows: '4', spellcheck: 'false', hint: "One argument per line, passed exactly as written (spaces and quotes included; no shell). Empty keeps the image's CMD." });
  const onstart = field({ label: 'Onstart script', name: 'onstart', control: 'textarea', rows: '5', spellcheck: 'false', hint: 'Runs after sshd is up, on every start; its output is the onstart log.' });
  const direct = field({ label: 'Direct connection (a host with open ports)', name: 'direct', type: 'checkbox' });
  const lab = field({ label: 'JupyterLab (instead of the classic Notebook)', name: 'jupyter_lab', type: 'checkbox' });
  const dir = field({ label: 'Jupyter directory', name: 'jupyter_dir', autocomplete: 'off', spellcheck: 'false', placeholder: '/', hint: "Jupyter's root directory (default /)." });

  const dockerOptions = field({ label: 'Docker options', name: 'docker_options', autocomplete: 'off', spellcheck: 'false', placeholder: '-e HF_TOKEN=abc -p 8081 -p 7000/udp', hint: 'Only -e/--env NAME=VALUE and -p/--publish, quoted like a shell.' });
  const env = field({ label: 'Environment', name: 'env', control: 'textarea', rows: '3', spellcheck: 'false', hint: 'One NAME=value per line (wins over -e in the Docker options).' });
  const ports = field({ label: 'Ports', name: 'ports', autocomplete: 'off', spellcheck: 'false', placeholder: '8080 7000/udp', hint: 'PORT[/tcp|/udp], separated by spaces; each gets a free host port.' });
  const httpPorts = field({ label: 'HTTP ports', name: 'http_ports', autocomplete: 'off', inputmode: 'numeric', placeholder: '7860', hint: 'Served over HTTPS through the proxy (with an access link).' });
  const gpus = field({ label: 'GPUs', name: 'gpus', type: 'number', min: '0', step: '1', inputmode: 'numeric' });
  const label = field({ label: 'Label', name: 'label', autocomplete: 'off', placeholder: 'e.g. worker' });

  const submit = h('button', { type: 'submit', class: 'primary', id: 'create-submit' }, 'Create instance');
  const saveTemplate = h('button', { type: 'button', id: 'save-template' }, 'Save as template…');
  const reset = h('button', { type: 'button', id: 'reset-form' }, 'Clear form');

  const form = h(
    'form',
    { class: 'card create-form', novalidate: true },
    h('div', { class: 'group' }, picker, readme),
    h('div', { class: 'group' }, image, mode),
    h('div', { class: 'group', 'data-modes': 'entrypoint' }, h('h2', null, 'Command'), entrypoint, args),
    h('div', { class: 'group', 'data-modes': 'ssh jupyter' }, h('h2', null, 'SSH'), onstart, direct),
    h('div', { class: 'group', 'data-modes': 'jupyter' }, h('h2', null, 'Jupyter'), lab, dir),
    h('div', { class: 'group' }, h('h2', null, 'Options'),
      h('div', { class: 'cols' }, gpus, label), dockerOptions, env, h('div', { class: 'cols' }, ports, httpPorts)),
    h('div', { class: 'actions' }, submit, saveTemplate, reset),
  );

  const controls = {
    image, entrypoint, args, onstart, direct, jupyter_lab: lab, jupyter_dir: dir,
    docker_options: dockerOptions, env, ports, http_ports: httpPorts, gpus, label,
  };
  const read = () => {
    const d = { mode: form.querySelector('input[name=mode]:checked')?.value || 'entrypoint' };
    for (const [k, w] of Object.entries(controls)) d[k] = w.control.type === 'checkbox' ? w.control.checked : w.control.value;
    return d;
  };
  const showModes = () => {
    for (const g of form.querySelectorAll('[data-modes]')) g.hidden = !g.dataset.modes.split(' ').includes(draft.mode);
  };
  const fill = (d) => {
    draft = { ...EMPTY, ...d };
    for (const [k, w] of Object.entries(controls)) {
      if (w.control.type === 'checkbox') w.control.checked = !!draft[k];
      else w.control.value = draft[k];
    }
    for (const r of form.querySelectorAll('input[name=mode]')) r.checked = r.value === draft.mode;
    showModes();
  };
  form.addEventListener('input', (e) => {
    if (e.target === picker.control) return;
    draft = read();
    showModes();
  });
  form.addEventListener('change', () => {
    draft = read();
    showModes();
  });

  let templates = [];
  const useTemplate = (name) => {
    const t = templates.find((x) => x.name === name);
    if (!t) {
      readme.hidden = true;
      return;
    }
    clearFieldErrors(form);
    fill(fromSettings(t.settings));
    replace(readme, h('p', null, h('strong', null, `Template ${t.name}`), t.readme ? `: ${t.readme}` : ''));
    readme.hidden = false;
    announce(`Form filled from template ${t.name}`);
  };
  picker.control.addEventListener('change', () => useTemplate(picker.control.value));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    clearFieldErrors(form);
    draft = read();
    submit.disabled = true;
    try {
      const created = await api('POST', '/api/v1/instances', toRequest(draft));
      announce(`Instance ${created.id} created`);
      navigate(`#/instances/${created.id}`);
    } catch (err) {
      showApiError(form, err, 'The instance was not created');
    } finally {
      submit.disabled = false;
    }
  });
  saveTemplate.addEventListener('click', () => {
    draft = read();
    navigate('#/templates/save');
  });
  reset.addEventListener('click', () => {
    clearFieldErrors(form);
    clearError();
    picker.control.value = '';
    readme.hidden = true;
    fill(EMPTY);
    image.control.focus();
  });

  main.append(heading('Create an instance'), form);
  fill(draft);

  api('GET', '/api/v1/templates')
    .then((list) => {
      templates = list || [];
      picker.control.append(...templates.map((t) => h('option', { value: t.name }, `${t.name} (${t.settings.image}, ${t.settings.mode || 'entrypoint'})`)));
      if (arg) {
        if (templates.some((t) => t.name === arg)) {
          picker.control.value = arg;
          useTemplate(arg);
        } else {
          setFieldError(form, 'template', `there is no template ${JSON.stringify(arg)}`);
        }
      }
    })
    .catch((err) => {
      picker.control.disabled = true;
      setFieldError(form, 'template', `templates cannot be listed: ${err.message}`);
    });
}
