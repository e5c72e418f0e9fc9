// Instances: the list (live: polled every 2 s) and one instance's page: its settings, the
// connect panel (ssh commands and Jupyter/http links, direct and through the proxy, the
// port table, the CA certificate), stop/start/reboot/destroy, and its logs, followed as
// they come.
import {
  age, announce, api, clearError, confirmDialog, copyButton, h, heading, liveTable, poll,
  replace, showError, streamText, when,
} from './lib.js';

const POLL_MS = 2000;

/** "running", "loading 42%", "exited (code 1)", "failed: no sshd in the image". */
export function stateText(i) {
  switch (i.state) {
    case 'loading':
      if (i.progress && i.progress.total > 0) {
        return `loading ${Math.floor((100 * i.progress.current) / i.progress.total)}%`;
      }
      return 'loading';
    case 'exited':
      return i.exit_code === null || i.exit_code === undefined ? 'exited' : `exited (code ${i.exit_code})`;
    case 'failed':
      return i.reason ? `failed: ${i.reason}` : 'failed';
    default:
      return i.state;
  }
}

function stateBadge(i) {
  return h('span', { class: `state state-${i.state}`, title: stateText(i) }, stateText(i));
}

/** The state in a word or two (the instance page shows a failure's reason on its own). */
function shortState(i) {
  return i.state === 'failed' ? 'failed' : stateText(i);
}

/** Why stop, start or reboot does not apply in the instance's state (null: it does). An
 *  offline host's instance takes them all: the agent acts on them when it is back. */
