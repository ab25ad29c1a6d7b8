// Engine.IO sid learning over real captures (shared/testdata/engineio) fed
// whole, split in two at every byte and byte by byte; synthetic open-packet
// shapes; query_param and path_under.
#include "tether/balance/engineio.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using tether::balance::OpenPacketParser;
using tether::balance::path_under;
using tether::balance::decode_param;
using tether::balance::eio_query;
using tether::balance::param_equals;
using tether::balance::query_param;
using tether::balance::query_param_raw;
using State = OpenPacketParser::State;

const std::string kDir = std::string(TETHER_SHARED_TESTDATA) + "/engineio/";

std::string read_file(const std::string& name) {
    std::ifstream in(kDir + name, std::ios::binary);
    EXPECT_TRUE(in.good()) << "cannot open " << kDir + name;
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

/// The payload of the first FIN text frame (header byte 81) of a .frames file:
/// '#' lines are comments; each other line is "<first header byte in hex> <payload>".
std::string first_text_frame(const std::string& name) {
    std::istringstream in(read_file(name));
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        const auto sp = line.find(' ');
        if (sp == std::string::npos) continue;
        if (line.substr(0, sp) == "81") return line.substr(sp + 1);
    }
    ADD_FAILURE() << "no text frame in " << name;
    return {};
}

/// Feeds `pieces` in order. Before the last byte of the sid arrives the state
/// must be need_more; at the end it must be `want` (with `sid` when found).
void expect_pieces(const std::vector<std::string_view>& pieces, State want, const std::string& sid,
                   const std::string& what) {
    OpenPacketParser p;
    State s = State::need_more;
    for (auto piece : pieces) {
        const State before = s;
        s = p.feed(piece);
        EXPECT_EQ(s, p.state()) << what;
        if (before != State::need_more) {
            EXPECT_EQ(s, before) << what << ": a verdict is final";
        }
    }
    ASSERT_EQ(s, want) << what;
    if (want == State::found) {
        EXPECT_EQ(p.sid(), sid) << what;
    }
}

/// Whole, split into two pieces at every boundary (0..n), and byte by byte.
void expect_every_split(const std::string& bytes, State want, const std::string& sid) {
    expect_pieces({bytes}, want, sid, "whole");
    for (std::size_t i = 0; i <= bytes.size(); ++i) {
        const std::string_view v(bytes);
        expect_pieces({v.substr(0, i), v.substr(i)}, want, sid, "split at " + std::to_string(i));
    }
    std::vector<std::string_view> bytewise;
    for (std::size_t i = 0; i < bytes.size(); ++i)
        bytewise.push_back(std::string_view(bytes).substr(i, 1));
    expect_pieces(bytewise, want, sid, "byte by byte");
}

State feed_whole(std::string_view bytes) {
    OpenPacketParser p;
    return p.feed(bytes);
}

std::string eio3_binary(const std::string& packet) {
    std::string out(1, '\x00');
    for (char d : std::to_string(packet.size())) out.push_back(static_cast<char>(d - '0'));
    out.push_back('\xff');
    return out + packet;
}

std::string eio3_text(const std::string& packet) {
    return std::to_string(packet.size()) + ":" + packet;
}

// --- real captures ---------------------------------------------------------

TEST(OpenPacketCapture, Eio4PollingHandshake) {
    const std::string body = read_file("eio4-polling-handshake.body");
    ASSERT_FALSE(body.empty());
    expect_every_split(body, State::found, "sXIjZz9g-LylGIquAAAA");
}

TEST(OpenPacketCapture, Eio3PollingHandshakeLengthPrefixedWithTwoPackets) {
    const std::string body = read_file("eio3-polling-handshake.body");
    ASSERT_TRUE(body.starts_with("96:0{"));
    expect_every_split(body, State::found, "15qBoNSj43zkSEAzAAAA");
}

TEST(OpenPacketCapture, Eio3PollingHandshakeB64) {
    const std::string body = read_file("eio3-polling-handshake-b64.body");
    expect_every_split(body, State::found, "xSTrexBVWhAJmEM7AAAB");
}

