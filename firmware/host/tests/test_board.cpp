// The ET1 board end to end through its byte interface: hello, acks, rejections and their
// counters, sequence numbers, calibration in flash, fail-safe relays and the host watchdog.
#include <cstdio>
#include <string>
#include <vector>

#include "board.h"
#include "crc16.h"
#include "fakes.h"
#include "minitest.h"
#include "synthetic_mains.h"

namespace {

std::string frame_line(const std::string& body) {
    char crc[5];
    std::snprintf(crc, sizeof crc, "%04X", et1::crc16(body.data(), body.size()));
    return "$" + body + "*" + crc + "\r\n";
}

struct Rig {
    MemoryFlash flash;
    FakeRelayPins pins;
    CapturedOutput out;
    et1::BoardConfig cfg;
    et1::Board board{cfg, out, pins, flash};
    uint32_t now = 0;

    void boot() { board.begin(now); }
    void raw(const std::string& bytes) {
        for (char c : bytes) board.on_rx_byte(c, now);
    }
    void command(const std::string& body) { raw(frame_line(body)); }
    std::vector<Sent> sent() {
        std::vector<Sent> v;
        // The blank line before each boot's hello is line noise to the host as well.
        for (const std::string& l : out.take_lines()) {
            if (!l.empty()) v.push_back(decode_sent(l));
        }
        return v;
    }
    Sent only() {
        std::vector<Sent> v = sent();
        CHECK_EQ(v.size(), size_t{1});
        return v.empty() ? Sent() : v[0];
    }
    // Advances time in 10 ms steps, polling like loop() does.
    void run_ms(uint32_t ms) {
        for (uint32_t t = 0; t < ms; t += 10) {
            now += 10;
            board.poll(now);
        }
    }
};

}  // namespace

TEST(boot_sets_relays_to_stored_safe_state_then_says_hello) {
    Rig r;
    et1::Settings s;
    s.cal = 0.4512f;
    s.safe_mask = 0b101;
    uint8_t buf[et1::kSettingsBytes];
    et1::encode_settings(s, buf);
    r.flash.cells.assign(buf, buf + sizeof buf);
    r.boot();
    CHECK_EQ(r.pins.pattern(3), std::string("101"));
    const Sent hello = r.only();
    CHECK(hello.crc_ok);
    CHECK_EQ(hello.type, std::string("ETH"));
    CHECK(hello.fields == (std::vector<std::string>{"0", "1.5.1", "3", "0.4512", "power_on", "101"}));
}

TEST(hello_names_how_the_boot_began) {
    Rig r;
    r.cfg.reset_cause = et1::reset_cause_name(3);  // REASON_SOFT_WDT_RST: loop() stuck
    et1::Board board{r.cfg, r.out, r.pins, r.flash};
    board.begin(0);
    std::vector<Sent> v;
    for (const std::string& l : r.out.take_lines()) {
        if (!l.empty()) v.push_back(decode_sent(l));
    }
    CHECK_EQ(v.size(), size_t{1});
    CHECK_EQ(v[0].fields[4], std::string("soft_watchdog"));
    const char* names[] = {"power_on", "hw_watchdog", "exception", "soft_watchdog",
                           "software", "deep_sleep", "external", "unknown", "unknown"};
    for (uint32_t reason = 0; reason < 9; ++reason) {
        CHECK_EQ(std::string(et1::reset_cause_name(reason)), std::string(names[reason]));
    }
    CHECK_EQ(std::string(et1::reset_cause_name(0xFFFFFFFFu)), std::string("unknown"));
}

TEST(boot_ends_the_roms_unterminated_output_before_the_hello) {
    // The ROM's 74880-baud boot bytes reach the host as garbage without a line end; the
    // hello must start a line of its own or it is rejected together with them.
    Rig r;
    r.out.bytes = "\x8f\x1c\xe4rl";
    r.boot();
    CHECK_EQ(r.out.bytes.substr(0, 12), std::string("\x8f\x1c\xe4rl\r\n$ETH,"));
    const std::vector<std::string> lines = r.out.take_lines();
    CHECK_EQ(lines.size(), size_t{2});
    CHECK(decode_sent(lines.back()).crc_ok);
}

