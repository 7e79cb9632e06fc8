// ESP8266 (Wemos D1 mini) glue for the ET1 core: samples the ZMPT101B on A0 from a timer
// interrupt, drives the relays, counts gas pulses from an interrupt and keeps the settings
// in the EEPROM flash sector. All protocol and measurement logic lives in lib/et1core.
#include <Arduino.h>
#include <EEPROM.h>
#include <ESP8266WiFi.h>

extern "C" {
#include <user_interface.h>  // system_adc_read()
}

#include "board.h"

namespace {

// Wiring (README.md). GPIO5/GPIO4/GPIO12 are not boot straps; through reset GPIO5/4 float
// and GPIO12 is pulled up weakly, so each driver input needs a pull-down resistor to stay
// open until setup() drives the pins and begin() applies the fail-safe state.
constexpr uint8_t kRelayPins[] = {D1, D2, D6};
constexpr bool kRelayActiveHigh = true;
constexpr uint8_t kGasPin = D7;  // reed switch to GND, internal pull-up
constexpr uint32_t kSampleRateHz = 2000;
constexpr uint32_t kTimer1TicksPerSecond = 80000000 / 16;  // TIM_DIV16 at 80 MHz

// ADC samples from the timer ISR to loop(): a single-producer/single-consumer ring.
constexpr uint16_t kRingSize = 512;  // 256 ms of samples: loop() never stalls that long
constexpr int kMaxRxBytesPerLoop = 64;  // ~5.5 ms of input at 115200 baud
volatile uint16_t g_ring[kRingSize];
volatile uint16_t g_head = 0;
volatile uint16_t g_tail = 0;
// Where in the ring samples are missing (sampling paused for a flash write, or the ring
// was full): the meter must not join the samples on either side into one cycle.
volatile bool g_gap_pending = false;
volatile uint16_t g_gap_at = 0;
volatile uint32_t g_ring_overruns = 0;

volatile uint32_t g_gas_edge_ms = 0;

// Runs with interrupts masked and calls system_adc_read(), which lives in flash: nothing
// may erase or write flash while timer1 runs (EepromSettings::write stops it first).
void IRAM_ATTR on_sample_timer() {
    const uint16_t next = (g_head + 1) & (kRingSize - 1);
    const uint16_t raw = system_adc_read();
    if (next == g_tail) {
        ++g_ring_overruns;
        if (!g_gap_pending) {  // position first, then the flag loop() tests
            g_gap_at = g_head;
            g_gap_pending = true;
        }
        return;
    }
    g_ring[g_head] = raw;
    g_head = next;
}

void IRAM_ATTR on_gas_edge() { g_gas_edge_ms = millis(); }

void start_sampling() {
    timer1_attachInterrupt(on_sample_timer);
    timer1_enable(TIM_DIV16, TIM_EDGE, TIM_LOOP);
    timer1_write(kTimer1TicksPerSecond / kSampleRateHz);
}

struct SerialOutput : et1::Output {
    void write(const char* data, size_t len) override {
        Serial.write(reinterpret_cast<const uint8_t*>(data), len);
    }
};

struct GpioRelays : et1::RelayOutputs {
    void write(uint8_t index, bool on) override {
        digitalWrite(kRelayPins[index], on == kRelayActiveHigh ? HIGH : LOW);
    }
};

struct EepromSettings : et1::SettingsStore {
    bool read(uint8_t* buf, size_t len) override {
        for (size_t i = 0; i < len; ++i) buf[i] = EEPROM.read(static_cast<int>(i));
        return true;
    }
    bool write(const uint8_t* buf, size_t len) override {
        for (size_t i = 0; i < len; ++i) EEPROM.write(static_cast<int>(i), buf[i]);
        // No flash-resident ISR may run while the sector is erased and written: pause the
        // ADC timer, and mark the gap so the meter drops the cycle it cuts.
        timer1_disable();
        if (!g_gap_pending) {
            g_gap_at = g_head;
            g_gap_pending = true;
        }
        const bool ok = EEPROM.commit();
        start_sampling();
        return ok;
    }
};

SerialOutput g_out;
GpioRelays g_relays;
EepromSettings g_settings;
et1::BoardConfig make_config() {
    et1::BoardConfig c;
    c.n_relays = sizeof kRelayPins;
    c.meter.sample_rate_hz = kSampleRateHz;
    c.reset_cause = et1::reset_cause_name(system_get_rst_info()->reason);
    return c;
}
et1::Board g_board(make_config(), g_out, g_relays, g_settings);

}  // namespace

void setup() {
    // Relays first: outputs driven "open" before anything else can fail.
    for (uint8_t pin : kRelayPins) {
        digitalWrite(pin, kRelayActiveHigh ? LOW : HIGH);
        pinMode(pin, OUTPUT);
    }
    // Radio off: it is not used, and its bursts disturb the ADC.
    WiFi.mode(WIFI_OFF);
    WiFi.forceSleepBegin();

    Serial.begin(115200);
    EEPROM.begin(et1::kSettingsBytes);

    pinMode(kGasPin, INPUT_PULLUP);
    attachInterrupt(digitalPinToInterrupt(kGasPin), on_gas_edge, CHANGE);

    g_board.begin(millis());  // fail-safe relay state from flash, then the ETH frame
    start_sampling();
}

void loop() {
    const uint32_t now = millis();
    // A bounded bite per pass: a flood of input must not keep loop() from sampling, reporting
    // and returning to the core (whose soft watchdog resets a board stuck for ~3 s).
    for (int n = 0; n < kMaxRxBytesPerLoop && Serial.available() > 0; ++n) {
        g_board.on_rx_byte(static_cast<char>(Serial.read()), now);
    }

    while (g_tail != g_head) {
        if (g_gap_pending && g_tail == g_gap_at) {
            g_gap_pending = false;
            g_board.on_adc_gap();
        }
        g_board.on_adc_sample(g_ring[g_tail]);
        g_tail = (g_tail + 1) & (kRingSize - 1);
    }

    // Level and edge time read together: an edge between two separate reads paired the
    // new level with the old edge time, and a glitch passed the debounce as a pulse.
    noInterrupts();
    const bool gas_closed = digitalRead(kGasPin) == LOW;
    const uint32_t edge_ms = g_gas_edge_ms;
    interrupts();
    g_board.on_gas_input(gas_closed, edge_ms, now);

    g_board.poll(now);
}
