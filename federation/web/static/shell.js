// The frame every page shares: the language switch and the API key / token sign-in.

import { credential, request, schemaCapabilities, setCredential } from './api.js';
import { showCartCount } from './cart.js';
import { byId } from './dom.js';
import { currentLanguage, onLanguageChange, setLanguage, t, translateElements } from './i18n.js';

let identity = null; // {subject, roles, adminOf} once signed in and the schema has `me`
let statusKey = null; // the message shown under the sign-in form, re-said on a language switch
const authListeners = new Set();

export function currentIdentity() {
  return identity;
}

/** Wire the language switch and the sign-in form; `onAuthChange` runs after sign-in/out. */
export function initShell({ onAuthChange } = {}) {
  if (onAuthChange) authListeners.add(onAuthChange);
  translateElements(); // the catalogue may be newer than a cached page
  showCartCount();
  for (const button of document.querySelectorAll('.lang-button')) {
    button.addEventListener('click', () => switchLanguage(button.dataset.lang));
  }
  onLanguageChange(() => {
    for (const button of document.querySelectorAll('.lang-button')) {
      button.setAttribute('aria-pressed', String(button.dataset.lang === currentLanguage()));
    }
    showIdentity(statusKey);
  });
  byId('signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn(byId('credential').value.trim());
  });
  byId('signout').addEventListener('click', () => signOut());
  document.addEventListener('biofed:credential-rejected', () => {
    setCredential(null);
    identity = null;
    showIdentity('auth.rejected');
    notify();
  });
  document.addEventListener('keydown', (event) => {
    const panel = byId('signin');
    if (event.key === 'Escape' && panel.open) {
      panel.open = false;
      panel.querySelector('summary').focus();
    }
  });
  return loadIdentity();
}

async function switchLanguage(lang) {
  try {
    await setLanguage(lang);
  } catch (err) {
    setStatus('error.NETWORK');
  }
}

async function signIn(secret) {
  if (!secret) {
    setStatus('auth.empty');
    return;
  }
  setStatus('auth.checking');
  // Check the credential before keeping it: a wrong one would fail every later request.
  const caps = await schemaCapabilities();
  const probe = caps.queries.has('me') ? meQuery(caps) : '{ __typename }';
  let result;
  try {
    result = await request(probe, {}, { credentialOverride: secret });
  } catch (err) {
    setStatus('error.NETWORK');
    return;
  }
  if (result.status === 401 || result.errors.some((e) => e.code === 'UNAUTHENTICATED')) {
    setStatus('auth.rejected');
    return;
  }
  setCredential(secret);
  byId('credential').value = '';
  identity = result.data && result.data.me ? result.data.me : { subject: null, roles: [] };
  showIdentity('auth.signedin.status');
  const panel = byId('signin');
  panel.open = false;
  panel.querySelector('summary').focus();
  notify();
}

function signOut() {
  setCredential(null);
  identity = null;
  showIdentity('auth.signedout');
  notify();
}

function notify() {
  for (const listener of authListeners) listener(identity);
}

function meQuery(caps) {
  const extra = caps.identity.has('adminOf') ? ' adminOf' : '';
  return `{ me { subject roles${extra} } }`;
}

async function loadIdentity() {
  if (!credential()) {
    showIdentity();
    return null;
  }
  const caps = await schemaCapabilities();
  if (caps.queries.has('me')) {
    try {
      const { data } = await request(meQuery(caps));
      identity = data && data.me ? data.me : null;
    } catch {
      identity = null;
    }
  } else {
    identity = { subject: null, roles: [] };
  }
  showIdentity();
  return identity;
}

function roleLabel(role) {
  return t(`role.${String(role).toLowerCase()}`);
}

function setStatus(key) {
  statusKey = key;
  byId('signin-status').textContent = key ? t(key) : '';
}

function showIdentity(messageKey) {
  const summary = byId('signin-summary');
  const signout = byId('signout');
  const signedIn = Boolean(credential());
  signout.hidden = !signedIn;
  if (signedIn && identity && identity.subject) {
    const roles = (identity.roles || []).map(roleLabel).join(t('list.separator'));
    summary.textContent = t('auth.signedin', { subject: identity.subject, roles });
  } else if (signedIn) {
    summary.textContent = t('auth.signedin.unknown');
  } else {
    summary.textContent = t('auth.signin');
  }
  summary.removeAttribute('data-i18n'); // its text now depends on who is signed in
  if (messageKey !== undefined) setStatus(messageKey);
}
