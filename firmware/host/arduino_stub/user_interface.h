// Compile-only stand-in for the ESP8266 Arduino core: declares just the API src/main.cpp
// uses, so the host tests can check that the glue compiles (tests/firmware).
#pragma once
#include <stdint.h>
uint16_t system_adc_read(void);