TEST(OpenPacketCapture, Eio4WebSocketFirstFrame) {
    const std::string payload = first_text_frame("eio4-websocket-handshake.frames");
    ASSERT_TRUE(payload.starts_with("0{")) << payload;
    expect_every_split(payload, State::found, "2i-jzo4PxnOiSEMiAAAB");
}

TEST(OpenPacketCapture, Eio3WebSocketFirstFrame) {
    const std::string payload = first_text_frame("eio3-websocket-handshake.frames");
    ASSERT_TRUE(payload.starts_with("0{")) << payload;
    expect_every_split(payload, State::found, "2IybkmYMPVvkRyXhAAAC");
}

TEST(OpenPacketCapture, UnknownSidAnswersAreNotOpenPackets) {
    EXPECT_EQ(feed_whole(read_file("eio4-unknown-sid.body")), State::not_open);
    EXPECT_EQ(feed_whole(read_file("eio3-unknown-sid.body")), State::not_open);
}

// --- synthetic shapes --------------------------------------------------------

TEST(OpenPacketParser, Eio3BinaryFraming) {
    const std::string open =
        R"(0{"sid":"binSid-123","upgrades":["websocket"],"pingInterval":25000})";
    const std::string body = eio3_binary(open) + eio3_binary("40");
    ASSERT_EQ(body[0], '\x00');
    expect_every_split(body, State::found, "binSid-123");
}

TEST(OpenPacketParser, Eio3BinaryFramingWithoutFFIsNotOpen) {
    EXPECT_EQ(feed_whole(std::string("\x00\x09\x06X0{\"sid\":\"a\"}", 16)), State::not_open);
    EXPECT_EQ(feed_whole(eio3_binary("2probe")), State::not_open);
}

TEST(OpenPacketParser, SeveralPacketsAfterTheOpenPacket) {
    const std::string eio4 = std::string(R"(0{"sid":"multi4","upgrades":[]})") + "\x1e" + "40" +
                             "\x1e" + R"(42["hello",{"sid":"wrong"}])";
    expect_every_split(eio4, State::found, "multi4");
    const std::string eio3 = eio3_text(R"(0{"sid":"multi3","upgrades":[]})") + eio3_text("40") +
                             eio3_text(R"(42["x",{"sid":"wrong"}])");
    expect_every_split(eio3, State::found, "multi3");
}

TEST(OpenPacketParser, LongSid) {
    const std::string sid(200, 'Z');
    const std::string body = R"(0{"sid":")" + sid + R"(","upgrades":[],"pingInterval":25000})";
    expect_every_split(body, State::found, sid);
    expect_every_split(eio3_text(body), State::found, sid);
}

TEST(OpenPacketParser, EscapedCharactersInSid) {
    expect_every_split(R"(0{"sid":"ab\"cd","upgrades":[]})", State::found, "ab\"cd");
    expect_every_split(R"(0{"sid":"a\\b","upgrades":[]})", State::found, "a\\b");
    expect_every_split(R"(0{"sid":"a\/b-_~.","upgrades":[]})", State::found, "a/b-_~.");
}

TEST(OpenPacketParser, SidNotFirstAndSpacedOut) {
    expect_every_split(R"(0{"upgrades":["websocket"],"sid":"late"})", State::found, "late");
    expect_every_split(R"(0{ "sid" : "spaced" })", State::found, "spaced");
}

TEST(OpenPacketParser, NonOpenPacketsAreNotOpen) {
    for (const std::string& body :
         {std::string("2probe"), std::string("3probe"), std::string("4{"),
          std::string("40{\"sid\":\"x\"}"), std::string("40\x1e"), std::string("6\x1e"),
          std::string("00"), std::string("{\"sid\":\"x\"}"),
          std::string("<!DOCTYPE html><html><body>502 Bad Gateway</body></html>"),
          std::string("<html><head><title>Error</title></head></html>"),
          std::string("0[\"sid\",\"x\"]"), std::string("0{\"sid\":\"\"}"),
          std::string("0{\"sid\":123}"), std::string("96;0{")}) {
        expect_every_split(body, State::not_open, "");
    }
}

