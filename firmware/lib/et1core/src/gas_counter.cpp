#include "gas_counter.h"

namespace et1 {

void GasCounter::update(bool closed, uint32_t last_edge_ms, uint32_t now_ms) {
    if (!started_) {
        // Whatever the level at boot (a magnet parked on the reed), it is not a pulse.
        started_ = true;
        stable_closed_ = closed;
        return;
    }
    if (closed == stable_closed_ || now_ms - last_edge_ms < debounce_ms_) return;
    stable_closed_ = closed;
    if (closed) ++pulses_;
}

}  // namespace et1