TEST(blank_flash_boots_with_relays_open_and_default_cal) {
    Rig r;
    r.boot();
    CHECK_EQ(r.pins.pattern(3), std::string("000"));
    CHECK_EQ(r.only().fields[3], std::string("2.4"));
}

TEST(relay_command_is_acknowledged_with_state_after) {
    Rig r;
    r.boot();
    r.sent();
    r.command("ETC,42,RELAY,2,1");
    const Sent ack = r.only();
    CHECK_EQ(ack.type, std::string("ETA"));
    CHECK(ack.fields == (std::vector<std::string>{"1", "42", "OK", "010"}));
    CHECK_EQ(r.pins.pattern(3), std::string("010"));
    r.command("ETC,43,RELAY,2,0");
    CHECK_EQ(r.only().fields[3], std::string("000"));
}

TEST(bad_arguments_and_unknown_commands_are_refused_and_counted) {
    Rig r;
    r.boot();
    r.command("ETC,7,RELAY,1,1");
    r.sent();
    const char* bad_args[] = {"RELAY,4,1", "RELAY,0,1", "RELAY,1,2", "RELAY,1", "RELAY,1,1,1",
                              "PING,1",    "CAL,-1",    "CAL,1e3",   "CAL,abc", "CAL,500",
                              "WDT,-5",    "WDT,70000", "SAFE,01",   "SAFE,0101", "SAFE,0a0",
                              "RELAY,1,01", "RELAY,1,00", "RELAY,1,"};
    uint32_t id = 100;
    for (const char* a : bad_args) {
        r.command("ETC," + std::to_string(id) + "," + a);
        const Sent ack = r.only();
        CHECK(ack.fields == (std::vector<std::string>{ack.fields.empty() ? "" : ack.fields[0],
                                                      std::to_string(id), "EBADARG", "100"}));
        ++id;
    }
    // More fields than a frame holds: the cmd_id is still known, so it is acknowledged.
    r.command("ETC,199,CAL,2.5,,,,,,,");
    const Sent too_many = r.only();
    CHECK_EQ(too_many.type, std::string("ETA"));
    CHECK(too_many.fields.size() == 4 && too_many.fields[1] == "199" &&
          too_many.fields[2] == "EBADARG");
    r.command("ETC,200,REBOOT");
    CHECK_EQ(r.only().fields[2], std::string("EBADCMD"));
    r.command("ETC,201");
    CHECK_EQ(r.only().fields[2], std::string("EBADCMD"));
    r.command("ETC,202,");
    CHECK_EQ(r.only().fields[2], std::string("EBADCMD"));
    r.command("ETC,203,REBOOT,,,,,,,,");
    CHECK_EQ(r.only().fields[2], std::string("EBADCMD"));
    CHECK_EQ(r.board.errors().bad_arg, uint32_t{19});
    CHECK_EQ(r.board.errors().bad_cmd, uint32_t{4});
    CHECK_EQ(r.pins.pattern(3), std::string("100"));  // nothing changed
    CHECK_NEAR(r.board.cal(), 2.4, 1e-6);
}

TEST(checksum_errors_malformed_and_long_lines_get_ete_and_are_counted) {
    Rig r;
    r.boot();
    r.sent();
    std::string corrupt = frame_line("ETC,42,RELAY,1,1");
    corrupt[14] = '2';  // relay 1 -> relay 2 in transit
    r.raw(corrupt);
    CHECK(r.only().fields == (std::vector<std::string>{"1", "ECRC"}));
    r.raw("hello world\r\n");
    CHECK(r.only().fields == (std::vector<std::string>{"2", "EFRAME"}));
    r.command("ETM,1,230.0,50.00,000,0");  // a board frame echoed back: not answered
    CHECK(r.sent().empty());
    r.command("ETC,0,PING");  // cmd_id out of range: cannot be acknowledged
    CHECK_EQ(r.only().fields[1], std::string("EFRAME"));
    r.raw("$ETC,9,PING\x01*0000\r\n");
    CHECK_EQ(r.only().fields[1], std::string("EFRAME"));
    r.raw(std::string(300, 'x') + "\r\n");
    CHECK_EQ(r.only().fields[1], std::string("ELEN"));
    // The board resynchronises on the next line end.
    r.command("ETC,44,PING");
    CHECK_EQ(r.only().fields[2], std::string("OK"));
    CHECK_EQ(r.board.errors().crc, uint32_t{1});
    CHECK_EQ(r.board.errors().frame, uint32_t{3});
    CHECK_EQ(r.board.errors().echo, uint32_t{1});
    CHECK_EQ(r.board.errors().length, uint32_t{1});
    CHECK_EQ(r.pins.pattern(3), std::string("000"));
}

