#include "relays.h"

namespace et1 {

bool parse_relay_pattern(const char* pattern, uint8_t n_relays, uint8_t& mask) {
    uint8_t m = 0;
    uint8_t i = 0;
    for (; pattern[i] != '\0'; ++i) {
        if (i >= n_relays) return false;
        if (pattern[i] == '1') {
            m = static_cast<uint8_t>(m | (1u << i));
        } else if (pattern[i] != '0') {
            return false;
        }
    }
    if (i != n_relays) return false;
    mask = m;
    return true;
}

void format_relay_pattern(uint8_t mask, uint8_t n_relays, char* out) {
    for (uint8_t i = 0; i < n_relays; ++i) out[i] = (mask >> i) & 1u ? '1' : '0';
    out[n_relays] = '\0';
}

bool RelayBank::set(uint8_t index1, bool on) {
    if (index1 < 1 || index1 > n_) return false;
    const uint8_t bit = static_cast<uint8_t>(1u << (index1 - 1));
    write_all(on ? static_cast<uint8_t>(state_ | bit) : static_cast<uint8_t>(state_ & ~bit));
    return true;
}

void RelayBank::write_all(uint8_t mask) {
    state_ = mask & all_mask();
    for (uint8_t i = 0; i < n_; ++i) out_.write(i, (state_ >> i) & 1u);
}

void HostWatchdog::configure(uint32_t timeout_s, uint32_t now_ms) {
    timeout_ms_ = timeout_s * 1000u;
    feed(now_ms);
}

void HostWatchdog::feed(uint32_t now_ms) {
    last_feed_ms_ = now_ms;
    tripped_ = false;
}

bool HostWatchdog::poll(uint32_t now_ms) {
    // Unsigned difference: correct across the 49-day millis() wrap.
    if (timeout_ms_ == 0 || tripped_ || now_ms - last_feed_ms_ < timeout_ms_) return false;
    tripped_ = true;
    return true;
}

}  // namespace et1
