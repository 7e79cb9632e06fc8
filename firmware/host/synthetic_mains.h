// Synthetic ZMPT101B-on-ESP8266-ADC sample stream: fundamental plus harmonics, DC offset
// with ramp and slow wander, Gaussian noise, 10-bit quantisation and clipping.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>

struct MainsSignal {
    double sample_rate_hz = 2000.0;
    double freq_hz = 50.0;
    double vrms = 230.0;          // RMS of the fundamental, V
    double cal = 2.4;             // V per ADC RMS count (the board's true calibration)
    double h3 = 0.0, h5 = 0.0;    // 3rd and 5th harmonic, relative to the fundamental
    double h3_phase = 0.4;        // rad; pi with h3 > 1/3 puts extra crossings near zero
    double offset = 512.0;        // counts
    double drift_per_s = 0.0;     // counts per second (supply / temperature drift)
    double wander_counts = 0.0;   // slow sinusoidal offset wander amplitude
    double wander_hz = 0.05;
    double noise_counts = 0.0;    // Gaussian sigma
    uint32_t seed = 1;

    // True RMS of the whole waveform (harmonics included), V.
    double true_vrms() const { return vrms * std::sqrt(1.0 + h3 * h3 + h5 * h5); }

    uint16_t next() {
        if (!seeded_) {
            rng_.seed(seed);
            seeded_ = true;
        }
        const double t = n_ / sample_rate_hz;
        const double amp = vrms / cal * std::sqrt(2.0);
        const double wave = amp * (std::sin(phase_) + h3 * std::sin(3 * phase_ + h3_phase) +
                                   h5 * std::sin(5 * phase_ + 1.1));
        const double dc = offset + drift_per_s * t +
                          wander_counts * std::sin(2 * M_PI * wander_hz * t);
        const double x = dc + wave + (noise_counts > 0 ? noise_counts * gauss_(rng_) : 0.0);
        // Phase accumulates so a frequency change mid-stream stays continuous.
        phase_ = std::fmod(phase_ + 2 * M_PI * freq_hz / sample_rate_hz, 2 * M_PI);
        ++n_;
        return static_cast<uint16_t>(std::clamp(std::lround(x), 0L, 1023L));
    }

private:
    double phase_ = 0.0;
    uint64_t n_ = 0;
    bool seeded_ = false;
    std::mt19937 rng_;
    std::normal_distribution<double> gauss_{0.0, 1.0};
};
