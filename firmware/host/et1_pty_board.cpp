// Runs the portable ET1 core on a serial device (a pty slave in the tests) with a synthetic
// ZMPT101B signal and a synthetic gas reed switch: the board as the add-on sees it, without
// the hardware. Exits when the other end closes or on SIGTERM, printing the error counters.
//
//   et1_pty_board --port /dev/pts/N [--settings FILE] [--freq 50] [--vrms 230] [--speed 1]
//                 [--gas-period-ms 0] [--noise 2] [--wiring-cal 2.4] [--reset-reason 0]
#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "board.h"
#include "synthetic_mains.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

bool g_port_gone = false;

struct FdOutput : et1::Output {
    int fd;
    explicit FdOutput(int f) : fd(f) {}
    void write(const char* data, size_t len) override {
        while (len > 0 && !g_port_gone) {
            const ssize_t n = ::write(fd, data, len);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                g_port_gone = true;
                return;
            }
            data += n;
            len -= static_cast<size_t>(n);
        }
    }
};

struct NoRelayHardware : et1::RelayOutputs {
    void write(uint8_t, bool) override {}  // state is visible in the frames
};

// The flash sector as a file, so a restart of this program is a reboot of the board.
struct FileFlash : et1::SettingsStore {
    std::string path;
    uint8_t ram[et1::kSettingsBytes];
    bool read(uint8_t* buf, size_t len) override {
        if (path.empty()) return false;
        FILE* f = std::fopen(path.c_str(), "rb");
        if (f == nullptr) return false;
        const bool ok = std::fread(buf, 1, len, f) == len;
        std::fclose(f);
        return ok;
    }
    bool write(const uint8_t* buf, size_t len) override {
        if (path.empty()) return true;
        const std::string tmp = path + ".tmp";
        FILE* f = std::fopen(tmp.c_str(), "wb");
        if (f == nullptr) return false;
        const bool ok = std::fwrite(buf, 1, len, f) == len;
        return (std::fclose(f) == 0) && ok && std::rename(tmp.c_str(), path.c_str()) == 0;
    }
};

// Reed switch closed for 200 ms once per period, bouncing for a few ms on each edge.
bool reed_closed(uint32_t t_ms, uint32_t period_ms, uint32_t& last_edge_ms) {
    if (period_ms == 0) return false;
    const uint32_t phase = t_ms % period_ms;
    const uint32_t start = t_ms - phase;
    static const uint32_t edges[] = {500, 502, 504, 506, 700, 703, 706};
    bool level = false;
    last_edge_ms = 0;
    for (uint32_t e : edges) {
        if (phase >= e) {
            level = !level;
            last_edge_ms = start + e;
        }
    }
    if (last_edge_ms == 0 && t_ms >= period_ms) last_edge_ms = start - period_ms + edges[6];
    return level;
}

}  // namespace

int main(int argc, char** argv) {
    std::string port;
    FileFlash flash;
    MainsSignal sig;
    sig.noise_counts = 2.0;
    sig.h3 = 0.05;
    sig.h5 = 0.03;
    double speed = 1.0;
    uint32_t gas_period_ms = 0;
    uint32_t reset_reason = 0;  // the SDK's rst_info.reason this boot reports
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        const char* v = argv[i + 1];
        if (k == "--port") port = v;
        else if (k == "--settings") flash.path = v;
        else if (k == "--freq") sig.freq_hz = std::atof(v);
        else if (k == "--vrms") sig.vrms = std::atof(v);
        else if (k == "--noise") sig.noise_counts = std::atof(v);
        else if (k == "--wiring-cal") sig.cal = std::atof(v);  // the trim's true V per count
        else if (k == "--speed") speed = std::atof(v);
        else if (k == "--gas-period-ms") gas_period_ms = static_cast<uint32_t>(std::atol(v));
        else if (k == "--reset-reason") reset_reason = static_cast<uint32_t>(std::atol(v));
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (port.empty() || speed <= 0) {
        std::fprintf(stderr, "usage: %s --port DEVICE [options]\n", argv[0]);
        return 2;
    }
    const int fd = ::open(port.c_str(), O_RDWR | O_NOCTTY);
    if (fd < 0) {
        std::perror(port.c_str());
        return 1;
    }
    termios tio{};
    if (tcgetattr(fd, &tio) == 0) {
        cfmakeraw(&tio);  // no echo, no CR/LF translation: bytes as on a UART
        cfsetspeed(&tio, B115200);
        tcsetattr(fd, TCSANOW, &tio);
    }
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);

    FdOutput out(fd);
    NoRelayHardware relays;
    et1::BoardConfig cfg;
    cfg.reset_cause = et1::reset_cause_name(reset_reason);
    et1::Board board(cfg, out, relays, flash);
    const auto t0 = std::chrono::steady_clock::now();
    // Unwrapped: the board sees millis() wrap after 49.7 days, the ADC must not stop then.
    auto sim_ms = [&]() {
        const auto real = std::chrono::steady_clock::now() - t0;
        return static_cast<uint64_t>(
            std::chrono::duration<double, std::milli>(real).count() * speed);
    };
    board.begin(0);
    uint64_t samples = 0;

    while (!g_stop && !g_port_gone) {
        pollfd p{fd, POLLIN, 0};
        const int r = ::poll(&p, 1, 1);
        const uint64_t sim_now = sim_ms();
        const auto now = static_cast<uint32_t>(sim_now);  // millis() wraps
        if (r > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[256];
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0 && !(n < 0 && (errno == EINTR || errno == EAGAIN))) break;  // closed
            for (ssize_t i = 0; i < n; ++i) board.on_rx_byte(buf[i], now);
        }
        const uint64_t due = sim_now * 2000u / 1000u;  // 2 kHz ADC
        for (; samples < due; ++samples) board.on_adc_sample(sig.next());
        uint32_t edge = 0;
        const bool closed = reed_closed(now, gas_period_ms, edge);
        board.on_gas_input(closed, edge, now);
        board.poll(now);
    }

    const et1::ErrorCounters& e = board.errors();
    std::fprintf(stderr,
                 "errors crc=%u frame=%u length=%u bad_cmd=%u bad_arg=%u flash=%u echo=%u "
                 "unanswered=%u\n",
                 e.crc, e.frame, e.length, e.bad_cmd, e.bad_arg, e.flash, e.echo, e.unanswered);
    ::close(fd);
    return 0;
}
