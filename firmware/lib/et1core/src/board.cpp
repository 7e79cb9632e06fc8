#include "board.h"

#include <cstdint>
#include <cstring>

namespace et1 {

const char* reset_cause_name(uint32_t sdk_reason) {
    static const char* const kNames[] = {"power_on",      "hw_watchdog", "exception",
                                         "soft_watchdog", "software",    "deep_sleep",
                                         "external"};
    return sdk_reason < sizeof kNames / sizeof kNames[0] ? kNames[sdk_reason] : "unknown";
}

Board::Board(const BoardConfig& config, Output& out, RelayOutputs& relays, SettingsStore& store)
    : cfg_(config),
      out_(out),
      store_(store),
      relays_(config.n_relays > kMaxRelays ? kMaxRelays : config.n_relays, relays),
      meter_(config.meter),
      gas_(config.gas_debounce_ms) {}

void Board::begin(uint32_t now_ms) {
    settings_ = load_settings(store_);
    relays_.set_safe_state(settings_.safe_mask);
    relays_.apply_safe();
    last_report_ms_ = now_ms;
    watchdog_.configure(0, now_ms);  // disabled until the host sends WDT
    // Ends whatever the boot ROM printed (at 74880 baud, no line end of its own), so the
    // hello does not share that garbage's line and get rejected with it.
    out_.write("\r\n", 2);
    send_hello();
}

void Board::on_rx_byte(char c, uint32_t now_ms) {
    if (c == '\n') {
        if (line_too_long_) {
            ++errors_.length;
            send_error("ELEN", now_ms);
        } else {
            size_t len = line_len_;
            if (len > 0 && line_[len - 1] == '\r') --len;
            if (len > 0) handle_line(line_, len, now_ms);  // blank lines are line noise
        }
        line_len_ = 0;
        line_too_long_ = false;
        return;
    }
    // The '\n' itself is the 128th byte of a maximal frame.
    if (line_len_ >= kMaxFrameBytes - 1) {
        line_too_long_ = true;
        return;
    }
    line_[line_len_++] = c;
}

namespace {

// "$ETH,", "$ETM,", "$ETA,", "$ETE,": what the board sends, so only an echo sends it back.
bool is_own_frame_type(const char* line, size_t len) {
    return len >= 5 && std::strncmp(line, "$ET", 3) == 0 && line[4] == ',' &&
           (line[3] == 'H' || line[3] == 'M' || line[3] == 'A' || line[3] == 'E');
}

}  // namespace

void Board::handle_line(char* line, size_t len, uint32_t now_ms) {
    if (is_own_frame_type(line, len)) {
        ++errors_.echo;  // answering it would feed the echo back forever
        return;
    }
    ParsedFrame f;
    const FrameError err = parse_frame(line, len, f);
    if (err == FrameError::Crc) {
        ++errors_.crc;
        send_error("ECRC", now_ms);
        return;
    }
    uint32_t cmd_id = 0;
    if (err != FrameError::None || std::strcmp(f.type, "ETC") != 0 || f.n_fields < 1 ||
        !parse_uint(f.fields[0], 65535, cmd_id) || cmd_id == 0) {
        ++errors_.frame;
        send_error("EFRAME", now_ms);
        return;
    }
    handle_command(cmd_id, f, now_ms);
}

void Board::handle_command(uint32_t cmd_id, const ParsedFrame& f, uint32_t now_ms) {
    const char* cmd = f.n_fields >= 2 ? f.fields[1] : "";
    const char* const* args = f.fields + 2;
    // Past kMaxFields no command's argument count matches: EBADARG (EBADCMD if unknown).
    const size_t n_args = f.too_many_fields ? SIZE_MAX : f.n_fields >= 2 ? f.n_fields - 2 : 0;
    bool known = true;
    bool ok = false;
    bool hello_after = false;
    bool stored = true;  // a setting that must survive a reboot reached the flash

    if (std::strcmp(cmd, "RELAY") == 0) {
        uint32_t index = 0;
        // The state is exactly "0" or "1" (docs/protocol.md 2.2), not any number up to 1.
        const char* state = n_args == 2 ? args[1] : "";
        const bool on = std::strcmp(state, "1") == 0;
        ok = n_args == 2 && parse_uint(args[0], kMaxRelays, index) &&
             (on || std::strcmp(state, "0") == 0) &&
             relays_.set(static_cast<uint8_t>(index), on);
    } else if (std::strcmp(cmd, "PING") == 0) {
        ok = n_args == 0;
    } else if (std::strcmp(cmd, "CAL") == 0) {
        double factor = 0.0;
        ok = n_args == 1 && parse_decimal(args[0], factor) && factor >= kMinCal &&
             factor <= kMaxCal;
        if (ok) {
            settings_.cal = static_cast<float>(factor);
            stored = store_settings();
        }
    } else if (std::strcmp(cmd, "WDT") == 0) {
        uint32_t seconds = 0;
        ok = n_args == 1 && parse_uint(args[0], 65535, seconds);
        if (ok) watchdog_.configure(seconds, now_ms);
    } else if (std::strcmp(cmd, "SAFE") == 0) {
        uint8_t mask = 0;
        ok = n_args == 1 && parse_relay_pattern(args[0], relays_.count(), mask);
        if (ok) {
            relays_.set_safe_state(mask);
            settings_.safe_mask = mask;
            stored = store_settings();
        }
    } else if (std::strcmp(cmd, "HELLO") == 0) {
        ok = n_args == 0;
        hello_after = ok;
    } else {
        known = false;
    }

    if (!known) {
        ++errors_.bad_cmd;
        send_ack(cmd_id, "EBADCMD");
    } else if (!ok) {
        ++errors_.bad_arg;
        send_ack(cmd_id, "EBADARG");
    } else if (!stored) {
        // In use until the next boot, which brings back the old value: the host must know.
        ++errors_.flash;
        watchdog_.feed(now_ms);
        send_ack(cmd_id, "EFLASH");
    } else {
        watchdog_.feed(now_ms);  // only a valid command proves the host is alive and sane
        send_ack(cmd_id, "OK");
        if (hello_after) send_hello();
    }
}

void Board::poll(uint32_t now_ms) {
    if (watchdog_.poll(now_ms)) relays_.apply_safe();
    if (now_ms - last_report_ms_ >= cfg_.report_interval_ms) {
        // Keep a steady cadence, but do not burst to catch up after a long stall.
        last_report_ms_ += cfg_.report_interval_ms;
        if (now_ms - last_report_ms_ >= cfg_.report_interval_ms) last_report_ms_ = now_ms;
        send_measurement();
    }
}

bool Board::store_settings() {
    // The host sends its fail-safe pattern after every hello: writing only what changed
    // spares the flash sector an erase per reconnect, and the 35-65 ms sampling pause.
    // After a failed write the store's read() may be its RAM copy (the ESP8266 EEPROM
    // library's), not the flash: then the same value is written again, never taken as done.
    uint8_t now[kSettingsBytes];
    uint8_t want[kSettingsBytes];
    encode_settings(settings_, want);
    if (!store_failed_ && store_.read(now, sizeof now) &&
        std::memcmp(now, want, sizeof want) == 0) {
        return true;
    }
    store_failed_ = !save_settings(store_, settings_);
    return !store_failed_;
}

void Board::send_hello() {
    seq_ = 0;  // the hello frame restarts the sequence (docs/protocol.md 2.1)
    char cal[24];
    format_trimmed(settings_.cal, 6, cal, sizeof cal);
    FrameWriter w("ETH");
    w.add_uint(next_seq()).add(kFirmwareVersion).add_uint(relays_.count()).add(cal);
    w.add(cfg_.reset_cause);  // appended in 1.4.0: earlier hosts ignore it (protocol 2.1)
    char safe[kMaxRelays + 1];
    // Appended in 1.5.0: the pattern in use, so a host sends SAFE only to change it.
    format_relay_pattern(settings_.safe_mask, relays_.count(), safe);
    w.add(safe);
    send(w);
}

void Board::send_measurement() {
    const VoltageReading r = meter_.take(settings_.cal);
    char relays[kMaxRelays + 1];
    format_relay_pattern(relays_.state(), relays_.count(), relays);
    FrameWriter w("ETM");
    w.add_uint(next_seq());
    // Outside the protocol's accepted ranges the host would drop the whole frame (relays and
    // gas included), so such a value is sent as "not measured" instead. So is the Vrms of a
    // clipped wave: its tops are cut off, it would read low and skew every corrected power.
    if (r.valid && !r.clipped && r.vrms <= 500.0) {
        w.add_fixed(r.vrms, 1);
    } else {
        w.add_empty();
    }
    if (r.valid && r.freq_hz >= 40.0 && r.freq_hz <= 70.0) {
        w.add_fixed(r.freq_hz, 2);
    } else {
        w.add_empty();
    }
    w.add(relays).add_uint(gas_.pulses());
    send(w);
}

void Board::send_ack(uint32_t cmd_id, const char* result) {
    char relays[kMaxRelays + 1];
    format_relay_pattern(relays_.state(), relays_.count(), relays);
    FrameWriter w("ETA");
    w.add_uint(next_seq()).add_uint(cmd_id).add(result).add(relays);
    send(w);
}

void Board::send_error(const char* code, uint32_t now_ms) {
    if (error_replies_ == kMaxErrorRepliesPerSecond
        && now_ms - error_reply_ms_[error_next_] < 1000) {
        ++errors_.unanswered;
        return;
    }
    error_reply_ms_[error_next_] = now_ms;
    error_next_ = (error_next_ + 1) % kMaxErrorRepliesPerSecond;
    if (error_replies_ < kMaxErrorRepliesPerSecond) ++error_replies_;
    FrameWriter w("ETE");
    w.add_uint(next_seq()).add(code);
    send(w);
}

void Board::send(FrameWriter& w) {
    const size_t len = w.finish();
    if (len > 0) out_.write(w.data(), len);
}

}  // namespace et1
