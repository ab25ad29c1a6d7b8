// Frame boundary tracking; see frame_tracker.hpp.
#include "tether/ws/frame_tracker.hpp"

#include <algorithm>

namespace tether::ws {

// header_need_ grows as the header reveals itself: 2 bytes, then +2 or +8 for
// an extended length, then +4 when the MASK bit is set.
void FrameTracker::parse_header_byte(unsigned char b) {
    header_[header_have_++] = b;
    if (header_have_ == 2) {
        opcode_ = header_[0] & 0x0f;
        const unsigned len7 = header_[1] & 0x7f;
        const bool masked = (header_[1] & 0x80) != 0;
        header_need_ = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
    }
    if (header_have_ < header_need_) return;
    const unsigned len7 = header_[1] & 0x7f;
    std::uint64_t len = len7;
    if (len7 == 126) {
        len = (std::uint64_t{header_[2]} << 8) | header_[3];
    } else if (len7 == 127) {
        len = 0;
        for (int i = 2; i < 10; ++i) len = (len << 8) | header_[i];
    }
    header_have_ = 0;
    header_need_ = 2;
    payload_left_ = len;
    if (payload_left_ == 0) ++frames_;
}

// A header that lies whole in the input (the common case: a read starts at a
// frame boundary) is decoded in place, and a payload that ends inside the input
// is skipped in the same step; a header split across reads goes byte by byte
// through header_.
std::size_t FrameTracker::feed(const unsigned char* data, std::size_t n, bool stop_at_boundary) {
    std::size_t i = 0;
    while (i < n) {
        if (payload_left_ > 0) {
            const std::uint64_t take = std::min<std::uint64_t>(payload_left_, n - i);
            payload_left_ -= take;
            i += static_cast<std::size_t>(take);
            if (payload_left_ == 0) {
                ++frames_;
                if (stop_at_boundary) return i;
            }
            continue;
        }
        if (header_have_ == 0 && n - i >= 2) {
            const unsigned char* h = data + i;
            const unsigned len7 = h[1] & 0x7f;
            const std::size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
            const std::size_t need = 2 + ext + ((h[1] & 0x80) ? 4 : 0);
            if (n - i >= need) {
                opcode_ = h[0] & 0x0f;
                std::uint64_t len = len7;
                if (ext == 2) {
                    len = (std::uint64_t{h[2]} << 8) | h[3];
                } else if (ext == 8) {
                    len = 0;
                    for (std::size_t k = 0; k < 8; ++k) len = (len << 8) | h[2 + k];
                }
                i += need;
                if (len <= n - i) {  // the whole frame is here
                    i += static_cast<std::size_t>(len);
                    ++frames_;
                    if (stop_at_boundary) return i;
                    continue;
                }
                payload_left_ = len - (n - i);
                return n;
            }
        }
        const std::uint64_t before = frames_;
        parse_header_byte(data[i++]);
        if (stop_at_boundary && frames_ != before) return i;
    }
    return i;
}

}  // namespace tether::ws
