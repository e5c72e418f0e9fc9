// SSH keys: the account's public keys (installed in every ssh and jupyter instance within
// seconds); add one by pasting it, remove one.
import {
  announce, api, clearError, clearFieldErrors, confirmDialog, field, h, heading, replace,
  showApiError, showError, when,
} from './lib.js';

export function render(main) {
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'list' },
    h('caption', { class: 'visually-hidden' }, 'Your SSH keys'),
    h('thead', null, h('tr', null, ['Fingerprint', 'Key', 'Added', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody,
  );
  const empty = h('p', { class: 'empty', hidden: true }, 'No keys yet: add one below to log in to your ssh and jupyter instances.');

  const load = async () => {
    let list;
    try {
      list = await api('GET', '/api/v1/keys');
    } catch (e) {
      showError(`Keys cannot be listed: ${e.message}`);
      return;
    }
    replace(tbody, list.map((k) => {
      const [type, , comment] = k.key.split(' ');
      return h('tr', { 'data-key': k.id },
        h('td', { 'data-label': 'Fingerprint', class: 'mono' }, k.fingerprint),
        h('td', { 'data-label': 'Key' }, `${type}${comment ? ` ${comment}` : ''}`),
        h('td', { 'data-label': 'Added' }, when(k.created_at)),
        h('td', { 'data-label': 'Actions' },
          h('button', { type: 'button', class: 'small danger', 'aria-label': `Remove key ${k.fingerprint}`, onclick: () => remove(k) }, 'Remove')));
    }));
    table.hidden = list.length === 0;
    empty.hidden = list.length !== 0;
  };
  const remove = async (k) => {
    if (!(await confirmDialog(`Remove key ${k.fingerprint}? It stops working in your instances within seconds.`, 'Remove key'))) return;
    clearError();
    try {
      await api('DELETE', `/api/v1/keys/${k.id}`);
      announce('Key removed');
      await load();
    } catch (e) {
      showError(`Could not remove the key: ${e.message}`);
    }
  };

  const key = field({
    label: 'Public key',
    name: 'key',
    control: 'textarea',
    rows: '3',
    spellcheck: 'false',
    required: true,
    placeholder: 'ssh-ed25519 AAAA… you@laptop',
    hint: 'Paste one line of your public key file, e.g. ~/.ssh/id_ed25519.pub (never the private key).',
  });
  const form = h('form', { class: 'card', id: 'add-key-form', novalidate: true },
    h('h2', null, 'Add a key'), key,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add key')));
  // Enter in the textarea adds the key (a public key is one line); Shift+Enter is a newline.
  key.control.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    clearFieldErrors(form);
    try {
      const added = await api('POST', '/api/v1/keys', { key: key.control.value.trim() });
      announce(`Key ${added.fingerprint} added`);
      form.reset();
      await load();
    } catch (err) {
      showApiError(form, err, 'The key was not added');
    }
  });

  main.append(heading('SSH keys'), h('div', { class: 'table-wrap' }, table), empty, form);
  load();
}
