// A tiny unit-test framework (no downloads possible here): TEST registers a function, CHECK*
// record failures without stopping the test, and run_all() prints one line per test.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace minitest {

struct Case {
    const char* name;
    void (*fn)();
};

inline std::vector<Case>& registry() {
    static std::vector<Case> cases;
    return cases;
}

inline int& failures_in_current() {
    static int n = 0;
    return n;
}

struct Registrar {
    Registrar(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

inline void fail(const char* file, int line, const std::string& msg) {
    ++failures_in_current();
    std::printf("    %s:%d: %s\n", file, line, msg.c_str());
}

template <typename A, typename B>
std::string describe(const char* ea, const char* eb, const A& a, const B& b) {
    std::ostringstream s;
    s << ea << " == " << eb << " failed: " << a << " vs " << b;
    return s.str();
}

// Runs the tests whose name contains `filter` (all if null). Returns the process exit code.
inline int run_all(const char* filter) {
    int run = 0;
    int failed = 0;
    for (const Case& c : registry()) {
        if (filter != nullptr && std::strstr(c.name, filter) == nullptr) continue;
        failures_in_current() = 0;
        c.fn();
        ++run;
        const bool ok = failures_in_current() == 0;
        if (!ok) ++failed;
        std::printf("[%s] %s\n", ok ? " OK " : "FAIL", c.name);
    }
    std::printf("%d tests, %d failed\n", run, failed);
    return (failed == 0 && run > 0) ? 0 : 1;  // running nothing is a failure too
}

}  // namespace minitest

#define TEST(name)                                                   \
    static void name();                                              \
    static const minitest::Registrar name##_registrar(#name, &name); \
    static void name()

#define CHECK(cond) \
    do { if (!(cond)) minitest::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); } while (0)

#define CHECK_EQ(a, b)                                                                \
    do {                                                                              \
        const auto va_ = (a);                                                         \
        const auto vb_ = (b);                                                         \
        if (!(va_ == vb_)) minitest::fail(__FILE__, __LINE__, minitest::describe(#a, #b, va_, vb_)); \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                          \
    do {                                                                               \
        const double va_ = (a);                                                        \
        const double vb_ = (b);                                                        \
        if (!(std::fabs(va_ - vb_) <= (tol))) {                                        \
            std::ostringstream s_;                                                     \
            s_ << #a << " ~= " << #b << " failed: " << va_ << " vs " << vb_ << " (tol " \
               << (tol) << ")";                                                        \
            minitest::fail(__FILE__, __LINE__, s_.str());                              \
        }                                                                              \
    } while (0)
