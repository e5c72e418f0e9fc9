// Templates: the list (use one to fill the Create form, or delete it), saving the Create
// form as a template, and making one from an image (berth inspects it and says what it
// moved where).
import {
  announce, api, clearError, clearFieldErrors, confirmDialog, field, h, heading, replace,
  showApiError, showError, when,
} from './lib.js';
import { draftSettings } from './create.js';

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
      h('td', { 'data-label': 'Name' }, h('strong', null, t.name)),
      h('td', { 'data-label': 'Image', class: 'mono' }, t.settings.image),
      h('td', { 'data-label': 'Mode' }, t.settings.mode || 'entrypoint'),
      h('td', { 'data-label': 'About', class: 'about' }, t.readme || ''),
      h('td', { 'data-label': 'Updated' }, when(t.updated_at)),
      h('td', { 'data-label': 'Actions' },
        h('div', { class: 'actions tight' },
          h('a', { href: `#/create/${encodeURIComponent(t.name)}`, class: 'button small', 'aria-label': `Launch from template ${t.name}` }, 'Use'),
          h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete template ${t.name}`, onclick: () => remove(t.name) }, 'Delete'))));
  const remove = async (name) => {
    if (!(await confirmDialog(`Delete template ${name}? Instances made from it keep running.`, `Delete ${name}`))) return;
    clearError();
    try {
      await api('DELETE', `/api/v1/templates/${encodeURIComponent(name)}`);
      announce(`Template ${name} deleted`);
      await load();
    } catch (e) {
      showError(`Could not delete template ${name}: ${e.message}`);
    }
  };

  // Save the Create form as a template.
  const saveName = field({ label: 'Name', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const saveReadme = field({ label: 'About (optional)', name: 'readme', control: 'textarea', rows: '2', hint: 'What the template is for and how to use it.' });
  const draftSummary = h('p', { class: 'hint', id: 'draft-summary' });
  const saveForm = h('form', { class: 'card', id: 'save-template-form', novalidate: true },
    h('h2', { id: 'h-save' }, 'Save the Create form as a template'),
    draftSummary, saveName, saveReadme,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save template')));
  let settings = null;
  try {
    settings = draftSettings();
    replace(draftSummary, settings.image
      ? ['The Create form holds: ', h('code', null, settings.image), ` in ${settings.mode} mode. `, h('a', { href: '#/create' }, 'Edit it'), '.']
      : ['The Create form is empty: ', h('a', { href: '#/create' }, 'fill it in'), ' first.']);
  } catch (e) {
    replace(draftSummary, `The Create form has an error (${e.message}): `, h('a', { href: '#/create' }, 'fix it'), ' first.');
  }
  saveForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    clearFieldErrors(saveForm);
    try {
      const body = { name: saveName.control.value.trim(), readme: saveReadme.control.value.trim() || undefined, settings: draftSettings() };
      await api('POST', '/api/v1/templates', body);
      announce(`Template ${body.name} saved`);
      saveForm.reset();
      await load();
    } catch (err) {
      showApiError(saveForm, err, 'The template was not saved');
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
        h('p', null, h('a', { href: `#/create/${encodeURIComponent(name)}`, class: 'button primary', id: 'launch-made' }, `Launch from ${name}`)));
      announce(`Template ${name} made`);
      await load();
    } catch (err) {
      replace(notes);
      showApiError(fromImage, err, 'The template was not made');
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
