// CRC-16/CCITT-FALSE, the ET1 frame checksum (docs/protocol.md section 2).
#pragma once
#include <cstddef>
#include <cstdint>

namespace et1 {

uint16_t crc16(const char* data, size_t len, uint16_t crc = 0xFFFF);

}  // namespace et1
