// hiredis on Asio; see hiredis_asio.hpp.
#include "redis/hiredis_asio.hpp"

#include <memory>

#include <boost/asio/posix/stream_descriptor.hpp>

namespace tether::redis {

namespace asio = boost::asio;

Reply convert(const redisReply* r) {
    Reply out;
    if (!r) return out;
    switch (r->type) {
        case REDIS_REPLY_STRING: out.kind = Reply::Kind::string; break;
        case REDIS_REPLY_STATUS: out.kind = Reply::Kind::status; break;
        case REDIS_REPLY_ERROR: out.kind = Reply::Kind::error; break;
        case REDIS_REPLY_INTEGER: out.kind = Reply::Kind::integer; break;
        case REDIS_REPLY_ARRAY: out.kind = Reply::Kind::array; break;
        default: out.kind = Reply::Kind::nil; break;
    }
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR)
        out.str.assign(r->str, r->len);
    if (r->type == REDIS_REPLY_INTEGER) out.integer = r->integer;
    if (r->type == REDIS_REPLY_ARRAY)
        for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
    return out;
}

namespace {

/// Maps hiredis' read/write interest onto async_wait on the socket. Lives
/// until hiredis calls cleanup (the context is being freed); hiredis holds a
/// raw pointer to it only until then, and pending waits hold a shared_ptr.
struct Watch : std::enable_shared_from_this<Watch> {
    Watch(asio::io_context& io, redisAsyncContext* c) : sd(io, c->c.fd), ac(c) {}
    asio::posix::stream_descriptor sd;
    redisAsyncContext* ac;  // null once hiredis freed the context
    bool want_read = false, want_write = false, reading = false, writing = false;
    std::shared_ptr<Watch> keep;  // self-reference until cleanup

    void arm_read() {
        if (reading || !want_read || !ac) return;
        reading = true;
        sd.async_wait(asio::posix::descriptor_base::wait_read,
                      [self = shared_from_this()](boost::system::error_code ec) {
                          self->reading = false;
                          if (ec || !self->ac || !self->want_read) return;
                          redisAsyncHandleRead(self->ac);
                          self->arm_read();
                      });
    }
    void arm_write() {
        if (writing || !want_write || !ac) return;
        writing = true;
        sd.async_wait(asio::posix::descriptor_base::wait_write,
                      [self = shared_from_this()](boost::system::error_code ec) {
                          self->writing = false;
                          if (ec || !self->ac || !self->want_write) return;
                          redisAsyncHandleWrite(self->ac);
                          self->arm_write();
                      });
    }
    static Watch* of(void* p) { return static_cast<Watch*>(p); }
    static void add_read(void* p) { of(p)->want_read = true; of(p)->arm_read(); }
    static void del_read(void* p) { of(p)->want_read = false; }
    static void add_write(void* p) { of(p)->want_write = true; of(p)->arm_write(); }
    static void del_write(void* p) { of(p)->want_write = false; }
    static void cleanup(void* p) {
        Watch* w = of(p);
        w->ac = nullptr;
        w->want_read = w->want_write = false;
        w->sd.release();  // hiredis closes the descriptor; pending waits end aborted
        auto keep = std::move(w->keep);  // may be the last reference: dies at scope end
    }
};

}  // namespace

void attach(asio::io_context& io, redisAsyncContext* ac) {
    auto w = std::make_shared<Watch>(io, ac);
    w->keep = w;
    ac->ev.data = w.get();
    ac->ev.addRead = &Watch::add_read;
    ac->ev.delRead = &Watch::del_read;
    ac->ev.addWrite = &Watch::add_write;
    ac->ev.delWrite = &Watch::del_write;
    ac->ev.cleanup = &Watch::cleanup;
}

}  // namespace tether::redis
