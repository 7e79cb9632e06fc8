#include "settings.h"

#include <cstring>

#include "crc16.h"

namespace et1 {

namespace {
constexpr uint8_t kMagic[3] = {'E', 'T', '1'};
constexpr uint8_t kVersion = 1;
}  // namespace

void encode_settings(const Settings& s, uint8_t (&buf)[kSettingsBytes]) {
    uint32_t bits;
    std::memcpy(&bits, &s.cal, sizeof bits);
    std::memcpy(buf, kMagic, 3);
    buf[3] = kVersion;
    for (int i = 0; i < 4; ++i) buf[4 + i] = static_cast<uint8_t>(bits >> (8 * i));
    buf[8] = s.safe_mask;
    buf[9] = 0;
    const uint16_t crc = crc16(reinterpret_cast<const char*>(buf), 10);
    buf[10] = static_cast<uint8_t>(crc & 0xFF);
    buf[11] = static_cast<uint8_t>(crc >> 8);
}

bool decode_settings(const uint8_t (&buf)[kSettingsBytes], Settings& out) {
    out = Settings();
    const uint16_t crc = crc16(reinterpret_cast<const char*>(buf), 10);
    if (std::memcmp(buf, kMagic, 3) != 0 || buf[3] != kVersion ||
        buf[10] != (crc & 0xFF) || buf[11] != (crc >> 8)) {
        return false;
    }
    uint32_t bits = 0;
    for (int i = 0; i < 4; ++i) bits |= static_cast<uint32_t>(buf[4 + i]) << (8 * i);
    float cal;
    std::memcpy(&cal, &bits, sizeof cal);
    if (!(cal >= kMinCal && cal <= kMaxCal)) return false;  // also rejects NaN
    out.cal = cal;
    out.safe_mask = buf[8];
    return true;
}

Settings load_settings(SettingsStore& store) {
    uint8_t buf[kSettingsBytes];
    Settings s;
    if (store.read(buf, sizeof buf)) decode_settings(buf, s);
    return s;
}

bool save_settings(SettingsStore& store, const Settings& s) {
    uint8_t buf[kSettingsBytes];
    encode_settings(s, buf);
    return store.write(buf, sizeof buf);
}

}  // namespace et1
