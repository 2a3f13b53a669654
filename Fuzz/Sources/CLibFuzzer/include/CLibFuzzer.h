#ifndef PEERWAY_CLIBFUZZER_H
#define PEERWAY_CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (in libclang_rt.fuzzer, linked by -sanitize=fuzzer). The fuzzer's
/// executable calls it from its own entry point: SwiftPM points an executable's `main` at
/// `<module>_main`, which leaves no room for libFuzzer's `main`.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
