// The sign-in form and the header's account controls: asks for a user name and a password (or
// a token) when the gateway refuses the dashboard's connection, hands them to the app to
// connect with, and forgets them on "Sign out".
//
// The credentials are held here, in memory (`credentials`), and in the tab's sessionStorage
// only when "remember on this tab" is ticked (see credentials.js for the policy). The MQTT
// client keeps its copy for its own reconnects; the retained panel reads them from here for
// its API call.
//
// What the form says follows the refusal: no message when the page was refused without
// credentials (the form is the message), "wrong user name or password" for 0x86 (the user
// name stays, the password is cleared; "token refused" for a token, which may have expired),
// "not authorized" for 0x87 with credentials (a locked-out address), and any other failure of
// a connection the form started as it is.

import { signInRefusal, credentialsProblem, looksLikeToken } from './credentials.js';
import { describeError } from './errors.js';

export class SignIn {
  /**
   * @param {object} elements
   * @param {HTMLFormElement} elements.form fields username, password, remember
   * @param {HTMLElement} elements.message the form's message line
   * @param {HTMLElement} elements.open the connection panel's "Sign in…" button (shown while
   *   connected anonymously, to a gateway that lets anonymous clients in)
   * @param {HTMLElement} elements.signOut the header's "Sign out" button (shown while signed in)
   * @param {HTMLElement} elements.account the header's signed-in user name
   * @param {object} hooks
   * @param {import('./credentials.js').CredentialStore} hooks.store where remembered credentials live
   * @param {() => number} hooks.protocolVersion the protocol the next connection uses (4 or 5)
   * @param {(credentials: {username: string, password: string}) => void} hooks.onSignIn connect with these
   * @param {() => void} hooks.onSignOut close the connection and drop what needed the credentials
   */
  constructor({ form, message, open, signOut, account }, { store, protocolVersion, onSignIn, onSignOut }) {
    this.form = form;
    this.message = message;
    this.openButton = open;
    this.signOutButton = signOut;
    this.account = account;
    this.store = store;
    this.protocolVersion = protocolVersion;
    this.onSignIn = onSignIn;
    this.onSignOut = onSignOut;
    /** The credentials in use, or null (anonymous). */
    this.credentials = store.load();
    /** Whether the credentials in use came from sessionStorage or are to be kept there. */
    this.remembered = this.credentials !== null;
    /** Whether a sign-in from the form waits for its connection's outcome. */
    this.pending = false;

    form.addEventListener('submit', (event) => {
      // Never a real submission: the credentials go to the MQTT client, not into a request.
      event.preventDefault();
      this.submit();
    });
    open.addEventListener('click', () => this.show(''));
    signOut.addEventListener('click', () => this.signOut());
    this.updateHeader(false);
  }

  /** Whether the form is on screen. */
  get shown() {
    return !this.form.hidden;
  }

  submit() {
    const fields = this.form.elements;
    const credentials = { username: fields.username.value, password: fields.password.value };
    const problem = credentialsProblem(credentials, this.protocolVersion());
    if (problem !== null) {
      this.say(problem, true);
      return;
    }
    this.credentials = credentials;
    this.remembered = fields.remember.checked;
    // Anything remembered from before goes now; these are kept once they have worked.
    this.store.forget();
    this.pending = true;
    this.setBusy(true);
    this.say('signing in…', false);
    this.onSignIn(credentials);
  }

  /** The connection is up: the credentials (if any) worked, and are remembered if asked. */
  connected() {
    if (this.credentials !== null) this.store.keep(this.credentials, this.remembered);
    this.pending = false;
    this.setBusy(false);
    this.form.hidden = true;
    this.say('', false);
    // The form keeps no secret once it is not needed.
    this.form.elements.password.value = '';
    this.updateHeader(true);
  }

  /**
   * The connection ended for good with `error` (a refused or failed connect, or a close that
   * the client does not retry). Returns whether the form took it up.
   */
  failed(error) {
    const refusal = signInRefusal(error);
    const tried = this.credentials !== null;
    if (refusal === null) {
      if (!this.pending) return false;
      // A sign-in whose connection failed otherwise (network, options): say why in the form.
      this.pending = false;
      this.setBusy(false);
      this.say(`could not connect: ${describeError(error)}`, true);
      return true;
    }
    this.pending = false;
    this.setBusy(false);
    const password = this.credentials?.password ?? '';
    if (tried) {
      // Refused credentials are not kept anywhere, least of all in the tab's storage.
      const { username } = this.credentials;
      this.forget();
      this.form.elements.username.value = username;
    }
    this.updateHeader(false);
    if (!tried) this.show('');
    else if (refusal === 'bad-credentials' && looksLikeToken(password)) this.show('token refused (expired, or not for this gateway)', true);
    else if (refusal === 'bad-credentials') this.show('wrong user name or password', true);
    else this.show('not authorized: the gateway refused this sign-in (too many failed attempts from this address?)', true);
    return true;
  }

  /** Forgets the credentials, closes the connection (through the app) and shows the form. */
  signOut() {
    this.forget();
    this.pending = false;
    this.setBusy(false);
    this.updateHeader(false);
    this.onSignOut();
    this.show('signed out', false);
  }

  /** Shows the form with `text`, focused where typing starts. */
  show(text, isError = false) {
    this.form.hidden = false;
    this.openButton.hidden = true;
    this.say(text, isError);
    const fields = this.form.elements;
    (fields.username.value === '' ? fields.username : fields.password).focus();
  }

  forget() {
    this.credentials = null;
    this.remembered = false;
    this.store.forget();
    this.form.elements.password.value = '';
  }

  say(text, isError) {
    this.message.textContent = text;
    this.message.classList.toggle('error', isError);
  }

  setBusy(busy) {
    for (const button of this.form.querySelectorAll('button')) button.disabled = busy;
  }

  /** The header's "Sign out" and user while connected with credentials; else "Sign in…". */
  updateHeader(connected) {
    const signedIn = connected && this.credentials !== null;
    this.signOutButton.hidden = !signedIn;
    this.account.hidden = !signedIn;
    this.account.textContent = signedIn ? this.credentials.username || 'token' : '';
    this.openButton.hidden = signedIn || this.shown;
  }
}
