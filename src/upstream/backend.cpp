// Backend state and Runtime snapshot construction; see backend.hpp.
#include "tether/upstream/backend.hpp"

#include <stdexcept>

#include <boost/asio/io_context.hpp>

namespace tether::upstream {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Backend::Backend(const config::Server& server, std::vector<tcp::endpoint> endpoints,
                 std::shared_ptr<BackendState> state)
    : server_(server),
      endpoints_(std::move(endpoints)),
      state_(state ? std::move(state) : std::make_shared<BackendState>()) {}

bool Backend::accepts_new() const {
    if (draining() || !up()) return false;
    return server_.max_conns <= 0 || active() < server_.max_conns;
}

Backend* Runtime::find(std::string_view upstream, std::string_view server) const {
    for (const auto& u : upstreams)
        if (u.config->name == upstream)
            for (const auto& b : u.backends)
                if (b->name() == server) return b.get();
    return nullptr;
}

bool set_drain(const Runtime& rt, std::string_view upstream, std::string_view server, bool drain) {
    Backend* b = rt.find(upstream, server);
    if (!b) return false;
    b->set_draining(drain);
    return true;
}

const Upstream* Runtime::find(const std::string& name) const {
    for (const auto& u : upstreams)
        if (u.config->name == name) return &u;
    return nullptr;
}

namespace {

std::vector<tcp::endpoint> resolve(tcp::resolver& resolver, const config::Server& s) {
    boost::system::error_code ec;
    auto results = resolver.resolve(s.address.host, std::to_string(s.address.port), ec);
    if (ec || results.empty())
        throw std::runtime_error("server '" + s.name + "': cannot resolve '" +
                                 s.address.text() + "': " + ec.message());
    std::vector<tcp::endpoint> out;
    for (const auto& r : results) out.push_back(r.endpoint());
    return out;
}

// The Backend of `previous` that stands for server `s` of `upstream`: the same
// object when nothing changed, a new one sharing its state when only settings
// (weight, max_conns...) changed, nullptr for a new or re-addressed server.
std::shared_ptr<Backend> reuse(const Runtime* previous, const std::string& upstream,
                               const config::Server& s, tcp::resolver& resolver) {
    if (!previous) return nullptr;
    const Upstream* u = previous->find(upstream);
    if (!u) return nullptr;
    for (const auto& b : u->backends) {
        const auto& old = b->server();
        if (old.name != s.name || old.address.text() != s.address.text()) continue;
        if (old.weight == s.weight && old.max_conns == s.max_conns && old.backup == s.backup &&
            old.max_fails == s.max_fails && old.fail_timeout == s.fail_timeout)
            return b;
        return std::make_shared<Backend>(s, resolve(resolver, s), b->shared_state());
    }
    return nullptr;
}

}  // namespace

std::shared_ptr<const Runtime> build_runtime(std::shared_ptr<const config::Config> config,
                                             const Runtime* previous, std::uint64_t generation) {
    asio::io_context io;
    tcp::resolver resolver(io);
    auto rt = std::make_shared<Runtime>();
    rt->config = config;
    rt->generation = generation;
    for (const auto& [name, ucfg] : config->upstreams) {
        Upstream u;
        u.config = &ucfg;
        for (const auto& s : ucfg.servers) {
            auto b = reuse(previous, name, s, resolver);
            if (!b) {
                b = std::make_shared<Backend>(s, resolve(resolver, s));
                if (ucfg.health_check && !ucfg.health_check->initial_up) b->set_up(false);
                // A drain is the operator's word about a name: it survives a new address.
                if (const Backend* old = previous ? previous->find(name, s.name) : nullptr)
                    b->set_draining(old->draining());
            }
            // Without active checks a server is up (passive checks still apply).
            if (!ucfg.health_check) b->set_up(true);
            u.backends.push_back(std::move(b));
        }
        rt->upstreams.push_back(std::move(u));
    }
    if (previous) rt->listener_address = previous->listener_address;
    rt->listener_upstream.assign(rt->listener_address.size(), kNoUpstream);
    rt->listener_config.assign(rt->listener_address.size(), kNoUpstream);
    for (std::size_t li = 0; li < config->listen.size(); ++li) {
        const auto& l = config->listen[li];
        std::size_t idx = 0;
        while (idx < rt->upstreams.size() && rt->upstreams[idx].config->name != l.upstream) ++idx;
        if (idx == rt->upstreams.size())
            throw std::runtime_error("listener " + l.address.text() + ": unknown upstream");
        const std::string address = l.address.text();
        std::size_t slot = 0;
        while (slot < rt->listener_address.size() && rt->listener_address[slot] != address) ++slot;
        if (slot == rt->listener_address.size()) {
            rt->listener_address.push_back(address);
            rt->listener_upstream.push_back(kNoUpstream);
            rt->listener_config.push_back(kNoUpstream);
        }
        rt->listener_upstream[slot] = idx;
        rt->listener_config[slot] = li;
    }
    return rt;
}

}  // namespace tether::upstream
