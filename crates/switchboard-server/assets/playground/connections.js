// Connections: each declared connection, who holds USE CONNECTION on it, and — for admins and the
// connection's owner — granting and revoking it through the admin API.

import { call } from './api.js';
import { byId, el } from './dom.js';

function say(text) {
  byId('connections-status').textContent = text;
}

async function change(method, path, body, done) {
  const result = await call(path, { method, body });
  say(result.ok ? done : `Refused: ${result.error}`);
  await loadConnections();
}

function grantsBlock(connection, grants) {
  const name = connection.name;
  const base = `/api/2.0/connections/${encodeURIComponent(name)}/grants`;
  const field = `grant-${name}`;
  return [
    el(
      'table',
      { class: 'grants', dataset: { connection: name } },
      el('caption', {}, `USE CONNECTION on ${name}`),
      el('thead', {}, el('tr', {}, ['Principal', 'Granted by', 'Action'].map((h) => el('th', { scope: 'col' }, h)))),
      el(
        'tbody',
        {},
        grants.map((g) =>
          el(
            'tr',
            { class: 'grant', dataset: { principal: g.principal } },
            el('td', {}, g.principal),
            el('td', {}, g.granted_by),
            el(
              'td',
              {},
              el(
                'button',
                {
                  type: 'button',
                  class: 'revoke',
                  'aria-label': `Revoke USE CONNECTION on ${name} from ${g.principal}`,
                  onclick: () =>
                    change(
                      'DELETE',
                      `${base}/${encodeURIComponent(g.principal)}`,
                      undefined,
                      `Revoked USE CONNECTION on ${name} from ${g.principal}.`,
                    ),
                },
                'Revoke',
              ),
            ),
          ),
        ),
      ),
    ),
    el(
      'form',
      {
        class: 'grant-form',
        onsubmit: (event) => {
          event.preventDefault();
          const principal = byId(field).value.trim();
          if (principal) change('POST', base, { principal }, `Granted USE CONNECTION on ${name} to ${principal}.`);
        },
      },
      el('label', { for: field }, `Grant USE CONNECTION on ${name} to`),
      el('input', { id: field, name: 'principal', placeholder: 'a role or an email', autocomplete: 'off' }),
      el('button', { type: 'submit' }, 'Grant'),
    ),
  ];
}

// Per-user OAuth connections: the signed-in user connects their own account at the provider in a
// new tab (the provider's page, then /oauth/callback), or disconnects it.
async function connectAccount(name) {
  const started = await call(`/oauth/connect/${encodeURIComponent(name)}`);
  if (!started.ok) {
    say(`Cannot connect ${name}: ${started.error}`);
    return;
  }
  window.open(started.body.authorize_url, '_blank', 'noopener');
  say(`Finish connecting ${name} in the new tab, then choose Refresh.`);
}

function accountBlock(name, account) {
  if (!account) return [];
  const state = account.connected ? 'connected' : 'not connected';
  const action = account.connected
    ? el(
        'button',
        {
          type: 'button',
          class: 'disconnect',
          'aria-label': `Disconnect your account from ${name}`,
          onclick: () => change('DELETE', `/oauth/connections/${encodeURIComponent(name)}`, undefined, `Disconnected your account from ${name}.`),
        },
        'Disconnect',
      )
    : el(
        'button',
        { type: 'button', class: 'connect', 'aria-label': `Connect your account to ${name}`, disabled: !account.may_use, onclick: () => connectAccount(name) },
        'Connect',
      );
  return [
    el(
      'p',
      { class: 'account', dataset: { connected: String(account.connected) } },
      `Your account: ${state}${account.may_use ? '' : ' (you hold no USE CONNECTION grant)'} `,
      action,
    ),
  ];
}

/** Loads and shows the connections. */
export async function loadConnections() {
  const list = byId('connection-list');
  const accounts = new Map();
  const [mine, listed] = await Promise.all([call('/oauth/connections'), call('/api/2.0/connections')]);
  if (mine.ok) for (const a of mine.body.connections) accounts.set(a.connection, a);
  if (!listed.ok) {
    list.replaceChildren(el('p', { class: 'error', role: 'alert' }, `Connections unavailable: ${listed.error}`));
    return;
  }
  const connections = listed.body.connections;
  const allGrants = await Promise.all(
    connections.map((c) => call(`/api/2.0/connections/${encodeURIComponent(c.name)}/grants`)),
  );
  const sections = connections.map((c, i) => {
    const grants = allGrants[i];
    return el(
      'section',
      { class: 'connection', dataset: { connection: c.name } },
      el('h3', {}, c.name),
      el('p', {}, c.description || ''),
      el(
        'dl',
        { class: 'summary' },
        el('dt', {}, 'Authentication'),
        el('dd', {}, c.auth),
        el('dt', {}, 'Owner'),
        el('dd', {}, c.owner || 'none'),
        el('dt', {}, 'URL'),
        el('dd', {}, c.base_url || ''),
      ),
      accountBlock(c.name, accounts.get(c.name)),
      grants.ok
        ? grantsBlock(c, grants.body.grants)
        : el('p', { class: 'denied-note', dataset: { status: String(grants.status) } }, `Who holds USE CONNECTION: ${grants.error}`),
    );
  });
  if (!sections.length) sections.push(el('p', {}, 'No connections are declared.'));
  list.replaceChildren(...sections);
}