// "40" alone (Socket.IO CONNECT) cannot be called not_open by a streaming
// parser: it is also the first two bytes of an EIO=3 payload whose open packet
// is 40 bytes long ("40:0{...}"), which must be found whatever the split.
TEST(OpenPacketParser, FortyAloneIsAPrefixOfALengthPrefixedPayload) {
    EXPECT_EQ(feed_whole("40"), State::need_more);
    const std::string open = R"(0{"sid":"forty-bytes-sid-xxxxxx","a":[]})";
    ASSERT_EQ(open.size(), 40u);
    const std::string body = eio3_text(open);
    ASSERT_TRUE(body.starts_with("40:"));
    expect_every_split(body, State::found, "forty-bytes-sid-xxxxxx");
}

TEST(OpenPacketParser, IncompleteNeedsMore) {
    for (const std::string& body :
         {std::string(""), std::string("0"), std::string("0{"), std::string("0{\"si"),
          std::string("0{\"sid\""), std::string("0{\"sid\":"), std::string("0{\"sid\":\"abc"),
          std::string("0{\"sid\":\"abc\\"), std::string("96"), std::string("96:"),
          std::string("96:0{\"upgrades\":[]"), std::string("\x00", 1),
          std::string("\x00\x09\x06", 3), std::string("\x00\x09\x06\xff", 4)}) {
        EXPECT_EQ(feed_whole(body), State::need_more) << body;
    }
}

TEST(OpenPacketParser, MoreThanMaxBytesWithoutSidIsNotOpen) {
    const std::string body = R"(0{"upgrades":[")" + std::string(5000, 'x') + R"("],"sid":"late"})";
    expect_pieces({body}, State::not_open, "", "whole");
    std::vector<std::string_view> chunks;
    for (std::size_t i = 0; i < body.size(); i += 100)
        chunks.push_back(std::string_view(body).substr(i, 100));
    expect_pieces(chunks, State::not_open, "", "100-byte chunks");

    // Just under the bound: still waiting.
    OpenPacketParser p;
    const std::string pad = R"(0{"upgrades":[")";
    EXPECT_EQ(p.feed(pad + std::string(OpenPacketParser::kMaxOpenPacket - 1 - pad.size(), 'x')),
              State::need_more);
    EXPECT_EQ(p.feed("x"), State::not_open);
}

TEST(OpenPacketParser, SidWithinBoundInALongPacketIsFound) {
    const std::string body = R"(0{"sid":"early","pad":")" + std::string(10000, 'x') + R"("})";
    expect_pieces({body}, State::found, "early", "whole");
}

// --- query_param -----------------------------------------------------------------

TEST(QueryParam, ReadsAndPercentDecodes) {
    EXPECT_EQ(query_param("/socket.io/?EIO=4&transport=polling&sid=abc", "sid"), "abc");
    EXPECT_EQ(query_param("/socket.io/?sid=a%2Fb%3d%3D&EIO=4", "sid"), "a/b==");
    EXPECT_EQ(query_param("/?sid=a%2", "sid"), "a%2");    // truncated escape kept as is
    EXPECT_EQ(query_param("/?sid=a%zz", "sid"), "a%zz");  // not hex
    EXPECT_EQ(query_param("/?q=a+b", "q"), "a b");
    EXPECT_EQ(query_param("/?sid=x#frag", "sid"), "x");
}

TEST(QueryParam, MissingOrEmpty) {
    EXPECT_EQ(query_param("/socket.io/", "sid"), std::nullopt);
    EXPECT_EQ(query_param("/socket.io/?", "sid"), std::nullopt);
    EXPECT_EQ(query_param("/socket.io/?EIO=4&transport=polling", "sid"), std::nullopt);
    EXPECT_EQ(query_param("/socket.io/?sid=", "sid"), "");
    EXPECT_EQ(query_param("/socket.io/?sid", "sid"), "");
    EXPECT_EQ(query_param("/socket.io/?EIO=4&sid=&t=1", "sid"), "");
}

TEST(QueryParam, FirstOccurrenceWins) {
    EXPECT_EQ(query_param("/?sid=first&sid=second", "sid"), "first");
}

