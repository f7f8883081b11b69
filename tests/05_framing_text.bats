#!/usr/bin/env bats
# Lesson 5's texts: every command lessons/05_framing.md and
# lessons/protocol.md print is run here, exactly as printed, in the
# situation the text sets up (a line server, a traced protocol server, the
# re-chunking proxy in front of it), and its output is checked against what
# the text says it shows. The two test vectors of protocol.md are checked
# byte for byte against the server, the client and the LZ4 codec.

load helpers

L=05_framing
MD=05_framing.md
TEXT='hello hello hello hello hello' # the body of test vector 2

# doc_output MD 'COMMAND': the lines a text shows under "$ COMMAND", up to
# the end of that code block. (The command goes through the environment:
# awk -v would turn its \x00 into a real NUL.)
doc_output() {
    CMD="\$ $2" awk '$0 == ENVIRON["CMD"] { on = 1; next } on && /^```/ { exit } on' "$(doc_path "$1")"
}

# The two test vectors, as the commands of protocol.md print them.
RAW_CMD='(exec 3<>/dev/tcp/127.0.0.1/$PORT; printf "\x00\x00\x00\x00\x05\x00\x00\x00\x00" >&3; head -c 16 /dev/zero >&3; printf hello >&3; head -c 30 <&3) | xxd -g1 -c25'
LZ4_CMD='(exec 3<>/dev/tcp/127.0.0.1/$PORT; printf "\x01\x00\x00\x00\x1d\x00\x00\x00\x0f" >&3; head -c 16 /dev/zero >&3; printf "hello hello hello hello hello" | 05_framing/lz4cat -c >&3; head -c 40 <&3) | xxd -g1 -c25'

# vector_hex 'COMMAND': the documented dump under that command, as plain hex.
vector_hex() {
    doc_output protocol.md "$1" | xxd -r | xxd -p | tr -d '\n'
}

