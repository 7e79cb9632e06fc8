// Vrms and frequency accuracy on synthetic ADC streams (issue 8 acceptance: Vrms within
// 0.5 %, frequency within 0.05 Hz) and behaviour without a signal.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "minitest.h"
#include "synthetic_mains.h"
#include "voltage_meter.h"

namespace {

struct Errors {
    double worst_vrms_rel = 0.0;
    double worst_freq = 0.0;
    int readings = 0;
    int invalid = 0;
};

// Feeds `seconds` of signal, takes a reading every second (as the board does) and compares
// each with the generator's truth. The first reading is skipped: it covers the warm-up.
Errors measure(MainsSignal sig, int seconds) {
    et1::VoltageMeterConfig cfg;
    cfg.sample_rate_hz = sig.sample_rate_hz;
    et1::VoltageMeter meter(cfg);
    Errors e;
    const int per_second = static_cast<int>(sig.sample_rate_hz);
    for (int s = 0; s < seconds; ++s) {
        for (int i = 0; i < per_second; ++i) meter.add_sample(sig.next());
        const et1::VoltageReading r = meter.take(sig.cal);
        if (s == 0) continue;
        ++e.readings;
        if (!r.valid) {
            ++e.invalid;
            continue;
        }
        e.worst_vrms_rel = std::fmax(e.worst_vrms_rel, std::fabs(r.vrms / sig.true_vrms() - 1));
        e.worst_freq = std::fmax(e.worst_freq, std::fabs(r.freq_hz - sig.freq_hz));
    }
    return e;
}

MainsSignal realistic(double freq, double vrms, double cal, uint32_t seed) {
    MainsSignal s;
    s.freq_hz = freq;
    s.vrms = vrms;
    s.cal = cal;
    s.h3 = 0.05;   // typical flat-topped mains
    s.h5 = 0.03;
    s.noise_counts = 2.0;
    s.drift_per_s = 1.5;  // 30 counts over the 20 s run
    s.wander_counts = 12.0;
    s.seed = seed;
    return s;
}

}  // namespace

TEST(vrms_and_frequency_accurate_for_50_and_60_hz_230_and_120_v) {
    struct Case {
        double freq, vrms, cal;
    };
    // cal 2.4: the README wiring trimmed for 230 V (~270 counts peak to peak); cal 1.25:
    // the same swing at 120 V; 120 V at cal 2.4: an untrimmed module, half the ADC swing.
    const Case cases[] = {
        {50.0, 230.0, 2.4}, {60.0, 230.0, 2.4}, {50.0, 120.0, 1.25}, {60.0, 120.0, 1.25},
        {60.0, 120.0, 2.4}, {49.8, 230.0, 2.4}, {50.2, 240.0, 2.4}, {59.9, 117.0, 1.25},
        {60.1, 126.0, 1.25}, {50.0, 207.0, 2.4},
    };
    double worst_v = 0, worst_f = 0;
    uint32_t seed = 1;
    for (const Case& c : cases) {
        const Errors e = measure(realistic(c.freq, c.vrms, c.cal, seed++), 20);
        CHECK_EQ(e.invalid, 0);
        CHECK_EQ(e.readings, 19);
        CHECK(e.worst_vrms_rel <= 0.005);
        CHECK(e.worst_freq <= 0.05);
        if (std::getenv("ET1_VERBOSE") || e.worst_vrms_rel > 0.005 || e.worst_freq > 0.05) {
            std::printf("    case %.1f Hz %.0f V cal %.2f: vrms %.4f %%, freq %.4f Hz\n", c.freq,
                        c.vrms, c.cal, e.worst_vrms_rel * 100, e.worst_freq);
        }
        worst_v = std::fmax(worst_v, e.worst_vrms_rel);
        worst_f = std::fmax(worst_f, e.worst_freq);
    }
    std::printf("    worst over all cases: vrms %.4f %%, freq %.4f Hz\n", worst_v * 100, worst_f);
}

TEST(heavy_harmonics_do_not_add_zero_crossings) {
    MainsSignal s = realistic(50.0, 230.0, 2.4, 42);
    s.h3 = 0.15;  // well beyond EN 50160 limits
    s.h5 = 0.10;
    const Errors e = measure(s, 10);
    CHECK_EQ(e.invalid, 0);
    CHECK(e.worst_freq <= 0.05);
    CHECK(e.worst_vrms_rel <= 0.005);
}

