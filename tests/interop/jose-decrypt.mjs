// Decrypts and verifies an encrypted logout token from logoutd with panva's `jose`: an
// implementation independent of logoutd's. Reads one JSON object on stdin:
//   { token, private_jwk, jwks, issuer, client_id, alg, enc }
// and prints the claims on success; exits non-zero with the reason otherwise.
// The first argument is the directory whose node_modules holds `jose`.
import { createRequire } from 'node:module';

const require = createRequire(`${process.argv[2]}/package.json`);
const jose = require('jose');

const input = JSON.parse(await new Promise((resolve) => {
  let text = '';
  process.stdin.on('data', (chunk) => { text += chunk; });
  process.stdin.on('end', () => resolve(text));
}));

function check(what, ok) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

const key = await jose.importJWK(input.private_jwk, input.alg);
const { plaintext, protectedHeader } = await jose.compactDecrypt(input.token, key, {
  keyManagementAlgorithms: [input.alg],
  contentEncryptionAlgorithms: [input.enc],
});
check('alg', protectedHeader.alg === input.alg);
check('enc', protectedHeader.enc === input.enc);
check('cty', protectedHeader.cty === 'JWT');
check('iss in the JWE header', protectedHeader.iss === input.issuer);
check('kid', protectedHeader.kid === input.private_jwk.kid);
const inner = new TextDecoder().decode(plaintext);
const { payload, protectedHeader: inner_header } = await jose.jwtVerify(
  inner,
  jose.createLocalJWKSet(input.jwks),
  { issuer: input.issuer, audience: input.client_id, typ: 'logout+jwt' },
);
check('inner typ', inner_header.typ === 'logout+jwt');
check('events', JSON.stringify(payload.events) ===
  '{"http://schemas.openid.net/event/backchannel-logout":{}}');
check('session_metadata', payload.session_metadata && typeof payload.session_metadata === 'object');
check('no nonce', payload.nonce === undefined);
process.stdout.write(`${JSON.stringify(payload)}\n`);