TEST(line_of_exactly_128_bytes_is_accepted_129_is_not) {
    Rig r;
    r.boot();
    r.sent();
    // "$ETC,1,PING,<pad>*XXXX\r\n": PING with a padding arg -> EBADARG, but it is parsed.
    const std::string head = "ETC,1,PING,";
    const std::string pad128(128 - 1 - head.size() - 7, '0');
    r.command(head + pad128);
    CHECK_EQ(r.only().fields[2], std::string("EBADARG"));
    r.command(head + pad128 + "0");
    CHECK_EQ(r.only().fields[1], std::string("ELEN"));
}

TEST(sequence_increments_for_every_frame_wraps_and_restarts_at_hello) {
    Rig r;
    r.boot();
    for (int i = 0; i < 70000; ++i) r.command("ETC,5,PING");
    std::vector<Sent> v = r.sent();
    CHECK_EQ(v.size(), size_t{70001});
    bool monotonic = true;
    for (size_t i = 1; i < v.size(); ++i) {
        monotonic &= std::stoul(v[i].fields[0]) == (std::stoul(v[i - 1].fields[0]) + 1) % 65536;
    }
    CHECK(monotonic);
    CHECK_EQ(v.back().fields[0], std::to_string(70000 % 65536));
    r.command("ETC,6,HELLO");
    v = r.sent();
    CHECK_EQ(v.size(), size_t{2});
    CHECK_EQ(v[0].type + v[0].fields[2], std::string("ETAOK"));
    CHECK_EQ(v[1].type + v[1].fields[0], std::string("ETH0"));
}

TEST(calibration_is_stored_in_flash_and_used_after_reboot) {
    Rig r;
    r.boot();
    r.command("ETC,9,CAL,0.4512");
    CHECK_EQ(r.sent().back().fields[2], std::string("OK"));
    CHECK_NEAR(r.board.cal(), 0.4512, 1e-6);

    Rig after;  // same flash contents, fresh RAM: a reboot
    after.flash.cells = r.flash.cells;
    after.boot();
    CHECK_EQ(after.only().fields[3], std::string("0.4512"));
}

TEST(measurement_every_second_with_vrms_frequency_relays_and_gas) {
    Rig r;
    r.boot();
    r.command("ETC,1,RELAY,3,1");
    r.command("ETC,2,CAL,2.4");
    r.sent();
    MainsSignal sig;
    sig.vrms = 231.0;
    sig.freq_hz = 50.0;
    sig.noise_counts = 2.0;
    uint32_t edge = 0;
    bool closed = false;
    std::vector<Sent> etm;
    for (int ms = 0; ms < 5000; ++ms) {
        r.now = static_cast<uint32_t>(ms + 1);
        r.board.on_adc_sample(sig.next());
        r.board.on_adc_sample(sig.next());
        // One 300 ms reed closure per second, with contact bounce on both edges.
        const int phase = ms % 1000;
        const bool level = (phase >= 100 && phase < 400) || phase == 402 || phase == 97;
        if (level != closed) {
            closed = level;
            edge = r.now;
        }
        r.board.on_gas_input(closed, edge, r.now);
        r.board.poll(r.now);
        for (const Sent& s : r.sent()) etm.push_back(s);
    }
    CHECK_EQ(etm.size(), size_t{5});
    for (const Sent& s : etm) CHECK_EQ(s.type, std::string("ETM"));
    const Sent& last = etm.back();
    CHECK_NEAR(std::stod(last.fields[1]), 231.0, 231.0 * 0.005);
    CHECK_NEAR(std::stod(last.fields[2]), 50.0, 0.05);
    CHECK_EQ(last.fields[3], std::string("001"));
    CHECK_EQ(last.fields[4], std::string("5"));
}

