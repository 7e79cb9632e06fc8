#include "gas_counter.h"

namespace et1 {

void GasCounter::update(bool closed, uint32_t last_edge_ms, uint32_t now_ms) {
    if (!started_) {
        // Whatever the level at boot (a magnet parked on the reed), it is not a pulse.
        started_ = true;
        stable_closed_ = closed;
        return;
    }
    // Signed age: an edge the interrupt recorded after `now_ms` was read is not 49 days old
    // (the unsigned difference) but brand new; this also holds across millis() wrapping.
    const int32_t age_ms = static_cast<int32_t>(now_ms - last_edge_ms);
    if (closed == stable_closed_ || age_ms < static_cast<int32_t>(debounce_ms_)) return;
    stable_closed_ = closed;
    if (closed) ++pulses_;
}

}  // namespace et1