# annotated_hex N: the bytes column of the N-th "offset  bytes  field" table
# of protocol.md, as plain hex; fails if an offset does not follow on from
# the bytes before it.
annotated_hex() {
    awk -v want="$1" '
        /^offset +bytes +field$/ { n++; on = (n == want); pos = 0; next }
        on && /^```/ { exit }
        on {
            if ($1 != pos) { print "offset " $1 " where " pos " was expected" > "/dev/stderr"; exit 1 }
            for (i = 2; i <= NF && $i ~ /^[0-9a-f][0-9a-f]$/; i++) { printf "%s", $i; pos++ }
        }' "$(doc_path protocol.md)"
}

# exchange_hex HEX BYTES: send HEX to the server on $PORT, print the first
# BYTES bytes of the reply as plain hex (5 s bound).
exchange_hex() {
    local fd
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    xxd -r -p <<<"$1" >&"$fd"
    timeout 5 head -c "$2" <&"$fd" | xxd -p | tr -d '\n'
    exec {fd}>&-
}

# captured_hex SIZE CLIENT_ARGS...: the first SIZE bytes the client sends,
# caught by lesson 1's readn receiver, as plain hex.
captured_hex() {
    local size=$1 rport escaped
    shift
    start_server capture "$(bin $L receiver)" --mode readn --size "$size" --port 0
    rport=$PORT
    timeout 20 "$(bin $L client)" --port "$rport" "$@" >/dev/null 2>&1 || true
    wait_exit "$PID" 5 >/dev/null || true
    escaped=$(sed -n "s/^message #1 ($size bytes): \"\\(.*\\)\"\$/\\1/p" "$T/capture.out")
    [ -n "$escaped" ] || return 1
    printf '%b' "$escaped" | xxd -p | tr -d '\n'
}

# naive_bytes: the naive client's recv lines in $output, joined (escaped form).
naive_bytes() {
    sed -n 's/^naive recv #[0-9]*: [0-9]* bytes*: "\(.*\)"$/\1/p' <<<"$output" | tr -d '\n'
}

# python3 with the reference LZ4 binding (python3-lz4), if there is one.
python_lz4() {
    local py
    for py in python3 /usr/bin/python3; do
        if "$py" -c 'import lz4.block' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

# ---- lessons/05_framing.md ----

@test "make lesson-5 && ./run builds the lesson and tours sticky, half and errors within 15 s" {
    fresh_copy_built tools # the tools built already: this test reads the lesson's own cc lines
    doc_cmd 05_framing.md 'make lesson-5 && ./run'
    [ "$status" -eq 0 ]
    [ "$DOC_SECONDS" -le 15 ]
    [[ $output == *"[framed] client: 3 messages sent, 3 replies, all intact"* ]]
    [[ $output == *"protocol error: bad flags (not 0 or 1)"* ]]
    [[ $output == *"lesson 5 (05_framing) is built: type ./run (or ./run --help)"* ]]
    [[ $output == *'[naive] naive recv #1: 17 bytes: "one\r\ntwo\r\nthree\r\n"'* ]]
    [[ $output == *"[naive] client: 2 messages sent, 8 recv() calls returned them"* ]]
    [[ $output == *"protocol error: lz4: output longer than origin_size"* ]]
    [[ $output == *'[good] "ping 7" -> "ping 7"'* ]]
}

@test "./run sticky: the naive client gets three lines in one recv, the framed one three messages" {
    doc_cmd 05_framing.md './run sticky'
    [ "$status" -eq 0 ]
    [[ $output == *'[naive] naive recv #1: 17 bytes: "one\r\ntwo\r\nthree\r\n"'* ]]
    [[ $output == *"[naive] client: 3 messages sent, 1 recv() call returned them"* ]]
    [[ $output == *'[framed] reply #1: 3 bytes: "one"'* ]]
    [[ $output == *'[framed] reply #2: 3 bytes: "two"'* ]]
    [[ $output == *'[framed] reply #3: 5 bytes: "three"'* ]]
    [[ $output =~ \[framed\]\ client:\ 3\ messages\ sent,\ 3\ replies,\ all\ intact\ \(1\ recv\ call\) ]]
}

@test "./run half: 8 one-byte reads for the naive client, two intact lines and intact protocol frames" {
    doc_cmd_shared 05_framing.md './run half'
    [ "$status" -eq 0 ]
    [ "$(grep -cE '\[naive\] naive recv #[1-8]: 1 byte: ' <<<"$output")" -eq 8 ]
    [[ $output == *'[naive] naive recv #3: 1 byte: "\r"'* ]]
    [[ $output == *"[naive] client: 2 messages sent, 8 recv() calls returned them"* ]]
    [[ $output == *'[framed] reply #1: 2 bytes: "hi"'* ]]
    [[ $output == *'[framed] reply #2: 2 bytes: "yo"'* ]]
    [[ $output == *"[framed] client: 2 messages sent, 2 replies, all intact (8 recv calls)"* ]]
    grep -qE '\[framed\] client: 3 messages sent, 3 replies, all intact \([0-9]+ recv calls?\)$' <<<"$output"
    grep -qE '\[framed\] client: 1 message sent, 1 reply, all intact \([0-9]+ recv calls?\)$' <<<"$output"
}

@test "./run half: the traced server reads one frame in pieces, the first inside the header, and completes it only at its 39th byte" {
    doc_cmd_shared 05_framing.md './run half'
    [ "$status" -eq 0 ]
    traced=$(sed -n '/One protocol frame/,/The same through/p' <<<"$output" | grep '^  \[server\] server: ')
    echo "$traced"
    buffered=$(sed -nE 's/.* recv fd=[0-9]+ -> [0-9]+ bytes \(([0-9]+) buffered\)$/\1/p' <<<"$traced")
    # the header was cut: the first read held less than its 25 bytes
    [ "$(head -n 1 <<<"$buffered")" -lt 25 ]
    [ "$(wc -l <<<"$buffered")" -ge 2 ]
    [ "$(tail -n 1 <<<"$buffered")" -eq 39 ]
    # one frame, complete right after the read that brought byte 39, not before
    [ "$(grep -c 'frame complete' <<<"$traced")" -eq 1 ]
    [ "$(grep -A1 ' recv fd=[0-9]* -> [0-9]* bytes (39 buffered)$' <<<"$traced" | tail -n 1 | sed 's/.*server: //')" = "$(grep 'frame complete' <<<"$traced" | sed 's/.*server: //')" ]
    [[ $output == *'[framed] reply #1: 14 bytes: "hello, framing"'* ]]
}

@test "./run server --framing lines --max-line 16, as the text starts it, prints its port first" {
    # doc_cmd 05_framing.md './run server --framing lines --max-line 16 --port 0'
    # (it runs until stopped, so it is started in the background here)
    printed_in $MD './run server --framing lines --max-line 16 --port 0'
    start_server server env LESSON=$L BIN_DIR="$BIN_ROOT/$L" "$ROOT/run" server --framing lines --max-line 16 --port 0
    [ "$(head -n 1 "$T/server.out")" = "listening on 127.0.0.1:$PORT" ]
}

@test "against the line server, the naive client's reads hold the three lines glued in one or two pieces" {
    start_server server "$(bin $L server)" --framing lines --max-line 16 --port 0
    export PORT
    doc_cmd 05_framing.md './run client --framing lines --port $PORT --naive one two three'
    [ "$status" -eq 0 ]
    [[ ${lines[0]} =~ ^client:\ connected\ to\ 127\.0\.0\.1:$PORT\ in\ [0-9]+\.[0-9]\ ms$ ]]
    [ "$(naive_bytes)" = 'one\r\ntwo\r\nthree\r\n' ]
    [[ $output =~ client:\ 3\ messages\ sent,\ ([0-9]+)\ recv\(\)\ calls?\ returned\ them ]]
    [ "${BASH_REMATCH[1]}" -ge 1 ]
    [ "${BASH_REMATCH[1]}" -le 3 ]
}

@test "a line longer than --max-line 16 closes the connection with one log line, client exit 1" {
    start_server server "$(bin $L server)" --framing lines --max-line 16 --port 0
    export PORT
    doc_cmd 05_framing.md './run client --framing lines --port $PORT "a line longer than sixteen bytes"'
    [ "$status" -eq 1 ]
    [ "${lines[1]}" = "client: server closed the connection after 0 of 1 replies" ]
    wait_until 5 grep -qE "^server: 127\.0\.0\.1:[0-9]+: protocol error: line too long \(no CRLF within --max-line bytes\)$" "$T/server.err"
}

@test "./run errors: one log line per bad frame, naming what arrived, and the connection open all along is served after each" {
    doc_cmd 05_framing.md './run errors'
    [ "$status" -eq 0 ]
    got=$(sed -n 's/^  \[server\] server: 127\.0\.0\.1:[0-9]*: //p' <<<"$output")
    want=$(printf '%s\n' \
        'protocol error: bad flags (not 0 or 1): got 104 = 68 "h" (text on a binary port?)' \
        'protocol error: bad flags (not 0 or 1): got 2 = 02' \
        'protocol error: origin_size 0: got 0 = 00 00 00 00' \
        'protocol error: origin_size over 10 MiB: got 10485761 = 00 a0 00 01' \
        'protocol error: compress_size 0: got 0 = 00 00 00 00' \
        'protocol error: lz4: output longer than origin_size' \
        'closed in the middle of a message (35 bytes left)')
    [ "$got" = "$want" ]
    # the long-lived client (one connection, opened before the first bad frame)
    # got each of its seven messages back
    good=$(grep '^  \[good\] ' <<<"$output")
    [ "$good" = "$(for i in 1 2 3 4 5 6 7; do echo "  [good] \"ping $i\" -> \"ping $i\""; done)" ]
}

@test "./run server --port 0 -v, as the text starts it, prints its port first" {
    # doc_cmd 05_framing.md './run server --port 0 -v'
    # (it runs until stopped, so it is started in the background here)
    printed_in $MD './run server --port 0 -v'
    start_server server env LESSON=$L BIN_DIR="$BIN_ROOT/$L" "$ROOT/run" server --port 0 -v
    [ "$(head -n 1 "$T/server.out")" = "listening on 127.0.0.1:$PORT" ]
}

@test "the compressed client gets both replies back as LZ4, and the server traces LZ4 -> 5 and -> 23 bytes" {
    start_server server "$(bin $L server)" --port 0 -v
    export PORT
    doc_cmd 05_framing.md './run client --port $PORT --compress hello "hello hello hello hello"'
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = 'reply #1: 5 bytes (LZ4): "hello"' ]
    [ "${lines[2]}" = 'reply #2: 23 bytes (LZ4): "hello hello hello hello"' ]
    [[ ${lines[3]} =~ ^client:\ 2\ messages\ sent,\ 2\ replies,\ all\ intact\ \([0-9]+\ recv\ calls?\)$ ]]
    wait_until 5 grep -qE '^server: frame complete fd=[0-9]+: 15 bytes, LZ4 -> 23 bytes$' "$T/server.err"
    grep -qE '^server: frame complete fd=[0-9]+: 6 bytes, LZ4 -> 5 bytes$' "$T/server.err"
    # two frames, 25 + 6 and 25 + 15 bytes: whatever the reads, 71 bytes came in
    total=$(awk '/^server: recv fd=[0-9]+ -> [0-9]+ bytes \(/ { sum += $5 } END { print sum + 0 }' "$T/server.err")
    [ "$total" -eq 71 ]
}

@test "through tools/chunkproxy --chunk 1 the server sees the header arrive in pieces, then one frame" {
    # doc_cmd 05_framing.md 'tools/chunkproxy --upstream 127.0.0.1:$PORT --port 0 --chunk 1 --delay-ms 10'
    # (it runs until stopped, so it is started in the background here)
    printed_in $MD 'tools/chunkproxy --upstream 127.0.0.1:$PORT --port 0 --chunk 1 --delay-ms 10'
    start_server server "$(bin $L server)" --port 0 -v
    start_server proxy "$(bin tools chunkproxy)" --upstream "127.0.0.1:$PORT" --port 0 --chunk 1 --delay-ms 10
    export PROXY_PORT=$PORT
    [ "$(head -n 1 "$T/proxy.out")" = "listening on 127.0.0.1:$PROXY_PORT" ]
    doc_cmd 05_framing.md './run client --port $PROXY_PORT hello'
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = 'reply #1: 5 bytes: "hello"' ]
    [[ ${lines[2]} =~ ^client:\ 1\ message\ sent,\ 1\ reply,\ all\ intact\ \(([0-9]+)\ recv\ calls?\)$ ]]
    [ "${BASH_REMATCH[1]}" -ge 2 ]
    wait_until 5 grep -qE '^server: frame complete fd=[0-9]+: 5 bytes$' "$T/server.err"
    # the header came in several reads: some read left fewer than 25 bytes buffered
    grep -qE '^server: recv fd=[0-9]+ -> [0-9]+ bytes \(([1-9]|1[0-9]|2[0-4]) buffered\)$' "$T/server.err"
    # and the one frame was complete only with the 30th byte
    [ "$(grep -c '^server: frame complete' "$T/server.err")" -eq 1 ]
    grep -B1 '^server: frame complete' "$T/server.err" | grep -qE '\(30 buffered\)$'
}

@test "lz4cat -c turns the 29-byte text into the 15-byte block the text dumps" {
    doc_cmd 05_framing.md 'printf "hello hello hello hello hello" | ./run lz4cat -c | xxd'
    [ "$status" -eq 0 ]
    [ "$output" = "$(doc_output $MD 'printf "hello hello hello hello hello" | ./run lz4cat -c | xxd')" ]
    [ "$output" = "00000000: 6e68 656c 6c6f 2006 0050 6865 6c6c 6f    nhello ..Phello" ]
}

@test "lz4cat -d --size 29 gives the text back" {
    doc_cmd 05_framing.md 'printf "hello hello hello hello hello" | ./run lz4cat -c | ./run lz4cat -d --size 29'
    [ "$status" -eq 0 ]
    [ "$output" = "$TEXT" ]
    [ "$output" = "$(doc_output $MD 'printf "hello hello hello hello hello" | ./run lz4cat -c | ./run lz4cat -d --size 29')" ]
}

@test "lz4cat -d with a wrong --size refuses, as the text says: 28 too long, 30 too short" {
    block=$(printf '%s' "$TEXT" | "$(bin $L lz4cat)" -c | xxd -p)
    run bash -c "xxd -r -p <<<'$block' | '$(bin $L lz4cat)' -d --size 28"
    [ "$status" -eq 1 ]
    [ "$output" = "lz4cat: lz4: output longer than origin_size" ]
    grep -qF '`lz4cat: lz4: output longer than' "$ROOT/lessons/$MD"
    run bash -c "xxd -r -p <<<'$block' | '$(bin $L lz4cat)' -d --size 30"
    [ "$status" -eq 1 ]
    [ "$output" = "lz4cat: lz4: output shorter than origin_size" ]
}

