// Runs the logoutd binary: imports the IdP's signing keys, then `serve` on a free loopback port.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));

/** `LOGOUTD_BIN`, or the repository's release build (`../../target/release/logoutd` from the example). */
export const LOGOUTD_BIN = process.env.LOGOUTD_BIN
  ? path.resolve(process.env.LOGOUTD_BIN)
  : path.resolve(here, '..', '..', '..', '..', 'target', 'release', 'logoutd');

/** `logoutd keys import --keys-dir DIR --alg ALG FILE` for each `{ file, alg }`. */
export async function importKeys(keysDir, keys) {
  await access(LOGOUTD_BIN, constants.X_OK).catch(() => {
    throw new Error(`no logoutd binary at ${LOGOUTD_BIN}: run \`cargo build --release\` in the `
      + 'repository, or set LOGOUTD_BIN');
  });
  for (const { file, alg } of keys) {
    await promisify(execFile)(LOGOUTD_BIN, ['keys', 'import', '--keys-dir', keysDir, '--alg', alg, file]);
  }
}

/**
 * Starts `logoutd serve` for `issuer` and resolves once it listens, with its `url`, the API
 * `token` and `stop()`. Its log lines (JSON) are kept in `logs` for failure messages.
 */
export async function startLogoutd({ issuer, keysDir, dbPath, timeoutMs = 15_000 }) {
  const token = randomBytes(32).toString('base64url'); // 43 characters
  const child = spawn(LOGOUTD_BIN, [
    'serve',
    '--listen', '127.0.0.1:0',
    '--issuer', issuer,
    '--keys-dir', keysDir,
    '--store', `sqlite://${dbPath}`,
    '--allow-insecure-rp-urls',
  ], {
    env: { ...process.env, LOGOUTD_API_TOKEN: token, LOGOUTD_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const logs = [];
  const exited = once(child, 'exit');
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };

  const listening = new Promise((resolve, reject) => {
    createInterface({ input: child.stderr }).on('line', (line) => {
      logs.push(line);
      let fields;
      try {
        ({ fields } = JSON.parse(line));
      } catch {
        return;
      }
      if (fields?.message === 'logoutd listening') resolve(fields.addr);
    });
    child.once('error', reject);
    exited.then(([code, signal]) => reject(new Error(
      `logoutd exited (${code ?? signal}) before listening:\n${logs.join('\n')}`,
    )));
  });
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`logoutd did not listen within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const addr = await Promise.race([listening, deadline]);
    return { url: `http://${addr}`, token, logs, stop };
  } catch (err) {
    await stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