TEST(measurement_without_mains_has_empty_vrms_and_frequency) {
    Rig r;
    r.boot();
    r.sent();
    for (int ms = 1; ms <= 2000; ++ms) {
        r.board.on_adc_sample(512);
        r.board.on_adc_sample(513);
        r.board.poll(static_cast<uint32_t>(ms));
    }
    const std::vector<Sent> v = r.sent();
    CHECK_EQ(v.size(), size_t{2});
    CHECK(v.back().fields == (std::vector<std::string>{"2", "", "", "000", "0"}));
}

TEST(clipped_wave_has_empty_vrms_but_still_a_frequency) {
    // A ZMPT101B trimmed too high: the wave's tops are cut off at the ADC's rails, so its
    // RMS would read low. The host gets no Vrms rather than a wrong one.
    Rig r;
    r.boot();
    r.sent();
    MainsSignal sig;
    sig.vrms = 230.0;
    sig.cal = 0.6;  // 542 counts peak around 512: both rails
    for (int ms = 1; ms <= 2000; ++ms) {
        r.board.on_adc_sample(sig.next());
        r.board.on_adc_sample(sig.next());
        r.board.poll(static_cast<uint32_t>(ms));
    }
    const Sent last = r.sent().back();
    CHECK_EQ(last.fields[1], std::string(""));
    CHECK_NEAR(std::stod(last.fields[2]), 50.0, 0.05);
}

TEST(watchdog_applies_fail_safe_state_after_host_silence) {
    Rig r;
    r.boot();
    r.command("ETC,1,SAFE,001");
    r.command("ETC,2,RELAY,1,1");
    r.command("ETC,3,RELAY,3,0");
    r.command("ETC,4,WDT,5");
    CHECK_EQ(r.pins.pattern(3), std::string("100"));
    // Valid commands keep it fed ...
    for (int i = 0; i < 4; ++i) {
        r.run_ms(3000);
        r.command("ETC,5,PING");
    }
    CHECK_EQ(r.pins.pattern(3), std::string("100"));
    // ... rejected ones do not.
    r.run_ms(3000);
    r.raw("garbage\r\n");
    r.command("ETC,6,NOPE");
    r.run_ms(1990);
    CHECK_EQ(r.pins.pattern(3), std::string("100"));
    r.run_ms(20);
    CHECK_EQ(r.pins.pattern(3), std::string("001"));
    CHECK(r.board.watchdog().tripped());
    // The host comes back and takes control again.
    r.command("ETC,7,RELAY,2,1");
    CHECK_EQ(r.pins.pattern(3), std::string("011"));
    CHECK(!r.board.watchdog().tripped());
}

TEST(watchdog_disabled_by_default_and_by_zero) {
    Rig r;
    r.boot();
    r.command("ETC,1,RELAY,1,1");
    r.run_ms(120000);
    CHECK_EQ(r.pins.pattern(3), std::string("100"));
    r.command("ETC,2,WDT,1");
    r.command("ETC,3,WDT,0");
    r.run_ms(5000);
    CHECK_EQ(r.pins.pattern(3), std::string("100"));
}

TEST(flash_write_failure_is_counted_and_value_still_used) {
    Rig r;
    r.boot();
    r.flash.fail_writes = true;
    r.command("ETC,1,CAL,2.5");
    // Not OK: the host must know the factor is lost at the next boot.
    CHECK_EQ(r.sent().back().fields[2], std::string("EFLASH"));
    CHECK_EQ(r.board.errors().flash, uint32_t{1});
    CHECK_NEAR(r.board.cal(), 2.5, 1e-6);
    r.command("ETC,2,SAFE,010");
    CHECK_EQ(r.sent().back().fields[2], std::string("EFLASH"));
    CHECK_EQ(r.board.errors().flash, uint32_t{2});
    r.flash.fail_writes = false;
    r.command("ETC,3,CAL,2.5");
    CHECK_EQ(r.sent().back().fields[2], std::string("OK"));
}

