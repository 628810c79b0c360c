// SCRAM-SHA-256 (RFC 5802, RFC 7677) on WebCrypto, without channel binding (gs2 header `n,,`):
// the client half of the exchange, as an application brings it to client-wasm's
// `authenticationMethod: 'SCRAM-SHA-256'`, `credentials` (the client-first message) and
// `onAuth` (the client-final message). Plain ES module: the test page uses it, and the Node test
// checks it against RFC 7677's example.

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const GS2_HEADER = 'n,,';

const base64 = (bytes) => btoa(String.fromCharCode(...bytes));
const fromBase64 = (text) => Uint8Array.from(atob(text), (char) => char.charCodeAt(0));

async function hmac(key, data) {
  const hmacKey = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', hmacKey, encoder.encode(data)));
}

const sha256 = async (data) => new Uint8Array(await crypto.subtle.digest('SHA-256', data));

/** Hi() of RFC 5802: PBKDF2 with HMAC-SHA-256, one 32-byte block. */
async function saltedPassword(password, salt, iterations) {
  const key = await crypto.subtle.importKey('raw', encoder.encode(password), 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, key, 256);
  return new Uint8Array(bits);
}

/** A user name as a SCRAM attribute value (RFC 5802 5.1: `=` and `,` escaped). */
const saslName = (name) => name.replaceAll('=', '=3D').replaceAll(',', '=2C');

/** The attributes of a SCRAM message (`r=…,s=…,i=…`) by their one-letter names. */
function attributes(message) {
  const result = {};
  for (const part of message.split(',')) {
    if (part[1] === '=') result[part[0]] = part.slice(2);
  }
  return result;
}

/**
 * One SCRAM-SHA-256 exchange of `user`: `clientFirst` (bytes for the CONNECT's or the AUTH
 * 0x19's Authentication Data), `clientFinal(serverFirst, password)` (the answer to the broker's
 * AUTH 0x18) and `verify(serverFinal)`, true when the broker's `v=` signature proves that it
 * knows the password too. `nonce` is random unless given (for tests).
 */
export function scramStart(user, nonce = base64(crypto.getRandomValues(new Uint8Array(18)))) {
  const clientFirstBare = `n=${saslName(user)},r=${nonce}`;
  let serverSignature;
  return {
    clientFirst: encoder.encode(GS2_HEADER + clientFirstBare),

    async clientFinal(data, password) {
      const serverFirst = decoder.decode(data);
      const { r: combinedNonce, s: salt, i: iterations } = attributes(serverFirst);
      if (!combinedNonce?.startsWith(nonce) || combinedNonce.length === nonce.length) {
        throw new Error(`SCRAM: the server's nonce does not extend the client's: ${serverFirst}`);
      }
      const count = Number(iterations);
      if (!salt || !Number.isInteger(count) || count < 1) {
        throw new Error(`SCRAM: no salt or iteration count in ${serverFirst}`);
      }
      const salted = await saltedPassword(password, fromBase64(salt), count);
      const clientKey = await hmac(salted, 'Client Key');
      const storedKey = await sha256(clientKey);
      const withoutProof = `c=${btoa(GS2_HEADER)},r=${combinedNonce}`;
      const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
      const clientSignature = await hmac(storedKey, authMessage);
      const proof = clientKey.map((byte, index) => byte ^ clientSignature[index]);
      serverSignature = base64(await hmac(await hmac(salted, 'Server Key'), authMessage));
      return encoder.encode(`${withoutProof},p=${base64(proof)}`);
    },

    verify(data) {
      return serverSignature !== undefined && data !== undefined && decoder.decode(data) === `v=${serverSignature}`;
    },
  };
}
