/* lz4_fuzz.c -- libFuzzer target for the LZ4 codec of lesson 5
 *
 * Two properties, checked on every input libFuzzer invents:
 *  (a) the decoder survives anything: the first 4 bytes (big-endian, as in the lesson header)
 *      give origin_size (mod 1 MiB, plus 1), the rest is the block. The output buffer is
 *      malloc'd to exactly origin_size, so AddressSanitizer catches a write one byte past it;
 *      an error reason is a fine answer, a crash is not.
 *  (b) round trip: compressing the input and decompressing the result gives back the input,
 *      byte for byte, and the compressed size stays within lz4_compress_bound().
 */
#include "lz4.c" /* the codec itself, compiled into this program with the fuzzer's flags */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FUZZ_ORIGIN_BYTES (1u << 20)

static void fuzz_decode(const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    uint32_t prefix = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 |
                      (uint32_t)data[3];
    size_t origin_size = prefix % MAX_FUZZ_ORIGIN_BYTES + 1;
    uint8_t *out = malloc(origin_size);
    if (out == NULL)
        abort();
    (void)lz4_decompress(data + 4, size - 4, out, origin_size);
    free(out);
}

static void fuzz_round_trip(const uint8_t *data, size_t size)
{
    size_t bound = lz4_compress_bound(size);
    uint8_t *packed = malloc(bound);
    uint8_t *back = malloc(size > 0 ? size : 1);
    if (packed == NULL || back == NULL)
        abort();

    size_t packed_len = lz4_compress(data, size, packed);
    if (packed_len < 1 || packed_len > bound) {
        fprintf(stderr, "lz4_fuzz: %zu bytes compressed to %zu (bound %zu)\n", size, packed_len,
                bound);
        abort();
    }
    const char *reason = lz4_decompress(packed, packed_len, back, size);
    if (reason != NULL) {
        fprintf(stderr, "lz4_fuzz: own block of %zu bytes rejected: %s\n", size, reason);
        abort();
    }
    if (size > 0 && memcmp(back, data, size) != 0) {
        fprintf(stderr, "lz4_fuzz: round trip of %zu bytes changed the data\n", size);
        abort();
    }
    free(packed);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_decode(data, size);
    fuzz_round_trip(data, size);
    return 0;
}
