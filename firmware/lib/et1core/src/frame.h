// ET1 frame shape (docs/protocol.md section 2): "$TYPE,field,...*CRC\r\n" writing and
// parsing, plus the strict number forms used in fields.
#pragma once
#include <cstddef>
#include <cstdint>

namespace et1 {

constexpr size_t kMaxFrameBytes = 128;  // including '$', '*', CRC and the line end
constexpr size_t kMaxFields = 8;

// Builds one frame in an internal buffer; any overflow makes finish() return 0.
class FrameWriter {
public:
    explicit FrameWriter(const char* type);
    FrameWriter& add(const char* text);
    FrameWriter& add_uint(uint32_t value);
    FrameWriter& add_fixed(double value, int decimals);
    FrameWriter& add_empty() { return add(""); }
    size_t finish();  // appends "*CRC\r\n"; returns the frame length
    const char* data() const { return buf_; }

private:
    void append(const char* text, size_t len);
    char buf_[kMaxFrameBytes + 1];
    size_t len_ = 0;
    bool overflow_ = false;
};

enum class FrameError { None, Frame, Crc };

struct ParsedFrame {
    char type[4] = {0, 0, 0, 0};
    const char* fields[kMaxFields] = {};
    size_t n_fields = 0;
    bool too_many_fields = false;  // more than kMaxFields: only the first ones are kept
};

// Parses a line without its line end. Splits `line` in place (commas become NULs).
FrameError parse_frame(char* line, size_t len, ParsedFrame& out);

// Decimal forms only: no sign on unsigned, no exponent, no hex, no nan/inf. Decimals are
// the add-on's form: -?(digits[.digits] | .digits), "5." included.
bool parse_uint(const char* text, uint32_t max, uint32_t& out);
bool parse_decimal(const char* text, double& out);

// Fixed-point decimal with trailing fraction zeros removed (keeps one): 0.451200 -> "0.4512".
void format_trimmed(double value, int max_decimals, char* out, size_t cap);

}  // namespace et1
