// Templates: the list (view, edit, use to fill the Create form, delete), saving the Create
// form as a template (replacing one of that name if the user says so), making one from an
// image (berth inspects it and says what it moved where), one template's settings, and the
// editor that saves them with PUT.
import {
  announce, api, clearError, clearFieldErrors, confirmDialog, field, h, heading, replace,
  showApiError, showError, when,
} from './lib.js';
import { draftSettings, draftTemplate } from './create.js';
import { SettingsForm, applies } from './settings.js';

const path = (name) => `/api/v1/templates/${encodeURIComponent(name)}`;
const hash = (name) => `#/template/${encodeURIComponent(name)}`;
/** The server names a template's settings `settings.FIELD`; the forms name them `FIELD`. */
const settingsField = (f) => f.replace(/^settings\./, '');

/** Asks, then deletes template `name`; true once it is gone. */
async function removeTemplate(name) {
  if (!(await confirmDialog(`Delete template ${name}? Instances made from it keep running.`, `Delete ${name}`))) return false;
  clearError();
  try {
    await api('DELETE', path(name));
    announce(`Template ${name} deleted`);
    return true;
  } catch (e) {
    showError(`Could not delete template ${name}: ${e.message}`);
    return false;
  }
}

export function render(main, { arg }) {
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'list' },
    h('caption', { class: 'visually-hidden' }, 'Your templates'),
    h('thead', null, h('tr', null, ['Name', 'Image', 'Mode', 'About', 'Updated', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody,
  );
  const empty = h('p', { class: 'empty', hidden: true }, 'No templates yet.');

  const load = async () => {
    let list;
    try {
      list = await api('GET', '/api/v1/templates');
    } catch (e) {
      showError(`Templates cannot be listed: ${e.message}`);
      return;
    }
    replace(tbody, list.map(row));
    table.hidden = list.length === 0;
    empty.hidden = list.length !== 0;
  };
  const row = (t) =>
    h('tr', { 'data-key': t.name },
      h('td', { 'data-label': 'Name' }, h('a', { href: hash(t.name), 'aria-label': `Template ${t.name}: view its settings` }, h('strong', null, t.name))),
      h('td', { 'data-label': 'Image', class: 'mono' }, t.settings.image),
      h('td', { 'data-label': 'Mode' }, t.settings.mode || 'entrypoint'),
      h('td', { 'data-label': 'About', class: 'about' }, t.readme || ''),
      h('td', { 'data-label': 'Updated' }, when(t.updated_at)),
      h('td', { 'data-label': 'Actions' },
        h('div', { class: 'actions tight' },
          h('a', { href: hash(t.name), class: 'button small', 'aria-label': `View template ${t.name}` }, 'View'),
          h('a', { href: `${hash(t.name)}/edit`, class: 'button small', 'aria-label': `Edit template ${t.name}` }, 'Edit'),
          h('a', { href: `#/create/${encodeURIComponent(t.name)}`, class: 'button small', 'aria-label': `Launch from template ${t.name}` }, 'Use'),
          h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete template ${t.name}`, onclick: async () => (await removeTemplate(t.name)) && load() }, 'Delete'))));

  // Save the Create form as a template.
  const saveName = field({ label: 'Name', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false', hint: "Letters, digits, '.', '_' and '-'." });
  const saveReadme = field({ label: 'About (optional)', name: 'readme', control: 'textarea', rows: '2', hint: 'What the template is for and how to use it.' });
  const draftSummary = h('p', { class: 'hint', id: 'draft-summary' });
  const saveForm = h('form', { class: 'card', id: 'save-template-form', novalidate: true },
    h('h2', { id: 'h-save' }, 'Save the Create form as a template'),
    draftSummary, saveName, saveReadme,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save template')));
  try {
    const settings = draftSettings();
    const base = draftTemplate();
    replace(draftSummary, settings.image
      ? ['The Create form holds: ', h('code', null, settings.image), ` in ${settings.mode} mode`,
        base ? [' (template ', h('code', null, base), ' with your changes)'] : '', '. ', h('a', { href: '#/create' }, 'Edit it'), '.']
      : ['The Create form is empty: ', h('a', { href: '#/create' }, 'fill it in'), ' first.']);
  } catch (e) {
    replace(draftSummary, `The Create form has an error (${e.message}): `, h('a', { href: '#/create' }, 'fix it'), ' first.');
  }
  saveForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    clearFieldErrors(saveForm);
    const name = saveName.control.value.trim();
    const readme = saveReadme.control.value.trim() || undefined;
    let settings;
    try {
      settings = draftSettings();
      await api('POST', '/api/v1/templates', { name, readme, settings });
      announce(`Template ${name} saved`);
      saveForm.reset();
      await load();
      return;
    } catch (err) {
      showApiError(saveForm, err, 'The template was not saved', { conflict: 'name', map: settingsField });
      if (err.status !== 409) return;
    }
    // The name is taken: offer to replace that template.
    const sure = await confirmDialog(
      `Template ${name} already exists. Replace its settings with the Create form's?${readme ? '' : ' Its about text is kept.'}`,
      `Replace ${name}`,
    );
    if (!sure) {
      saveName.control.focus();
      return;
    }
    clearError();
    clearFieldErrors(saveForm);
    try {
      const old = await api('GET', path(name));
      await api('PUT', path(name), { name, readme: readme ?? old.readme ?? undefined, settings });
      announce(`Template ${name} replaced`);
      saveForm.reset();
      await load();
    } catch (err) {
      showApiError(saveForm, err, 'The template was not replaced', { map: settingsField });
    }
  });

  // Make a template from an image.
  const fiName = field({ label: 'Name', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const fiImage = field({ label: 'Image', name: 'image', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. python:3.12' });
  const fiMode = field({ label: 'Launch mode', name: 'mode', control: 'select', hint: "In ssh and jupyter mode the image's ENTRYPOINT and CMD move into the onstart script." },
    [['entrypoint', 'Entrypoint'], ['ssh', 'SSH'], ['jupyter', 'Jupyter']].map(([v, t]) => h('option', { value: v }, t)));
  const fiReadme = field({ label: 'About (optional)', name: 'readme', control: 'textarea', rows: '2' });
  const fiSubmit = h('button', { type: 'submit', class: 'primary' }, 'Make template');
  const notes = h('div', { class: 'notes', id: 'from-image-notes', role: 'status' });
  const fromImage = h('form', { class: 'card', id: 'from-image-form', novalidate: true },
    h('h2', null, 'Make a template from an image'),
    h('p', { class: 'hint' }, 'berth reads the image (pulling it if needed) and carries its command, ports, environment and working directory over.'),
    h('div', { class: 'cols' }, fiName, fiImage), fiMode, fiReadme,
    h('div', { class: 'actions' }, fiSubmit), notes);
  fromImage.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    clearFieldErrors(fromImage);
    replace(notes, h('p', null, 'Inspecting the image…'));
    fiSubmit.disabled = true;
    try {
      const made = await api('POST', '/api/v1/templates/from-image', {
        name: fiName.control.value.trim(),
        image: fiImage.control.value.trim(),
        mode: fiMode.control.value,
        readme: fiReadme.control.value.trim() || undefined,
      });
      const name = made.template.name;
      replace(notes,
        h('h3', null, `Template ${name} made`),
        made.notes.length ? h('ul', null, made.notes.map((n) => h('li', null, n))) : h('p', null, 'Nothing needed moving.'),
        h('p', { class: 'actions' },
          h('a', { href: `#/create/${encodeURIComponent(name)}`, class: 'button primary', id: 'launch-made' }, `Launch from ${name}`),
          h('a', { href: hash(name), class: 'button' }, 'View its settings')));
      announce(`Template ${name} made`);
      await load();
    } catch (err) {
      replace(notes);
      showApiError(fromImage, err, 'The template was not made', { conflict: 'name' });
    } finally {
      fiSubmit.disabled = false;
    }
  });

  main.append(
    h('div', { class: 'page-head' }, heading('Templates'), h('a', { href: '#/create', class: 'button' }, 'Create instance')),
    h('div', { class: 'table-wrap' }, table),
    empty,
    h('div', { class: 'two' }, saveForm, fromImage),
  );
  load();
  if (arg === 'save') saveName.control.focus();
}

// ---------------------------------------------------------------------------------------
// One template: #/template/NAME and #/template/NAME/edit
// ---------------------------------------------------------------------------------------

export function renderOne(main, ctx) {
  const m = /^(.*)\/edit$/.exec(ctx.arg || '');
  if (m) return renderEdit(main, { ...ctx, arg: m[1] });
  return renderView(main, ctx);
}

/** A value shown exactly: line breaks as they are, a CR as ␍, an empty string said so. */
function exact(text, cls) {
  if (text === '') return h('span', { class: 'muted' }, '(empty)');
  return h('code', { class: cls || 'exact' }, text.replace(/\r/g, '␍'));
}

function none(what) {
  return h('span', { class: 'muted' }, what);
}

/** Every setting of a template, as definition-list rows. */
export function settingsRows(s) {
  const mode = s.mode || 'entrypoint';
  const rows = [
    ['Image', h('code', null, s.image)],
    ['Launch mode', mode],
  ];
  const show = (name, value) => applies(name, mode) || (value !== null && value !== undefined && value !== false);
  if (show('entrypoint', s.entrypoint)) rows.push(['Entrypoint', s.entrypoint === null || s.entrypoint === undefined ? none("the image's ENTRYPOINT") : exact(s.entrypoint)]);
  if (show('args', s.args)) {
    rows.push(['Arguments', !s.args
      ? none("the image's CMD")
      : s.args.length === 0
        ? none('none: an empty CMD')
        : h('ol', { class: 'args' }, s.args.map((a) => h('li', null, exact(a))))]);
  }
  if (show('onstart', s.onstart)) rows.push(['Onstart script', s.onstart ? h('pre', { class: 'script', tabindex: '0', 'aria-label': 'Onstart script' }, s.onstart) : none('none')]);
  if (show('direct', s.direct)) rows.push(['Direct connection required', s.direct ? 'yes' : 'no']);
  if (show('jupyter_lab', s.jupyter_lab)) rows.push(['Jupyter', s.jupyter_lab ? 'JupyterLab' : 'classic Notebook']);
  if (show('jupyter_dir', s.jupyter_dir)) rows.push(['Jupyter directory', s.jupyter_dir ? exact(s.jupyter_dir) : none('/ (the default)')]);
  const env = Object.entries(s.env || {});
  rows.push(['Environment', env.length
    ? h('table', { class: 'env' },
      h('caption', { class: 'visually-hidden' }, 'Environment variables'),
      h('thead', { class: 'visually-hidden' }, h('tr', null, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Value'))),
      h('tbody', null, env.map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, h('code', null, k)), h('td', null, exact(v))))))
    : none('none')]);
  rows.push(['Docker options', s.docker_options ? exact(s.docker_options) : none('none')]);
  rows.push(['Ports', (s.ports || []).length ? h('code', null, s.ports.join(' ')) : none('none')]);
  rows.push(['HTTP ports', (s.http_ports || []).length ? h('code', null, s.http_ports.join(' ')) : none('none')]);
  rows.push(['GPUs', String(s.gpus || 0)]);
  rows.push(['Label', s.label ? exact(s.label) : none('none')]);
  return rows;
}

function renderView(main, { arg, navigate }) {
  const name = arg;
  const title = heading(`Template ${name}`);
  const body = h('div', { class: 'template-view' });
  main.append(
    h('p', { class: 'back' }, h('a', { href: '#/templates' }, '← All templates')),
    h('div', { class: 'page-head' }, title),
    h('div', { class: 'actions', role: 'group', 'aria-label': 'Template actions' },
      h('a', { href: `#/create/${encodeURIComponent(name)}`, class: 'button primary', id: 'tpl-use' }, 'Launch from it'),
      h('a', { href: `${hash(name)}/edit`, class: 'button', id: 'tpl-edit' }, 'Edit'),
      h('button', { type: 'button', class: 'danger', id: 'tpl-delete', onclick: async () => (await removeTemplate(name)) && navigate('#/templates') }, 'Delete')),
    body,
  );
  api('GET', path(name))
    .then((t) => {
      const dl = h('dl', { class: 'summary', id: 'template-settings' },
        [...settingsRows(t.settings),
          ['About', t.readme ? h('p', { class: 'readme-text' }, t.readme) : none('nothing written')],
          ['Created', when(t.created_at)],
          ['Updated', when(t.updated_at)],
        ].map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
      replace(body, h('section', { class: 'card', 'aria-labelledby': 'h-tpl-settings' }, h('h2', { id: 'h-tpl-settings' }, 'Settings'), dl));
    })
    .catch((e) => showError(`Template ${name}: ${e.message}`));
}

function renderEdit(main, { arg, navigate }) {
  const name = arg;
  const settings = new SettingsForm('edit');
  const readme = field({ label: 'About', name: 'readme', control: 'textarea', rows: '3', hint: 'What the template is for and how to use it.' });
  const save = h('button', { type: 'submit', class: 'primary', id: 'tpl-save' }, 'Save template');
  const form = h('form', { class: 'card create-form', id: 'edit-template-form', novalidate: true, hidden: true },
    h('div', { class: 'group' }, h('p', { class: 'hint' }, 'Templates cannot be renamed. Settings you leave as they are stay exactly as saved.'), readme),
    settings.element,
    h('div', { class: 'actions' }, save, h('a', { href: hash(name), class: 'button', id: 'tpl-cancel' }, 'Cancel')));
  main.append(
    h('p', { class: 'back' }, h('a', { href: hash(name) }, `← Template ${name}`)),
    heading(`Edit template ${name}`),
    form,
  );
  let original = null;
  let readmeShown = '';
  api('GET', path(name))
    .then((t) => {
      original = t;
      settings.load({ name: t.name, settings: t.settings, readme: t.readme });
      readme.control.value = t.readme || '';
      readmeShown = readme.control.value;
      form.hidden = false;
    })
    .catch((e) => showError(`Template ${name}: ${e.message}`));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    clearFieldErrors(form);
    save.disabled = true;
    try {
      // The readme as saved unless edited (a text area turns its CRs into LFs).
      const text = readme.control.value === readmeShown ? original.readme : readme.control.value.trim();
      await api('PUT', path(name), { name, readme: text || undefined, settings: settings.settings() });
      announce(`Template ${name} saved`);
      navigate(hash(name));
    } catch (err) {
      showApiError(form, err, 'The template was not saved', { map: settingsField });
    } finally {
      save.disabled = false;
    }
  });
}
