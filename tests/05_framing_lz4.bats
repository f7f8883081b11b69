#!/usr/bin/env bats
# Lesson 5 -- the LZ4 block codec (lz4.c, through lz4cat): round trips, the end-of-block rules,
# interoperation both ways with the reference liblz4 (python3-lz4), one test per decoder error,
# and a short run of the libFuzzer harness.

load helpers

L=05_framing
PY=/usr/bin/python3 # the system one: a pyenv python3 on PATH would not have the lz4 module

setup() {
    common_setup
    LZ4CAT=$(bin $L lz4cat)
}

size_of() { stat -c %s "$1"; }

# round_trip FILE: compress with lz4cat into FILE.lz4, decompress, compare with FILE.
round_trip() {
    "$LZ4CAT" -c <"$1" >"$1.lz4"
    "$LZ4CAT" -d --size "$(size_of "$1")" <"$1.lz4" >"$1.back"
    cmp "$1" "$1.back"
}

need_reference() {
    "$PY" -c 'import lz4.block' 2>/dev/null ||
        skip "python3-lz4 is not installed (apt-get install python3-lz4)"
}

# ref_compress IN OUT [MODE]: the reference's raw block (no size prefix); MODE default,
# fast or high_compression.
ref_compress() {
    "$PY" -c 'import sys, lz4.block
data = open(sys.argv[1], "rb").read()
block = lz4.block.compress(data, store_size=False, mode=sys.argv[3])
open(sys.argv[2], "wb").write(block)' "$1" "$2" "${3:-default}"
}

# ref_decompress IN SIZE OUT: the reference decodes a raw block of SIZE original bytes.
ref_decompress() {
    "$PY" -c 'import sys, lz4.block
block = open(sys.argv[1], "rb").read()
data = lz4.block.decompress(block, uncompressed_size=int(sys.argv[2]))
open(sys.argv[3], "wb").write(data)' "$1" "$2" "$3"
}

