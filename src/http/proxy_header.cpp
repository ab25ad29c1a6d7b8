// PROXY protocol header writer; see proxy_header.hpp.
#include "tether/http/proxy_header.hpp"

#include <array>

namespace tether::http {

namespace {

namespace ip = boost::asio::ip;

constexpr std::array<unsigned char, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

ip::address_v6 as_v6(const ip::address& a) {
    return a.is_v6() ? a.to_v6() : ip::make_address_v6(ip::v4_mapped, a.to_v4());
}

void put16(std::string& out, std::uint16_t v) {
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v & 0xff));
}

template <class Bytes>
void put_bytes(std::string& out, const Bytes& b) {
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace

std::string make_proxy_header(int version, const ip::address& src, std::uint16_t src_port,
                              const ip::address& dst, std::uint16_t dst_port) {
    const bool v4 = src.is_v4() && dst.is_v4();
    std::string out;
    if (version == 1) {
        out = v4 ? "PROXY TCP4 " : "PROXY TCP6 ";
        out += v4 ? src.to_string() : as_v6(src).to_string();
        out += ' ';
        out += v4 ? dst.to_string() : as_v6(dst).to_string();
        out += ' ' + std::to_string(src_port) + ' ' + std::to_string(dst_port) + "\r\n";
        return out;
    }
    put_bytes(out, kV2Signature);
    out.push_back(0x21);                    // version 2, PROXY command
    out.push_back(v4 ? 0x11 : 0x21);        // TCP over IPv4 / IPv6
    put16(out, v4 ? 12 : 36);               // address block length
    if (v4) {
        put_bytes(out, src.to_v4().to_bytes());
        put_bytes(out, dst.to_v4().to_bytes());
    } else {
        put_bytes(out, as_v6(src).to_bytes());
        put_bytes(out, as_v6(dst).to_bytes());
    }
    put16(out, src_port);
    put16(out, dst_port);
    return out;
}

}  // namespace tether::http