export function actionBlocks(i) {
  const s = i.state;
  const up = s === 'running' || s === 'connecting';
  const starting = s === 'created' || s === 'loading';
  const down = s === 'stopped' || s === 'exited' || s === 'failed';
  return {
    stop: down ? `Stop does not apply: the instance is not running (${shortState(i)})` : null,
    start: up ? 'Start does not apply: the instance is already running' : starting ? 'Start does not apply: the instance is already starting' : null,
    reboot: down ? `Reboot does not apply: the instance is not running (${shortState(i)}); use Start` : starting ? 'Reboot does not apply: the instance is still starting' : null,
  };
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

export function renderList(main) {
  const { table, update } = liveTable(
    'Your instances',
    [
      {
        label: 'ID',
        render: (i) => h('a', { href: `#/instances/${i.id}`, 'aria-label': `Instance ${i.id}: open` }, String(i.id)),
        sig: (i) => String(i.id),
        class: 'num',
      },
      { label: 'State', render: stateBadge, sig: (i) => `${i.state} ${stateText(i)}` },
      { label: 'Image', render: (i) => i.image, class: 'mono' },
      { label: 'Mode', render: (i) => i.mode },
      { label: 'Label', render: (i) => i.label || '' },
      { label: 'Age', render: (i) => age(i.created_at) },
      {
        label: 'Actions',
        render: (i) => h('a', { href: `#/instances/${i.id}`, class: 'button small', 'aria-label': `Instance ${i.id}: connect, logs and actions` }, 'Details'),
        sig: () => 'open',
      },
    ],
    (i) => i.id,
  );
  const empty = h('p', { class: 'empty', hidden: true }, 'No instances yet. ', h('a', { href: '#/create' }, 'Create one'), '.');
  main.append(
    h(
      'div',
      { class: 'page-head' },
      heading('Instances'),
      h('a', { href: '#/create', class: 'button primary' }, 'Create instance'),
    ),
    h('div', { class: 'table-wrap' }, table),
    empty,
  );
  return poll(POLL_MS, async () => {
    const list = await api('GET', '/api/v1/instances');
    list.sort((a, b) => b.id - a.id);
    update(list);
    table.hidden = list.length === 0;
    empty.hidden = list.length !== 0;
  });
}

// ---------------------------------------------------------------------------------------
// One instance
// ---------------------------------------------------------------------------------------

export function renderDetail(main, { arg, navigate }) {
  const id = Number.parseInt(arg, 10);
  const title = heading(`Instance ${arg}`);
  const badge = h('span', { class: 'head-state', 'aria-live': 'polite' });
  const summary = h('dl', { class: 'summary' });
  const connect = h('div', { class: 'connect' });
  const reason = reasonBox();
  const logs = logsPanel(id);
  let current = null;
  let busy = false;

  const act = async (verb) => {
    if (busy) return;
    clearError();
    busy = true;
    try {
      const i = await api('POST', `/api/v1/instances/${id}/${verb}`);
      show(i);
      announce(`${verb} requested for instance ${id}`);
    } catch (e) {
      showError(`Could not ${verb} instance ${id}: ${e.message}`);
    } finally {
      busy = false;
    }
  };
  const buttons = {
    stop: h('button', { type: 'button', id: 'act-stop', onclick: () => act('stop') }, 'Stop'),
    start: h('button', { type: 'button', id: 'act-start', onclick: () => act('start') }, 'Start'),
    reboot: h('button', { type: 'button', id: 'act-reboot', onclick: () => act('reboot') }, 'Reboot'),
  };
  // A button that does not apply is disabled, and says why (its title, which is also its
  // accessible description). If the focus was on it, it moves to one that applies.
  const enable = (i) => {
    const blocks = actionBlocks(i);
    const focused = document.activeElement;
    for (const [verb, b] of Object.entries(buttons)) {
      b.disabled = !!blocks[verb];
      if (blocks[verb]) b.title = blocks[verb];
      else b.removeAttribute('title');
    }
    if (focused && focused.disabled && Object.values(buttons).includes(focused)) {
      (Object.values(buttons).find((b) => !b.disabled) || document.getElementById('act-destroy')).focus();
    }
  };
  const destroy = async () => {
    const sure = await confirmDialog(
      `Destroy instance ${id}? Its container and everything in it are deleted; this cannot be undone.`,
      `Destroy instance ${id}`,
    );
    if (!sure) return;
    clearError();
    try {
      await api('DELETE', `/api/v1/instances/${id}`);
      announce(`Instance ${id} destroyed`);
      navigate('#/instances');
    } catch (e) {
      showError(`Could not destroy instance ${id}: ${e.message}`);
    }
  };
  const actions = h(
    'div',
    { class: 'actions', role: 'group', 'aria-label': 'Instance actions' },
    buttons.stop,
    buttons.start,
    buttons.reboot,
    h('button', { type: 'button', id: 'act-destroy', class: 'danger', onclick: destroy }, 'Destroy'),
  );

  main.append(
    h('p', { class: 'back' }, h('a', { href: '#/instances' }, '← All instances')),
    h('div', { class: 'page-head' }, title, badge),
    reason.element,
    actions,
    h('div', { class: 'detail-grid' },
      h('section', { class: 'card connect-card', 'aria-labelledby': 'h-connect' }, h('h2', { id: 'h-connect' }, 'Connect'), connect, caSection()),
      logs.section,
      h('section', { class: 'card settings-card', 'aria-labelledby': 'h-settings' }, h('h2', { id: 'h-settings' }, 'Settings'), summary)),
  );

  const sigs = {};
  const changed = (name, value) => {
    const s = JSON.stringify(value);
    if (sigs[name] === s) return false;
    sigs[name] = s;
    return true;
  };
  function show(i) {
    current = i;
    logs.setMode(i.mode);
    if (changed('badge', [i.state, stateText(i)])) {
      replace(badge, h('span', { class: `state state-${i.state}`, title: stateText(i) }, shortState(i)));
      reason.show(i.state === 'failed' ? i.reason : null);
    }
    enable(i);
    // Rebuild a part only when what it shows changed (keeps the focus on its buttons).
    if (changed('summary', { ...i, ports: null, progress: null, age: age(i.created_at) })) {
      replace(summary, summaryRows(i));
    }
    if (changed('connect', { ...i, progress: null, exit_code: null, reason: null })) {
      replace(connect, connectPanel(i));
    }
  }

  const stop = poll(POLL_MS, async () => {
    try {
      show(await api('GET', `/api/v1/instances/${id}`));
    } catch (e) {
      if (e.status === 404 && !current) {
        replace(summary);
        replace(connect);
      }
      throw e;
    }
  });
  return () => {
    stop();
    logs.stop();
  };
}

function summaryRows(i) {
  const rows = [
    ['State', shortState(i)],
    ['Image', h('code', null, i.image)],
    ['Launch mode', i.mode],
    ['Label', i.label || '—'],
    ['Host', i.host],
    ['Created', `${when(i.created_at)} (${age(i.created_at)} ago)`],
    ['Started', i.started_at ? when(i.started_at) : '—'],
    ['GPUs', String(i.gpus)],
  ];
  if (i.mode === 'entrypoint') {
    rows.push(['Entrypoint', i.entrypoint ? h('code', null, i.entrypoint) : "the image's"]);
    rows.push([
      'Arguments',
      i.args ? (i.args.length ? h('ol', { class: 'args' }, i.args.map((a) => h('li', null, h('code', null, a)))) : 'none') : "the image's CMD",
    ]);
  } else {
    rows.push(['Onstart script', i.onstart ? h('pre', { class: 'script', tabindex: '0', 'aria-label': 'Onstart script' }, i.onstart) : '—', true]);
    rows.push(['Direct connection required', i.direct ? 'yes' : 'no']);
  }
  if (i.mode === 'jupyter') {
    rows.push(['Jupyter', `${i.jupyter_lab ? 'JupyterLab' : 'Notebook'} in ${i.jupyter_dir || '/'}`]);
  }
  const env = Object.entries(i.env || {});
  if (env.length) rows.push(['Environment', h('pre', { class: 'env', tabindex: '0', 'aria-label': 'Environment' }, env.map(([k, v]) => `${k}=${v}`).join('\n')), true]);
  // Scripts and env get the card's whole width (a block of their own, scrolling sideways).
  return rows.map(([k, v, wide]) => [h('dt', { class: wide ? 'wide' : null }, k), h('dd', { class: wide ? 'wide' : null }, v)]);
}

/** `ssh -p PORT root@IP` to the instance's sshd through the host's open port, if mapped. */
export function directSsh(i) {
  const p = (i.ports || []).find((m) => m.internal === 22 && m.proto === 'tcp' && !m.local);
  return p && i.public_ip ? `ssh -p ${p.external} root@${i.public_ip}` : null;
}

/** `ssh -p PORT root@PROXY` through berth's proxy. */
export function proxySsh(i) {
  if (!i.proxy_ssh) return null;
  const at = i.proxy_ssh.lastIndexOf(':');
  const host = i.proxy_ssh.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  return `ssh -p ${i.proxy_ssh.slice(at + 1)} root@${host}`;
}

function command(id, text, what) {
  const code = h('code', { id, class: 'command' }, text);
  return h('div', { class: 'copyable' }, code, copyButton(code, what));
}

function link(url, text) {
  return h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', class: 'url' }, text || url);
}

function connectPanel(i) {
  const out = [];
  const ssh = i.mode !== 'entrypoint';
  if (ssh) {
    const direct = directSsh(i);
    const proxy = proxySsh(i);
    out.push(
      h('h3', null, 'SSH'),
      h('p', { class: 'hint' }, 'Add your public key on the ', h('a', { href: '#/keys' }, 'SSH keys'), ' page first.'),
      h('dl', { class: 'ways' },
        h('dt', null, 'Direct'),
        h('dd', null, direct ? command('ssh-direct', direct, 'direct ssh command') : waiting(i, 'No direct port: the host has no open ports; use the proxy.')),
        h('dt', null, 'Through the proxy'),
        h('dd', null, proxy ? command('ssh-proxy', proxy, 'proxy ssh command') : 'This deployment has no proxy.')),
    );
  }
  if (i.mode === 'jupyter') {
    out.push(
      h('h3', null, 'Jupyter'),
      h('dl', { class: 'ways' },
        h('dt', null, 'Direct'),
        h('dd', null, i.jupyter_url ? link(i.jupyter_url, 'Open Jupyter (direct)') : waiting(i, 'No direct link: the host has no open ports.')),
        h('dt', null, 'Through the proxy'),
        h('dd', null, i.proxy_jupyter_url ? link(i.proxy_jupyter_url, 'Open Jupyter (proxy)') : 'This deployment has no proxy.')),
    );
  }
  if ((i.http_urls || []).length) {
    out.push(
      h('h3', null, 'HTTP ports (through the proxy)'),
      h('ul', { class: 'links' }, i.http_urls.map((u) => h('li', null, link(u.url, `Port ${u.port}`)))),
    );
  }
  out.push(h('h3', null, 'Ports'));
  if ((i.ports || []).length) {
    out.push(
      h('div', { class: 'table-wrap' },
        h('table', { class: 'ports' },
          h('caption', { class: 'visually-hidden' }, 'Port mappings'),
          h('thead', null, h('tr', null, ['Container port', 'Reach it at', 'Direct'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', null, i.ports.map((m) =>
            h('tr', null,
              h('td', { 'data-label': 'Container port' }, `${m.internal}/${m.proto}`),
              h('td', { 'data-label': 'Reach it at', class: 'mono' }, m.local ? `127.0.0.1:${m.external} on the host` : `${i.public_ip}:${m.external}`),
              h('td', { 'data-label': 'Direct' }, m.local ? 'no (proxy only)' : 'yes')))))),
    );
  } else {
    out.push(h('p', null, waiting(i, 'No ports are mapped.')));
  }
  return out;
}

/** A copyable block of shell commands. */
function snippet(text, what) {
  const pre = h('pre', { class: 'command' }, text);
  return h('div', { class: 'copyable' }, pre, copyButton(pre, what));
}

/** The CA certificate's download link and the short steps to trust it (as in the README's
 *  "Trusting berth's certificate authority"). Built once: polling never closes it. */
function caSection() {
  return h('div', { class: 'ca' },
    h('h3', null, 'Certificate authority'),
    h('p', null,
      h('a', { href: '/api/v1/ca.crt', download: 'berth-ca.crt', id: 'ca-link' }, "Download berth's CA certificate (berth-ca.crt)"),
      ". Install it once on each machine you browse from, and Jupyter's direct links and the proxy's HTTPS links are trusted."),
    h('details', { class: 'ca-steps', id: 'ca-steps' },
      h('summary', null, 'How to install it'),
      h('p', null, 'Downloaded over plain HTTP? Compare its fingerprint with the one of the server\'s ', h('code', null, 'DATA_DIR/ca.crt'), ' first:'),
      snippet('openssl x509 -in berth-ca.crt -noout -subject -fingerprint -sha256', 'fingerprint command'),
      h('h4', null, 'Linux, system store (curl, wget, most tools)'),
      h('p', null, 'Debian / Ubuntu (the file must end in .crt):'),
      snippet('sudo cp berth-ca.crt /usr/local/share/ca-certificates/\nsudo update-ca-certificates', 'Debian commands'),
      h('p', null, 'Fedora / RHEL:'),
      snippet('sudo cp berth-ca.crt /etc/pki/ca-trust/source/anchors/\nsudo update-ca-trust', 'Fedora commands'),
      h('h4', null, 'Chrome / Chromium on Linux'),
      h('p', null, 'They keep their own NSS database. ', h('code', null, 'certutil'), ' is in Debian\'s ', h('code', null, 'libnss3-tools'), ' (Fedora: ', h('code', null, 'nss-tools'), '); the first two lines only if the browser never ran. Restart the browser after.'),
      snippet('mkdir -p $HOME/.pki/nssdb\ncertutil -d sql:$HOME/.pki/nssdb -N --empty-password\ncertutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n berth-ca -i berth-ca.crt', 'certutil commands'),
      h('h4', null, 'macOS (Safari, Chrome, curl)'),
      h('p', null, 'Keychain Access → the ', h('strong', null, 'System'), ' keychain → File → Import Items… → berth-ca.crt; double-click “berth CA …” → Trust → When using this certificate: ', h('strong', null, 'Always Trust'), '; close it and confirm with your password. Or in a terminal:'),
      snippet('sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain berth-ca.crt', 'macOS command'),
      h('h4', null, 'Windows (Edge, Chrome, curl)'),
      h('p', null, h('code', null, 'certmgr.msc'), ' → ', h('strong', null, 'Trusted Root Certification Authorities'), ' → right-click Certificates → All Tasks → Import… → berth-ca.crt → Finish, and answer Yes to the warning. Or in a prompt run as administrator:'),
      snippet('certutil -addstore -f Root berth-ca.crt', 'Windows command'),
      h('h4', null, 'Firefox (its own store, on every system)'),
      h('p', null, 'Settings → Privacy & Security → Certificates → View Certificates… → Authorities → Import… → berth-ca.crt, tick ', h('strong', null, '“Trust this CA to identify websites”'), ' → OK. (On Windows and macOS, ', h('code', null, 'about:config'), ' → ', h('code', null, 'security.enterprise_roots.enabled'), ' = true makes it trust the system\'s store instead.)'),
      h('p', { class: 'hint' }, 'More in berth\'s README, “Trusting berth\'s certificate authority”.')));
}

/** A failure's reason under the page's heading: a few lines, and a button to see it all. */
function reasonBox() {
  const text = h('p', { class: 'reason-text', id: 'reason-text' });
  const more = h('button', { type: 'button', class: 'small', id: 'reason-more', 'aria-expanded': 'false', 'aria-controls': 'reason-text', hidden: true }, 'Show all');
  const element = h('div', { class: 'reason', id: 'state-reason', role: 'group', 'aria-label': 'Why the instance failed', hidden: true }, text, more);
  // Only a reason longer than the few lines shown gets the button (measured again when the
  // width changes: a phone turned, a window resized).
  const measure = () => {
    if (!element.classList.contains('open')) more.hidden = text.scrollHeight <= text.clientHeight + 1;
  };
  new ResizeObserver(measure).observe(text);
  more.addEventListener('click', () => {
    const open = element.classList.toggle('open');
    more.setAttribute('aria-expanded', String(open));
    more.textContent = open ? 'Show less' : 'Show all';
  });
  return {
    element,
    show(reason) {
      element.hidden = !reason;
      element.classList.remove('open');
      more.setAttribute('aria-expanded', 'false');
      more.textContent = 'Show all';
      text.textContent = reason || '';
      if (!reason) return;
      requestAnimationFrame(measure);
    },
  };
}

function waiting(i, settled) {
  return ['created', 'loading', 'connecting'].includes(i.state) ? 'Not mapped yet (the instance is starting).' : settled;
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

/** Keep at most this much log text on the page. */
const MAX_LOG_CHARS = 512 * 1024;

function logsPanel(id) {
  const out = h('pre', { class: 'log', id: 'log-output', tabindex: '0', 'aria-label': 'Log output', 'aria-live': 'off' });
  const status = h('p', { class: 'hint', id: 'log-status', role: 'status' }, 'Not following.');
  const kindContainer = h('input', { type: 'radio', name: 'log-kind', id: 'log-container', value: 'container', checked: true });
  const kindOnstart = h('input', { type: 'radio', name: 'log-kind', id: 'log-onstart', value: 'onstart' });
  const kinds = h(
    'fieldset',
    { class: 'inline', hidden: true },
    h('legend', null, 'Log'),
    h('span', { class: 'choice' }, kindContainer, h('label', { for: 'log-container' }, 'Container output')),
    h('span', { class: 'choice' }, kindOnstart, h('label', { for: 'log-onstart' }, 'Onstart script')),
  );
  const follow = h('button', { type: 'button', id: 'log-follow', class: 'primary' }, 'Follow logs');
  const stopButton = h('button', { type: 'button', id: 'log-stop', disabled: true }, 'Stop following');
  const clear = h('button', { type: 'button', id: 'log-clear' }, 'Clear');
  let controller = null;
  let retry = null;

  const append = (text) => {
    const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
    let all = out.textContent + text;
    if (all.length > MAX_LOG_CHARS) {
      all = all.slice(all.length - MAX_LOG_CHARS);
      all = all.slice(all.indexOf('\n') + 1);
    }
    out.textContent = all;
    if (atBottom) out.scrollTop = out.scrollHeight;
  };
  const stop = (message) => {
    clearTimeout(retry);
    if (controller) controller.abort();
    controller = null;
    follow.disabled = false;
    stopButton.disabled = true;
    status.textContent = message || 'Stopped following.';
  };
  const start = async () => {
    stop();
    out.textContent = '';
    const ctl = new AbortController();
    controller = ctl;
    follow.disabled = true;
    stopButton.disabled = false;
    const onstart = kindOnstart.checked;
    status.textContent = `Following the ${onstart ? 'onstart log' : 'container output'}…`;
    try {
      await streamText(`/api/v1/instances/${id}/logs?follow=true${onstart ? '&onstart=true' : ''}`, ctl.signal, append);
      if (controller === ctl) stop('The log ended (the container is not running).');
    } catch (e) {
      if (controller !== ctl) return;
      if (e.name === 'AbortError') return;
      if (e.status === 409) {
        // No container yet: try again shortly, still "following".
        status.textContent = `${e.message}; trying again…`;
        retry = setTimeout(() => controller === ctl && start(), 2000);
        return;
      }
      stop(`Logs: ${e.message}`);
    }
  };
  follow.addEventListener('click', start);
  stopButton.addEventListener('click', () => stop());
  clear.addEventListener('click', () => (out.textContent = ''));
  for (const r of [kindContainer, kindOnstart]) {
    r.addEventListener('change', () => {
      if (controller) start();
    });
  }
  const section = h(
    'section',
    { class: 'card logs', 'aria-labelledby': 'h-logs' },
    h('h2', { id: 'h-logs' }, 'Logs'),
    kinds,
    h('div', { class: 'actions' }, follow, stopButton, clear),
    status,
    out,
  );
  return {
    section,
    stop: () => stop(),
    setMode(mode) {
      kinds.hidden = mode === 'entrypoint';
    },
  };
}
