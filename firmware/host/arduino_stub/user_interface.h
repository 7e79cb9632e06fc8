// Compile-only stand-in for the ESP8266 Arduino core: declares just the API src/main.cpp
// uses, so the host tests can check that the glue compiles (tests/firmware).
#pragma once
#include <stdint.h>
uint16_t system_adc_read(void);
struct rst_info {
    uint32_t reason;  // enum rst_reason: REASON_DEFAULT_RST (0) .. REASON_EXT_SYS_RST (6)
    uint32_t exccause, epc1, epc2, epc3, excvaddr, depc;
};
struct rst_info* system_get_rst_info(void);
