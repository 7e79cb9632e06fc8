// Settings kept in flash across reboots: the Vrms calibration and the fail-safe relay
// pattern (also the relays' state at boot). Fixed little-endian layout with magic and CRC so
// blank or corrupted flash falls back to defaults.
#pragma once
#include <cstddef>
#include <cstdint>

namespace et1 {

constexpr double kDefaultCal = 2.4;  // V per ADC RMS count: the README's trim at 230 V
constexpr double kMinCal = 0.001;
constexpr double kMaxCal = 100.0;
constexpr size_t kSettingsBytes = 12;

struct Settings {
    float cal = static_cast<float>(kDefaultCal);
    uint8_t safe_mask = 0;  // all relays open
};

// Hardware boundary: EEPROM emulation / LittleFS on the board, a file on the host.
class SettingsStore {
public:
    virtual ~SettingsStore() = default;
    virtual bool read(uint8_t* buf, size_t len) = 0;
    virtual bool write(const uint8_t* buf, size_t len) = 0;
};

void encode_settings(const Settings& s, uint8_t (&buf)[kSettingsBytes]);
bool decode_settings(const uint8_t (&buf)[kSettingsBytes], Settings& out);  // false: defaults

Settings load_settings(SettingsStore& store);
bool save_settings(SettingsStore& store, const Settings& s);

}  // namespace et1
