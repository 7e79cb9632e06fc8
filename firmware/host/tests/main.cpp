#include "minitest.h"

// Usage: et1core_tests [name-filter]
int main(int argc, char** argv) { return minitest::run_all(argc > 1 ? argv[1] : nullptr); }
