// The playground's entry point: sign-in, then the chat and connections views.

import { whoami } from './api.js';
import { resetChat, setUpChat } from './chat.js';
import { loadConnections } from './connections.js';
import { byId } from './dom.js';
import { describe, setUpSignIn } from './signin.js';

function showView(name) {
  byId('chat').hidden = name !== 'chat';
  byId('connections').hidden = name !== 'connections';
  for (const [id, view] of [['show-chat', 'chat'], ['show-connections', 'connections']]) {
    if (view === name) byId(id).setAttribute('aria-current', 'page');
    else byId(id).removeAttribute('aria-current');
  }
  if (name === 'chat') byId('question').focus();
  if (name === 'connections') {
    byId('connections-status').textContent = '';
    loadConnections();
  }
}

function onSessionChange() {
  const signedIn = Boolean(whoami());
  byId('whoami').textContent = describe();
  byId('signin').hidden = signedIn;
  byId('views').hidden = !signedIn;
  resetChat();
  if (signedIn) showView('chat');
  else {
    byId('chat').hidden = true;
    byId('connections').hidden = true;
    byId('identity').focus();
  }
}

byId('show-chat').addEventListener('click', () => showView('chat'));
byId('show-connections').addEventListener('click', () => showView('connections'));
byId('connections-refresh').addEventListener('click', () => {
  byId('connections-status').textContent = '';
  loadConnections();
});
setUpChat();
setUpSignIn(onSessionChange).then(() => document.body.setAttribute('data-ready', 'true'));
