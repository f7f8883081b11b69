#!/usr/bin/env bats
# Lesson 5 -- framing: sticky and half packets through the re-chunking
# proxy, the lesson protocol, LZ4 bodies, protocol errors, bounded memory.

load helpers

L=05_framing
Z16='\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'

# proxy ARGS...: a chunkproxy in front of the server on $PORT; sets PPORT.
proxy() {
    local server_port=$PORT
    start_server proxy "$(bin tools chunkproxy)" --upstream "127.0.0.1:$PORT" --port 0 "$@"
    PPORT=$PORT
    PORT=$server_port
}

@test "sticky: 100 messages written in one write arrive as 100 intact messages" {
    start_server server "$(bin $L server)" --port 0 -v
    run client --port "$PORT" --one-write --repeat 100 --quiet msg
    [ "$status" -eq 0 ]
    [[ $output == *"client: 100 messages sent, 100 replies, all intact"* ]]
    # 100 frames of 25 + 3 bytes came in through one recv
    grep -qE '^server: recv fd=[0-9]+ -> 2800 bytes \(2800 buffered\)$' "$T/server.err"
    [ "$(grep -c '^server: frame complete' "$T/server.err")" -eq 100 ]
}

@test "sticky: the naive receiver takes 100 coalesced replies for one message" {
    start_server server "$(bin $L server)" --port 0
    proxy --direction down --coalesce-bytes 2800 --coalesce-ms 2000
    run client --port "$PPORT" --naive --one-write --repeat 100 msg
    [ "$status" -eq 0 ]
    [[ ${lines[1]} == 'naive recv #1: 2800 bytes: "\x00\x00\x00\x00\x03\x00'* ]]
    [ "${lines[2]}" = "client: 100 messages sent, 1 recv() call returned them" ]
}

@test "half: the naive receiver prints each byte of a line as a message at --chunk 1" {
    start_server server "$(bin $L server)" --framing lines --port 0
    proxy --direction down --chunk 1 --delay-ms 100 # each byte alone, even on a loaded machine
    run client --framing lines --port "$PPORT" --naive hi
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = 'naive recv #1: 1 byte: "h"' ]
    [ "${lines[2]}" = 'naive recv #2: 1 byte: "i"' ]
    [ "${lines[3]}" = 'naive recv #3: 1 byte: "\r"' ]
    [ "${lines[4]}" = 'naive recv #4: 1 byte: "\n"' ]
    [ "${lines[5]}" = "client: 1 message sent, 4 recv() calls returned them" ]
}

@test "half: at 1-byte chunks both ways, messages and a 64 KiB body arrive intact" {
    start_server server "$(bin $L server)" --port 0
    proxy --chunk 1
    run client --port "$PPORT" --quiet one two "three four" --body-bytes 65536 --pattern random
    [ "$status" -eq 0 ]
    [[ $output == *"client: 4 messages sent, 4 replies, all intact"* ]]
}

@test "half: the header itself split across reads is reassembled" {
    start_server server "$(bin $L server)" --port 0 -v
    proxy --direction up --chunk 1 --delay-ms 10
    run client --port "$PPORT" hello
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = 'reply #1: 5 bytes: "hello"' ]
    # 30 bytes (25 header + 5 body) came in many reads (how many depends on
    # scheduling); some read left an incomplete header buffered...
    [ "$(grep -cE '^server: recv fd=[0-9]+ -> [0-9]+ bytes \(' "$T/server.err")" -ge 5 ]
    grep -qE '^server: recv fd=[0-9]+ -> [0-9]+ bytes \(([1-9]|1[0-9]|2[0-4]) buffered\)$' "$T/server.err"
    # ...and the one frame was complete only with the 30th byte
    [ "$(grep -c '^server: frame complete' "$T/server.err")" -eq 1 ]
    grep -B1 '^server: frame complete' "$T/server.err" | grep -qE '\(30 buffered\)$'
}

@test "half: 1 MiB and 10 MiB bodies cut at random (seeded) both ways arrive intact" {
    start_server server "$(bin $L server)" --port 0
    proxy --chunk random:1-4000 --seed 42
    run client --port "$PPORT" --quiet --body-bytes 1048576 --pattern random
    [ "$status" -eq 0 ]
    [[ $output == *"all intact"* ]]
    run client --port "$PPORT" --quiet --body-bytes 10485760 --pattern random --seed 3
    [ "$status" -eq 0 ]
    [[ $output == *"client: 1 message sent, 1 reply, all intact"* ]]
}

