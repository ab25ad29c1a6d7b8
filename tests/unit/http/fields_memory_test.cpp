// Request and response heads parsed the way the session parses them take no
// memory from the global operator new once the thread's RecyclingPool holds
// blocks of their sizes (a field node each, the target and the reason). This
// binary counts the calls of operator new made on the test's thread.
#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <string_view>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "tether/http/strict_parser.hpp"

namespace {
thread_local std::size_t g_news = 0;  // calls of operator new on this thread
}  // namespace

// Not inlined: GCC would then see free() of what a new-expression returned
// (-Wmismatched-new-delete, an error with -Werror in the TSan build).
[[gnu::noinline]] void* operator new(std::size_t n) {
    ++g_news;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using namespace tether::http;
namespace bhttp = boost::beast::http;

constexpr std::string_view kRequest =
    "POST /api/items?page=2 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: test/1.0\r\n"
    "Accept: */*\r\nCookie: sid=0123456789abcdef\r\nContent-Length: 0\r\n\r\n";
constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    "Set-Cookie: a=b; Path=/\r\n\r\nok";

template <class Parser>
std::size_t parse_fields(Parser& p, std::string_view raw) {
    p.eager(false);
    boost::beast::error_code ec;
    p.put(boost::asio::buffer(raw.data(), raw.size()), ec);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_TRUE(p.is_header_done());
    return static_cast<std::size_t>(std::distance(p.get().begin(), p.get().end()));
}

// One exchange's heads, as ClientSession parses them.
void one_exchange() {
    StrictRequestParser<bhttp::empty_body> req;
    EXPECT_EQ(parse_fields(req, kRequest), 5u);
    EXPECT_EQ(req.get().target(), "/api/items?page=2");
    bhttp::response_parser<bhttp::empty_body, FieldsAllocator> res;
    EXPECT_EQ(parse_fields(res, kResponse), 3u);
    EXPECT_EQ(res.get().reason(), "OK");
}

TEST(FieldsMemory, SteadyStateHeadsTakeNothingFromOperatorNew) {
    one_exchange();  // fills the pool's classes
    const std::size_t before = g_news;
    for (int i = 0; i < 20; ++i) one_exchange();
    EXPECT_EQ(g_news - before, 0u);
}

TEST(FieldsMemory, StandardAllocatorFieldsWouldAllocate) {
    // What the test above would see without the pool: a block per field.
    bhttp::request_parser<bhttp::empty_body> warm;
    parse_fields(warm, kRequest);
    const std::size_t before = g_news;
    bhttp::request_parser<bhttp::empty_body> p;
    parse_fields(p, kRequest);
    EXPECT_GE(g_news - before, 5u);
}

}  // namespace
