// The live status page served at GET / on the admin address: plain HTML and
// JS, no external assets; it polls /status every second and posts to the
// drain API.
#include "tether/admin/admin_server.hpp"

namespace tether::admin {

std::string_view status_page() {
    static constexpr std::string_view kPage = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>tether status</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em;min-width:40em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}
.up{background:#dfd}.down{background:#fdd}.draining{background:#ffd}
</style></head><body>
<h1>tether</h1><p id="meta">loading...</p><div id="upstreams"></div>
<script>
let last = null, lastAt = 0;
function cell(t){const td=document.createElement('td');td.textContent=t;return td;}
async function act(u,s,a){await fetch('/upstreams/'+encodeURIComponent(u)+'/servers/'+
  encodeURIComponent(s)+'/'+a,{method:'POST'});refresh();}
async function refresh(){
  const r = await fetch('/status'); const st = await r.json(); const now = Date.now();
  document.getElementById('meta').textContent = 'config generation ' + st.config_generation +
    ' | redis ' + st.redis.state + ' | updated ' + new Date().toLocaleTimeString();
  const root = document.getElementById('upstreams'); root.innerHTML = '';
  for (const [name, u] of Object.entries(st.upstreams)) {
    const h = document.createElement('h2'); h.textContent = name + ' (' + u.affinity +
      ', ' + u.bindings + ' bindings)'; root.appendChild(h);
    const t = document.createElement('table'); t.id = 'upstream-' + name;
    t.innerHTML = '<tr><th>server</th><th>address</th><th>state</th><th>weight</th>' +
      '<th>connections</th><th>tunnels</th><th>requests</th><th>req/s</th><th>errors/s</th>' +
      '<th></th></tr>';
    for (const s of u.servers) {
      const tr = document.createElement('tr'); tr.className = s.state;
      tr.dataset.server = s.name;
      const prev = last && last.upstreams[name] &&
        last.upstreams[name].servers.find(x => x.name === s.name);
      const dt = (now - lastAt) / 1000;
      const rate = (k) => prev && dt > 0 ? ((s[k] - prev[k]) / dt).toFixed(1) : '-';
      for (const v of [s.name, s.address, s.state, s.weight, s.connections, s.tunnels,
                       s.requests, rate('requests'), rate('errors')]) tr.appendChild(cell(v));
      const td = document.createElement('td'); const b = document.createElement('button');
      const draining = s.state === 'draining';
      b.textContent = draining ? 'enable' : 'drain'; b.className = 'action';
      b.onclick = () => act(name, s.name, draining ? 'enable' : 'drain');
      td.appendChild(b); tr.appendChild(td); t.appendChild(tr);
    }
    root.appendChild(t);
  }
  last = st; lastAt = now;
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
)HTML";
    return kPage;
}

}  // namespace tether::admin
