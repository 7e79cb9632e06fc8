// The ET1 board: assembles command lines from the serial port, answers them, and sends the
// hello, measurement and error frames (docs/protocol.md section 2). Portable: the hardware
// is reached only through Output, RelayOutputs and SettingsStore.
#pragma once
#include <cstddef>
#include <cstdint>

#include "frame.h"
#include "gas_counter.h"
#include "relays.h"
#include "settings.h"
#include "voltage_meter.h"

namespace et1 {

constexpr const char* kFirmwareVersion = "1.5.1";

// Hardware boundary: the serial port's transmit side.
class Output {
public:
    virtual ~Output() = default;
    virtual void write(const char* data, size_t len) = 0;
};

// The hello's name of the ESP8266 SDK's rst_info.reason (REASON_DEFAULT_RST = 0 ..
// REASON_EXT_SYS_RST = 6): how this boot began, so the host can tell a crash or a watchdog
// from a power cut. "unknown" for a value the SDK may add later.
const char* reset_cause_name(uint32_t sdk_reason);

struct BoardConfig {
    uint8_t n_relays = 3;
    const char* reset_cause = "power_on";  // reset_cause_name() of this boot
    VoltageMeterConfig meter;
    uint32_t report_interval_ms = 1000;
    uint32_t gas_debounce_ms = 50;
};

// Every rejected incoming line is counted here (and answered with ETE or ETA).
struct ErrorCounters {
    uint32_t crc = 0;       // ETE ECRC
    uint32_t frame = 0;     // ETE EFRAME (also non-ASCII bytes, wrong type, bad cmd_id)
    uint32_t length = 0;    // ETE ELEN
    uint32_t bad_cmd = 0;   // ETA EBADCMD
    uint32_t bad_arg = 0;   // ETA EBADARG
    uint32_t flash = 0;     // settings could not be written (ETA EFLASH; used until reboot)
    uint32_t echo = 0;      // the board's own frame types coming back (an echoing tty): silent
    uint32_t unanswered = 0;  // ETE replies dropped by the rate limit
};

// At most this many ETE replies a second: a stream of short bad lines (or the board's own
// replies echoed back) would otherwise need more bytes out than came in, and writing them
// would hold loop() in Serial.write until the soft watchdog resets the board.
constexpr uint8_t kMaxErrorRepliesPerSecond = 5;

class Board {
public:
    Board(const BoardConfig& config, Output& out, RelayOutputs& relays, SettingsStore& store);

    void begin(uint32_t now_ms);  // relays to their fail-safe state, then the hello frame
    void on_rx_byte(char c, uint32_t now_ms);
    void on_adc_sample(uint16_t raw) { meter_.add_sample(raw); }
    void on_adc_gap() { meter_.on_gap(); }  // samples were lost here (a flash write)
    void on_gas_input(bool closed, uint32_t last_edge_ms, uint32_t now_ms) {
        gas_.update(closed, last_edge_ms, now_ms);
    }
    void poll(uint32_t now_ms);  // measurement frame when due; host watchdog

    const ErrorCounters& errors() const { return errors_; }
    const RelayBank& relays() const { return relays_; }
    const HostWatchdog& watchdog() const { return watchdog_; }
    double cal() const { return settings_.cal; }
    uint32_t gas_pulses() const { return gas_.pulses(); }

private:
    void handle_line(char* line, size_t len, uint32_t now_ms);
    void handle_command(uint32_t cmd_id, const ParsedFrame& f, uint32_t now_ms);
    bool store_settings();
    void send_hello();
    void send_measurement();
    void send_ack(uint32_t cmd_id, const char* result);
    void send_error(const char* code, uint32_t now_ms);
    void send(FrameWriter& w);
    uint16_t next_seq() { return seq_++; }

    BoardConfig cfg_;
    Output& out_;
    SettingsStore& store_;
    Settings settings_;
    RelayBank relays_;
    HostWatchdog watchdog_;
    VoltageMeter meter_;
    GasCounter gas_;
    ErrorCounters errors_;
    uint16_t seq_ = 0;
    uint32_t last_report_ms_ = 0;
    // Send times of the last kMaxErrorRepliesPerSecond ETE replies (a ring, oldest at
    // error_next_ once full): a sliding second, so no burst straddles a window edge.
    uint32_t error_reply_ms_[kMaxErrorRepliesPerSecond] = {};
    uint8_t error_replies_ = 0;  // entries filled so far, up to the ring's size
    uint8_t error_next_ = 0;
    bool store_failed_ = false;  // flash may differ from what store_.read() returns

    char line_[kMaxFrameBytes];
    size_t line_len_ = 0;
    bool line_too_long_ = false;
};

}  // namespace et1
