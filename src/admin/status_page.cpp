// The live status page served at GET / on the admin address, in the spirit of
// HAProxy's stats page: one table per upstream, one row per server (state,
// weight, connections, tunnels, Engine.IO sessions, requests, request and
// error rates), drain/enable buttons. Plain HTML and JS, no external assets.
// The script polls /status every second and updates the tables in place
// (rows are kept, so a button never disappears under the pointer); rates are
// the differences between two polls. Element ids and data-* attributes are
// stable: the browser test reads them.
#include "tether/admin/admin_server.hpp"

namespace tether::admin {

std::string_view status_page() {
    static constexpr std::string_view kPage = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tether status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{margin:0 0 .2em}h2{margin:1.2em 0 .3em;font-size:1.1em}
table{border-collapse:collapse;min-width:52em;background:#fff}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right;white-space:nowrap}
th{background:#eee}td:first-child,th:first-child,td.address{text-align:left}
tr.up td.state{background:#cfc}tr.down td.state{background:#fbb}
tr.draining td.state{background:#ffc}tr.down{color:#900}
#meta{color:#555}#error{color:#b00;font-weight:bold}
button{font:inherit;padding:.1em .8em;cursor:pointer}
</style></head><body>
<h1>tether</h1>
<p id="meta">loading...</p><p id="error"></p>
<div id="upstreams"></div>
<script>
'use strict';
const COLS = [['name', 'server'], ['address', 'address'], ['state', 'state'],
  ['weight', 'weight'], ['connections', 'connections'], ['tunnels', 'tunnels'],
  ['sessions', 'sessions (poll/ws)'], ['requests', 'requests'], ['req_rate', 'req/s'],
  ['errors', '5xx'], ['err_rate', '5xx/s'], ['action', '']];
let last = null, lastAt = 0, busy = false;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

async function act(u, s, action) {
  const r = await fetch('/upstreams/' + encodeURIComponent(u) + '/servers/' +
                        encodeURIComponent(s) + '/' + action, {method: 'POST'});
  if (!r.ok) document.getElementById('error').textContent = action + ' ' + s + ': HTTP ' + r.status;
  await refresh();
}

function upstreamTable(root, name) {
  const id = 'upstream-' + name;
  let section = document.getElementById(id);
  if (section) return section;
  section = el('section', {id: id, 'data-upstream': name});
  section.appendChild(el('h2'));
  const table = el('table');
  const head = el('tr');
  for (const [, title] of COLS) head.appendChild(el('th', {}, title));
  table.appendChild(head);
  section.appendChild(table);
  root.appendChild(section);
  return section;
}

function serverRow(table, u, s) {
  for (const tr of table.rows) if (tr.dataset.server === s) return tr;
  const tr = el('tr', {'data-server': s});
  for (const [key] of COLS) tr.appendChild(el('td', {class: key, 'data-k': key}));
  const b = el('button', {class: 'action'});
  b.addEventListener('click', () => act(u, s, b.dataset.action));
  tr.querySelector('td.action').appendChild(b);
  table.appendChild(tr);
  return tr;
}

function rate(now, prev, key, dt) {
  if (!prev || dt <= 0) return '-';
  return Math.max(0, (now[key] - prev[key]) / dt).toFixed(1);
}

function render(st, now) {
  document.getElementById('meta').textContent = 'config generation ' + st.config_generation +
    ' | workers ' + st.workers + ' | redis ' + st.redis.state +
    (st.stopping ? ' | STOPPING' : '') + ' | updated ' + new Date(now).toLocaleTimeString();
  const root = document.getElementById('upstreams');
  const dt = (now - lastAt) / 1000;
  const seen = new Set();
  for (const [name, u] of Object.entries(st.upstreams)) {
    const section = upstreamTable(root, name);
    seen.add(section.id);
    section.querySelector('h2').textContent = name + ' (affinity ' + u.affinity + ', ' +
      u.bindings + ' bindings)';
    const table = section.querySelector('table');
    const names = new Set();
    for (const s of u.servers) {
      names.add(s.name);
      const tr = serverRow(table, name, s.name);
      const prevU = last && last.upstreams[name];
      const prev = prevU && prevU.servers.find(x => x.name === s.name);
      tr.className = s.state;
      const v = {name: s.name, address: s.address, state: s.state + (s.backup ? ' (backup)' : ''),
        weight: s.weight, connections: s.connections, tunnels: s.tunnels,
        sessions: s.sessions ? s.sessions.polling + '/' + s.sessions.websocket : '-',
        requests: s.requests, req_rate: rate(s, prev, 'requests', dt), errors: s.errors,
        err_rate: rate(s, prev, 'errors', dt)};
      for (const [key, val] of Object.entries(v)) tr.querySelector('td.' + key).textContent = val;
      const b = tr.querySelector('button.action');
      b.dataset.action = s.draining ? 'enable' : 'drain';
      b.textContent = b.dataset.action;
    }
    for (const tr of Array.from(table.rows).slice(1))
      if (!names.has(tr.dataset.server)) tr.remove();
  }
  for (const section of Array.from(root.children)) if (!seen.has(section.id)) section.remove();
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const r = await fetch('/status', {cache: 'no-store'});
    const st = await r.json();
    const now = Date.now();
    render(st, now);
    if (!last || now - lastAt >= 900) { last = st; lastAt = now; }  // rates over >= ~1 s
    document.getElementById('error').textContent = '';
  } catch (e) {
    document.getElementById('error').textContent = 'cannot read /status: ' + e;
  } finally {
    busy = false;
  }
}
refresh();
setInterval(refresh, 1000);
</script></body></html>
)HTML";
    return kPage;
}

}  // namespace tether::admin
