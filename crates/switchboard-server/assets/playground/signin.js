// Signing in: as one of the development identity provider's identities, or with a pasted token.

import { call, signIn, signOut, whoami } from './api.js';
import { byId, el } from './dom.js';

/** The claims of a JWT, for showing who it names; the server verifies it on every request. */
function claims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

/** Wires the sign-in forms; `onChange()` runs after every sign-in and sign-out. */
export async function setUpSignIn(onChange) {
  const error = byId('signin-error');
  const listed = await call('/playground/identities');
  const identities = (listed.ok && listed.body.identities) || [];
  if (listed.ok && listed.body.development) {
    const select = byId('identity');
    for (const who of identities) {
      select.append(el('option', { value: who.email }, `${who.email} (${who.roles.join(', ')})`));
    }
    byId('dev-signin').hidden = false;
  } else {
    byId('dev-off').hidden = false;
  }

  byId('dev-signin').addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    const email = byId('identity').value;
    const minted = await call('/playground/token', { method: 'POST', body: { email } });
    if (!minted.ok) {
      error.textContent = `Sign-in failed: ${minted.error}`;
      return;
    }
    signIn(minted.body.access_token, { email: minted.body.email, roles: minted.body.roles });
    onChange();
  });

  byId('token-signin').addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    const field = byId('token');
    const token = field.value.trim().replace(/^Bearer\s+/i, '');
    field.value = '';
    if (!token) {
      error.textContent = 'Paste a token first.';
      return;
    }
    const c = claims(token);
    signIn(token, { email: c.email || c.sub || 'token holder', roles: Array.isArray(c.groups) ? c.groups : [] });
    const check = await call('/v1/models');
    if (!check.ok) {
      signOut();
      error.textContent = `The server refused this token: ${check.error}`;
      return;
    }
    onChange();
  });

  byId('sign-out').addEventListener('click', () => {
    signOut();
    onChange();
  });
}

/** The signed-in line in the header. */
export function describe() {
  const who = whoami();
  return who ? `Signed in as ${who.email}${who.roles.length ? ` (${who.roles.join(', ')})` : ''}` : 'Not signed in';
}
