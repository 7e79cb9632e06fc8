// Stand-ins for the three hardware boundaries of et1::Board: the UART's transmit side, the
// relay GPIOs and the flash sector.
#pragma once
#include <cstring>
#include <string>
#include <vector>

#include "board.h"
#include "frame.h"

struct CapturedOutput : et1::Output {
    std::string bytes;
    void write(const char* data, size_t len) override { bytes.append(data, len); }

    // Complete lines written so far, each without CRLF; clears the capture.
    std::vector<std::string> take_lines() {
        std::vector<std::string> lines;
        size_t start = 0;
        for (size_t pos; (pos = bytes.find("\r\n", start)) != std::string::npos; start = pos + 2) {
            lines.push_back(bytes.substr(start, pos - start));
        }
        bytes.erase(0, start);
        return lines;
    }
};

struct FakeRelayPins : et1::RelayOutputs {
    bool level[et1::kMaxRelays] = {};
    int writes = 0;
    void write(uint8_t index, bool on) override {
        level[index] = on;
        ++writes;
    }
    std::string pattern(int n) const {
        std::string s;
        for (int i = 0; i < n; ++i) s += level[i] ? '1' : '0';
        return s;
    }
};

struct MemoryFlash : et1::SettingsStore {
    std::vector<uint8_t> cells = std::vector<uint8_t>(et1::kSettingsBytes, 0xFF);  // erased
    bool fail_writes = false;
    int writes = 0;  // successful ones: each is a sector erase on the ESP8266
    bool read(uint8_t* buf, size_t len) override {
        std::memcpy(buf, cells.data(), len);
        return true;
    }
    bool write(const uint8_t* buf, size_t len) override {
        // Like the ESP8266 EEPROM library: its RAM copy (what read() returns) takes the
        // bytes before the commit to flash, which may fail.
        cells.assign(buf, buf + len);
        if (fail_writes) return false;
        ++writes;
        return true;
    }
};

// A parsed frame the board sent, with its fields as strings.
struct Sent {
    std::string type;
    std::vector<std::string> fields;
    bool crc_ok = false;
};

inline Sent decode_sent(std::string line) {
    Sent s;
    et1::ParsedFrame f;
    const et1::FrameError e = et1::parse_frame(line.data(), line.size(), f);
    s.crc_ok = e == et1::FrameError::None;
    if (!s.crc_ok) return s;
    s.type = f.type;
    for (size_t i = 0; i < f.n_fields; ++i) s.fields.emplace_back(f.fields[i]);
    return s;
}
