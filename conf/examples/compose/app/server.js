// A Socket.IO server for the tether examples: one of several replicas sharing rooms and
// broadcasts through Redis (@socket.io/redis-adapter). Answers /healthz for tether's health
// checks. Environment: NAME (this replica's name), PORT (default 3000), REDIS_URL.
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const name = process.env.NAME || require("os").hostname();
const port = Number(process.env.PORT || 3000);

const server = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" });
    return res.end("ok\n");
  }
  res.writeHead(404);
  res.end();
});

async function main() {
  const pub = createClient({ url: process.env.REDIS_URL || "redis://127.0.0.1:6379" });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const io = new Server(server, { adapter: createAdapter(pub, sub) });
  io.on("connection", (socket) => {
    socket.emit("hello", name);                           // which replica holds the session
    socket.on("chat", (text) => io.emit("chat", { from: name, text }));  // to every replica
  });
  server.listen(port, () => console.log(`${name} listening on ${port}`));
  const stop = () => io.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