# leftover_then BODY_BYTES: one connection sends, in a first write, a whole
# 150-byte frame "a..." then the header of a BODY_BYTES frame "b..." (21 to
# 65535 bytes) with the first 20 bytes of its body; and, once the server has
# read that (its 256-byte input buffer now holds 45 unread bytes behind 175
# consumed ones), the rest of the body in a second write. The server echoes
# raw frames byte for byte: the reply must be exactly what was sent.
leftover_then() {
    local a b20 rest size first
    a=$(printf 'a%.0s' {1..150})
    b20=$(printf 'b%.0s' {1..20})
    rest=$(printf 'b%.0s' $(seq $(($1 - 20))))
    size=$(printf '\\x%02x\\x%02x' $(($1 >> 8)) $(($1 & 255)))
    first="\x00\x00\x00\x00\x96\x00\x00\x00\x00${Z16}${a}\x00\x00\x00${size}\x00\x00\x00\x00${Z16}${b20}"
    start_server server "$(bin $L server)" --port 0 -v
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    printf "$first" >&"$fd"
    wait_until 5 server_read_all "$PORT" 1
    wait_until 5 grep -qE '^server: recv fd=[0-9]+ -> 220 bytes \(220 buffered\)$' "$T/server.err"
    printf '%s' "$rest" >&"$fd"
    printf "$first%s" "$rest" >"$T/expected"
    # dd bs=1 writes each byte as it comes: what arrived is kept even on a timeout
    timeout 5 dd bs=1 count="$(stat -c %s "$T/expected")" status=none <&"$fd" >"$T/reply" ||
        echo "no whole reply within 5 s"
    exec {fd}>&-
}

@test "buffer: a partial frame left behind a consumed one is intact after compaction moves it to the front" {
    # 80 more bytes: 36 fit at the end, 44 do not; 125 unread fit in 256 once moved to the front
    leftover_then 100
    cmp "$T/expected" "$T/reply"
    # and the bytes came as planned: the second read found the 45 left over
    grep -qE '^server: recv fd=[0-9]+ -> 80 bytes \(125 buffered\)$' "$T/server.err"
}

@test "buffer: a partial frame left behind a consumed one is intact after the buffer grows" {
    # 980 more bytes: 1025 unread do not fit in 256 even at the front, the buffer grows
    leftover_then 1000
    cmp "$T/expected" "$T/reply"
    # and the bytes came as planned: the second read found the 45 left over
    grep -qE '^server: recv fd=[0-9]+ -> 980 bytes \(1025 buffered\)$' "$T/server.err"
}

@test "compressed round trip: text, random bytes and a repetitive 10 MiB body" {
    start_server server "$(bin $L server)" --port 0 -v
    for args in "--pattern text --body-bytes 1048576" "--pattern random --body-bytes 1048576" \
        "--pattern repeat --body-bytes 10485760"; do
        run client --port "$PORT" --compress --quiet $args
        [ "$status" -eq 0 ] || { echo "$args: $output"; false; }
        [[ $output == *"all intact"* ]]
    done
    # the repetitive body really travelled compressed: far below 10 MiB on the wire
    grep -E '^server: frame complete fd=[0-9]+: [0-9]+ bytes, LZ4 -> 10485760 bytes$' "$T/server.err" |
        awk '{ exit !($5 < 200000) }'
}

@test "compressed messages through the proxy at random chunks arrive intact" {
    start_server server "$(bin $L server)" --port 0
    proxy --chunk random:1-500 --seed 9
    run client --port "$PORT" --compress --quiet hello "hello hello hello hello hello" --body-bytes 300000
    [ "$status" -eq 0 ]
    run client --port "$PPORT" --compress --quiet hello "hello hello hello hello hello" --body-bytes 300000
    [ "$status" -eq 0 ]
    [[ $output == *"client: 3 messages sent, 3 replies, all intact"* ]]
}

