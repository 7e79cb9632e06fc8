#include "frame.h"

#include <cstdio>
#include <cstring>

#include "crc16.h"

namespace et1 {

FrameWriter::FrameWriter(const char* type) {
    buf_[0] = '$';
    len_ = 1;
    append(type, std::strlen(type));
}

void FrameWriter::append(const char* text, size_t len) {
    // Room must remain for "*XXXX\r\n".
    if (overflow_ || len_ + len + 7 > kMaxFrameBytes) {
        overflow_ = true;
        return;
    }
    std::memcpy(buf_ + len_, text, len);
    len_ += len;
}

FrameWriter& FrameWriter::add(const char* text) {
    append(",", 1);
    append(text, std::strlen(text));
    return *this;
}

FrameWriter& FrameWriter::add_uint(uint32_t value) {
    char tmp[12];
    std::snprintf(tmp, sizeof tmp, "%lu", static_cast<unsigned long>(value));
    return add(tmp);
}

FrameWriter& FrameWriter::add_fixed(double value, int decimals) {
    char tmp[24];
    std::snprintf(tmp, sizeof tmp, "%.*f", decimals, value);
    return add(tmp);
}

size_t FrameWriter::finish() {
    if (overflow_) return 0;
    const uint16_t crc = crc16(buf_ + 1, len_ - 1);
    std::snprintf(buf_ + len_, sizeof buf_ - len_, "*%04X\r\n", crc);
    len_ += 7;
    return len_;
}

namespace {

bool is_upper_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

unsigned hex_value(char c) { return c <= '9' ? unsigned(c - '0') : unsigned(c - 'A' + 10); }

}  // namespace

FrameError parse_frame(char* line, size_t len, ParsedFrame& out) {
    out = ParsedFrame();
    // Shortest frame: "$ABC*XXXX".
    if (len < 9 || line[0] != '$' || line[len - 5] != '*') return FrameError::Frame;
    for (size_t i = 0; i < len; ++i) {
        const unsigned char c = static_cast<unsigned char>(line[i]);
        if (c < 0x20 || c > 0x7E) return FrameError::Frame;  // encoding counts as "not a frame"
        if (i > 0 && i < len - 5 && (c == '$' || c == '*')) return FrameError::Frame;
    }
    uint16_t sent = 0;
    for (size_t i = len - 4; i < len; ++i) {
        if (!is_upper_hex(line[i])) return FrameError::Frame;
        sent = static_cast<uint16_t>((sent << 4) | hex_value(line[i]));
    }
    char* body = line + 1;
    const size_t body_len = len - 6;
    if (crc16(body, body_len) != sent) return FrameError::Crc;

    for (int i = 0; i < 3; ++i) {
        if (body[i] < 'A' || body[i] > 'Z') return FrameError::Frame;
    }
    if (body_len > 3 && body[3] != ',') return FrameError::Frame;
    std::memcpy(out.type, body, 3);
    body[body_len] = '\0';  // overwrites '*'
    if (body_len == 3) return FrameError::None;
    char* p = body + 4;
    while (true) {
        if (out.n_fields == kMaxFields) {
            // Still a frame: a command's cmd_id is known and gets its EBADARG.
            out.too_many_fields = true;
            break;
        }
        out.fields[out.n_fields++] = p;
        char* comma = std::strchr(p, ',');
        if (comma == nullptr) break;
        *comma = '\0';
        p = comma + 1;
    }
    return FrameError::None;
}

bool parse_uint(const char* text, uint32_t max, uint32_t& out) {
    if (*text == '\0' || std::strlen(text) > 10) return false;
    uint64_t value = 0;
    for (const char* p = text; *p; ++p) {
        if (*p < '0' || *p > '9') return false;
        value = value * 10 + static_cast<uint64_t>(*p - '0');
    }
    if (value > max) return false;
    out = static_cast<uint32_t>(value);
    return true;
}

bool parse_decimal(const char* text, double& out) {
    const char* p = text;
    bool negative = false;
    if (*p == '-') {
        negative = true;
        ++p;
    }
    double value = 0.0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        value = value * 10.0 + (*p++ - '0');
        if (++digits > 12) return false;
    }
    if (*p == '.') {
        ++p;
        double scale = 0.1;
        int frac_digits = 0;
        while (*p >= '0' && *p <= '9') {
            value += (*p++ - '0') * scale;
            scale /= 10.0;
            if (++frac_digits > 12) return false;
        }
        digits += frac_digits;
    }
    if (*p != '\0' || digits == 0) return false;
    out = negative ? -value : value;
    return true;
}

void format_trimmed(double value, int max_decimals, char* out, size_t cap) {
    std::snprintf(out, cap, "%.*f", max_decimals, value);
    char* dot = std::strchr(out, '.');
    if (dot == nullptr) return;
    char* end = out + std::strlen(out) - 1;
    while (end > dot + 1 && *end == '0') *end-- = '\0';
}

}  // namespace et1
