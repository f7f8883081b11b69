/* lz4cat.c -- compress or decompress one raw LZ4 block between stdin and stdout
 *
 * lz4cat -c             stdin -> one raw block on stdout (no header, no size)
 * lz4cat -d --size N    a raw block on stdin -> its N original bytes on stdout
 *
 * A raw block does not say how long it was before compression, so -d needs --size, just as
 * the lesson server needs the header's origin_size. The tests use this program to check the
 * codec against the reference liblz4 (through python3-lz4), and the lesson text to show what
 * compression does to a message.
 */
#include "lz4.h"
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_INPUT_BYTES  (64L * 1024 * 1024)
#define MAX_OUTPUT_BYTES MAX_INPUT_BYTES
#define READ_CHUNK_BYTES (64 * 1024)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: lz4cat -c [-v] | lz4cat -d --size N [-v]\n"
            "Compresses or decompresses one raw LZ4 block (no frame header) from stdin to "
            "stdout.\n"
            "  -c, --compress     read up to 64 MiB, write the compressed block\n"
            "  -d, --decompress   read a block, write the --size bytes it holds\n"
            "  --size N           the original size of the block (0..%ld)\n"
            "  -v                 print the sizes on stderr\n",
            MAX_OUTPUT_BYTES);
}

/* Read all of stdin into a malloc'd buffer, or exit with one line if it is longer than
 * MAX_INPUT_BYTES: a program that buffers its input must put a bound on it. */
static uint8_t *read_all(size_t *len)
{
    size_t cap = READ_CHUNK_BYTES, used = 0;
    uint8_t *buf = malloc(cap);

    if (buf == NULL)
        die("malloc");
    for (;;) {
        if (used == cap) {
            /* room for one byte past the limit: reading it is how we notice the excess */
            cap = cap * 2 > (size_t)MAX_INPUT_BYTES ? (size_t)MAX_INPUT_BYTES + 1 : cap * 2;
            uint8_t *bigger = realloc(buf, cap);
            if (bigger == NULL)
                die("realloc");
            buf = bigger;
        }
        ssize_t n = read(STDIN_FILENO, buf + used, cap - used);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            die("read stdin");
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > (size_t)MAX_INPUT_BYTES)
            die_msg("input longer than 64 MiB (%ld bytes)", MAX_INPUT_BYTES);
    }
    *len = used;
    return buf;
}

static void write_all(const uint8_t *buf, size_t len)
{
    if (writen(STDOUT_FILENO, buf, len) == -1)
        die("write stdout");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"compress", no_argument, NULL, 'c'},   {"decompress", no_argument, NULL, 'd'},
        {"size", required_argument, NULL, 's'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    int mode = 0, c;
    long size = -1;

    prog_name = "lz4cat";
    while ((c = getopt_long(argc, argv, "cds:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
        case 'd': mode = c; break;
        case 's': size = parse_number("--size", optarg, 0, MAX_OUTPUT_BYTES); break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (mode == 0 || optind < argc) {
        usage(stderr);
        return 2;
    }
    if ((mode == 'd') != (size >= 0)) {
        fprintf(stderr, "lz4cat: --size goes with -d, and -d needs it\n");
        return 2;
    }

    size_t in_len;
    uint8_t *in = read_all(&in_len);
    size_t out_len = mode == 'c' ? lz4_compress_bound(in_len) : (size_t)size;
    uint8_t *out = malloc(out_len > 0 ? out_len : 1);
    if (out == NULL)
        die("malloc");

    const char *reason = NULL;
    if (mode == 'c') {
        out_len = lz4_compress(in, in_len, out);
        trace("compressed %zu -> %zu bytes", in_len, out_len);
    } else {
        reason = lz4_decompress(in, in_len, out, out_len);
        if (reason == NULL)
            trace("decompressed %zu -> %zu bytes", in_len, out_len);
    }
    if (reason != NULL)
        fprintf(stderr, "lz4cat: %s\n", reason); /* the line the lesson server would log */
    else
        write_all(out, out_len);
    free(in);
    free(out);
    return reason != NULL ? 1 : 0;
}