TEST(QueryParam, NameAsSuffixOrPrefixOfAnotherDoesNotMatch) {
    EXPECT_EQ(query_param("/?xsid=evil", "sid"), std::nullopt);
    EXPECT_EQ(query_param("/?xsid=evil&sid=good", "sid"), "good");
    EXPECT_EQ(query_param("/?sidx=evil", "sid"), std::nullopt);
    EXPECT_EQ(query_param("/?a=sid=evil", "sid"), std::nullopt);
    EXPECT_EQ(query_param("/path/sid=evil", "sid"), std::nullopt);  // not in the query
}

TEST(QueryParamRaw, ViewsTheValueAsWritten) {
    EXPECT_EQ(query_param_raw("/socket.io/?EIO=4&transport=polling&sid=abc", "sid"), "abc");
    EXPECT_EQ(query_param_raw("/?sid=a%2Fb+c&x=1", "sid"), "a%2Fb+c");
    EXPECT_EQ(query_param_raw("/?sid", "sid"), "");
    EXPECT_EQ(query_param_raw("/?sid&x=1", "sid"), "");
    EXPECT_EQ(query_param_raw("/?sid=x#frag", "sid"), "x");
    EXPECT_EQ(query_param_raw("/?xsid=1&sidx=2&a=sid=3", "sid"), std::nullopt);
    EXPECT_EQ(query_param_raw("/?a=1&&sid=2", "sid"), "2");
    EXPECT_EQ(query_param_raw("/sid=1", "sid"), std::nullopt);
}

TEST(QueryParamRaw, DecodeParamCopiesOnlyWhenItMust) {
    std::string scratch = "untouched";
    const std::string_view plain = "sXIjZz9g-LylGIquAAAA";
    const auto same = decode_param(plain, scratch);
    EXPECT_EQ(same.data(), plain.data()) << "no copy without '%' or '+'";
    EXPECT_EQ(scratch, "untouched");
    EXPECT_EQ(decode_param("a%2Fb+c", scratch), "a/b c");
    EXPECT_EQ(decode_param("a%zz", scratch), "a%zz");
    EXPECT_TRUE(param_equals("polling", "polling"));
    EXPECT_TRUE(param_equals("poll%69ng", "polling"));
    EXPECT_FALSE(param_equals("websocket", "polling"));
}

TEST(EioQuery, OnePassFindsSidAndTransport) {
    auto q = eio_query("/socket.io/?EIO=4&transport=polling&t=N1&sid=abc", "/socket.io/", "sid");
    EXPECT_TRUE(q.under_path);
    EXPECT_EQ(q.sid, "abc");
    EXPECT_EQ(q.transport, "polling");
    q = eio_query("/socket.io/?EIO=4&transport=websocket", "/socket.io/", "sid");
    EXPECT_EQ(q.sid, std::nullopt);
    EXPECT_EQ(q.transport, "websocket");
    q = eio_query("/socket.io/?sid=a&sid=b&transport=x&transport=y", "/socket.io/", "sid");
    EXPECT_EQ(q.sid, "a") << "first occurrence, as query_param";
    EXPECT_EQ(q.transport, "x");
    q = eio_query("/rt/?session=s1&sid=no", "/rt/", "session");
    EXPECT_EQ(q.sid, "s1");
    EXPECT_EQ(q.transport, std::nullopt);
    q = eio_query("/rt?session=s1", "/rt/", "session");
    EXPECT_TRUE(q.under_path) << "the prefix without its '/'";
    EXPECT_EQ(q.sid, "s1");
    q = eio_query("/socket.io/", "/socket.io/", "sid");
    EXPECT_TRUE(q.under_path);
    EXPECT_EQ(q.sid, std::nullopt);
    EXPECT_EQ(q.transport, std::nullopt);
}

TEST(EioQuery, OutsideThePathTheQueryIsNotRead) {
    const auto q = eio_query("/api/messages?sid=abc&transport=polling", "/socket.io/", "sid");
    EXPECT_FALSE(q.under_path);
    EXPECT_EQ(q.sid, std::nullopt);
    EXPECT_EQ(q.transport, std::nullopt);
}

