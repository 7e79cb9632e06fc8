// Compile-only stand-in for the ESP8266 Arduino core: declares just the API src/main.cpp
// uses, so the host tests can check that the glue compiles (tests/firmware).
#pragma once
#define WIFI_OFF 0
struct WiFiStub { void mode(int) {} void forceSleepBegin() {} };
extern WiFiStub WiFi;
