// Back-channel logout deliveries by oidc-provider, for a side-by-side comparison with
// `logoutd bench deliver` on the same workload and the same loopback receiver
// (`logoutd bench sink`).
//
// Usage: node bench.mjs [--sessions N] [--rps M] [--in-flight K] SINK_URL [SINK_URL ...]
//
// A Provider runs in this process with the backchannelLogout feature and one RS256 key made
// at start. RP i is a static client whose backchannel_logout_uri is SINK_URL[i mod count]
// + `/logout/i`. Each of N sessions is ended by calling the provider's own back-channel
// logout path, `client.backchannelLogout(sub, sid)`, for each of its M clients (what the
// end_session action does for every client of a session): it mints a logout token and
// POSTs it. A session's clients go out in parallel, at most K deliveries in flight.
// Wall time and process CPU (user + system) run from the first delivery until the sink's
// `/count` has grown by N x M; the receiver's CPU over the same span is read from its
// `/cpu_us`. One line is printed:
//
//   peer oidc-provider RS256 sessions=N rps=M in_flight=K deliveries=... wall=...s
//     deliveries/s=... cpu/delivery=...us sink_cpu/delivery=...us sink_core=...% ...
//
// Exits non-zero if a delivery fails or the sink does not see every POST.

import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    sessions: { type: 'string', default: '600' },
    rps: { type: 'string', default: '5' },
    'in-flight': { type: 'string', default: '256' },
  },
});
const sessions = Number(values.sessions);
const rps = Number(values.rps);
const inFlight = Number(values['in-flight']);
const sinks = positionals.map((url) => url.replace(/\/+$/, ''));
for (const [name, n] of [['sessions', sessions], ['rps', rps], ['in-flight', inFlight]]) {
  if (!Number.isInteger(n) || n < (name === 'sessions' ? 0 : 1)) {
    throw new Error(`--${name} must be a whole number`);
  }
}
if (sinks.length === 0) throw new Error('give at least one sink URL');
for (const sink of sinks) {
  const { protocol, hostname } = new URL(sink);
  if (protocol !== 'http:' || hostname !== '127.0.0.1') {
    throw new Error(`sink URLs must be http://127.0.0.1:PORT, got ${sink}`);
  }
}

// A fetch that can reach the loopback sink. oidc-provider hands its own fetch a dispatcher
// that destroys sockets to special-use addresses (127.0.0.0/8 included) as SSRF protection;
// dropping it sends the request through Node's default keep-alive dispatcher instead. Every
// target is checked to be on 127.0.0.1 so that nothing leaves the machine.
function loopbackFetch(url, options) {
  if (new URL(url).hostname !== '127.0.0.1') {
    return Promise.reject(new Error(`refusing non-loopback request to ${url}`));
  }
  const { dispatcher, ...rest } = options;
  return globalThis.fetch(url, rest);
}

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-rs256', alg: 'RS256', use: 'sig' };

const clients = Array.from({ length: rps }, (_, i) => ({
  client_id: `rp-${i}`,
  client_name: `bench rp ${i}`,
  application_type: 'web',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  redirect_uris: [`http://127.0.0.1/rp-${i}/callback`],
  token_endpoint_auth_method: 'none',
  id_token_signed_response_alg: 'RS256',
  backchannel_logout_uri: `${sinks[i % sinks.length]}/logout/${i}`,
  backchannel_logout_session_required: true,
}));

const provider = new Provider('https://oidc-provider.bench', {
  clients,
  jwks: { keys: [jwk] },
  features: {
    backchannelLogout: { enabled: true },
    devInteractions: { enabled: false },
  },
  fetch: loopbackFetch,
});

const registered = await Promise.all(clients.map(({ client_id: id }) => provider.Client.find(id)));
registered.forEach((client, i) => {
  if (!client || client.backchannelLogoutUri !== clients[i].backchannel_logout_uri) {
    throw new Error(`client rp-${i} did not register with its backchannel_logout_uri`);
  }
});

const figuresAt = sinks[0];
async function sinkCount() {
  const response = await loopbackFetch(`${figuresAt}/count`, {});
  if (!response.ok) throw new Error(`sink /count answered ${response.status}`);
  return Number(await response.text());
}
async function sinkCpuUs() {
  const response = await loopbackFetch(`${figuresAt}/cpu_us`, {});
  if (!response.ok) throw new Error(`sink /cpu_us answered ${response.status}`);
  return Number(await response.text());
}
async function sinkDistinct() {
  const response = await loopbackFetch(`${figuresAt}/distinct`, {});
  if (!response.ok) throw new Error(`sink /distinct answered ${response.status}`);
  return Number(await response.text());
}

// Ids unique to this run, so that the sink's distinct (sid, aud) count tells runs apart.
const tag = crypto.randomBytes(3).toString('hex');
const expected = sessions * rps;
const posts0 = await sinkCount();
const distinct0 = await sinkDistinct();

let failures = 0;
let firstError;
let active = 0;
const waiting = [];
async function slot() {
  if (active < inFlight) {
    active += 1;
    return;
  }
  await new Promise((resolve) => { waiting.push(resolve); });
}
function release() {
  const next = waiting.shift();
  if (next) next(); else active -= 1;
}
// Called holding a slot, which it gives back when the POST is answered.
async function deliver(client, sub, sid) {
  try {
    await client.backchannelLogout(sub, sid);
  } catch (err) {
    failures += 1;
    firstError ??= err;
  } finally {
    release();
  }
}

const sinkCpu0 = await sinkCpuUs();
const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
const pending = [];
for (let n = 0; n < sessions; n += 1) {
  const sub = `${tag}-user-${n}`;
  const sid = `${tag}-s-${n}`;
  // A session's clients in parallel; the next session starts once a slot is free.
  for (const client of registered) {
    await slot();
    pending.push(deliver(client, sub, sid));
  }
}
await Promise.all(pending);
const deadline = Date.now() + 60_000;
let posts = await sinkCount();
while (posts - posts0 < expected && failures === 0 && Date.now() < deadline) {
  await new Promise((resolve) => { setTimeout(resolve, 20); });
  posts = await sinkCount();
}
const wall = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(cpu0);
const sinkCpu = (await sinkCpuUs()) - sinkCpu0;
const delivered = (await sinkDistinct()) - distinct0;

if (failures > 0) {
  console.error(`${failures} deliveries failed; first: ${firstError?.stack ?? firstError}`);
  process.exit(1);
}
if (posts - posts0 < expected || delivered !== expected) {
  console.error(`sink saw ${posts - posts0} POSTs, ${delivered} distinct pairs; expected ${expected}`);
  process.exit(1);
}
const cpuUs = cpu.user + cpu.system;
const rssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
console.log(
  `peer oidc-provider RS256 sessions=${sessions} rps=${rps} in_flight=${inFlight}`
  + ` deliveries=${delivered} wall=${wall.toFixed(2)}s deliveries/s=${(delivered / wall).toFixed(0)}`
  + ` cpu/delivery=${(cpuUs / Math.max(delivered, 1)).toFixed(0)}us`
  + ` sink_cpu/delivery=${(sinkCpu / Math.max(delivered, 1)).toFixed(0)}us`
  + ` sink_core=${((sinkCpu / 1e6 / wall) * 100).toFixed(0)}%`
  + ` peak_rss=${rssMiB}MiB duplicates=${posts - posts0 - delivered}`,
);
process.exit(0);