// eio_query's single pass reads every target here as path_under and
// query_param_raw do (each on its own): '#', empty pairs, names that are
// prefixes of others, '?' twice, names without '=', values with '='.
TEST(EioQuery, AgreesWithPathUnderAndQueryParamRaw) {
    for (const char* t :
         {"/socket.io/?EIO=4&transport=polling&sid=abc", "/socket.io/?sid=1#sid=2&transport=x",
          "/socket.io/?#sid=1", "/socket.io/?", "/socket.io/?&&sid&transport", "/socket.io/?sid=",
          "/socket.io/?sidx=1&xsid=2&si=3&sid=4", "/socket.io/?transports=a&transport=b=c",
          "/socket.io/?a=1?sid=2&sid=3", "/socket.io/?sid=a&", "/socket.io?sid=z",
          "/socket.iox?sid=z",
          "/socket.io/#frag?sid=1", "", "?sid=1", "/socket.io/?s", "/socket.io/?transport",
          "/socket.io/?sid=%41&transport=poll%69ng"}) {
        for (std::string_view path : {"/socket.io/", "/", "", "/socket.io", "/socket.io/?",
                                        "/socket.io/?/", "/a?"}) {
            for (std::string_view param : {"sid", "", "s", "transport"}) {
                const auto q = eio_query(t, path, param);
                const bool under = tether::balance::path_under(t, path);
                EXPECT_EQ(q.under_path, under) << t << " " << path;
                const auto want = [&](std::string_view name) {
                    return under ? query_param_raw(t, name) : std::nullopt;
                };
                EXPECT_EQ(q.sid, want(param)) << t << " " << path << " " << param;
                EXPECT_EQ(q.transport, want("transport")) << t << " " << path;
            }
        }
    }
}

// The eight-byte scan finds '&' and '#' at every position of long queries,
// and '%' or '+' anywhere in a long sid (decode_param copies only then).
TEST(EioQuery, LongQueriesAtEveryOffset) {
    for (std::size_t pad = 0; pad < 20; ++pad) {
        const std::string filler(pad, 'x');
        const std::string t = "/socket.io/?EIO=4&t=" + filler + "&transport=polling&" + filler +
                              "=1&sid=" + filler + "abcdefghijklmnopq#&sid=no";
        const auto q = eio_query(t, "/socket.io/", "sid");
        EXPECT_EQ(q.sid, filler + "abcdefghijklmnopq") << t;
        EXPECT_EQ(q.transport, "polling") << t;
        for (char special : {'%', '+'}) {
            std::string sid = "abcdefghijklmnopqrstuvw";
            sid.insert(pad, 1, special);
            std::string scratch;
            const auto decoded = decode_param(sid, scratch);
            EXPECT_EQ(decoded.data(), scratch.data()) << sid << ": decoded into the scratch";
            EXPECT_EQ(std::string(decoded), *query_param("/?sid=" + sid, "sid")) << sid;
        }
        const std::string plain = "abcdefghijklmnopqrstuvw" + filler;
        std::string scratch;
        EXPECT_EQ(decode_param(plain, scratch).data(), plain.data()) << "no copy: " << plain;
    }
}

