// Sign in with an API key: POST /api/v1/session sets the HttpOnly session cookie.
import { api, clearError, clearFieldErrors, field, h, heading, setSessionProof, showApiError } from './lib.js';

export function render(main, { signedIn }) {
  const key = field({
    label: 'API key',
    name: 'api_key',
    type: 'password',
    autocomplete: 'current-password',
    spellcheck: 'false',
    required: true,
    hint: 'berth up prints the admin key; an admin makes a key for you with "berth users add NAME".',
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'signin-form', novalidate: true }, key, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    clearFieldErrors(form);
    const apiKey = key.control.value.trim();
    if (!apiKey) {
      showApiError(form, { message: 'api_key: enter your API key', field: 'api_key' });
      return;
    }
    submit.disabled = true;
    try {
      const me = await api('POST', '/api/v1/session', { api_key: apiKey });
      setSessionProof(me.proof);
      signedIn({ name: me.name, admin: me.admin });
    } catch (err) {
      if (err.status === 401) err = { message: 'api_key: this API key is not valid', field: 'api_key' };
      showApiError(form, err, 'Sign-in failed');
    } finally {
      submit.disabled = false;
    }
  });
  main.append(
    h('section', { class: 'card signin' }, heading('Sign in to berth'), form),
  );
  key.control.focus();
}
