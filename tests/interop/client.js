#!/usr/bin/env node
// Load generator / checker for the interop tests: N real socket.io-client sockets (v4 = 4.8.1,
// Engine.IO 4; v2 = 2.5.0, Engine.IO 3) against a URL (tether), reporting on stdout ONE JSON line.
//
//   node client.js --version 4|2 --url http://127.0.0.1:PORT --clients N
//                  --transports default|polling|websocket --duration-ms M [--broadcasts K]
//                  [--reconnect] [--kill-signal-file PATH] [--ready-file PATH]
//                  [--source-ips K] [--cookie-jar] [--connect-timeout-ms MS]
//                  [--whoami-interval-ms MS] [--stagger-ms MS]
//
// transports: default = ["polling", "websocket"] (handshake over polling, then upgrade);
//             polling = ["polling"]; websocket = ["websocket"].
//
// Cookies: Node clients keep no cookies. socket.io-client 2.x has no cookie jar at all, and
// socket.io-client 4.x only keeps one when `withCredentials: true` is set (off by default; this
// script turns it on only with --cookie-jar, v4 only). So, without --cookie-jar:
//   - `affinity: sid` must still stick: it routes every request by the Engine.IO sid;
//   - `affinity: cookie` CANNOT stick for polling/default transports (every poll looks like a new
//     client and is placed again); only websocket-only works, because a websocket-only session
//     is a single connection, placed once.
//
// Per client we record the server names seen through `hello` (sent by the server on connect)
// and through `whoami` acks sent every --whoami-interval-ms over the client's current transport
// (so polling requests keep flowing during the run). A client that saw more than one server is
// a sticky violation. Errors are every distinct error object the client's Manager reported
// (connect errors, "xhr poll error"/"xhr post error" with the HTTP status, websocket errors...);
// "Session ID unknown" = HTTP 400 or that text in the response body. whoami_unanswered: acks
// still missing after the run's end waited (up to ACK_WAIT_MS) for those in flight; whoami_ms_max
// and whoami_late (> 2 s) say how slow the answered ones were.
//
// --broadcasts K: after half the duration, K `broadcast` events are sent, the i-th by client
// i % connected; the servers io.emit() them through Redis, every client must receive each id once.
//
// --source-ips K: client i connects from 127.0.0.(10 + i % K) (for ip_hash: several client IPs);
// the report then has per_source_ip {ip: {server: clients}} and source_ips_on_several_servers.
//
// Kill mode (--reconnect --kill-signal-file PATH [--ready-file PATH]): once all clients are
// connected, the per-server placement is written to --ready-file; the test kills one server and
// then creates PATH containing {"killed": NAME, "t_ms": epoch ms just before the kill}. The
// clients that were on NAME (affected) must connect again to a live server; we report how many did
// within 10 s of the kill, the slowest, and how many errors each client saw after the kill.
'use strict';

const fs = require('fs');
const http = require('http');

