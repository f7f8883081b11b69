/* lz4.h -- the LZ4 block format: compress a buffer, decompress one with every bound checked
 *
 * A raw LZ4 block carries no size of its own: whoever decompresses it must learn the original
 * size elsewhere (in the lesson protocol, the header's origin_size) and give it here. Blocks
 * written by lz4_compress() decompress with the reference liblz4 and every LZ4 binding, and
 * lz4_decompress() reads theirs.
 */
#ifndef LZ4_H
#define LZ4_H

#include <stddef.h>
#include <stdint.h>

/* The most bytes lz4_compress() can write for n input bytes: n + n/255 + 16, the cost of
 * incompressible data sent as one long run of literals. */
size_t lz4_compress_bound(size_t n);

/* Compress src[0..n) into dst, which has room for lz4_compress_bound(n) bytes.
 * Returns the compressed size (always >= 1). Never fails. */
size_t lz4_compress(const uint8_t *src, size_t n, uint8_t *dst);

/* Decompress a raw block into exactly origin_size bytes at dst.
 * Returns NULL on success, or a short English reason for a protocol error
 * ("lz4: match offset 0", "lz4: output shorter than origin_size"...).
 * Never reads outside src[0..src_len) nor writes outside dst[0..origin_size), whatever the
 * block contains: it is input from the network. */
const char *lz4_decompress(const uint8_t *src, size_t src_len, uint8_t *dst, size_t origin_size);

#endif
