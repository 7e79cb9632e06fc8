// Gas pulse debouncing, relay patterns and the flash settings layout.
#include <string>

#include "fakes.h"
#include "gas_counter.h"
#include "minitest.h"
#include "relays.h"
#include "settings.h"

namespace {

// Drives the counter with a 1 ms poll over a waveform given as the times of its edges
// (starting open), as loop() plus the edge interrupt do on the board.
uint32_t count_pulses(const std::vector<uint32_t>& edges, uint32_t until_ms, bool start_closed,
                      uint32_t debounce_ms = 50) {
    et1::GasCounter gas(debounce_ms);
    bool level = start_closed;
    uint32_t last_edge = 0;
    size_t next = 0;
    for (uint32_t t = 0; t <= until_ms; ++t) {
        while (next < edges.size() && edges[next] == t) {
            level = !level;
            last_edge = t;
            ++next;
        }
        gas.update(level, last_edge, t);
    }
    return gas.pulses();
}

}  // namespace

TEST(gas_bouncing_reed_counts_one_pulse_per_closure) {
    std::vector<uint32_t> edges;
    for (uint32_t p = 0; p < 10; ++p) {
        const uint32_t t0 = 1000 + p * 2000;
        // Closing: 3 bounces 2 ms apart; opening 500 ms later: 2 bounces.
        for (uint32_t b : {0u, 2u, 4u, 6u, 8u}) edges.push_back(t0 + b);
        for (uint32_t b : {500u, 503u, 506u}) edges.push_back(t0 + b);
    }
    CHECK_EQ(count_pulses(edges, 25000, false), uint32_t{10});
}

TEST(gas_glitches_shorter_than_debounce_do_not_count) {
    std::vector<uint32_t> edges;
    for (uint32_t p = 0; p < 20; ++p) {
        edges.push_back(100 + p * 200);
        edges.push_back(100 + p * 200 + 30);  // 30 ms spike < 50 ms
    }
    CHECK_EQ(count_pulses(edges, 5000, false), uint32_t{0});
}

TEST(gas_magnet_parked_on_reed_at_boot_is_not_a_pulse) {
    CHECK_EQ(count_pulses({}, 1000, true), uint32_t{0});
    CHECK_EQ(count_pulses({300, 1000}, 2000, true), uint32_t{1});  // opens, closes again
}

TEST(gas_edge_newer_than_the_polls_clock_is_not_taken_as_old) {
    // loop() reads millis(), then the edge time; an edge in between is 1 ms "in the future".
    et1::GasCounter gas(50);
    gas.update(false, 0, 1000);
    gas.update(true, 2001, 2000);
    CHECK_EQ(gas.pulses(), uint32_t{0});
    gas.update(true, 2001, 2051);
    CHECK_EQ(gas.pulses(), uint32_t{1});
}

TEST(gas_debounce_holds_across_millis_wrapping) {
    et1::GasCounter gas(50);
    const uint32_t edge = 0xFFFFFFF0u;  // 16 ms before millis() wraps to 0
    gas.update(false, 0, edge - 1000);
    gas.update(true, edge, 10);  // 26 ms after the edge
    CHECK_EQ(gas.pulses(), uint32_t{0});
    gas.update(true, edge, 40);  // 56 ms after
    CHECK_EQ(gas.pulses(), uint32_t{1});
}

TEST(relay_patterns) {
    uint8_t m = 0;
    CHECK(et1::parse_relay_pattern("101", 3, m) && m == 0b101);
    CHECK(et1::parse_relay_pattern("", 0, m) && m == 0);
    CHECK(!et1::parse_relay_pattern("10", 3, m));
    CHECK(!et1::parse_relay_pattern("1010", 3, m));
    CHECK(!et1::parse_relay_pattern("1x1", 3, m));
    char out[9];
    et1::format_relay_pattern(0b110, 3, out);
    CHECK_EQ(std::string(out), "011");
}

TEST(settings_round_trip_and_corruption_falls_back_to_defaults) {
    et1::Settings s;
    s.cal = 0.7321f;
    s.safe_mask = 0b10;
    uint8_t buf[et1::kSettingsBytes];
    et1::encode_settings(s, buf);
    et1::Settings back;
    CHECK(et1::decode_settings(buf, back));
    CHECK_EQ(back.cal, 0.7321f);
    CHECK_EQ(back.safe_mask, uint8_t{0b10});
    for (size_t i = 0; i < sizeof buf; ++i) {
        uint8_t bad[et1::kSettingsBytes];
        std::memcpy(bad, buf, sizeof bad);
        bad[i] ^= 0x10;
        CHECK(!et1::decode_settings(bad, back));
        CHECK_EQ(back.cal, static_cast<float>(et1::kDefaultCal));
        CHECK_EQ(back.safe_mask, uint8_t{0});
    }
}
