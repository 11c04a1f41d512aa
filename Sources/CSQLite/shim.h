#include <sqlite3.h>

// Hints the CPU to start loading a cache line we will read soon. CAMFAStore uses it while
// writing large checkpoints, whose values are scattered over the heap: overlapping those
// memory loads with SQLite's work saves a cache miss per row.
static inline void camfa_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}
