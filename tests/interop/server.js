#!/usr/bin/env node
// A real Socket.IO server (v4 = socket.io 4.8.1 / Engine.IO 4, or v2 = socket.io 2.5.0 /
// Engine.IO 3) behind tether in the interop tests, with the Redis adapter of its generation so
// that io.emit() reaches the clients of every server.
//
//   node server.js --version 4|2 --name s1 --port 0 --redis-port N
//                  [--ping-interval MS] [--ping-timeout MS]
//
// Prints `listening PORT` on stdout once the HTTP server listens AND the adapter's Redis
// subscriptions are in place (a broadcast published right after cannot be missed).
// Every connection gets `hello` (the server name); `whoami` is acked with the server name;
// `broadcast` (payload: an id) does io.emit('bcast', {id, from: name}) and acks `true`.
// Plain HTTP: GET /name answers the server name, GET /healthz answers 200 "ok".
// SIGTERM / SIGINT exit at once.
'use strict';

const http = require('http');

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    const val = argv[i + 1];
    if (val === undefined || val.startsWith('--')) throw new Error(`missing value for ${a}`);
    out[key] = val;
    i++;
  }
  return out;
}

function fail(msg) {
  process.stderr.write(`server.js: ${msg}\n`);
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const version = String(args.version || '4');
const name = args.name || 's1';
const port = parseInt(args.port || '0', 10);
const redisPort = parseInt(args['redis-port'] || '0', 10);
const pingInterval = parseInt(args['ping-interval'] || '25000', 10);
const pingTimeout = parseInt(args['ping-timeout'] || '20000', 10);
if (version !== '4' && version !== '2') fail('--version must be 4 or 2');
if (!redisPort) fail('--redis-port is required');

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
process.on('uncaughtException', (e) => fail(`uncaught: ${e && e.stack || e}`));
process.on('unhandledRejection', (e) => fail(`unhandled rejection: ${e && e.stack || e}`));

const httpServer = http.createServer((req, res) => {
  // Engine.IO/Socket.IO take their own paths before this handler runs.
  const path = (req.url || '').split('?')[0];
  if (req.method === 'GET' && path === '/name') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(name);
  } else if (req.method === 'GET' && path === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok');
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found');
  }
});

function onConnection(io, socket) {
  socket.emit('hello', name);
  socket.on('whoami', (...a) => {
    const ack = a[a.length - 1];
    if (typeof ack === 'function') ack(name);
  });
  socket.on('broadcast', (...a) => {
    const ack = typeof a[a.length - 1] === 'function' ? a.pop() : null;
    const id = a[0];
    io.emit('bcast', { id, from: name });
    if (ack) ack(true);
  });
}

function listen() {
  httpServer.listen(port, '127.0.0.1', () => {
    process.stdout.write(`listening ${httpServer.address().port}\n`);
  });
}

async function startV4() {
  const { Server } = require('socket.io');
  const { createAdapter } = require('@socket.io/redis-adapter');
  const { createClient } = require('redis');
  const pub = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on('error', (e) => process.stderr.write(`redis: ${e}\n`));
  await Promise.all([pub.connect(), sub.connect()]);
  const io = new Server(httpServer, {
    adapter: createAdapter(pub, sub),
    pingInterval,
    pingTimeout,
  });
  io.on('connection', (socket) => onConnection(io, socket));
  // The adapter subscribes on `sub` without a way to wait for it; commands on one connection
  // are answered in order, so once this SUBSCRIBE is confirmed, the adapter's are too.
  await sub.subscribe('tether-interop-ready', () => {});
  listen();
}

function startV2() {
  const io = require('socket.io-v2')(httpServer, {
    pingInterval,
    pingTimeout,
    serveClient: false,
  });
  const redisAdapter = require('socket.io-redis-v5');
  const adapter = redisAdapter({ host: '127.0.0.1', port: redisPort });
  io.adapter(adapter);
  io.of('/').adapter.on('error', (e) => process.stderr.write(`redis adapter: ${e}\n`));
  io.on('connection', (socket) => onConnection(io, socket));
  // Same ordering argument as above, on the adapter's own subscriber connection.
  io.of('/').adapter.subClient.subscribe('tether-interop-ready', (err) => {
    if (err) fail(`redis subscribe: ${err}`);
    listen();
  });
}

if (version === '4') {
  startV4().catch((e) => fail(e && e.stack || String(e)));
} else {
  startV2();
}
