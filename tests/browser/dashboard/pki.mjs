// Test certificates for the dashboard's HTTPS tests, made by Debian's openssl: a CA and a server
// certificate for 127.0.0.1 and localhost, and the server key's SPKI hash that Chromium is told
// to trust (--ignore-certificate-errors-spki-list). Shared by tls.test.mjs and signin.test.mjs.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** X.509 v3 extensions (rustls refuses v1 certificates). */
const EXTENSIONS = `
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

function openssl(args, input) {
  try {
    return execFileSync('openssl', args, { input, timeout: 30_000, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (error) {
    throw new Error(`openssl ${args.join(' ')} failed: ${error.stderr ?? error.message}`);
  }
}

/** A CA and a server certificate for 127.0.0.1 and localhost signed by it, as files in `dir`. */
export function makeCertificates(dir) {
  const file = (name) => join(dir, name);
  writeFileSync(file('extensions.cnf'), EXTENSIONS);
  const newKey = (path) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
  newKey(file('ca.key'));
  openssl(['req', '-x509', '-new', '-key', file('ca.key'), '-subj', '/CN=dashboard test CA', '-days', '2', '-config', file('extensions.cnf'), '-extensions', 'ca', '-out', file('ca.crt')]);
  newKey(file('server.key'));
  openssl(['req', '-new', '-key', file('server.key'), '-subj', '/CN=gateway', '-out', file('server.csr')]);
  openssl(['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-extfile', file('extensions.cnf'), '-extensions', 'server', '-out', file('server.crt')]);
  return { ca: file('ca.crt'), cert: file('server.crt'), key: file('server.key') };
}

/** base64(SHA-256(SubjectPublicKeyInfo DER)) of a certificate, computed with openssl. */
export function spkiHash(certificate) {
  const publicKey = openssl(['x509', '-in', certificate, '-noout', '-pubkey']);
  const der = openssl(['pkey', '-pubin', '-outform', 'DER'], publicKey);
  return openssl(['dgst', '-sha256', '-binary'], der).toString('base64');
}
