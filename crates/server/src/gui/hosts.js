// Hosts: every host of the deployment with its public IP, open port range, GPUs, number of
// instances and whether its agent is online (polled every 5 s).
import { age, api, h, heading, liveTable, poll } from './lib.js';

export function render(main) {
  const { table, update } = liveTable(
    'Hosts',
    [
      { label: 'Name', render: (x) => x.name, class: 'mono' },
      {
        label: 'Online',
        render: (x) => h('span', { class: x.online ? 'state state-running' : 'state state-offline' }, x.online ? 'online' : 'offline'),
        sig: (x) => String(x.online),
      },
      { label: 'Public IP', render: (x) => x.public_ip, class: 'mono' },
      { label: 'Port range', render: (x) => (x.port_range ? `${x.port_range.first}–${x.port_range.last}` : 'none (proxy only)') },
      {
        label: 'GPUs',
        render: (x) => (x.gpus.length ? `${x.gpus.length}: ${[...new Set(x.gpus.map((g) => g.name))].join(', ')}` : '0'),
      },
      { label: 'Instances', render: (x) => String(x.instances), class: 'num' },
      { label: 'Last seen', render: (x) => (x.online ? 'now' : x.last_seen ? `${age(x.last_seen)} ago` : 'never') },
      { label: 'Docker', render: (x) => x.docker_version },
    ],
    (x) => x.name,
  );
  const empty = h('p', { class: 'empty', hidden: true }, 'No hosts yet: start an agent with "berth agent --server URL --token TOKEN".');
  main.append(heading('Hosts'), h('div', { class: 'table-wrap' }, table), empty);
  return poll(5000, async () => {
    const list = await api('GET', '/api/v1/hosts');
    update(list);
    table.hidden = list.length === 0;
    empty.hidden = list.length !== 0;
  });
}