TEST(hysteresis_ignores_extra_crossings_near_zero) {
    // A strong anti-phase 3rd harmonic makes the wave cross zero three times around each
    // rising edge (dipping about 6 % of the amplitude): still one cycle per mains cycle.
    MainsSignal s = realistic(50.0, 230.0, 2.4, 5);
    s.h3 = 0.45;
    s.h3_phase = M_PI;
    s.h5 = 0.0;
    et1::VoltageMeter meter;
    for (int sec = 0; sec < 6; ++sec) {
        for (int i = 0; i < 2000; ++i) meter.add_sample(s.next());
        const et1::VoltageReading r = meter.take(s.cal);
        if (sec == 0) continue;
        CHECK(r.cycles >= 49 && r.cycles <= 51);
        CHECK_NEAR(r.freq_hz, 50.0, 0.05);
        CHECK_NEAR(r.vrms, s.true_vrms(), s.true_vrms() * 0.005);
    }
}

TEST(noisy_adc_still_within_tolerance) {
    // Noise adds its variance to the RMS (sigma^2 / 2 S^2 relative), so it needs the module
    // trimmed to a large swing (README): 230 V at cal 2.4 is 96 RMS counts.
    MainsSignal s = realistic(60.0, 230.0, 2.4, 7);
    s.noise_counts = 6.0;  // ESP8266 ADC with Wi-Fi noise and a long A0 lead
    const Errors e = measure(s, 10);
    CHECK_EQ(e.invalid, 0);
    CHECK(e.worst_freq <= 0.05);
    CHECK(e.worst_vrms_rel <= 0.005);
}

TEST(single_sample_spikes_do_not_split_cycles) {
    // Impulsive noise (relays switching, a bad ADC read): one sample far off the wave, up to
    // 20 a second. A spike in the negative half must not count as a rising crossing.
    for (const int amp : {150, 400}) {
        for (const int per_second : {1, 5, 20}) {
            MainsSignal s = realistic(50.0, 230.0, 2.4, 11);
            et1::VoltageMeter meter;
            double worst_f = 0.0;
            for (int sec = 0; sec < 12; ++sec) {
                for (int i = 0; i < 2000; ++i) {
                    int x = s.next();
                    if (i % (2000 / per_second) == 37) x = x + amp > 1023 ? 1023 : x + amp;
                    meter.add_sample(static_cast<uint16_t>(x));
                }
                const et1::VoltageReading r = meter.take(s.cal);
                if (sec == 0) continue;
                CHECK(r.valid);
                CHECK(r.cycles >= 49 && r.cycles <= 51);
                worst_f = std::fmax(worst_f, std::fabs(r.freq_hz - 50.0));
            }
            CHECK(worst_f <= 0.05);
            if (std::getenv("ET1_VERBOSE") || worst_f > 0.05) {
                std::printf("    spikes +%d counts, %d/s: freq %.4f Hz\n", amp, per_second,
                            worst_f);
            }
        }
    }
}

TEST(offset_tracks_drift) {
    MainsSignal s = realistic(50.0, 230.0, 2.4, 3);
    s.wander_counts = 0.0;
    s.drift_per_s = 4.0;
    et1::VoltageMeter meter;
    for (int i = 0; i < 2000 * 10; ++i) meter.add_sample(s.next());
    // After 10 s the offset is 552 counts; the tracker lags a ramp by about its time constant.
    CHECK_NEAR(meter.offset_counts(), 552.0, 4.0);
}

TEST(clipping_on_the_adc_rails_is_flagged) {
    MainsSignal s = realistic(50.0, 230.0, 2.4, 21);
    et1::VoltageMeter meter;
    auto second = [&]() {
        for (int i = 0; i < 2000; ++i) meter.add_sample(s.next());
        return meter.take(s.cal);
    };
    second();
    const et1::VoltageReading fine = second();
    CHECK(fine.valid && !fine.clipped);
    s.cal = 0.4;  // trimmer turned up 6-fold: 813 counts peak, far past both rails
    second();
    const et1::VoltageReading clipped = second();
    CHECK(clipped.valid && clipped.clipped);
    CHECK(clipped.vrms < s.true_vrms() * 0.95);  // what it would have reported: too low
    CHECK_NEAR(clipped.freq_hz, 50.0, 0.05);
}

TEST(samples_lost_to_a_flash_write_do_not_skew_the_frequency) {
    // Sampling pauses while flash is written (CAL, SAFE): 35-65 ms of samples are missing.
    for (int lost_ms : {35, 45, 65}) {
        MainsSignal s = realistic(50.0, 230.0, 2.4, 30 + lost_ms);
        et1::VoltageMeter meter;
        for (int i = 0; i < 2000 * 2; ++i) meter.add_sample(s.next());
        meter.take(s.cal);
        for (int i = 0; i < 700; ++i) meter.add_sample(s.next());
        for (int i = 0; i < lost_ms * 2; ++i) s.next();  // never sampled
        meter.on_gap();
        for (int i = 0; i < 1300; ++i) meter.add_sample(s.next());
        const et1::VoltageReading r = meter.take(s.cal);
        CHECK(r.valid);
        CHECK_NEAR(r.freq_hz, 50.0, 0.05);
        CHECK_NEAR(r.vrms, s.true_vrms(), s.true_vrms() * 0.005);
    }
}

