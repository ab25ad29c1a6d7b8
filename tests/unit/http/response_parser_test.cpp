// ResponseParser: the response head's fields in a FlatFields (in order, a
// block for their text and one for their list), the head tether writes from
// them the same as from Beast's basic_fields. Its own head parser's rules
// (the usual heads taken, everything else left to Beast's parser, with
// Beast's verdict) are in response_parser_rules_test.cpp.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "tether/http/response_parser.hpp"

namespace {

using namespace tether::http;
using tether::RecyclingPool;

// Parses `raw`'s head into `p`; false on an error.
template <class Parser>
bool parse_head(Parser& p, std::string_view raw) {
    boost::beast::error_code ec;
    p.put(boost::asio::buffer(raw.data(), raw.size()), ec);
    return (!ec || ec == bhttp::error::need_more) && p.is_header_done();
}

std::size_t pool_blocks() {
    std::size_t n = 0;
    for (std::size_t b = RecyclingPool::kGranule; b <= RecyclingPool::kMaxBlock;
         b += RecyclingPool::kGranule)
        n += RecyclingPool::cached(b);
    return n;
}

// Fills every class of this thread's pool, so that what a parse takes from
// it shows as fewer cached blocks.
void fill_pool() {
    for (std::size_t b = RecyclingPool::kGranule; b <= RecyclingPool::kMaxBlock;
         b += RecyclingPool::kGranule) {
        std::vector<void*> blocks;
        for (int i = 0; i < 64; ++i) blocks.push_back(RecyclingPool::allocate(b));
        for (void* p : blocks) RecyclingPool::deallocate(p, b);
    }
}

std::string many_fields_response(int fields) {
    std::string r = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < fields; ++i)
        r += "X-Field-" + std::to_string(i) + ": value number " + std::to_string(i) + "\r\n";
    return r + "Content-Length: 2\r\n\r\nok";
}

TEST(ResponseParser, FieldsInOrderOutsideTheMessage) {
    ResponseParser p;
    ASSERT_TRUE(parse_head(p, "HTTP/1.1 404 Not Found\r\nX-B: 2\r\ncontent-length: 5\r\n"
                              "Connection: keep-alive, X-B\r\nx-a: \r\nSet-Cookie: a=1\r\n"
                              "Set-Cookie: b=2\r\n\r\nhello"));
    EXPECT_EQ(p.get().result_int(), 404u);
    EXPECT_EQ(p.get().reason(), "Not Found");
    EXPECT_TRUE(p.parsed_by_beast());  // a Connection list: Beast's parser, its fields flat too
    EXPECT_EQ(p.content_length().value_or(0), 5u);
    EXPECT_TRUE(p.keep_alive());
    std::vector<std::string> seen;
    for (const auto& f : p.fields())
        seen.push_back(std::to_string(static_cast<int>(f.name())) + " " +
                       std::string(f.name_string()) + "=" + std::string(f.value()));
    const auto e = [](bhttp::field f) { return std::to_string(static_cast<int>(f)) + " "; };
    EXPECT_EQ(seen, (std::vector<std::string>{
                        e(bhttp::field::unknown) + "X-B=2",
                        e(bhttp::field::content_length) + "content-length=5",
                        e(bhttp::field::connection) + "Connection=keep-alive, X-B",
                        e(bhttp::field::unknown) + "x-a=",
                        e(bhttp::field::set_cookie) + "Set-Cookie=a=1",
                        e(bhttp::field::set_cookie) + "Set-Cookie=b=2",
                    }));
}

// The head written from the flat fields is the one written from Beast's
// (which keeps fields of one name together, so the heads are chosen with
// each name once or its repeats adjacent).
TEST(ResponseParser, WrittenHeadSameAsFromBeastFields) {
    const std::vector<std::string_view> heads = {
        "HTTP/1.1 200 OK\r\nX-Backend: s1\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: X-Internal\r\nx-internal: 1\r\n"
        "UPGRADE: h2c\r\nProxy-Connection: x\r\nTrailer-Info: kept\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: close, X-Internal\r\nX-Internal: 1\r\nKeep-Alive: 5\r\n"
        "Transfer-Encoding: chunked\r\nX-App: y\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        "HTTP/1.0 299 \r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Empty:\r\n\r\n",
    };
    for (const auto raw : heads) {
        ResponseParser flat;
        bhttp::response_parser<bhttp::empty_body, FieldsAllocator> beast;
        ASSERT_TRUE(parse_head(flat, raw)) << raw;
        ASSERT_TRUE(parse_head(beast, raw)) << raw;
        for (const Framing body : {Framing::length, Framing::chunked, Framing::none}) {
            ResponseRewrite rw;
            rw.body = body;
            rw.upgrade = flat.get().result_int() == 101;
            rw.close = body == Framing::none;
            rw.extra = "Set-Cookie: t=1\r\n";
            std::string a, b;
            write_response_head(flat.get(), flat.fields(), 11, rw, a);
            write_response_head(beast.get(), 11, rw, b);
            EXPECT_EQ(a, b) << raw;
        }
    }
}

// Observable cost: Beast's parser takes a block per field (its node) from the
// fields' allocator; ResponseParser takes one for the text (the reason's
// too) and one for the list, whatever the number of fields.
TEST(ResponseParser, ManyFieldsTakeThreeBlocksNotOnePerField) {
    const std::string raw = many_fields_response(40);
    fill_pool();
    {
        const std::size_t before = pool_blocks();
        bhttp::response_parser<bhttp::empty_body, FieldsAllocator> beast;
        ASSERT_TRUE(parse_head(beast, raw));
        EXPECT_GE(before - pool_blocks(), 41u);  // what the session's parser took before
    }
    fill_pool();
    const std::size_t before = pool_blocks();
    ResponseParser p;
    ASSERT_TRUE(parse_head(p, raw));
    EXPECT_EQ(p.fields().size(), 41u);
    EXPECT_FALSE(p.parsed_by_beast());
    EXPECT_LE(before - pool_blocks(), 2u);
}

}  // namespace