@test "every command printed in lessons/05_framing.md is run by a test" { every_doc_cmd_is_tested 05_framing.md; }

# ---- lessons/protocol.md ----

@test "05_framing/server --port 0, as protocol.md starts it, prints its port first" {
    # doc_cmd protocol.md '05_framing/server --port 0'
    # (it runs until stopped, so it is started in the background here)
    printed_in protocol.md '05_framing/server --port 0'
    start_server server "$(bin $L server)" --port 0
    [ "$(head -n 1 "$T/server.out")" = "listening on 127.0.0.1:$PORT" ]
}

@test "test vector 1: the raw frame exchange prints exactly the dump in protocol.md" {
    start_server server "$(bin $L server)" --port 0
    export PORT
    doc_cmd protocol.md '(exec 3<>/dev/tcp/127.0.0.1/$PORT; printf "\x00\x00\x00\x00\x05\x00\x00\x00\x00" >&3; head -c 16 /dev/zero >&3; printf hello >&3; head -c 30 <&3) | xxd -g1 -c25'
    [ "$status" -eq 0 ]
    [ -n "$output" ]
    [ "$output" = "$(doc_output protocol.md "$RAW_CMD")" ]
}

@test "test vector 2: the compressed frame exchange prints exactly the dump in protocol.md" {
    start_server server "$(bin $L server)" --port 0
    export PORT
    doc_cmd protocol.md '(exec 3<>/dev/tcp/127.0.0.1/$PORT; printf "\x01\x00\x00\x00\x1d\x00\x00\x00\x0f" >&3; head -c 16 /dev/zero >&3; printf "hello hello hello hello hello" | 05_framing/lz4cat -c >&3; head -c 40 <&3) | xxd -g1 -c25'
    [ "$status" -eq 0 ]
    [ -n "$output" ]
    [ "$output" = "$(doc_output protocol.md "$LZ4_CMD")" ]
}