# bad_frame BYTES REASON: a connection that sends BYTES is closed with the
# log line REASON, while a client with messages in flight is still served.
bad_frame() {
    start_server server "$(bin $L server)" --port 0
    exec {good}<>"/dev/tcp/127.0.0.1/$PORT"
    printf "\x00\x00\x00\x00\x02\x00\x00\x00\x00${Z16}o" >&"$good" # half of a good frame...
    exec {bad}<>"/dev/tcp/127.0.0.1/$PORT"
    printf "$1" >&"$bad"
    at_eof "$bad"
    # wait_alive: a server that has died will never write the line
    wait_alive "$PID" 5 grep -qE "^server: 127\.0\.0\.1:[0-9]+: protocol error: $2\$" "$T/server.err"
    printf 'k' >&"$good" # ...and its other half: the reply must come
    reply=$(timeout 5 head -c 27 <&"$good" | od -An -tx1 | tr -d ' \n')
    [ "$reply" = "000000000200000000$(printf '00%.0s' {1..16})6f6b" ]
    exec {good}>&- {bad}>&-
}

@test "protocol error: flags 2 closes only that connection" {
    bad_frame "\x02\x00\x00\x00\x05\x00\x00\x00\x00${Z16}hello" 'bad flags \(not 0 or 1\): got 2 = 02'
}

@test "protocol error: origin_size 0" {
    bad_frame "\x00\x00\x00\x00\x00\x00\x00\x00\x00${Z16}" 'origin_size 0: got 0 = 00 00 00 00'
}

@test "protocol error: origin_size 10 MiB + 1" {
    bad_frame "\x00\x00\xa0\x00\x01\x00\x00\x00\x00${Z16}" 'origin_size over 10 MiB: got 10485761 = 00 a0 00 01'
}

@test "protocol error: compress_size 0 with flags 1" {
    bad_frame "\x01\x00\x00\x00\x05\x00\x00\x00\x00${Z16}" 'compress_size 0: got 0 = 00 00 00 00'
}

@test "protocol error: compress_size over 10 MiB with flags 1" {
    bad_frame "\x01\x00\x00\x00\x05\x00\xa0\x00\x01${Z16}" 'compress_size over 10 MiB: got 10485761 = 00 a0 00 01'
}

@test "protocol error: a bad header closes the connection at once, before the body it announces" {
    # flags 2 and a 1000-byte body announced, none of it sent: the header
    # alone is enough to refuse the frame; waiting for the body would wait forever
    bad_frame "\x02\x00\x00\x03\xe8\x00\x00\x00\x00${Z16}" 'bad flags \(not 0 or 1\): got 2 = 02'
}

@test "protocol error: each header field is judged as soon as its bytes are in (flags 2 alone is enough)" {
    # one byte, and the connection stays open: only the check at the first byte can end it
    bad_frame "\x02" 'bad flags \(not 0 or 1\): got 2 = 02'
}

@test "protocol error: origin_size judged at byte 5, before the other 20 header bytes" {
    bad_frame "\x00\x00\xa0\x00\x01" 'origin_size over 10 MiB: got 10485761 = 00 a0 00 01'
}

@test "a text client on the binary port is told so at its first byte: the field's value, its bytes, the text" {
    bad_frame 'hello world' 'bad flags \(not 0 or 1\): got 104 = 68 "h" \(text on a binary port\?\)'
}

@test "a text client on a --framing length port: the length field shown as a number, bytes and text" {
    start_server server "$(bin $L server)" --framing length --port 0
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'hello world' >&"$fd"
    at_eof "$fd"
    exec {fd}>&-
    grep -qxE 'server: 127\.0\.0\.1:[0-9]+: protocol error: length over 10 MiB: got 1751477356 = 68 65 6c 6c "hell" \(text on a binary port\?\)' "$T/server.err"
}

@test "protocol error: a corrupt LZ4 body (match offset 0)" {
    # token 0x10: 1 literal, then a match with offset 0
    bad_frame "\x01\x00\x00\x00\x08\x00\x00\x00\x04${Z16}\x10a\x00\x00" 'lz4: match offset 0'
}

@test "protocol error: a body that decompresses to fewer bytes than origin_size" {
    # token 0x50: 5 literals "hello" = 5 bytes, origin_size says 6
    bad_frame "\x01\x00\x00\x00\x06\x00\x00\x00\x06${Z16}\x50hello" 'lz4: output shorter than origin_size'
}

