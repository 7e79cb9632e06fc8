// Compile-only stand-in for the ESP8266 Arduino core: declares just the API src/main.cpp
// uses, so the host tests can check that the glue compiles (tests/firmware).
#pragma once
#include <cstdint>
#include <cstddef>
#define IRAM_ATTR
#define D1 5
#define D2 4
#define D6 12
#define D7 13
#define HIGH 1
#define LOW 0
#define OUTPUT 1
#define INPUT_PULLUP 2
#define CHANGE 3
#define TIM_DIV16 1
#define TIM_EDGE 0
#define TIM_LOOP 1
inline uint32_t millis() { return 0; }
inline void digitalWrite(uint8_t, uint8_t) {}
inline int digitalRead(uint8_t) { return 0; }
inline void pinMode(uint8_t, uint8_t) {}
inline void noInterrupts() {}
inline void interrupts() {}
inline int digitalPinToInterrupt(uint8_t p) { return p; }
inline void attachInterrupt(int, void (*)(), int) {}
inline void timer1_attachInterrupt(void (*)()) {}
inline void timer1_enable(int, int, int) {}
inline void timer1_disable() {}
inline void timer1_write(uint32_t) {}
struct SerialStub {
  void begin(unsigned long) {}
  int available() { return 0; }
  int read() { return -1; }
  size_t write(const uint8_t*, size_t n) { return n; }
};
extern SerialStub Serial;
