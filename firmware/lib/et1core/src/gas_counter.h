// Debounced gas-meter pulse counter (reed switch closing once per pulse).
#pragma once
#include <cstdint>

namespace et1 {

class GasCounter {
public:
    explicit GasCounter(uint32_t debounce_ms = 50) : debounce_ms_(debounce_ms) {}

    // `closed`: the raw input level now; `last_edge_ms`: when the input last changed (an
    // interrupt records it, so bounces between two polls still restart the settle time).
    void update(bool closed, uint32_t last_edge_ms, uint32_t now_ms);

    uint32_t pulses() const { return pulses_; }  // wraps at 2^32 like the protocol field

private:
    uint32_t debounce_ms_;
    bool started_ = false;
    bool stable_closed_ = false;
    uint32_t pulses_ = 0;
};

}  // namespace et1
