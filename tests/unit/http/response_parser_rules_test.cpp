// ResponseParser's own head parser against Beast's: the usual heads are taken
// by tether's parser (parsed_by_beast() false) with Beast's framing, and every
// other head (malformed, ambiguous, folded, over a limit, in pieces) is left
// to Beast's parser and answered exactly as Beast answers it. Each case is
// checked twice: by its expected verdict or framing written out here (which
// fails if the rule that decides it is dropped from either parser), and step
// by step against Beast's own parser fed the same bytes the same way
// (tools/fuzz/response_diff.hpp, the fuzz target's comparison).
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/error.hpp>

#include "../../../tools/fuzz/response_diff.hpp"

namespace {

using namespace tether::http;
using diff::Settings;
using diff::Trace;
using E = boost::beast::http::error;

struct Both {
    Trace mine, beast;
    bool by_beast = false;  // ResponseParser left the head to Beast's parser
};

// `raw` in the pieces `splits` cut it into, through both parsers.
Both run(std::string_view raw, Settings s = {}, std::vector<std::size_t> splits = {}) {
    if (!s.body_limit) s.body_limit = boost::optional<std::uint64_t>();  // the session's
    std::vector<std::string_view> pieces;
    std::size_t at = 0;
    for (std::size_t cut : splits) {
        pieces.push_back(raw.substr(at, cut - at));
        at = cut;
    }
    pieces.push_back(raw.substr(at));
    Both r;
    ResponseParser mine;
    diff::Reference beast;
    r.mine = diff::drive(mine, pieces, s);
    r.beast = diff::drive(beast, pieces, s);
    r.by_beast = mine.parsed_by_beast();
    return r;
}

int code(E e) { return boost::beast::error_code(e).value(); }

// framing_of's order: keep_alive, need_eof, chunked, upgrade, content_length
// + 1, content_length_remaining + 1 (0: none).
constexpr std::size_t kKeepAlive = 0, kNeedEof = 1, kChunked = 2, kUpgrade = 3, kLength = 4;

#define EXPECT_SAME_AS_BEAST(r) EXPECT_TRUE((r).mine == (r).beast)

// --- taken by tether's parser ------------------------------------------------

TEST(ResponseParserRules, ContentLengthBodyTakenWithBeastsFraming) {
    const Both r = run("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
                      "helloHTTP/1.1");
    EXPECT_SAME_AS_BEAST(r);
    EXPECT_FALSE(r.by_beast);
    EXPECT_EQ(r.mine.error(), 0);
    EXPECT_EQ(r.mine.body, "hello");
    EXPECT_EQ(r.mine.framing[kLength], 6u);
    EXPECT_EQ(r.mine.framing[kKeepAlive], 1u);
    EXPECT_EQ(std::get<0>(r.mine.steps.back()), 5u);  // the next response's bytes left
}

TEST(ResponseParserRules, SmallBodyBufferFilledInTurns) {
    Settings s;
    s.body_buffer = 3;
    const Both r = run("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", s);
    EXPECT_SAME_AS_BEAST(r);
    EXPECT_FALSE(r.by_beast);
    EXPECT_EQ(r.mine.body, "0123456789");
    EXPECT_EQ(std::get<3>(r.mine.steps.back()), true);
}

TEST(ResponseParserRules, NoBodyFor1xx204304AndHead) {
    for (std::string_view status : {"100 Continue", "199 X", "204 No Content", "304 Not Modified"}) {
        const std::string raw = "HTTP/1.1 " + std::string(status) + "\r\nContent-Length: 5\r\n\r\nhello";
        const Both r = run(raw);
        EXPECT_SAME_AS_BEAST(r) << raw;
        EXPECT_FALSE(r.by_beast) << raw;
        EXPECT_EQ(r.mine.body, "") << raw;
        EXPECT_EQ(r.mine.steps.size(), 1u) << raw;  // done with the head
        EXPECT_EQ(std::get<0>(r.mine.steps[0]), raw.size() - 5) << raw;
        EXPECT_EQ(r.mine.framing[kLength], 6u) << raw;  // reported, as Beast does
    }
    Settings head;
    head.skip = true;
    const Both r = run("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", head);
    EXPECT_SAME_AS_BEAST(r);
    EXPECT_FALSE(r.by_beast);
    EXPECT_EQ(r.mine.body, "");
    EXPECT_EQ(r.mine.steps.size(), 1u);
}

TEST(ResponseParserRules, ChunkedBodyParsedByBeastPastItsOwnHead) {
    Settings s;
    s.body_buffer = 4;
    const Both r = run("HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: Chunked\r\n\r\n"
                      "5;ext=\"q\"\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n", s);
    EXPECT_SAME_AS_BEAST(r);
    EXPECT_FALSE(r.by_beast);
    EXPECT_EQ(r.mine.error(), 0);
    EXPECT_EQ(r.mine.body, "helloabc");
    EXPECT_EQ(r.mine.framing[kChunked], 1u);
    EXPECT_EQ(r.mine.framing[kNeedEof], 0u);
    EXPECT_EQ(r.mine.all_fields.size(), 3u);  // the trailer after the head's two
}

TEST(ResponseParserRules, ChunkedBodyErrorsAreBeasts) {
    for (std::string_view body : {"zz\r\n", "5\r\nhelloXX", "3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n"}) {
        const std::string raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                std::string(body);
        const Both r = run(raw);
        EXPECT_SAME_AS_BEAST(r) << raw;
        EXPECT_FALSE(r.by_beast) << raw;
        EXPECT_NE(r.mine.error(), 0) << raw;
    }
    // A chunked body cut short: partial_message at the end.
    const Both r = run("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    EXPECT_SAME_AS_BEAST(r);
    EXPECT_EQ(r.mine.error(), code(E::partial_message));
}

TEST(ResponseParserRules, BodyUntilCloseAndKeepAliveByVersion) {
    const Both close = run("HTTP/1.1 200 OK\r\nServer: x\r\n\r\nall of it");
    EXPECT_SAME_AS_BEAST(close);
    EXPECT_FALSE(close.by_beast);
    EXPECT_EQ(close.mine.body, "all of it");
    EXPECT_EQ(close.mine.framing[kNeedEof], 1u);
    EXPECT_EQ(close.mine.framing[kKeepAlive], 0u);
    EXPECT_EQ(close.mine.error(), 0);  // put_eof ends it

    const auto keep_alive = [](std::string_view raw) {
        const Both r = run(raw);
        EXPECT_SAME_AS_BEAST(r) << raw;
        EXPECT_FALSE(r.by_beast) << raw;
        return r.mine.framing[kKeepAlive];
    };
    EXPECT_EQ(keep_alive("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), 0u);
    EXPECT_EQ(keep_alive("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"), 1u);
    EXPECT_EQ(keep_alive("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 1u);
    EXPECT_EQ(keep_alive("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), 0u);
    EXPECT_EQ(keep_alive("HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 0\r\n\r\n"), 0u);
}

TEST(ResponseParserRules, UpgradeFlagsAsBeast) {
    const Both r = run("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\n\r\nframes");
    EXPECT_SAME_AS_BEAST(r);
    EXPECT_FALSE(r.by_beast);
    EXPECT_EQ(r.mine.framing[kUpgrade], 1u);
    EXPECT_EQ(r.mine.body, "");
}

TEST(ResponseParserRules, StatusLineAsBeastTakesIt) {
    // Any three digits and any reason characters (HTAB, obs-text), an empty reason.
    for (std::string_view raw : {"HTTP/1.1 001 \t\x80\xff\r\nContent-Length: 0\r\n\r\n",
                                 "HTTP/1.0 999 \r\nContent-Length: 0\r\n\r\n"}) {
        const Both r = run(raw);
        EXPECT_SAME_AS_BEAST(r) << raw;
        EXPECT_FALSE(r.by_beast) << raw;
        EXPECT_EQ(r.mine.error(), 0) << raw;
    }
}

// Beast's field enum for each name, whatever its case, also when names meet
// in the cache of names tether's parser keeps per thread.
TEST(ResponseParserRules, FieldEnumsAsBeasts) {
    const std::vector<std::string> names = {
        "Content-Type", "content-type", "CONTENT-TYPE", "Date", "date", "Server", "X-Backend",
        "Set-Cookie", "set-cookie", "Cache-Control", "ETag", "Etag", "Vary", "Age", "Via",
        "Connection", "Keep-Alive", "Trailer", "TE", "Upgrade", "Content-Length",
        "X-A-Name-That-Is-Longer-Than-Thirty-Bytes", "Last-Modified", "Location"};
    for (int round = 0; round < 2; ++round) {
        std::string raw = "HTTP/1.1 200 OK\r\n";
        for (std::size_t i = 0; i < names.size(); ++i) {
            const std::string& n = names[(i * 7 + static_cast<std::size_t>(round)) % names.size()];
            raw += n == "Content-Length" ? "Content-Length: 0\r\n"
                   : n == "Connection" || n == "Upgrade" ? n + ": x\r\n"
                   : n + ": v\r\n";
        }
        raw += "\r\n";
        const Both r = run(raw);
        EXPECT_SAME_AS_BEAST(r) << raw;
        EXPECT_FALSE(r.by_beast) << raw;
        EXPECT_EQ(r.mine.head_fields.size(), names.size());
    }
}

// --- left to Beast's parser, with its verdict --------------------------------

void expect_refused(std::string_view raw, E e, Settings s = {}) {
    const Both r = run(raw, s);
    EXPECT_SAME_AS_BEAST(r) << raw;
    EXPECT_TRUE(r.by_beast) << raw;
    EXPECT_EQ(r.mine.error(), code(e)) << raw;
    EXPECT_FALSE(r.mine.head_ok) << raw;
}

void expect_taken_by_beast(std::string_view raw, std::size_t at, std::uint64_t value) {
    const Both r = run(raw);
    EXPECT_SAME_AS_BEAST(r) << raw;
    EXPECT_TRUE(r.by_beast) << raw;
    EXPECT_TRUE(r.mine.head_ok) << raw;
    EXPECT_EQ(r.mine.framing[at], value) << raw;
}

TEST(ResponseParserRules, BadStatusLines) {
    expect_refused("HTTP/2.0 200 OK\r\n\r\n", E::bad_version);
    expect_refused("HTTP/1.2 200 OK\r\n\r\n", E::bad_version);
    expect_refused("http/1.1 200 OK\r\n\r\n", E::bad_version);
    expect_refused("HTTP/1.1 2x0 OK\r\n\r\n", E::bad_status);
    expect_refused("HTTP/1.1 200\r\n\r\n", E::bad_status);
    expect_refused("HTTP/1.1  200 OK\r\n\r\n", E::bad_status);
    expect_refused("HTTP/1.1 200 O\x01K\r\n\r\n", E::bad_reason);
    expect_refused("HTTP/1.1 200 OK\x7f\r\n\r\n", E::bad_reason);
    expect_refused("HTTP/1.1 200 OK\n\r\n", E::bad_reason);  // bare LF
    expect_refused("HTTP/1.1 200 OK\rX\r\n\r\n", E::bad_line_ending);
}

TEST(ResponseParserRules, BadFieldLines) {
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", E::bad_field);
    expect_refused("HTTP/1.1 200 OK\r\n: 5\r\n\r\n", E::bad_field);
    expect_refused("HTTP/1.1 200 OK\r\nX(A): 5\r\n\r\n", E::bad_field);
    expect_refused("HTTP/1.1 200 OK\r\nX-A: a\x01" "b\r\n\r\n", E::bad_value);
    expect_refused("HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\n\r\n", E::bad_value);
    expect_refused("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", E::bad_line_ending);
    expect_refused("HTTP/1.1 200 OK\r\nX-A: a\r\n\rX\r\n", E::bad_line_ending);
}

TEST(ResponseParserRules, ConflictingFraming) {
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
                   E::multiple_content_length);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok!",
                   E::multiple_content_length);
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
                   E::bad_content_length);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
                   E::bad_transfer_encoding);
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                   E::bad_transfer_encoding);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", E::bad_content_length);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", E::bad_content_length);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", E::bad_content_length);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
                   E::bad_content_length);
    expect_refused("HTTP/1.1 200 OK\r\nConnection: close,,\"x\"\r\n\r\n", E::bad_value);
}

// Heads Beast's parser takes that tether's leaves to it: read as Beast reads
// them (some of them as lax as Beast was before; "as now" is the rule).
TEST(ResponseParserRules, UnusualHeadsReadAsBeastReadsThem) {
    // The same Content-Length twice, a list of equal lengths, 19 digits.
    expect_taken_by_beast("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
                          kLength, 3);
    expect_taken_by_beast("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", kLength, 3);
    expect_taken_by_beast("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n",
                          kLength, 1000000000000000001u);
    // A Transfer-Encoding other than chunked: Beast's framing by Content-Length or the close.
    expect_taken_by_beast("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok",
                          kLength, 3);
    expect_taken_by_beast("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nto the end",
                          kNeedEof, 1);
    expect_taken_by_beast("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                          kChunked, 1);
    // Connection lists, an empty Connection.
    expect_taken_by_beast("HTTP/1.1 200 OK\r\nConnection: close, X-A\r\nContent-Length: 0\r\n\r\n",
                          kKeepAlive, 0);
    expect_taken_by_beast("HTTP/1.0 200 OK\r\nConnection:\r\nContent-Length: 0\r\n\r\n", kKeepAlive, 0);
    // obs-fold: Beast joins the lines (the request side refuses it; the response side never did).
    expect_taken_by_beast("HTTP/1.1 200 OK\r\nContent-Length:\r\n 5\r\n\r\nhello", kLength, 6);
    const Both fold = run("HTTP/1.1 200 OK\r\nX-A: 1\r\n  two\r\nContent-Length: 0\r\n\r\n");
    EXPECT_SAME_AS_BEAST(fold);
    EXPECT_TRUE(fold.by_beast);
    ASSERT_EQ(fold.mine.head_fields.size(), 2u);
    EXPECT_EQ(std::get<2>(fold.mine.head_fields[0]), "1 two");
}

TEST(ResponseParserRules, LimitsAsBeasts) {
    Settings small;
    small.header_limit = 40;
    expect_refused("HTTP/1.1 200 OK\r\nX-Long: 0123456789012345678901234567890123\r\n\r\n",
                   E::header_limit, small);
    Settings body;
    body.body_limit = boost::optional<std::uint64_t>(10);
    const Both r = run("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", body);
    EXPECT_SAME_AS_BEAST(r);
    EXPECT_TRUE(r.by_beast);
    EXPECT_EQ(r.mine.error(), code(E::body_limit));
    const Both eof = run("HTTP/1.1 200 OK\r\n\r\nhello world", body);
    EXPECT_SAME_AS_BEAST(eof);
    EXPECT_FALSE(eof.by_beast);
    EXPECT_EQ(eof.mine.error(), code(E::body_limit));
}

// A head that comes in pieces goes to Beast's parser, which takes the status
// line from the first piece as before (a backend that closes after it gets a
// 502, not a retry: bytes were used).
TEST(ResponseParserRules, HeadInPiecesToBeastAsBefore) {
    const std::string raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    const Both r = run(raw, {}, {20, 30});
    EXPECT_SAME_AS_BEAST(r);
    EXPECT_TRUE(r.by_beast);
    EXPECT_EQ(std::get<0>(r.mine.steps[0]), 17u);
    EXPECT_EQ(r.mine.body, "ok");
    const Both cut = run("HTTP/1.1 200 OK\r\nContent-Le");
    EXPECT_SAME_AS_BEAST(cut);
    EXPECT_EQ(cut.mine.error(), code(E::partial_message));
}

}  // namespace
