// Mains voltage from a stream of raw ADC samples taken at a fixed rate: DC-offset tracking,
// Vrms over whole cycles and frequency from hysteresis-qualified rising zero crossings of
// the median-of-three filtered wave.
#pragma once
#include <cstdint>

namespace et1 {

struct VoltageReading {
    bool valid = false;     // whole, plausible mains cycles covered at least half the window
    double vrms = 0.0;      // V (calibration applied)
    double freq_hz = 0.0;
    uint32_t cycles = 0;    // whole cycles behind this reading
    bool clipped = false;   // some of those samples sat on an ADC rail: vrms reads low
};

struct VoltageMeterConfig {
    double sample_rate_hz = 2000.0;
    int32_t min_amplitude = 20;   // peak deviation (ADC counts) below which there is "no signal"
    int32_t min_hysteresis = 4;   // counts; the hysteresis is otherwise a quarter of the peak
    double min_freq_hz = 38.0;    // cycles outside this band are glitches, not mains
    double max_freq_hz = 72.0;
    uint16_t adc_max = 1023;      // the ESP8266's 10-bit ADC; 0 and this are its rails
};

class VoltageMeter {
public:
    explicit VoltageMeter(const VoltageMeterConfig& config = VoltageMeterConfig());

    void add_sample(uint16_t raw);
    // Samples are missing before the next one: the cycle in progress is dropped, and the
    // next rising crossing only starts a new cycle (no frequency from a shortened one).
    void on_gap() { restart_cycle(); resync_ = 2; }

    // Reading over the whole cycles completed since the previous call (then forgotten);
    // invalid unless they hold at least half of the samples measured since then.
    // `cal` is volts per ADC RMS count.
    VoltageReading take(double cal);

    double offset_counts() const { return offset_q16_ / 65536.0; }

private:
    struct Sums {
        uint64_t n = 0;
        int64_t sx = 0;
        int64_t sxx = 0;
        uint32_t clipped = 0;  // samples at 0 or adc_max
        void add(const Sums& o) {
            n += o.n;
            sx += o.sx;
            sxx += o.sxx;
            clipped += o.clipped;
        }
    };

    void on_rising_crossing(double t_cross);
    void restart_cycle();

    VoltageMeterConfig cfg_;
    uint32_t min_period_;  // samples
    uint32_t max_period_;
    uint32_t warmup_left_;
    uint32_t resync_ = 0;  // samples until the median window holds only post-gap samples

    uint64_t index_ = 0;        // samples seen
    int32_t offset_q16_ = 0;    // tracked DC offset, 16.16 fixed point (no FPU on the ESP8266)
    int32_t prev_dev_q16_ = 0;  // previous filtered (median-of-three) deviation
    int32_t last_dev_q16_ = 0;  // the last two raw deviations, for the median
    int32_t older_dev_q16_ = 0;
    bool armed_ = false;        // signal went below -hysteresis since the last crossing
    int32_t hysteresis_q16_;
    int32_t cycle_peak_q16_ = 0;
    uint32_t since_cross_ = 0;
    bool have_cross_ = false;
    double last_cross_ = 0.0;   // sample-index time of the last accepted crossing

    Sums open_;                 // samples of the cycle in progress
    Sums closed_;               // whole cycles not yet taken
    uint32_t closed_cycles_ = 0;
    double closed_duration_ = 0.0;  // samples
    uint64_t window_samples_ = 0;   // samples measured since the last take()
};

}  // namespace et1