@test "protocol error: a body that decompresses to more bytes than origin_size" {
    bad_frame "\x01\x00\x00\x00\x04\x00\x00\x00\x06${Z16}\x50hello" 'lz4: output longer than origin_size'
}

@test "a 10 MiB claim sent with 10 bytes does not allocate 10 MiB (50 such connections)" {
    # The optimised build: its memory is what a real server would use.
    start_server server "$ROOT/$L/server" --port 0
    vmdata() { awk '/^VmData:/ { print $2 }' "/proc/$1/status"; }
    before=$(vmdata "$PID")
    fds=()
    for i in $(seq 50); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        printf "\x00\x00\xa0\x00\x00\x00\x00\x00\x00${Z16}0123456789" >&"$fd"
        fds+=("$fd")
    done
    # the server has accepted all 50 and read every byte they sent
    wait_until 10 server_read_all "$PORT" 50
    after=$(vmdata "$PID")
    echo "VmData before $before kB, after $after kB"
    [ $((after - before)) -lt 51200 ] # 50 x 10 MiB would be 512000 kB
    for fd in "${fds[@]}"; do exec {fd}>&-; done
}

@test "framing fixed, lines and length each echo messages intact" {
    start_server fixed "$(bin $L server)" --framing fixed --record-bytes 4 --port 0
    run client --framing fixed --record-bytes 4 --port "$PORT" --quiet abcd efgh --repeat 10
    [[ $output == *"20 messages sent, 20 replies, all intact"* ]]
    start_server lines "$(bin $L server)" --framing lines --port 0
    run client --framing lines --port "$PORT" --quiet "one line" "another line" --one-write
    [[ $output == *"2 messages sent, 2 replies, all intact"* ]]
    start_server length "$(bin $L server)" --framing length --port 0
    run client --framing length --port "$PORT" --quiet --body-bytes 100000 --pattern random
    [[ $output == *"1 message sent, 1 reply, all intact"* ]]
}

@test "lines: a line longer than --max-line without CRLF is a protocol error" {
    start_server server "$(bin $L server)" --framing lines --max-line 8 --port 0
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'abcdefghijklmnop' >&"$fd"
    at_eof "$fd"
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: protocol error: line too long \(no CRLF within --max-line bytes\)$' "$T/server.err"
}

@test "200 concurrent protocol clients through et mode all get their messages back" {
    start_server server "$(bin $L server)" --mode et --port 0
    pids=()
    for i in $(seq 200); do
        "$ROOT/$L/client" --port "$PORT" --quiet --body-bytes 20000 --pattern random --seed "$i" \
            --repeat 3 >"$T/c.$i" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    [ "$(cat "$T"/c.* | grep -c 'all intact')" -eq 200 ]
}

@test "the client rejects --compress with a non-protocol framing" {
    run "$(bin $L client)" --framing lines --compress --port 1 x
    [ "$status" -eq 2 ]
    [ "$output" = "client: --compress needs --framing protocol" ]
}

@test "three 10 MiB messages in one write are all served (the input buffer stays within its limit)" {
    start_server server "$(bin $L server)" --port 0
    run client --port "$PORT" --body-bytes 10485760 --repeat 3 --one-write --quiet
    [ "$status" -eq 0 ]
    [[ $output == *"client: 3 messages sent, 3 replies, all intact"* ]]
    refute grep -q 'input buffer full' "$T/server.err"
}

@test "an incompressible 10 MiB body with --compress round-trips within the protocol's limits" {
    start_server server "$(bin $L server)" --port 0
    run client --port "$PORT" --compress --body-bytes 10485760 --pattern random --quiet
    [ "$status" -eq 0 ]
    [[ $output == *"client: 1 message sent, 1 reply, all intact"* ]]
    refute grep -q 'protocol error' "$T/server.err"
}

@test "the client: getsockopt(SO_ERROR) failing after the connect (strace injects ENOBUFS): one line naming it, exit status 1" {
    connect_so_error_fails $L
}

@test "getsockopt(SO_ERROR) failing after an EPOLLERR (strace injects ENOBUFS) closes that connection with one line naming it; a new client is served" {
    so_error_query_fails $L --framing fixed --record-bytes 14
}
