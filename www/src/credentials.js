// Sign-in credentials: how a refused sign-in is recognised, where credentials are kept, and how
// the dashboard's own API call presents them. Pure functions of plain values, plus one small
// class over a storage object handed in (so the policy is testable without a browser).
//
// Policy: credentials live in memory for the page's lifetime. Only when the person ticks
// "remember on this tab" are they also written to sessionStorage (one tab, gone when the tab
// closes); never to localStorage, never into the address. Signing out removes that copy.
//
// A token (a JSON Web Token) is entered as the password, with the user name left empty or set
// to the token's subject: the gateway takes a password for a token when it looks like one
// (gateway/src/security/token.rs, `looks_like_token`), and so does `authorizationHeader` here.

/** The sessionStorage key of remembered credentials. */
export const REMEMBER_KEY = 'mqtt-gateway-dashboard-signin';

/**
 * Whether `error` (what the MQTT client rejected or closed with) is the broker refusing a
 * sign-in: `'bad-credentials'` (wrong user name, password or token: CONNACK 0x86, 3.1.1's 4),
 * `'not-authorized'` (anonymous clients refused, or the address locked out after failures:
 * 0x87, 3.1.1's 5), or null for anything else. The client reports these with its typed codes
 * and does not retry either by itself.
 */
export function signInRefusal(error) {
  if (error === null || typeof error !== 'object') return null;
  if (error.code === 'BAD_CREDENTIALS') return 'bad-credentials';
  if (error.code === 'NOT_AUTHORIZED') return 'not-authorized';
  return null;
}

/** Whether a password is a token, by the gateway's own test: `eyJ...`, three base64url parts. */
export function looksLikeToken(password) {
  return /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(password);
}

/**
 * The `Authorization` header value for the gateway's HTTP API with `credentials`, or null
 * without any: a token as `Bearer` (its subject names the user), a password as HTTP Basic
 * (UTF-8 `user:password`, which the gateway checks against its password file).
 *
 * @param {{username: string, password: string} | null} credentials
 */
export function authorizationHeader(credentials) {
  if (credentials === null || credentials === undefined || credentials.password === '') return null;
  if (looksLikeToken(credentials.password)) return `Bearer ${credentials.password}`;
  return `Basic ${base64(`${credentials.username}:${credentials.password}`)}`;
}

/**
 * Credentials as the MQTT client's options take them: a user name only when one was typed (a
 * token's user name may stay empty with MQTT 5.0), the password as typed.
 */
export function connectCredentials(credentials) {
  if (credentials === null || credentials === undefined) return { username: '', password: '' };
  return { username: credentials.username, password: credentials.password };
}

/**
 * Why `credentials` cannot be sent with `protocolVersion`, or null: MQTT 3.1.1 has no password
 * without a user name [MQTT-3.1.2-22], so a token needs its subject typed as the user name.
 */
export function credentialsProblem(credentials, protocolVersion) {
  if (credentials.password === '') return 'enter a password or a token';
  if (protocolVersion === 4 && credentials.username === '') {
    return 'MQTT 3.1.1 needs a user name with a password or token (the token’s subject)';
  }
  return null;
}

/**
 * Remembered credentials, kept in one storage object (the page passes sessionStorage; see
 * `tabCredentialStore`). Storage that throws (blocked, full) only means nothing is remembered.
 */
export class CredentialStore {
  /** @param {Storage | null} storage */
  constructor(storage) {
    this.storage = storage;
  }

  /** The remembered credentials, or null. */
  load() {
    let text = null;
    try {
      text = this.storage?.getItem(REMEMBER_KEY) ?? null;
    } catch {
      return null;
    }
    if (text === null) return null;
    try {
      const { username, password } = JSON.parse(text);
      if (typeof username === 'string' && typeof password === 'string' && password !== '') return { username, password };
    } catch {
      // Written by something else: not credentials.
    }
    this.forget();
    return null;
  }

  /** Remembers `credentials` when `remember` is set; otherwise makes sure nothing is kept. */
  keep(credentials, remember) {
    if (!remember) {
      this.forget();
      return;
    }
    try {
      this.storage?.setItem(REMEMBER_KEY, JSON.stringify({ username: credentials.username, password: credentials.password }));
    } catch {
      // Storage unavailable: the credentials last for this page only.
    }
  }

  /** Removes any remembered credentials. */
  forget() {
    try {
      this.storage?.removeItem(REMEMBER_KEY);
    } catch {
      // Nothing could have been stored either.
    }
  }
}

/** The store of this tab: sessionStorage, or none where the browser blocks it. */
export function tabCredentialStore() {
  let storage = null;
  try {
    storage = globalThis.sessionStorage ?? null;
  } catch {
    // Reading `sessionStorage` itself throws where storage is blocked.
  }
  return new CredentialStore(storage);
}

/** Base64 of `text`'s UTF-8 bytes (btoa alone takes only Latin-1). */
function base64(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}
