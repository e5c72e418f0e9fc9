// berth's web GUI: the shell (header, navigation, sign-out) and the hash router. Each page
// is a module exporting `render(main, ctx)`, which may return a function that stops what
// the page started (polling, log streams) when the user leaves it.
//
// Routes: #/instances, #/instances/ID, #/create[/TEMPLATE], #/templates, #/template/NAME,
// #/template/NAME/edit, #/keys, #/hosts.
import { api, clearError, setSessionProof, showError } from './lib.js';
import * as signin from './signin.js';
import * as instances from './instances.js';
import * as create from './create.js';
import * as templates from './templates.js';
import * as keys from './keys.js';
import * as hosts from './hosts.js';

const PAGES = {
  instances: { title: 'Instances', nav: 'instances', render: (m, c) => (c.arg ? instances.renderDetail(m, c) : instances.renderList(m, c)) },
  create: { title: 'Create', nav: 'create', render: create.render },
  templates: { title: 'Templates', nav: 'templates', render: templates.render },
  template: { title: 'Template', nav: 'templates', render: templates.renderOne },
  keys: { title: 'SSH keys', nav: 'keys', render: keys.render },
  hosts: { title: 'Hosts', nav: 'hosts', render: hosts.render },
};

let me = null;
let leave = null;

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  return { page: parts[0] || 'instances', arg: parts.slice(1).map(decodeURIComponent).join('/') || null };
}

function stopPage() {
  if (leave) leave();
  leave = null;
}

async function route() {
  stopPage();
  clearError();
  const main = document.getElementById('main');
  if (!me) {
    try {
      me = await api('GET', '/api/v1/me');
    } catch (e) {
      if (e.status !== 401) showError(e.message);
      showSignIn(main);
      return;
    }
  }
  showShell();
  const { page, arg } = parseHash();
  const p = PAGES[page] || PAGES.instances;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === p.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${p.title} · berth`;
  main.replaceChildren();
  window.scrollTo(0, 0);
  const ctx = { me, arg, navigate };
  leave = p.render(main, ctx) || null;
  // Screen readers (and the next Tab) start from the new page's heading. Its focus is
  // programmatic: no focus ring (it is not a control; see app.css).
  const h1 = main.querySelector('h1');
  if (h1 && !main.contains(document.activeElement)) h1.focus({ preventScroll: true, focusVisible: false });
}

function showSignIn(main) {
  document.getElementById('top').hidden = true;
  document.title = 'Sign in · berth';
  main.replaceChildren();
  leave = signin.render(main, {
    signedIn(user) {
      me = user;
      if (!location.hash || location.hash.startsWith('#/signin')) location.hash = '#/instances';
      else route();
    },
  });
}

function showShell() {
  document.getElementById('top').hidden = false;
  const who = document.getElementById('who');
  who.textContent = me.admin && me.name !== 'admin' ? `${me.name} (admin)` : me.name;
  who.title = me.admin ? 'Signed in as an admin' : 'Signed in';
}

/** Goes to a route (`#/…`); re-renders even when it is the current one. */
export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function signOut() {
  try {
    await api('DELETE', '/api/v1/session');
  } catch (e) {
    showError(`Signing out failed: ${e.message}`);
    return;
  }
  me = null;
  setSessionProof(null);
  stopPage();
  history.replaceState(null, '', location.pathname);
  route();
}

window.addEventListener('hashchange', route);
window.addEventListener('berth:unauthorized', () => {
  if (!me) return;
  me = null;
  stopPage();
  route().then(() => showError('Your session has ended: sign in again.'));
});
document.getElementById('signout').addEventListener('click', signOut);
route();