# The three bodies the ratios are measured on: source text, noise, one line repeated.
make_text() { cat "$ROOT"/$L/*.[ch] "$ROOT"/README.md >"$1"; }
make_random() { head -c 1048576 /dev/urandom >"$1"; }
make_repetitive() { yes 'lesson 5: a 25-byte header, then the body' | head -c 10485760 >"$1"; }

# decode_error SIZE REASON: lz4cat -d --size SIZE on $T/block fails with exit 1 and exactly
# "lz4cat: REASON" on stderr, nothing on stdout.
decode_error() {
    run "$LZ4CAT" -d --size "$1" <"$T/block"
    [ "$status" -eq 1 ]
    [ "$output" = "lz4cat: $2" ]
}

@test "source text round-trips and shrinks" {
    make_text "$T/text"
    round_trip "$T/text"
    [ "$(size_of "$T/text.lz4")" -lt $(($(size_of "$T/text") * 2 / 3)) ]
}

@test "1 MiB of random bytes round-trips and grows no more than n + n/255 + 16" {
    make_random "$T/random"
    round_trip "$T/random"
    [ "$(size_of "$T/random.lz4")" -le $((1048576 + 1048576 / 255 + 16)) ]
}

@test "a 10 MiB repetitive body round-trips and compresses below 1% of its size" {
    make_repetitive "$T/rep"
    round_trip "$T/rep"
    [ "$(size_of "$T/rep.lz4")" -lt 104858 ]
}

@test "empty, 1-byte and 12-byte inputs are one run of literals" {
    : >"$T/empty"
    round_trip "$T/empty"
    [ "$(od -An -tx1 "$T/empty.lz4" | tr -d ' \n')" = 00 ]
    printf x >"$T/one"
    round_trip "$T/one"
    [ "$(od -An -tx1 "$T/one.lz4" | tr -d ' \n')" = 1078 ]
    # 12 equal bytes, but too short for a match: token 0xc0 (12 literals) and the 12 bytes
    printf aaaaaaaaaaaa >"$T/twelve"
    round_trip "$T/twelve"
    [ "$(od -An -tx1 "$T/twelve.lz4" | tr -d ' \n')" = c0616161616161616161616161 ]
}

@test "13 equal bytes: one literal, a 7-byte match at offset 1, the last 5 bytes as literals" {
    printf aaaaaaaaaaaaa >"$T/thirteen"
    round_trip "$T/thirteen"
    # 0x13: 1 literal 'a', match 3+4 = 7 bytes; offset 01 00; 0x50: 5 literals 'aaaaa'
    [ "$(od -An -tx1 "$T/thirteen.lz4" | tr -d ' \n')" = 13610100506161616161 ]
}

@test "a repeat exactly 65535 bytes back is matched, one 65536 bytes back is not" {
    # The zeros in between compress as one long match, which adds nothing to the hash table,
    # so the only thing keeping the second copy of the sentence literal is the distance.
    sentence='The quick brown fox jumps over the lazy dog; 0123456789 ABCDEFGHIJKLM'
    for distance in 65535 65536; do
        { printf '%s' "$sentence"; head -c $((distance - ${#sentence})) /dev/zero
          printf '%s' "$sentence"; } >"$T/far$distance"
        round_trip "$T/far$distance"
    done
    # at 65535 the second sentence costs a 3-byte reference and its last 5 bytes as literals;
    # at 65536 it is all literals again
    near=$(size_of "$T/far65535.lz4") far=$(size_of "$T/far65536.lz4")
    [ $((far - near)) -ge $((${#sentence} - 10)) ]
}

@test "random data repeated 100 KiB apart, too far for any offset, round-trips" {
    head -c 102400 /dev/urandom >"$T/chunk"
    cat "$T/chunk" "$T/chunk" "$T/chunk" >"$T/far"
    round_trip "$T/far"
}

@test "blocks from lz4cat decompress with the reference liblz4 (python3-lz4)" {
    need_reference
    make_text "$T/text"
    make_random "$T/random"
    make_repetitive "$T/rep"
    printf aaaaaaaaaaaaa >"$T/thirteen"
    { head -c 1000 /dev/urandom; head -c 70000 /dev/zero; head -c 1000 "$T/random"; } >"$T/far"
    for f in text random rep thirteen far; do
        "$LZ4CAT" -c <"$T/$f" >"$T/$f.lz4"
        ref_decompress "$T/$f.lz4" "$(size_of "$T/$f")" "$T/$f.ref-back"
        cmp "$T/$f" "$T/$f.ref-back"
    done
}

@test "the reference accepts lz4cat's blocks for every size from 0 to 80: end-of-block rules kept" {
    need_reference
    # The reference decoder refuses a block whose last match ends within 5 bytes of the end;
    # short inputs full of repeats are where a compressor would be tempted to break the rules.
    "$PY" -c 'import sys
for n in range(81):
    open("%s/zeros%d" % (sys.argv[1], n), "wb").write(bytes(n))
    open("%s/abc%d" % (sys.argv[1], n), "wb").write((b"abcabcab" * 11)[:n])' "$T"
    for n in $(seq 0 80); do
        "$LZ4CAT" -c <"$T/zeros$n" >"$T/zeros$n.lz4"
        "$LZ4CAT" -c <"$T/abc$n" >"$T/abc$n.lz4"
    done
    "$PY" -c 'import sys, lz4.block
for n in range(81):
    for name in ("zeros", "abc"):
        path = "%s/%s%d" % (sys.argv[1], name, n)
        data = open(path, "rb").read()
        back = lz4.block.decompress(open(path + ".lz4", "rb").read(), uncompressed_size=n)
        assert back == data, path' "$T"
}

@test "blocks from the reference liblz4, default and high-compression modes, decompress with lz4cat" {
    need_reference
    make_text "$T/text"
    make_random "$T/random"
    make_repetitive "$T/rep"
    printf aaaaaaaaaaaaa >"$T/thirteen"
    for f in text random rep thirteen; do
        for mode in default high_compression; do
            ref_compress "$T/$f" "$T/$f.$mode" "$mode"
            "$LZ4CAT" -d --size "$(size_of "$T/$f")" <"$T/$f.$mode" >"$T/$f.$mode.back"
            cmp "$T/$f" "$T/$f.$mode.back"
        done
    done
}

@test "overlapping matches repeat their pattern: offset 1 and offset 2" {
    # 0x1f: 1 literal 'a', match 15+4 plus an extra byte 0x51 (81) = 100 bytes at offset 1
    printf '\x1fa\x01\x00\x51\x00' >"$T/block"
    "$LZ4CAT" -d --size 101 <"$T/block" >"$T/out"
    [ "$(cat "$T/out")" = "$(printf 'a%.0s' $(seq 101))" ]
    # 0x2e: 2 literals 'ab', match 14+4 = 18 bytes at offset 2
    printf '\x2eab\x02\x00\x00' >"$T/block"
    "$LZ4CAT" -d --size 20 <"$T/block" >"$T/out"
    [ "$(cat "$T/out")" = abababababababababab ]
}

@test "a match offset of 0 is a protocol error" {
    printf '\x10a\x00\x00' >"$T/block"
    decode_error 9 "lz4: match offset 0"
}

@test "a match offset before the start of the output is a protocol error" {
    # one byte written so far, offset 2
    printf '\x10a\x02\x00\x00' >"$T/block"
    decode_error 9 "lz4: match offset before the start of the output"
}

@test "a literal run longer than the rest of the input is a protocol error" {
    # 5 literals announced, 3 present
    printf '\x50abc' >"$T/block"
    decode_error 5 "lz4: literal run past the end of the input"
}

@test "a match that would pass origin_size is a protocol error" {
    # 1 literal + a 4-byte match = 5 bytes, but origin_size is 4
    printf '\x10a\x01\x00\x00' >"$T/block"
    decode_error 4 "lz4: output longer than origin_size"
}

@test "a length of many 255 bytes is refused as soon as it passes origin_size" {
    # 15 + 255 * 1000 literals claimed by a 1002-byte block, origin_size 100
    { printf '\xf0'; head -c 1000 /dev/zero | tr '\0' '\377'; printf '\x05'; } >"$T/block"
    decode_error 100 "lz4: output longer than origin_size"
}

@test "a block that ends before origin_size bytes is a protocol error" {
    printf '\x30abc' >"$T/block"
    decode_error 5 "lz4: output shorter than origin_size"
}

@test "bytes after the last sequence are a protocol error" {
    printf hello | "$LZ4CAT" -c >"$T/block"
    printf '\x00' >>"$T/block"
    decode_error 5 "lz4: trailing bytes after the last sequence"
}

@test "a block cut in the middle of an offset, or empty, is a truncated sequence" {
    printf '\x10a\x01' >"$T/block"
    decode_error 9 "lz4: truncated sequence"
    : >"$T/block"
    decode_error 5 "lz4: truncated sequence"
}

@test "lz4cat: -d without --size, and -c with it, are usage errors (exit 2, one line)" {
    run "$LZ4CAT" -d </dev/null
    [ "$status" -eq 2 ]
    [ "$output" = "lz4cat: --size goes with -d, and -d needs it" ]
    run "$LZ4CAT" -c --size 3 </dev/null
    [ "$status" -eq 2 ]
    [ "$output" = "lz4cat: --size goes with -d, and -d needs it" ]
    run "$LZ4CAT" -d --size 12x </dev/null
    [ "$status" -eq 2 ]
    [ "$output" = "lz4cat: --size wants a number in 0..67108864, not '12x'" ]
    run "$LZ4CAT" --help
    [ "$status" -eq 0 ]
    [[ ${lines[0]} == "usage: lz4cat -c"* ]]
}

@test "lz4cat refuses input over 64 MiB in one line" {
    run bash -c "head -c 67108865 /dev/zero | '$LZ4CAT' -c >/dev/null"
    [ "$status" -eq 1 ]
    [ "$output" = "lz4cat: input longer than 64 MiB (67108864 bytes)" ]
}

@test "the libFuzzer harness runs 5 s on the codec without a crash" {
    run timeout 180 make --no-print-directory -C "$ROOT/fuzz" run FUZZ_SECONDS=5 FUZZERS=lz4_fuzz
    if [[ $output == *"clang with libFuzzer is not available"* ]]; then
        skip "clang with libFuzzer is not available (install clang)"
    fi
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    re='^fuzz lz4_fuzz: ([0-9]+) executions in [0-9]+ s, 0 crashes$'
    [[ ${lines[-1]} =~ $re ]]
    [ "${BASH_REMATCH[1]}" -gt 1000 ]
}
