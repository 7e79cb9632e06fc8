// Relay bank with a fail-safe pattern, and the host-silence watchdog that applies it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace et1 {

constexpr uint8_t kMaxRelays = 8;

// Hardware boundary: drives one relay output (index 0-based).
class RelayOutputs {
public:
    virtual ~RelayOutputs() = default;
    virtual void write(uint8_t index, bool on) = 0;
};

// Bit i of a mask is relay i+1; `pattern` is the protocol's "010" form, relay 1 first.
bool parse_relay_pattern(const char* pattern, uint8_t n_relays, uint8_t& mask);
void format_relay_pattern(uint8_t mask, uint8_t n_relays, char* out);  // out: n_relays + 1 chars

class RelayBank {
public:
    RelayBank(uint8_t n_relays, RelayOutputs& outputs) : n_(n_relays), out_(outputs) {}

    uint8_t count() const { return n_; }
    uint8_t state() const { return state_; }
    uint8_t safe_state() const { return safe_; }

    void set_safe_state(uint8_t mask) { safe_ = mask & all_mask(); }
    void apply_safe() { write_all(safe_); }
    bool set(uint8_t index1, bool on);  // false: no such relay
    void write_all(uint8_t mask);

private:
    uint8_t all_mask() const { return static_cast<uint8_t>((1u << n_) - 1u); }
    uint8_t n_;
    RelayOutputs& out_;
    uint8_t state_ = 0;
    uint8_t safe_ = 0;
};

// Trips once when no valid host command arrived for `timeout_s`; 0 disables it.
class HostWatchdog {
public:
    void configure(uint32_t timeout_s, uint32_t now_ms);
    void feed(uint32_t now_ms);
    bool poll(uint32_t now_ms);  // true exactly when it trips
    uint32_t timeout_s() const { return timeout_ms_ / 1000; }
    bool tripped() const { return tripped_; }

private:
    uint32_t timeout_ms_ = 0;
    uint32_t last_feed_ms_ = 0;
    bool tripped_ = false;
};

}  // namespace et1