// The same agreement on many targets made of the pieces a query scan can
// trip on (names that are prefixes of others, repeated names, '=', '&', '#',
// '?', percent-encodings, empty values), at every length from 0 to ~60, so
// that the eight-byte steps and the last short step (which reads back into
// bytes already passed) meet every boundary. The sequence is fixed (seeded).
TEST(EioQuery, AgreesWithPathUnderAndQueryParamRawOnGeneratedTargets) {
    const std::vector<std::string_view> starts = {"/socket.io/?", "/socket.io?", "/?",
                                                   "/socket.io/", "/socket.iox?", ""};
    const std::vector<std::string_view> pieces = {
        "?", "&", "#", "=", "sid", "si", "sidx", "sid=", "&sid=", "si=", "transport",
        "transport=", "&transport=", "transports=", "EIO=4", "polling", "%41", "+", "abcdefghij",
        "x", "&t=N1", "&&"};
    std::mt19937 rng(20261201);
    std::uniform_int_distribution<std::size_t> pick(0, pieces.size() - 1);
    std::uniform_int_distribution<std::size_t> pick_start(0, starts.size() - 1);
    std::uniform_int_distribution<int> count(0, 10);
    int with_sid = 0;
    for (int i = 0; i < 20000; ++i) {
        std::string t(starts[pick_start(rng)]);
        for (int n = count(rng); n > 0; --n) t += pieces[pick(rng)];
        // Only the target's own bytes may be read: a copy of exactly its size.
        const std::unique_ptr<char[]> own(new char[t.size() + 1]);
        std::memcpy(own.get(), t.data(), t.size());
        const std::string_view view(own.get(), t.size());
        for (std::string_view path : {"/socket.io/", "/", "/socket.io/?/"}) {
            for (std::string_view param : {"sid", "si", "transport"}) {
                const auto q = eio_query(view, path, param);
                const bool under = path_under(t, path);
                ASSERT_EQ(q.under_path, under) << t << " " << path;
                const auto want = [&](std::string_view name) {
                    return under ? query_param_raw(t, name) : std::nullopt;
                };
                ASSERT_EQ(q.sid, want(param)) << t << " " << path << " " << param;
                ASSERT_EQ(q.transport, want("transport")) << t << " " << path;
                if (q.sid && !q.sid->empty()) {
                    ASSERT_GE(q.sid->data(), view.data());
                    ASSERT_LE(q.sid->data() + q.sid->size(), view.data() + view.size());
                }
                with_sid += q.sid.has_value() && !q.sid->empty();
            }
        }
    }
    EXPECT_GT(with_sid, 1000) << "the generated targets exercise the values";
}

// query_param_raw + decode_param agree with query_param on every target here.
TEST(QueryParamRaw, AgreesWithQueryParam) {
    for (const char* t : {"/?sid=a%2Fb", "/?sid", "/?q=1&sid=+x+", "/?sid=%", "/", "/?",
                          "/?&&", "/?sid=1#sid=2", "/?sid%3D=1"}) {
        const auto raw = query_param_raw(t, "sid");
        const auto decoded = query_param(t, "sid");
        ASSERT_EQ(raw.has_value(), decoded.has_value()) << t;
        std::string scratch;
        if (raw) {
            EXPECT_EQ(decode_param(*raw, scratch), *decoded) << t;
        }
    }
}

// --- path_under -----------------------------------------------------------------

TEST(PathUnder, DefaultSocketIoPath) {
    EXPECT_TRUE(path_under("/socket.io/?EIO=4&transport=polling", "/socket.io/"));
    EXPECT_TRUE(path_under("/socket.io/", "/socket.io/"));
    EXPECT_TRUE(path_under("/socket.io/extra/deeper?x=1", "/socket.io/"));
    EXPECT_TRUE(path_under("/socket.io", "/socket.io/"));  // without the trailing slash
    EXPECT_TRUE(path_under("/socket.io?EIO=4", "/socket.io/"));
    EXPECT_FALSE(path_under("/socket.iox", "/socket.io/"));
    EXPECT_FALSE(path_under("/socket.io.evil/?EIO=4", "/socket.io/"));
    EXPECT_FALSE(path_under("/", "/socket.io/"));
    EXPECT_FALSE(path_under("", "/socket.io/"));
    EXPECT_FALSE(path_under("/api/socket.io/", "/socket.io/"));
    EXPECT_FALSE(path_under("/other?next=/socket.io/", "/socket.io/"));  // only the path counts
}

TEST(PathUnder, CustomPaths) {
    EXPECT_TRUE(path_under("/realtime/?EIO=4", "/realtime/"));
    EXPECT_TRUE(path_under("/realtime?EIO=4", "/realtime/"));
    EXPECT_FALSE(path_under("/realtimes/", "/realtime/"));
    EXPECT_FALSE(path_under("/socket.io/", "/realtime/"));
    EXPECT_TRUE(path_under("/app/ws/socket.io/?EIO=3", "/app/ws/socket.io/"));
    // A prefix without a trailing slash is a plain string prefix.
    EXPECT_TRUE(path_under("/chat", "/chat"));
    EXPECT_TRUE(path_under("/chat/x", "/chat"));
    EXPECT_TRUE(path_under("/chatroom", "/chat"));
    EXPECT_TRUE(path_under("/anything", "/"));
}

}  // namespace
