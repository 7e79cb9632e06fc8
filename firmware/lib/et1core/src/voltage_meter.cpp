#include "voltage_meter.h"

#include <cmath>

namespace et1 {

namespace {
constexpr int kShiftWarmup = 5;   // fast offset convergence right after boot
constexpr int kShiftTrack = 10;   // ~0.5 s time constant at 2 kHz: follows drift, not the wave
constexpr uint64_t kMinCoverageNum = 1;  // share of a window's samples in whole cycles: 1/2
constexpr uint64_t kMinCoverageDen = 2;
}  // namespace

VoltageMeter::VoltageMeter(const VoltageMeterConfig& config)
    : cfg_(config),
      min_period_(static_cast<uint32_t>(config.sample_rate_hz / config.max_freq_hz)),
      max_period_(static_cast<uint32_t>(config.sample_rate_hz / config.min_freq_hz) + 1),
      warmup_left_(static_cast<uint32_t>(config.sample_rate_hz / 4)),
      hysteresis_q16_(config.min_hysteresis * 65536) {}

void VoltageMeter::add_sample(uint16_t raw) {
    const int32_t x_q16 = static_cast<int32_t>(raw) * 65536;
    if (index_ == 0) offset_q16_ = x_q16;
    const int shift = warmup_left_ > 0 ? kShiftWarmup : kShiftTrack;
    offset_q16_ += (x_q16 - offset_q16_) / (1 << shift);
    const int32_t dev = x_q16 - offset_q16_;
    // Crossings and peaks are found on the median of the last three deviations: a single
    // sample's spike (a relay switching, a bad ADC read) never makes a zero crossing, which
    // would split a cycle and skew the frequency. The one-sample delay is the same for every
    // crossing, so periods are unchanged; the RMS sums below still take every raw sample.
    const int32_t lo = older_dev_q16_ < last_dev_q16_ ? older_dev_q16_ : last_dev_q16_;
    const int32_t hi = older_dev_q16_ < last_dev_q16_ ? last_dev_q16_ : older_dev_q16_;
    const int32_t med = dev < lo ? lo : dev > hi ? hi : dev;
    older_dev_q16_ = last_dev_q16_;
    last_dev_q16_ = dev;
    ++index_;

    if (warmup_left_ > 0) {
        --warmup_left_;
        prev_dev_q16_ = med;
        return;
    }

    ++window_samples_;
    if (resync_ > 0) {  // the median still mixes pre-gap samples: no crossing, no arming
        --resync_;
        prev_dev_q16_ = med;
        return;
    }
    open_.n += 1;
    open_.sx += raw;
    open_.sxx += static_cast<int64_t>(raw) * raw;
    if (raw == 0 || raw >= cfg_.adc_max) ++open_.clipped;
    const int32_t mag = med < 0 ? -med : med;
    if (mag > cycle_peak_q16_) cycle_peak_q16_ = mag;
    ++since_cross_;

    if (med < -hysteresis_q16_) armed_ = true;
    if (armed_ && prev_dev_q16_ < 0 && med >= 0) {
        // Linear interpolation between the two (filtered) samples straddling zero.
        const double frac = static_cast<double>(prev_dev_q16_) / (prev_dev_q16_ - med);
        on_rising_crossing(static_cast<double>(index_ - 2) + frac);
    } else if (since_cross_ > max_period_) {
        restart_cycle();  // no plausible crossing: signal gone or far too low
    }
    prev_dev_q16_ = med;
}

void VoltageMeter::on_rising_crossing(double t_cross) {
    const bool strong = cycle_peak_q16_ >= cfg_.min_amplitude * 65536;
    const bool plausible = since_cross_ >= min_period_ && since_cross_ <= max_period_;
    if (have_cross_ && strong && plausible) {
        // The boundary sample sits near zero, so which cycle holds it hardly matters.
        closed_.add(open_);
        closed_cycles_ += 1;
        closed_duration_ += t_cross - last_cross_;
    }
    // Quarter of this cycle's peak: far above noise, below any real harmonic distortion.
    const int32_t h = cycle_peak_q16_ / 4;
    hysteresis_q16_ = h > cfg_.min_hysteresis * 65536 ? h : cfg_.min_hysteresis * 65536;
    have_cross_ = strong;
    last_cross_ = t_cross;
    armed_ = false;
    open_ = Sums();
    cycle_peak_q16_ = 0;
    since_cross_ = 0;
}

void VoltageMeter::restart_cycle() {
    const int32_t h = cycle_peak_q16_ / 4;
    hysteresis_q16_ = h > cfg_.min_hysteresis * 65536 ? h : cfg_.min_hysteresis * 65536;
    have_cross_ = false;
    armed_ = false;
    open_ = Sums();
    cycle_peak_q16_ = 0;
    since_cross_ = 0;
}

VoltageReading VoltageMeter::take(double cal) {
    VoltageReading r;
    // Noise with no mains makes a plausible cycle now and then (1-4 a second at 12 counts
    // of noise): a reading needs whole cycles covering at least half of its window.
    const bool covered = closed_.n * kMinCoverageDen >= window_samples_ * kMinCoverageNum;
    if (covered && closed_cycles_ > 0 && closed_.n > 1 && closed_duration_ > 0.0) {
        // Exact integer sums: mean removal over whole cycles cancels the DC offset.
        const int64_t n = static_cast<int64_t>(closed_.n);
        const int64_t num = n * closed_.sxx - closed_.sx * closed_.sx;
        const double var = static_cast<double>(num) / (static_cast<double>(n) * n);
        r.valid = true;
        r.vrms = cal * std::sqrt(var > 0.0 ? var : 0.0);
        r.freq_hz = closed_cycles_ * cfg_.sample_rate_hz / closed_duration_;
        r.cycles = closed_cycles_;
        r.clipped = closed_.clipped > 0;
    }
    closed_ = Sums();
    closed_cycles_ = 0;
    closed_duration_ = 0.0;
    window_samples_ = 0;
    return r;
}

}  // namespace et1
