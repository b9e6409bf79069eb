// The real keyplane binary on a free port with a fresh store, for the Node tests: SQLite, or a
// fresh PostgreSQL database when KEYPLANE_E2E_POSTGRES names a superuser URL (scripts/test.sh
// runs the suite both ways). With KEYPLANE_E2E_TLS=1 the server serves HTTPS with the certificate
// in KEYPLANE_E2E_TLS_DIR (scripts/test-certs.sh); Node trusts its CA through NODE_EXTRA_CA_CERTS,
// which must be set when node starts, and Chromium trusts exactly that certificate (its SPKI hash).
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = process.env.KEYPLANE_BIN || path.join(ROOT, 'target', 'debug', 'keyplane');
const TLS = process.env.KEYPLANE_E2E_TLS === '1';
const TLS_DIR = process.env.KEYPLANE_E2E_TLS_DIR;
if (TLS && !(TLS_DIR && process.env.NODE_EXTRA_CA_CERTS)) {
  throw new Error('KEYPLANE_E2E_TLS=1 needs KEYPLANE_E2E_TLS_DIR and NODE_EXTRA_CA_CERTS (scripts/test.sh sets them)');
}
/** `http` or `https`, for URLs and the SDK's `protocol`. */
const SCHEME = TLS ? 'https' : 'http';
/** Chromium flags that trust the test certificate and nothing else. */
const BROWSER_TLS_ARGS = TLS
  ? [`--ignore-certificate-errors-spki-list=${fs.readFileSync(path.join(TLS_DIR, 'spki.txt'), 'utf8').trim()}`]
  : [];

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function database(dir) {
  const admin = process.env.KEYPLANE_E2E_POSTGRES;
  if (!admin) return `sqlite://${dir}/k.db`;
  const name = `kp_node_${crypto.randomBytes(6).toString('hex')}`;
  execFileSync('psql', ['-q', admin, '-c', `CREATE DATABASE ${name}`], { stdio: 'ignore' });
  return `${admin.slice(0, admin.lastIndexOf('/'))}/${name}`;
}

async function startServer(ak, sk) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kp-node-'));
  const tls = TLS ? ['--tls-cert', path.join(TLS_DIR, 'cert.pem'), '--tls-key', path.join(TLS_DIR, 'key.pem')] : [];
  const proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--db', database(dir), '--data-dir', dir, ...tls], {
    env: { ...process.env, KEYPLANE_ROOT_ACCESS_KEY_ID: ak, KEYPLANE_ROOT_ACCESS_KEY_SECRET: sk },
    stdio: 'ignore',
  });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${SCHEME}://127.0.0.1:${port}/healthz`)).status === 200) return { port, proc };
    } catch (_) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('keyplane did not become healthy');
}

module.exports = { ROOT, BIN, SCHEME, TLS, BROWSER_TLS_ARGS, startServer };