@test "test vector 1: its fields are as annotated, and the server echoes its bytes unchanged" {
    raw=$(vector_hex "$RAW_CMD")
    [ "$raw" = "000000000500000000""00000000000000000000000000000000""68656c6c6f" ]
    [ "$(annotated_hex 1)" = "$raw" ]
    start_server server "$(bin $L server)" --port 0
    [ "$(exchange_hex "$raw" 30)" = "$raw" ]
}

@test "test vector 1: the client sends exactly these bytes for the message hello" {
    raw=$(vector_hex "$RAW_CMD")
    [ "$(captured_hex 30 hello)" = "$raw" ]
}

@test "test vector 2: its fields are as annotated, and the server echoes its bytes unchanged" {
    lz=$(vector_hex "$LZ4_CMD")
    [ ${#lz} -eq 80 ]
    [ "$(annotated_hex 2)" = "$lz" ]
    [ "${lz:0:2}" = 01 ]                             # flags 1
    [ $((16#${lz:2:8})) -eq ${#TEXT} ]               # origin_size 29
    [ $((16#${lz:10:8})) -eq $(((${#lz} - 50) / 2)) ] # compress_size = the body's length
    [ "${lz:18:32}" = 00000000000000000000000000000000 ]
    start_server server "$(bin $L server)" --port 0
    [ "$(exchange_hex "$lz" 40)" = "$lz" ]
}

@test "test vector 2: the client sends exactly these bytes for the text with --compress" {
    lz=$(vector_hex "$LZ4_CMD")
    [ "$(captured_hex 40 --compress "$TEXT")" = "$lz" ]
}

@test "test vector 2: lz4cat -c reproduces its body, and lz4cat -d --size 29 restores the text" {
    lz=$(vector_hex "$LZ4_CMD")
    body=${lz:50}
    [ "$(printf '%s' "$TEXT" | "$(bin $L lz4cat)" -c | xxd -p | tr -d '\n')" = "$body" ]
    [ "$(xxd -r -p <<<"$body" | "$(bin $L lz4cat)" -d --size $((16#${lz:2:8})))" = "$TEXT" ]
}

@test "test vector 2: the reference python-lz4 makes the same block and decompresses it" {
    py=$(python_lz4) || skip "python3 with the lz4 module (python3-lz4) is not installed"
    lz=$(vector_hex "$LZ4_CMD")
    body=${lz:50}
    run "$py" -c "
import lz4.block
text = b'$TEXT'
block = bytes.fromhex('$body')
assert lz4.block.decompress(block, uncompressed_size=len(text)) == text
print(lz4.block.compress(text, store_size=False).hex())"
    [ "$status" -eq 0 ]
    [ "$output" = "$body" ]
    grep -qF 'returns the same 15 bytes' "$ROOT/lessons/protocol.md"
}

@test "protocol.md lists every reason frame.c and lz4.c give for a protocol error" {
    # frame.c: bad_field(f, why, "...", ...) in decode_protocol; lz4.c: return "lz4: ..."
    reasons=$({
        sed -n '/^static enum frame_status decode_protocol/,/^}/p' "$ROOT/$L/frame.c" |
            grep -oE 'bad_field\(f, why, "[^"]+"' | sed -E 's/^bad_field\(f, why, "//; s/"$//'
        grep -oE 'return "lz4: [^"]+"' "$ROOT/$L/lz4.c" | sed -E 's/^return "//; s/"$//'
    } | sort -u)
    [ "$(wc -l <<<"$reasons")" -ge 12 ]
    [ -n "$reasons" ]
    while IFS= read -r reason; do
        grep -qF -- "| \`$reason\` |" "$ROOT/lessons/protocol.md" || { echo "missing: $reason"; false; }
    done <<<"$reasons"
}

@test "every command printed in lessons/protocol.md is run by a test" { every_doc_cmd_is_tested protocol.md; }

# ---- exercises 6 to 9: other headers, tried against the server's framings ----

@test "exercise 6 answer: a length that counts itself (9 for 'hello') gets no reply; the server waited for 4 more bytes" {
    start_server server "$(bin $L server)" --framing length --port 0
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    printf '\0\0\0\11hello' >&"$fd"
    run timeout 1 head -c 1 <&"$fd"
    [ -z "$output" ] # no reply within a second
    exec {fd}>&-
    wait_until 5 grep -q 'closed in the middle of a message (9 bytes left)$' "$T/server.err"
}

@test "exercise 7 answer: --framing length echoes an empty message (4 zero bytes); the lesson protocol refuses origin_size 0" {
    start_server length "$(bin $L server)" --framing length --port 0
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    printf '\0\0\0\0' >&"$fd"
    reply=$(timeout 5 head -c 4 <&"$fd" | od -An -tx1 | tr -d ' \n')
    exec {fd}>&-
    [ "$reply" = "00000000" ]
    start_server protocol "$(bin $L server)" --port 0
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    head -c 25 /dev/zero >&"$fd"
    at_eof "$fd"
    exec {fd}>&-
    grep -qx 'server: 127\.0\.0\.1:[0-9]*: protocol error: origin_size 0: got 0 = 00 00 00 00' "$T/protocol.err"
}

@test "exercise 8 answer: a field in the reserved bytes is ignored: the echo comes back, with byte 9 zero" {
    start_server server "$(bin $L server)" --port 0
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    printf '\x00\x00\x00\x00\x02\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00hi' >&"$fd"
    reply=$(timeout 5 head -c 27 <&"$fd" | od -An -tx1 | tr -d ' \n')
    exec {fd}>&-
    [ "$reply" = "00000000020000000000000000000000000000000000000000$(printf hi | od -An -tx1 | tr -d ' \n')" ]
}

@test "exercise 9 answer: a 40-byte message in 16-byte records (flag + 15 data): 3 records, 5 bytes of padding, reassembled whole" {
    start_server server "$(bin $L server)" --framing fixed --record-bytes 16 --port 0
    msg=0123456789abcdefghijklmnopqrstuvwxyzABCD # 40 bytes
    [ "${#msg}" -eq 40 ]
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    printf '\1%s\1%s\0%s\0\0\0\0\0' "${msg:0:15}" "${msg:15:15}" "${msg:30:10}" >&"$fd"
    timeout 5 head -c 48 <&"$fd" >"$T/records"
    exec {fd}>&-
    [ "$(stat -c %s "$T/records")" -eq 48 ]
    # the flag bytes: more, more, last
    [ "$(od -An -tx1 -j 0 -N 1 "$T/records" | tr -d ' ')" = "01" ]
    [ "$(od -An -tx1 -j 16 -N 1 "$T/records" | tr -d ' ')" = "01" ]
    [ "$(od -An -tx1 -j 32 -N 1 "$T/records" | tr -d ' ')" = "00" ]
    # the data after each flag byte, joined and cut at the known length
    joined=$( (dd if="$T/records" bs=1 skip=1 count=15 status=none
        dd if="$T/records" bs=1 skip=17 count=15 status=none
        dd if="$T/records" bs=1 skip=33 count=15 status=none) | head -c 40)
    [ "$joined" = "$msg" ]
    # and the padding: the last record's 5 trailing bytes are zeros
    [ "$(od -An -tx1 -j 43 -N 5 "$T/records" | tr -d ' \n')" = "0000000000" ]
}