function parseArgs(argv) {
  const flags = new Set(['reconnect', 'cookie-jar']);
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    if (flags.has(key)) { out[key] = true; continue; }
    const val = argv[i + 1];
    if (val === undefined) throw new Error(`missing value for ${a}`);
    out[key] = val;
    i++;
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const version = String(args.version || '4');
const url = args.url;
const nClients = parseInt(args.clients || '10', 10);
const transportsArg = args.transports || 'default';
const durationMs = parseInt(args['duration-ms'] || '3000', 10);
const nBroadcasts = parseInt(args.broadcasts || '0', 10);
const reconnect = !!args.reconnect;
const killSignalFile = args['kill-signal-file'] || null;
const readyFile = args['ready-file'] || null;
const sourceIps = parseInt(args['source-ips'] || '0', 10);
const cookieJar = !!args['cookie-jar'];
const connectTimeoutMs = parseInt(args['connect-timeout-ms'] || '15000', 10);
const whoamiIntervalMs = parseInt(args['whoami-interval-ms'] || '200', 10);
const staggerMs = parseInt(args['stagger-ms'] || '5', 10);
const RECONNECT_LIMIT_MS = 10000;
// The most the run waits at its end for whoami acks still in flight (it stops as soon as none
// is): up to 7.5 s answers were seen with the machine's load at 10 on 2 cores, none lost.
const ACK_WAIT_MS = 20000;

if (!url) { process.stderr.write('client.js: --url is required\n'); process.exit(2); }
if (version !== '4' && version !== '2') { process.stderr.write('--version must be 4 or 2\n'); process.exit(2); }
if (cookieJar && version !== '4') { process.stderr.write('--cookie-jar needs --version 4\n'); process.exit(2); }

const transports = {
  default: ['polling', 'websocket'],
  polling: ['polling'],
  websocket: ['websocket'],
}[transportsArg];
if (!transports) { process.stderr.write('--transports: default|polling|websocket\n'); process.exit(2); }

const ioConnect = version === '4' ? require('socket.io-client').io : require('socket.io-client-v2');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Date.now();
let whoamiMsMax = 0; // the slowest whoami ack, ms after its emit
let whoamiLate = 0; // acks that came more than 2 s after their emit
let ackWaitStart = null; // when the final wait for in-flight acks began

function describeError(err) {
  // Returns {text, sessionUnknown}.
  const parts = [];
  let status;
  let body = '';
  if (err === null || err === undefined) return { text: String(err), sessionUnknown: false };
  if (typeof err !== 'object') {
    parts.push(String(err));
  } else {
    if (err.message) parts.push(err.message);
    if (err.type && err.type !== 'TransportError') parts.push(`type=${err.type}`);
    const d = err.description;
    if (typeof d === 'number') status = d;
    if (d !== undefined && d !== null) {
      if (typeof d === 'object') parts.push(`description=${d.message || d.type || JSON.stringify(d)}`);
      else parts.push(`description=${d}`);
    }
    const c = err.context;
    if (c && typeof c === 'object') {
      if (typeof c.status === 'number') { status = status || c.status; parts.push(`status=${c.status}`); }
      if (typeof c.responseText === 'string' && c.responseText) body = c.responseText;
    }
    if (body) parts.push(`body=${body.slice(0, 120)}`);
  }
  const text = parts.join(' ') || String(err);
  const sessionUnknown = status === 400 || /Session ID unknown/.test(text);
  return { text, sessionUnknown };
}

const clients = [];
const errorSamples = [];
function pushSample(s) { if (errorSamples.length < 10) errorSamples.push(s); }

let killInfo = null; // {killed, t_ms}

function makeClient(i) {
  const c = {
    i,
    socket: null,
    servers: new Set(),
    events: [], // {t, server} for every hello / whoami answer
    firstServer: null,
    connectedOnce: false,
    connectFailed: false,
    connectErrors: 0,
    errors: [], // {t, text, sessionUnknown}
    seenErrors: new WeakSet(),
    disconnects: [], // {t, reason}
    upgraded: false,
    upgradeErrors: 0,
    bcast: new Map(),
    pending: new Map(), // whoami seq -> sent time
    seq: 0,
    whoamiOk: 0,
    closing: false,
    sourceIp: null,
  };
  const opts = {
    transports,
    reconnection: reconnect,
    forceNew: true,
    timeout: connectTimeoutMs,
  };
  if (cookieJar) opts.withCredentials = true;
  if (sourceIps > 0) {
    const ip = `127.0.0.${10 + (i % sourceIps)}`;
    c.sourceIp = ip;
    opts.localAddress = ip;
    opts.agent = new http.Agent({ localAddress: ip });
  }
  const s = ioConnect(url, opts);
  c.socket = s;
  const mgr = s.io;

  const recordError = (err) => {
    if (err && typeof err === 'object') {
      if (c.seenErrors.has(err)) return;
      c.seenErrors.add(err);
    }
    const d = describeError(err);
    c.errors.push({ t: now(), text: d.text, sessionUnknown: d.sessionUnknown });
    pushSample(`client ${i}: ${d.text}`);
  };
  const sawServer = (name) => {
    if (typeof name !== 'string') return;
    c.servers.add(name);
    c.events.push({ t: now(), server: name });
    if (c.firstServer === null) c.firstServer = name;
  };

  mgr.on('error', recordError);
  if (version === '2') {
    mgr.on('connect_error', recordError);
    mgr.on('connect_timeout', () => recordError(new Error('connect_timeout')));
  }
  mgr.on('open', () => {
    const engine = mgr.engine;
    if (!engine) return;
    engine.on('upgrade', () => { c.upgraded = true; });
    engine.on('upgradeError', (err) => {
      c.upgradeErrors++;
      pushSample(`client ${i}: upgradeError ${describeError(err).text}`);
    });
  });
  s.on('connect_error', (err) => {
    c.connectErrors++;
    recordError(err);
    if (!reconnect) c.connectFailed = true;
  });
  s.on('connect', () => { c.connectedOnce = true; });
  s.on('disconnect', (reason) => {
    if (c.closing) return;
    c.disconnects.push({ t: now(), reason });
    c.pending.clear(); // acks of a lost session never come
    pushSample(`client ${i}: disconnect ${reason}`);
  });
  s.on('hello', sawServer);
  s.on('bcast', (msg) => {
    if (!msg || typeof msg.id !== 'string') return;
    c.bcast.set(msg.id, (c.bcast.get(msg.id) || 0) + 1);
  });
  return c;
}

function whoamiTick(c) {
  if (!c.socket.connected) return;
  const seq = ++c.seq;
  c.pending.set(seq, now());
  c.socket.emit('whoami', (name) => {
    const sent = c.pending.get(seq);
    if (!c.pending.delete(seq)) return;
    c.whoamiOk++;
    const ms = now() - sent;
    if (ms > whoamiMsMax) whoamiMsMax = ms;
    if (ms > 2000) whoamiLate++;
    if (typeof name === 'string') {
      c.servers.add(name);
      c.events.push({ t: now(), server: name });
      if (c.firstServer === null) c.firstServer = name;
    }
  });
}

function countBy(values) {
  const out = {};
  for (const v of values) if (v !== null && v !== undefined) out[v] = (out[v] || 0) + 1;
  return out;
}

function lastServerBefore(c, t) {
  let s = null;
  for (const e of c.events) if (e.t < t) s = e.server;
  return s;
}

async function main() {
  const hardLimit = setTimeout(() => {
    finish({ aborted: 'hard time limit reached' });
  }, connectTimeoutMs + durationMs + 90000);
  hardLimit.unref();

  for (let i = 0; i < nClients; i++) {
    clients.push(makeClient(i));
    if (staggerMs > 0) await sleep(staggerMs);
  }

  // Connection phase: every client connected (and said hello) or failed, bounded.
  const connectDeadline = now() + connectTimeoutMs;
  while (now() < connectDeadline) {
    if (clients.every((c) => (c.connectedOnce && c.firstServer !== null) || c.connectFailed)) break;
    await sleep(20);
  }
  const connectedAtReady = clients.filter((c) => c.connectedOnce);

  const readyPlacement = {};
  for (const c of clients) readyPlacement[c.i] = c.socket.connected ? lastServerBefore(c, Infinity) : null;
  if (readyFile) {
    const tmp = `${readyFile}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({
      connected: connectedAtReady.length,
      per_server: countBy(Object.values(readyPlacement)),
    }));
    fs.renameSync(tmp, readyFile);
  }

  const timers = clients.map((c) => setInterval(() => whoamiTick(c), whoamiIntervalMs));

  const bcastIds = [];
  const runBroadcasts = async () => {
    await sleep(Math.floor(durationMs / 2));
    const senders = clients.filter((c) => c.connectedOnce);
    if (senders.length === 0) return;
    for (let k = 0; k < nBroadcasts; k++) {
      const id = `b${k}`;
      bcastIds.push(id);
      senders[k % senders.length].socket.emit('broadcast', id, () => {});
      await sleep(10);
    }
  };
  const bcastDone = nBroadcasts > 0 ? runBroadcasts() : Promise.resolve();

  let kill = null;
  if (killSignalFile) {
    const deadline = now() + 120000;
    while (now() < deadline && !fs.existsSync(killSignalFile)) await sleep(20);
    try {
      kill = JSON.parse(fs.readFileSync(killSignalFile, 'utf8'));
    } catch (e) {
      kill = { killed: null, t_ms: now(), error: String(e) };
    }
    killInfo = kill;
    // Wait until every affected client answered from a live server (+1 s to catch error
    // loops), bounded by the 10 s limit plus a margin.
    const affected = clients.filter((c) => readyPlacement[c.i] === kill.killed);
    const end = kill.t_ms + RECONNECT_LIMIT_MS + 2000;
    let allBackAt = null;
    while (now() < end) {
      const back = affected.every((c) => c.events.some((e) => e.t >= kill.t_ms && e.server !== kill.killed));
      if (back && allBackAt === null) allBackAt = now();
      if (allBackAt !== null && now() - allBackAt >= 1000) break;
      await sleep(20);
    }
  } else {
    await sleep(durationMs);
  }
  await bcastDone;

  if (nBroadcasts > 0) {
    const deadline = now() + 5000;
    while (now() < deadline) {
      const done = clients.filter((c) => c.connectedOnce).every((c) => bcastIds.every((id) => c.bcast.has(id)));
      if (done) break;
      await sleep(20);
    }
    await sleep(200); // late duplicates
  }
  timers.forEach(clearInterval);
  // Let in-flight whoami acks land before judging them: on a loaded machine (or a sanitizer
  // build) they can take seconds (whoami_ms_max); one never answered is still one.
  ackWaitStart = now();
  const ackDeadline = now() + ACK_WAIT_MS;
  while (now() < ackDeadline && clients.some((c) => c.socket.connected && c.pending.size > 0)) await sleep(20);
  finish({ readyPlacement, bcastIds, kill });
}

let finished = false;
function finish({ readyPlacement = {}, bcastIds = [], kill = killInfo, aborted = null }) {
  if (finished) return;
  finished = true;
  const connected = clients.filter((c) => c.connectedOnce);
  const result = {
    version: Number(version),
    transports: transportsArg,
    clients: nClients,
    connected: connected.length,
    connect_errors: clients.reduce((a, c) => a + c.connectErrors, 0),
    errors_total: clients.reduce((a, c) => a + c.errors.length, 0),
    session_unknown: clients.reduce((a, c) => a + c.errors.filter((e) => e.sessionUnknown).length, 0),
    errors: errorSamples,
    // Histogram of error texts without the response body, e.g. "xhr poll error description=400 status=400".
    error_kinds: countBy(clients.flatMap((c) => c.errors.map((e) => e.text.split(' body=')[0]))),
    disconnects: clients.reduce((a, c) => a + c.disconnects.length, 0),
    sticky_violations: 0,
    per_server: countBy(clients.map((c) => c.firstServer)),
    upgraded: clients.filter((c) => c.upgraded).length,
    upgrade_errors: clients.reduce((a, c) => a + c.upgradeErrors, 0),
    final_transport: countBy(clients.map((c) => (c.socket.io.engine && c.socket.connected ? c.socket.io.engine.transport.name : 'none'))),
    whoami_ok: clients.reduce((a, c) => a + c.whoamiOk, 0),
    whoami_unanswered: 0,
    whoami_ms_max: whoamiMsMax,
    whoami_late: whoamiLate,
    ack_wait_ms: ackWaitStart === null ? null : now() - ackWaitStart,
    broadcasts_expected: bcastIds.length,
    broadcasts_received_min: 0,
    broadcasts_received_max: 0,
    duplicates: 0,
  };
  if (aborted) result.aborted = aborted;
  if (sourceIps > 0) {
    // ip_hash: every client of one source IP must be on the same server.
    result.per_source_ip = {};
    for (const c of clients) {
      if (c.firstServer === null) continue;
      const m = result.per_source_ip[c.sourceIp] || (result.per_source_ip[c.sourceIp] = {});
      m[c.firstServer] = (m[c.firstServer] || 0) + 1;
    }
    result.source_ips_on_several_servers =
      Object.values(result.per_source_ip).filter((m) => Object.keys(m).length > 1).length;
  }

  // Whoami acks still missing (> 2 s old) on a connected socket.
  const t = now();
  for (const c of clients) {
    if (!c.socket.connected) continue;
    for (const sent of c.pending.values()) if (t - sent > 2000) result.whoami_unanswered++;
  }

  if (bcastIds.length > 0 && connected.length > 0) {
    const got = connected.map((c) => bcastIds.filter((id) => c.bcast.has(id)).length);
    result.broadcasts_received_min = Math.min(...got);
    result.broadcasts_received_max = Math.max(...got);
    for (const c of connected) for (const n of c.bcast.values()) if (n > 1) result.duplicates += n - 1;
  }

  if (kill) {
    const affected = clients.filter((c) => readyPlacement[c.i] === kill.killed);
    const unaffected = clients.filter((c) => c.connectedOnce && readyPlacement[c.i] !== kill.killed);
    const latencies = [];
    let within = 0;
    for (const c of affected) {
      const e = c.events.find((ev) => ev.t >= kill.t_ms && ev.server !== kill.killed);
      if (e) {
        latencies.push(e.t - kill.t_ms);
        if (e.t - kill.t_ms <= RECONNECT_LIMIT_MS) within++;
      }
    }
    // Stickiness: unaffected clients must have seen one server; affected ones the killed server
    // and then one live server.
    for (const c of unaffected) if (c.servers.size > 1) result.sticky_violations++;
    for (const c of affected) {
      const live = new Set(c.events.filter((e) => e.server !== kill.killed).map((e) => e.server));
      if (live.size > 1) result.sticky_violations++;
    }
    const errAfter = clients.map((c) => c.errors.filter((e) => e.t >= kill.t_ms - 50));
    result.kill = {
      killed: kill.killed,
      per_server_before: countBy(Object.values(readyPlacement)),
      affected: affected.length,
      reconnected: latencies.length,
      reconnected_within_10s: within,
      reconnect_ms_max: latencies.length ? Math.max(...latencies) : null,
      reconnect_ms_median: latencies.length ? latencies.sort((a, b) => a - b)[Math.floor(latencies.length / 2)] : null,
      errors_after_kill_max_per_client: Math.max(0, ...errAfter.map((l) => l.length)),
      session_unknown_after_kill: errAfter.reduce((a, l) => a + l.filter((e) => e.sessionUnknown).length, 0),
      unaffected_errors: unaffected.reduce((a, c) => a + c.errors.length, 0),
      unaffected_disconnects: unaffected.reduce((a, c) => a + c.disconnects.length, 0),
      disconnect_reasons: countBy(clients.flatMap((c) => c.disconnects.map((d) => d.reason))),
      per_server_after: countBy(clients.map((c) => (c.socket.connected ? lastServerBefore(c, Infinity) : null))),
    };
  } else {
    for (const c of clients) if (c.servers.size > 1) result.sticky_violations++;
  }

  for (const c of clients) { c.closing = true; try { c.socket.close(); } catch (_) { /* ignore */ } }
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(aborted ? 3 : 0));
}

main().catch((e) => {
  process.stderr.write(`client.js: ${e && e.stack || e}\n`);
  finish({ aborted: String(e) });
});