TEST(a_flash_write_gap_at_any_phase_leaves_the_frequency_right) {
    // The median of 3 still held pre-gap samples, re-armed the crossing detector and found
    // a false crossing between the two sides: a 30-35-sample "cycle", 50.22 Hz read for 50.
    int bad = 0;
    for (double f : {50.0, 60.0}) {
        for (int lost : {70, 77, 90, 101, 130}) {
            for (int phase = 0; phase < 40; ++phase) {
                MainsSignal s;
                s.freq_hz = f;
                s.h3 = 0.05;
                s.h5 = 0.03;
                s.noise_counts = 2;
                s.seed = static_cast<uint32_t>(phase * 7 + lost);
                et1::VoltageMeter meter;
                for (int i = 0; i < 4000; ++i) meter.add_sample(s.next());
                meter.take(s.cal);
                for (int i = 0; i < 600 + phase; ++i) meter.add_sample(s.next());
                for (int i = 0; i < lost; ++i) s.next();  // never sampled
                meter.on_gap();
                for (int i = 0; i < 1400 - phase; ++i) meter.add_sample(s.next());
                const et1::VoltageReading r = meter.take(s.cal);
                bad += !(r.valid && std::fabs(r.freq_hz - f) <= 0.05);
            }
        }
    }
    CHECK_EQ(bad, 0);
}

TEST(no_signal_gives_no_reading) {
    MainsSignal s;
    s.vrms = 0.0;
    s.noise_counts = 3.0;
    const Errors e = measure(s, 5);
    CHECK_EQ(e.invalid, e.readings);
}

TEST(noise_without_mains_gives_no_reading) {
    // A ZMPT101B unplugged or unpowered leaves A0 to noise; noise crosses zero often
    // enough to make a plausible cycle now and then, which read as 18-24 V at 48-63 Hz,
    // and a floating input (full-scale noise) as 495 V or 62 Hz.
    for (double sigma : {8.0, 10.0, 12.0, 20.0, 40.0, 300.0}) {
        MainsSignal s;
        s.vrms = 0.0;
        s.noise_counts = sigma;
        s.seed = static_cast<uint32_t>(sigma);
        const Errors e = measure(s, 300);
        CHECK_EQ(e.invalid, e.readings);
    }
}

TEST(signal_loss_and_return) {
    MainsSignal s = realistic(50.0, 230.0, 2.4, 9);
    et1::VoltageMeter meter;
    auto second = [&]() {
        for (int i = 0; i < 2000; ++i) meter.add_sample(s.next());
        return meter.take(s.cal);
    };
    second();
    CHECK(second().valid);
    s.vrms = 0.0;  // mains lost, board still powered
    second();      // partly both
    const et1::VoltageReading lost = second();
    CHECK(!lost.valid);
    s.vrms = 230.0;
    second();
    const et1::VoltageReading back = second();
    CHECK(back.valid);
    CHECK_NEAR(back.vrms, s.true_vrms(), s.true_vrms() * 0.005);
}

TEST(frequency_step_seen_in_next_window) {
    MainsSignal s = realistic(50.0, 230.0, 2.4, 11);
    et1::VoltageMeter meter;
    auto second = [&]() {
        for (int i = 0; i < 2000; ++i) meter.add_sample(s.next());
        return meter.take(s.cal);
    };
    for (int i = 0; i < 3; ++i) second();
    s.freq_hz = 50.5;
    second();  // straddles the step
    CHECK_NEAR(second().freq_hz, 50.5, 0.05);
}

TEST(windows_hold_whole_cycles_and_lose_none) {
    MainsSignal s = realistic(50.0, 230.0, 2.4, 13);
    et1::VoltageMeter meter;
    uint32_t cycles = 0;
    for (int sec = 0; sec < 10; ++sec) {
        // Irregular reading times, as the board's loop() jitters.
        const int n = 2000 + (sec % 2 == 0 ? 37 : -37);
        for (int i = 0; i < n; ++i) meter.add_sample(s.next());
        const et1::VoltageReading r = meter.take(s.cal);
        if (sec > 0) cycles += r.cycles;
    }
    // Readings 1..9 span 17963 samples (8.98 s, 449.1 cycles): every cycle is counted once.
    CHECK(cycles >= 448 && cycles <= 450);
}
