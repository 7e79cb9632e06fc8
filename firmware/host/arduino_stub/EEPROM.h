// Compile-only stand-in for the ESP8266 Arduino core: declares just the API src/main.cpp
// uses, so the host tests can check that the glue compiles (tests/firmware).
#pragma once
#include <cstdint>
#include <cstddef>
struct EepromStub { void begin(size_t) {} uint8_t read(int) { return 0; } void write(int, uint8_t) {} bool commit() { return true; } };
extern EepromStub EEPROM;