TEST(hello_reports_the_fail_safe_pattern_and_the_same_settings_are_not_written_again) {
    Rig r;
    r.boot();
    CHECK_EQ(r.only().fields[5], std::string("000"));  // blank flash: all open
    r.command("ETC,1,SAFE,010");
    CHECK_EQ(r.only().fields[2], std::string("OK"));
    CHECK_EQ(r.flash.writes, 1);
    r.command("ETC,2,HELLO");
    const std::vector<Sent> v = r.sent();
    CHECK_EQ(v.size(), size_t{2});
    CHECK_EQ(v.back().fields[5], std::string("010"));
    // The host repeats the pattern after each hello: the flash is written only to change it.
    r.command("ETC,3,SAFE,010");
    r.command("ETC,4,CAL,2.4");
    for (const Sent& s : r.sent()) CHECK_EQ(s.fields[2], std::string("OK"));
    CHECK_EQ(r.flash.writes, 1);
    r.command("ETC,5,SAFE,011");
    r.command("ETC,6,CAL,2.5");
    CHECK_EQ(r.flash.writes, 3);
    // A write that failed is tried again, though the value in use already matches.
    r.flash.fail_writes = true;
    r.command("ETC,7,SAFE,001");
    CHECK_EQ(r.sent().back().fields[2], std::string("EFLASH"));
    r.flash.fail_writes = false;
    r.command("ETC,8,SAFE,001");
    CHECK_EQ(r.sent().back().fields[2], std::string("OK"));
    CHECK_EQ(r.flash.writes, 4);
}

TEST(a_flood_of_bad_lines_gets_few_replies_and_commands_still_answered) {
    // Two bytes in, ~20 out for each: answered all, the replies would outrun the input and
    // hold loop() in Serial.write. At most five ETE a second; acks are never dropped.
    Rig r;
    r.boot();
    r.sent();
    size_t ete = 0, acks = 0;
    for (int i = 0; i < 1000; ++i) {
        r.raw("x\n");
        if (i == 500) r.command("ETC,7,RELAY,1,1");
        if (i % 10 == 0) r.now += 1;  // 1000 lines in 100 ms
        for (const Sent& s : r.sent()) {
            ete += s.type == "ETE";
            acks += s.type == "ETA" && s.fields[2] == "OK";
        }
    }
    CHECK_EQ(ete, size_t{5});
    CHECK_EQ(acks, size_t{1});
    CHECK_EQ(r.pins.pattern(3), std::string("100"));
    CHECK_EQ(r.board.errors().frame, uint32_t{1000});
    CHECK_EQ(r.board.errors().unanswered, uint32_t{995});
    r.now += 1000;  // a second later bad lines are answered again
    r.raw("x\n");
    CHECK_EQ(r.only().fields[1], std::string("EFRAME"));
}

TEST(no_second_holds_more_than_five_error_replies) {
    // Five bad lines just before a second's edge and five just after were ten replies in
    // 20 ms when the limit counted per fixed second; it is a sliding second.
    Rig r;
    r.boot();
    r.sent();
    auto replies_to = [&r](int lines) {
        size_t ete = 0;
        for (int i = 0; i < lines; ++i) r.raw("x\n");
        for (const Sent& s : r.sent()) ete += s.type == "ETE";
        return ete;
    };
    r.now += 990;
    CHECK_EQ(replies_to(5), size_t{5});
    r.now += 20;
    CHECK_EQ(replies_to(5), size_t{0});
    r.now += 975;  // 995 ms after the five: still inside their second
    CHECK_EQ(replies_to(5), size_t{0});
    r.now += 5;  // a full second after them
    CHECK_EQ(replies_to(5), size_t{5});
    CHECK_EQ(r.board.errors().unanswered, uint32_t{10});
}

TEST(an_echoing_port_does_not_start_a_ping_pong) {
    // `cat /dev/ttyUSB0` leaves the tty echoing: every frame comes straight back, the CR
    // doubled by the line discipline. The board's own frames are not answered, so the
    // echo carries nothing but its measurements.
    Rig r;
    r.boot();
    size_t frames = 0, errors = 0;
    for (int step = 0; step < 500; ++step) {  // 5 s
        r.run_ms(10);
        std::string echoed;
        for (const std::string& l : r.out.take_lines()) {
            if (l.empty()) continue;
            const Sent s = decode_sent(l);
            ++frames;
            errors += s.type == "ETE";
            echoed += l + "\r\r\n";
        }
        r.raw(echoed);
    }
    CHECK_EQ(errors, size_t{0});
    CHECK(frames >= 5 && frames <= 6);  // the hello and a measurement a second
    CHECK(r.board.errors().echo >= 5);
}
