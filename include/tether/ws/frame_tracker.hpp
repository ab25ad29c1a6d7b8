// Follows WebSocket frame boundaries in one direction of a tunnel by reading
// frame headers only (RFC 6455 section 5.2): payloads are skipped, never
// copied or unmasked. Used to count frames and to know when a close frame may
// be injected without cutting a frame in two.
//
// Worked example: bytes 81 05 'h' 'e' 'l' 'l' 'o' 82 7e 01 00 ... are a
// 5-byte text frame (header 2 bytes) and the start of a 256-byte binary frame
// whose length sits in the 2-byte extended field (0x7e = 126).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tether::ws {

class FrameTracker {
public:
    /// Consumes up to `n` bytes and returns how many it consumed: all of them,
    /// or, with `stop_at_boundary`, only up to the end of the first frame that
    /// completes inside them (so the caller can forward exactly whole frames).
    std::size_t feed(const unsigned char* data, std::size_t n, bool stop_at_boundary = false);

    /// True when no frame is partly through (nothing fed, or the last frame ended).
    bool at_boundary() const { return header_have_ == 0 && payload_left_ == 0; }
    /// Frames completed so far.
    std::uint64_t frames() const { return frames_; }
    /// Opcode of the frame in progress or last completed (0x1 text, 0x8 close...).
    unsigned opcode() const { return opcode_; }

private:
    void parse_header_byte(unsigned char b);

    unsigned char header_[14] = {};
    std::size_t header_have_ = 0;
    std::size_t header_need_ = 2;
    std::uint64_t payload_left_ = 0;
    std::uint64_t frames_ = 0;
    unsigned opcode_ = 0;
};

/// The close frame tether sends on a graceful stop: code 1001 (going away).
/// Server-to-client frames are unmasked; client-to-server ones are masked.
inline constexpr unsigned char kCloseGoingAwayToClient[4] = {0x88, 0x02, 0x03, 0xE9};
/// Masked with key 0x00000000 would be legal but is a poor habit; the mask is
/// fixed (the payload is public) and applied at compile time.
inline constexpr unsigned char kCloseGoingAwayToServer[8] = {
    0x88, 0x82, 0x5a, 0x17, 0xc3, 0x8e, 0x03 ^ 0x5a, 0xE9 ^ 0x17};

/// The payload of the unmasked text frame that `frame` holds whole (a frame
/// the tracker has just counted), or empty for any other frame.
inline std::string_view text_frame_payload(std::string_view frame) {
    if (frame.size() < 2) return {};
    const auto* b = reinterpret_cast<const unsigned char*>(frame.data());
    const unsigned len7 = b[1] & 0x7f;
    const std::size_t header = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
    if ((b[0] & 0x0f) != 0x1 || (b[1] & 0x80) || header > frame.size()) return {};
    return frame.substr(header);
}

}  // namespace tether::ws
