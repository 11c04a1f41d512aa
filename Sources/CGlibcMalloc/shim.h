// glibc's allocator statistics and trimming (malloc.h), which Swift's Glibc module does
// not export: the benchmarks measure state as heap bytes in use and return freed pages.
#include <malloc.h>
