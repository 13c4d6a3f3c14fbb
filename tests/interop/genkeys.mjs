import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
const require = createRequire(process.argv[2] + '/package.json');
const jose = require('jose');
const specs = [
  ['rsa', 'RSA-OAEP-256', {modulusLength: 2048, extractable: true}],
  ['p256', 'ECDH-ES', {crv: 'P-256', extractable: true}],
  ['p384', 'ECDH-ES', {crv: 'P-384', extractable: true}],
  ['x25519', 'ECDH-ES', {crv: 'X25519', extractable: true}],
];
for (const [name, alg, opts] of specs) {
  const { privateKey } = await jose.generateKeyPair(alg, opts);
  const jwk = await jose.exportJWK(privateKey);
  jwk.kid = `rp-${name}`;
  jwk.use = 'enc';
  writeFileSync(`${name}.json`, JSON.stringify(jwk, null, 2) + '\n');
}
