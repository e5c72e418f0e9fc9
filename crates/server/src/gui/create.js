// Create an instance: the launch mode decides which fields show; a template fills the form,
// and then the request names the template and carries only what the user changed (the server
// lays it over the template as saved, so nothing the form cannot show exactly is lost); the
// API's field errors show next to their fields. The form (and the template under it) is kept
// while the GUI is open (the draft), so the Templates page can save it as a template.
import {
  announce, api, clearError, clearFieldErrors, field, h, heading, replace, setFieldError,
  showApiError,
} from './lib.js';
import { SettingsForm } from './settings.js';

/** The form as the user left it: the template under it (`{name, settings, readme}` or null),
 *  the controls' texts and the kept values the user chose to drop. */
let draft = { base: null, texts: null, dropped: {} };

/** The complete settings of the Create form, for "save as template" (throws an ApiError
 *  naming the field at fault). */
export function draftSettings() {
  const f = new SettingsForm('create');
  f.load(draft.base, draft.texts, draft.dropped);
  return f.settings();
}

/** The template the Create form was filled from, if any. */
export function draftTemplate() {
  return draft.base ? draft.base.name : null;
}

export function render(main, { arg, navigate }) {
  const picker = field(
    { label: 'Start from a template', name: 'template', control: 'select', hint: 'Fills in the form. What you change overrides the template; everything else is launched exactly as the template has it. “No template” keeps what the form shows.' },
    [h('option', { value: '' }, 'No template')],
  );
  const readme = h('div', { class: 'readme', id: 'template-readme', hidden: true });
  const settings = new SettingsForm('create');

  const submit = h('button', { type: 'submit', class: 'primary', id: 'create-submit' }, 'Create instance');
  const saveTemplate = h('button', { type: 'button', id: 'save-template' }, 'Save as template…');
  const reset = h('button', { type: 'button', id: 'reset-form' }, 'Clear form');

  const form = h(
    'form',
    { class: 'card create-form', novalidate: true },
    h('div', { class: 'group' }, picker, readme),
    settings.element,
    h('div', { class: 'actions' }, submit, saveTemplate, reset),
  );

  const keep = () => {
    draft = { base: settings.base, texts: settings.texts(), dropped: settings.dropped };
  };
  form.addEventListener('input', (e) => {
    if (e.target !== picker.control) keep();
  });
  form.addEventListener('change', (e) => {
    if (e.target !== picker.control) keep();
  });

  const showBase = () => {
    const t = settings.base;
    picker.control.value = t ? t.name : '';
    if (!t) {
      readme.hidden = true;
      return;
    }
    replace(readme,
      h('p', null, h('strong', null, `Template ${t.name}`), t.readme ? `: ${t.readme}` : ''),
      h('p', { class: 'hint' }, 'Settings you leave as they are come from the template exactly. ',
        h('a', { href: `#/template/${encodeURIComponent(t.name)}` }, 'See all its settings'), '.'));
    readme.hidden = false;
  };

  let templates = [];
  const useTemplate = (name) => {
    clearFieldErrors(form);
    if (!name) {
      // Keep what the form shows, without the template under it.
      const texts = settings.texts();
      settings.load(null, texts);
      keep();
      showBase();
      announce('The form no longer uses a template');
      return;
    }
    const t = templates.find((x) => x.name === name);
    if (!t) return;
    settings.load({ name: t.name, settings: t.settings, readme: t.readme });
    keep();
    showBase();
    announce(`Form filled from template ${t.name}`);
  };
  picker.control.addEventListener('change', () => useTemplate(picker.control.value));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    clearFieldErrors(form);
    keep();
    submit.disabled = true;
    try {
      const body = settings.base ? settings.overrides() : settings.settings();
      const created = await api('POST', '/api/v1/instances', body);
      announce(`Instance ${created.id} created`);
      navigate(`#/instances/${created.id}`);
    } catch (err) {
      showApiError(form, err, 'The instance was not created');
    } finally {
      submit.disabled = false;
    }
  });
  saveTemplate.addEventListener('click', () => {
    keep();
    navigate('#/templates/save');
  });
  reset.addEventListener('click', () => {
    clearFieldErrors(form);
    clearError();
    settings.load(null);
    keep();
    showBase();
    settings.controls.image.control.focus();
  });

  main.append(heading('Create an instance'), form);
  settings.load(draft.base, draft.texts, draft.dropped);
  showBase();

  api('GET', '/api/v1/templates')
    .then((list) => {
      templates = list || [];
      picker.control.append(...templates.map((t) => h('option', { value: t.name }, `${t.name} (${t.settings.image}, ${t.settings.mode || 'entrypoint'})`)));
      if (settings.base && !arg && !templates.some((t) => t.name === settings.base.name)) {
        picker.control.append(h('option', { value: settings.base.name }, `${settings.base.name} (deleted)`));
        setFieldError(form, 'template', `template ${settings.base.name} no longer exists: choose another, or “No template” to keep what the form shows`);
      }
      // The template may have been edited since the draft was filled from it: show it as it
      // is now, with the user's changes on top.
      const fresh = settings.base && templates.find((t) => t.name === settings.base.name);
      if (!arg && fresh && JSON.stringify(fresh.settings) !== JSON.stringify(settings.base.settings)) {
        settings.load({ name: fresh.name, settings: fresh.settings, readme: fresh.readme }, settings.edits(), settings.dropped);
        keep();
        showBase();
        announce(`Template ${fresh.name} changed since you chose it: the form shows it as it is now, with your changes`);
      }
      picker.control.value = settings.base ? settings.base.name : '';
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
