// CRC, frame writing/parsing and the strict number forms (docs/protocol.md section 2).
#include <cstring>
#include <string>

#include "crc16.h"
#include "frame.h"
#include "minitest.h"

TEST(crc_check_value_from_protocol_doc) {
    CHECK_EQ(et1::crc16("123456789", 9), 0x29B1);
}

TEST(writer_builds_frame_with_crc_of_body) {
    et1::FrameWriter w("ETM");
    w.add_uint(17).add_fixed(231.44, 1).add_fixed(50.005, 2).add("010").add_uint(1532);
    const size_t n = w.finish();
    const std::string frame(w.data(), n);
    const std::string body = "ETM,17,231.4,50.01,010,1532";
    char crc[5];
    std::snprintf(crc, sizeof crc, "%04X", et1::crc16(body.data(), body.size()));
    CHECK_EQ(frame, "$" + body + "*" + crc + "\r\n");
}

TEST(writer_refuses_to_exceed_128_bytes) {
    et1::FrameWriter ok("ETE");
    ok.add(std::string(128 - 7 - 5, 'A').c_str());  // "$ETE," + text + "*XXXX\r\n" == 128
    CHECK_EQ(ok.finish(), size_t{128});
    et1::FrameWriter big("ETE");
    big.add(std::string(128 - 7 - 4, 'A').c_str());
    CHECK_EQ(big.finish(), size_t{0});
}

TEST(parser_round_trips_writer_output) {
    et1::FrameWriter w("ETC");
    w.add_uint(42).add("RELAY").add("2").add("1");
    const size_t n = w.finish();
    std::string line(w.data(), n - 2);  // without CRLF
    et1::ParsedFrame f;
    CHECK(et1::parse_frame(line.data(), line.size(), f) == et1::FrameError::None);
    CHECK_EQ(std::string(f.type), "ETC");
    CHECK_EQ(f.n_fields, size_t{4});
    CHECK_EQ(std::string(f.fields[1]), "RELAY");
    CHECK_EQ(std::string(f.fields[3]), "1");
}

namespace {
et1::FrameError parse(std::string line) {
    et1::ParsedFrame f;
    return et1::parse_frame(line.data(), line.size(), f);
}
std::string with_crc(const std::string& body) {
    char crc[5];
    std::snprintf(crc, sizeof crc, "%04X", et1::crc16(body.data(), body.size()));
    return "$" + body + "*" + crc;
}
}  // namespace

TEST(parser_rejects_crc_mismatch_and_bad_shapes) {
    std::string good = with_crc("ETC,43,PING");
    CHECK(parse(good) == et1::FrameError::None);
    std::string flipped = good;
    flipped[6] = '4';  // cmd_id 43 -> 44, CRC unchanged
    CHECK(parse(flipped) == et1::FrameError::Crc);
    CHECK(parse("ETC,43,PING*0000") == et1::FrameError::Frame);       // no '$'
    CHECK(parse("$ETC,43,PING") == et1::FrameError::Frame);           // no CRC
    CHECK(parse("$ETC,43,PING*12") == et1::FrameError::Frame);        // short CRC
    CHECK(parse(with_crc("ETC,4$3,PING")) == et1::FrameError::Frame);  // stray '$'
    CHECK(parse(with_crc("ETC,43,P\xC3\x89NG")) == et1::FrameError::Frame);  // non-ASCII
    CHECK(parse(with_crc("E1C,43,PING")) == et1::FrameError::Frame);  // type not letters
    CHECK(parse(with_crc("ETCX,43,PING")) == et1::FrameError::Frame);
}

TEST(numbers_are_strict_decimals) {
    uint32_t u = 0;
    CHECK(et1::parse_uint("65535", 65535, u) && u == 65535);
    CHECK(!et1::parse_uint("65536", 65535, u));
    CHECK(!et1::parse_uint("", 10, u));
    CHECK(!et1::parse_uint("+1", 10, u));
    CHECK(!et1::parse_uint("0x1", 10, u));
    CHECK(!et1::parse_uint("99999999999", 0xFFFFFFFF, u));
    double d = 0;
    CHECK(et1::parse_decimal("0.4512", d));
    CHECK_NEAR(d, 0.4512, 1e-12);
    CHECK(et1::parse_decimal("-3", d) && d == -3.0);
    CHECK(!et1::parse_decimal("1e3", d));
    CHECK(!et1::parse_decimal("nan", d));
    CHECK(!et1::parse_decimal("inf", d));
    CHECK(et1::parse_decimal("5.", d) && d == 5.0);
    CHECK(et1::parse_decimal(".5", d) && d == 0.5);
    CHECK(!et1::parse_decimal(".", d));
    CHECK(!et1::parse_decimal("1.2.3", d));
    CHECK(!et1::parse_decimal("", d));
    CHECK(!et1::parse_decimal("-", d));
}

TEST(trimmed_format_for_calibration) {
    char out[24];
    et1::format_trimmed(static_cast<double>(0.4512f), 6, out, sizeof out);
    CHECK_EQ(std::string(out), "0.4512");
    et1::format_trimmed(2.0, 6, out, sizeof out);
    CHECK_EQ(std::string(out), "2.0");
}
