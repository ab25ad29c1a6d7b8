// A look at the first bytes of a response before they are released to the
// client (the Engine.IO open packet of a handshake answer, in a polling body
// or in the first WebSocket frame): the bytes go on only after inspect()
// returned, which is what makes write-before-release hold.
#pragma once

#include <string_view>

#include "tether/core/executor.hpp"

namespace tether {

class StreamInspector {
public:
    virtual ~StreamInspector() = default;
    /// Sees the next bytes; returns true when it needs no more.
    virtual Awaitable<bool> inspect(std::string_view bytes) = 0;
};

}  // namespace tether
