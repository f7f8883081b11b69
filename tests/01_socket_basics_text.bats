#!/usr/bin/env bats
# The text of lesson 1 (lessons/01_socket_basics.md): every command it prints
# is run here, as printed, and the output it claims is checked against the
# programs' real output. The by-hand experiments (listen queue, TIME_WAIT,
# SO_REUSEADDR) and the exercises' answers are replayed step by step.

load helpers

L=01_socket_basics
MD=01_socket_basics.md
# ./run exactly as the text uses it, pointed at the build under test. env and
# both run scripts exec, so the PID that start_bg records is the program's.
RUN=(env LESSON=$L BIN_DIR="$BIN_ROOT/$L" TOOLS_BIN_DIR="$BIN_ROOT/tools" "$ROOT/run")

# The output $output of a demo without its bold-face escape sequences.
plain() { sed 's/\x1b\[[0-9;]*m//g' <<<"$output"; }

# doc_block 'COMMAND': the output lines the text prints under "$ COMMAND".
doc_block() {
    # the command goes through the environment: awk -v would turn \n into a newline
    DOC_BLOCK_CMD="\$ $1" awk '
        found && (/^```/ || /^\$ /) { exit }
        found { print }
        $0 == ENVIRON["DOC_BLOCK_CMD"] { found = 1 }' "$ROOT/lessons/$MD"
}

# text_has LINE: LINE is a whole line of the text (for commands a test runs
# through start_server/start_bg rather than doc_cmd).
text_has() { grep -qxF -- "$1" "$ROOT/lessons/$MD"; }

# block_shape_in_output 'COMMAND': every line the text shows under COMMAND,
# except empty lines and "[...]" (lines left out), appears in the real output
# with every number taken as any number (ports, pids and counts change) and
# every run of spaces as any run (columns widen with the numbers).
block_shape_in_output() {
    local line re out missing=0
    out=$(plain | sed 's/ *$//') # (make's lines end in blanks)
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        [ "$line" != '[...]' ] || continue
        re=$(sed 's/[][\\.*^$()+?{}|]/\\&/g; s/[0-9]\+/[0-9]+/g; s/  */ +/g' <<<"$line")
        if ! grep -qxE -- "$re" <<<"$out"; then
            echo "the text shows a line the program did not print: $line"
            missing=1
        fi
    done < <(doc_block "$1")
    [ "$missing" -eq 0 ]
}

# section 'HEADING': the lines of $output (plain) from the "== HEADING" line
# to the next "== " line.
section() { plain | awk -v h="== $1" 'index($0, "==") == 1 { on = index($0, h) == 1; next } on'; }

# listen_queue_is N: the listening socket on $PORT has N connections waiting.
listen_queue_is() { [ "$(ss -tlnH "sport = :$PORT" | awk '{ print $2 }')" = "$1" ]; }

@test "every command printed in lessons/01_socket_basics.md is run by a test" {
    every_doc_cmd_is_tested 01_socket_basics.md
}

@test "make lesson-1 && ./run builds a fresh checkout and runs the whole tour within 15 s" {
    doc_cmd 01_socket_basics.md 'make lesson-1 && ./run'
    [ "$status" -eq 0 ]
    [ "$DOC_SECONDS" -le 15 ]
    build_transcript_is 01_socket_basics.md 'make lesson-1 && ./run'
    block_shape_in_output 'make lesson-1 && ./run' # the naive scenario, shown in full
    [[ $output == *'[receiver] recv #1 -> 10 bytes: "helloworld"'* ]]
    [[ $output == *'[receiver] message #1 (5 bytes): "hello"'* ]]
    [[ $output == *"[client] world"* ]]
    [[ $output == *"stuck: client pid "* ]]
    [[ $output == *"[client2] still alive"* ]]
}

@test "./run naive prints exactly the sticky read, the half read and the %s over-read the text shows" {
    # the text shows this scenario as the start of the tour
    text_has '  [receiver] recv #2 -> 14 bytes: "OPQRSTUVWXYZ-+"'
    run "${RUN[@]}" naive
    [ "$status" -eq 0 ]
    # the lines the text explains one by one
    plain | grep -qxF '  [receiver] recv #1 -> 10 bytes: "helloworld"'
    plain | grep -qxF "  [receiver]   printf(\"%s\") shows: helloworld$(printf '?%.0s' {1..40})<next variable>"
    plain | grep -qxF '  [receiver] recv #2 -> 14 bytes: "OPQRSTUVWXYZ-+"'
}

@test "./run readn prints every message whole, as the text shows" {
    doc_cmd 01_socket_basics.md './run readn'
    [ "$status" -eq 0 ]
    block_shape_in_output './run readn'
    plain | grep -qxF '  [receiver] end of stream after 1 message'
    plain | grep -qxF '  [receiver] message #2 (5 bytes): "world"'
}

@test "./run echo shows the half-close: the server reads 0, closes, the client's reader reads 0" {
    doc_cmd 01_socket_basics.md './run echo'
    [ "$status" -eq 0 ]
    out=$(plain)
    port=$(sed -n 's/^  \[server\] listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' <<<"$out")
    [ -n "$port" ]
    grep -qE "^  \[client\] client: connected fd=[0-9]+ 127\.0\.0\.1:[0-9]+ -> 127\.0\.0\.1:$port$" <<<"$out"
    grep -qE '^  \[server\] server: recv fd=[0-9]+ -> 12 bytes$' <<<"$out"
    grep -qE '^  \[server\] server: recv fd=[0-9]+ -> 0 bytes: 127\.0\.0\.1:[0-9]+ closed its side$' <<<"$out"
    grep -qE '^  \[client\] client: recv fd=[0-9]+ -> 0 bytes: server closed$' <<<"$out"
    # the echoed lines, in order
    [ "$(sed -n 's/^  \[client\] \(hello\|world\)$/\1/p' <<<"$out" | tr '\n' ' ')" = "hello world " ]
}

@test "./run --help lists every scenario the text runs, and the programs to start by hand" {
    run "${RUN[@]}" --help
    [ "$status" -eq 0 ]
    for s in tour naive readn echo deadlock ttcp sigpipe reuseport; do
        grep -qE "^  $s +[a-z(]" <<<"$output"
    done
    for s in $(sed -n 's/^\$ \.\/run \([a-z]*\)$/\1/p' "$ROOT/lessons/$MD"); do
        grep -qE "^  $s " <<<"$output"
    done
    grep -qF './run server [--port N] [-v]' <<<"$output"
    grep -qF './run receiver --mode naive|readn --port 0' <<<"$output"
}

@test "by hand: the traced server echoes two lines piped into the client" {
    # doc_cmd 01_socket_basics.md './run server --port 0 -v'
    text_has '$ ./run server --port 0 -v'
    start_server server "${RUN[@]}" server --port 0 -v
    server=$PID
    [[ $(head -1 "$T/server.out") =~ ^listening\ on\ 127\.0\.0\.1:[0-9]+$ ]]
    run bash -c 'printf "hello\nworld\n" | timeout 10 "$@"' _ "${RUN[@]}" client --port "$PORT"
    [ "$status" -eq 0 ]
    [ "$output" = "$(printf 'hello\nworld')" ]
    wait_until 5 grep -q 'close fd=' "$T/server.err"
    grep -qE '^server: accept fd=[0-9]+ from 127\.0\.0\.1:[0-9]+$' "$T/server.err"
    grep -qE '^server: recv fd=[0-9]+ -> 12 bytes$' "$T/server.err"
    grep -qE '^server: send fd=[0-9]+ <- 12 bytes$' "$T/server.err"
    grep -qE '^server: recv fd=[0-9]+ -> 0 bytes: 127\.0\.0\.1:[0-9]+ closed its side$' "$T/server.err"
    kill -0 "$server" # still there for the next client
}

# The by-hand scene of the text: a traced server, a first interactive client
# being served, a second one connected but waiting in the listen queue.
two_clients_one_queued() {
    # doc_cmd 01_socket_basics.md './run client --port $PORT -v'
    text_has '$ ./run client --port $PORT -v'
    start_server server "${RUN[@]}" server --port 0 -v
    SERVER=$PID
    export PORT
    open_input c1
    start_bg c1 "${RUN[@]}" client --port "$PORT" -v <"$T/c1.in"
    echo first >&5
    wait_until 5 grep -qx first "$T/c1.out"
    mkfifo "$T/c2.in"
    exec 6<>"$T/c2.in"
    start_bg c2 "${RUN[@]}" client --port "$PORT" -v <"$T/c2.in"
    echo second >&6
    wait_until 5 grep -qE '^client: send fd=[0-9]+ <- 7 bytes$' "$T/c2.err"
    wait_until 5 listen_queue_is 1
}

@test "by hand: a second client is connected but waits in the listen queue (ss Recv-Q 1)" {
    two_clients_one_queued
    doc_cmd 01_socket_basics.md 'ss -tln "sport = :$PORT"'
    [ "$status" -eq 0 ]
    # Send-Q of a listener is its backlog: SOMAXCONN (4096 in current glibc)
    # capped by net.core.somaxconn.
    somax=$(cat /proc/sys/net/core/somaxconn)
    backlog=$((somax < 4096 ? somax : 4096))
    grep -qE "^LISTEN +1 +$backlog +127\.0\.0\.1:$PORT " <<<"$output"
    grep -qE "^client: connected fd=[0-9]+ 127\.0\.0\.1:[0-9]+ -> 127\.0\.0\.1:$PORT$" "$T/c2.err"
    [ ! -s "$T/c2.out" ] # no echo for the queued client
    grep -qE '^client: recv fd=[0-9]+ -> 6 bytes$' "$T/c1.err"
    exec 6>&-
}

@test "by hand: Ctrl-C on the server ends the served client and resets the queued one" {
    two_clients_one_queued
    kill -INT "$SERVER"
    rc=0
    wait_exit "$SERVER" 5 || rc=$?
    [ "$rc" -eq 0 ]
    grep -qx 'server: stopping' "$T/server.err"
    wait_until 5 grep -qx 'client: server closed first; not waiting for the stdin thread' "$T/c1.err"
    grep -qE '^client: recv fd=[0-9]+ -> 0 bytes: server closed$' "$T/c1.err"
    wait_until 5 grep -qx 'client: recv: Connection reset by peer' "$T/c2.err"
    exec 6>&-
}

# The TIME_WAIT scene: the server is stopped (Ctrl-C) while a client is
# connected, so the server's side of that connection waits in TIME_WAIT.
server_stopped_with_client() {
    start_server server "${RUN[@]}" server --port 0 -v "$@"
    server=$PID
    export PORT
    open_input c1
    start_bg c1 "${RUN[@]}" client --port "$PORT" -v <"$T/c1.in"
    echo first >&5
    wait_until 5 grep -qx first "$T/c1.out"
    kill -INT "$server"
    wait_exit "$server" 5
    wait_until 5 bash -c "ss -tanH state time-wait | grep -q '127.0.0.1:$PORT '"
}

@test "by hand: ss lists the stopped server's connection in TIME_WAIT" {
    server_stopped_with_client
    doc_cmd 01_socket_basics.md 'ss -tn state time-wait "sport = :$PORT"'
    [ "$status" -eq 0 ]
    grep -qE "^0 +0 +127\.0\.0\.1:$PORT +127\.0\.0\.1:[0-9]+ *$" <<<"$output"
}

@test "by hand: a restart with --no-reuseaddr fails with EADDRINUSE during TIME_WAIT" {
    server_stopped_with_client
    doc_cmd 01_socket_basics.md './run server --port $PORT --no-reuseaddr'
    [ "$status" -eq 1 ]
    [ "$output" = "server: bind: Address already in use" ]
    [ "$output" = "$(doc_block './run server --port $PORT --no-reuseaddr')" ]
}

@test "by hand: without --no-reuseaddr the same restart succeeds at once" {
    server_stopped_with_client
    start_server server2 "${RUN[@]}" server --port "$PORT"
    [ "$(echo back | timeout 10 "${RUN[@]}" client --port "$PORT")" = back ]
}

@test "./run deadlock: both Send-Qs near the tcp_wmem maximum, the client's Recv-Q at most the tcp_rmem default" {
    doc_cmd 01_socket_basics.md './run deadlock'
    [ "$status" -eq 0 ]
    out=$(plain)
    [[ $out == *"stuck: client pid "* ]]
    [[ $out == *"[client2] still alive"* ]]
    grep -qE '^  \[server\] server: 127\.0\.0\.1:[0-9]+: send: (Connection reset by peer|Broken pipe)$' <<<"$out"
    port=$(sed -n 's/^  \[server\] listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' <<<"$out")
    read -r _ rmem_default _ </proc/sys/net/ipv4/tcp_rmem
    read -r _ _ wmem_max </proc/sys/net/ipv4/tcp_wmem
    rows=0
    while read -r end local peer recvq sendq; do
        rows=$((rows + 1))
        # the label names the end: the server's has the server's port
        want='[client'
        [ "${local##*:}" != "$port" ] || want='[server'
        [ "$end" = "$want" ]
        # most of the stuck bytes wait in the two send queues
        [ "$sendq" -ge $((wmem_max / 2)) ]
        if [ "${local##*:}" != "$port" ]; then
            # the client never reads: its receive buffer never grew
            [ "$recvq" -gt 0 ]
            [ "$recvq" -le "$rmem_default" ]
        fi
    done < <(grep -E '^   \[(server|client) end\] +127\.0\.0\.1:[0-9]+ +127\.0\.0\.1:[0-9]+ +[0-9]+ +[0-9]+$' <<<"$out" | sed 's/ end\]//')
    [ "$rows" -eq 2 ]
}

@test "./run ttcp: a full table where throughput grows with message length" {
    doc_cmd 01_socket_basics.md './run ttcp'
    [ "$status" -eq 0 ]
    block_shape_in_output './run ttcp'
    out=$(plain)
    grep -qE '^  \[ttcp\] +length +messages +seconds +MB/s$' <<<"$out"
    for len in 64 256 1024 4096 16384 65536 262144 1048576; do
        grep -qE "^  \[ttcp\] +$len +[0-9]+ +[0-9]+\.[0-9]{3} +[0-9]+\.[0-9]{2}$" <<<"$out"
    done
    grep -qE '^  \[ttcp\] +stream +- +[0-9]+\.[0-9]{3} +[0-9]+\.[0-9]{2}$' <<<"$out"
    mbs() { awk -v len="$1" '$1 == "[ttcp]" && $2 == len { print $5 }' <<<"$out"; }
    # a round trip per message: 64 times the bytes per message gives far more MB/s
    awk -v small="$(mbs 64)" -v big="$(mbs 4096)" 'BEGIN { exit !(big > 4 * small) }'
}

@test "exercise 4: a 2 MB --send-first fits in the buffers and comes back whole" {
    start_server server "$(bin $L server)" --port 0
    export PORT
    doc_cmd 01_socket_basics.md './run client --port $PORT --send-first 2000000'
    [ "$status" -eq 0 ]
    [ "$output" = "$(doc_block './run client --port $PORT --send-first 2000000')" ]
}

@test "exercise 1 answer: three sends back to back arrive in one 10-byte recv" {
    start_server receiver "$(bin $L receiver)" --mode naive --port 0 --late
    "$(bin $L sender)" --port "$PORT" abc defgh ij
    wait_exit "$PID" 10
    grep -qxF 'recv #1 -> 10 bytes: "abcdefghij"' "$T/receiver.out"
    grep -qxF "  printf(\"%s\") shows: abcdefghij$(printf '?%.0s' {1..40})<next variable>" "$T/receiver.out"
    grep -qF '(1) one recv of 10 bytes, `"abcdefghij"`' "$ROOT/lessons/$MD"
}

@test "exercise 2 answer: readn with --size 4 reads hell, owor, then a cut message" {
    start_server receiver "$(bin $L receiver)" --mode readn --size 4 --port 0 --late
    "$(bin $L sender)" --port "$PORT" hello world
    wait_exit "$PID" 10
    run cat "$T/receiver.out"
    [ "${lines[1]}" = 'message #1 (4 bytes): "hell"' ]
    [ "${lines[2]}" = 'message #2 (4 bytes): "owor"' ]
    [ "${lines[3]}" = 'end of stream in the middle of message #3 (2 of 4 bytes)' ]
}

@test "exercise 3 answer: a 64 KB echo chunk still deadlocks once the payload exceeds the four buffers" {
    # The faster-reading server lets autotuning grow its receive buffer, up to
    # the tcp_rmem maximum, so 20 MB may fit on a loaded machine (it did once in
    # CI). More than all four buffers can hold sticks every time, as the answer says.
    read -r _ rmem_default rmem_max </proc/sys/net/ipv4/tcp_rmem
    read -r _ _ wmem_max </proc/sys/net/ipv4/tcp_wmem
    bytes=$((2 * wmem_max + rmem_max + rmem_default + 1048576))
    grep -qF 'receive autotuning grow its receive buffer' "$ROOT/lessons/$MD"
    start_server server "$(bin $L server)" --port 0 --chunk 65536
    start_bg client "$(bin $L client)" --port "$PORT" --send-first "$bytes"
    client=$PID
    # stuck = the client still runs and the queues stop moving for 1 s (bounded: 20 s)
    prev="" stable=0
    for _ in $(seq 100); do
        sleep 0.2
        kill -0 "$client"
        cur=$(ss -tnH state established "( sport = :$PORT or dport = :$PORT )" | awk '{ print $1, $2 }' | sort)
        if [ -n "$cur" ] && [ "$cur" = "$prev" ]; then stable=$((stable + 1)); else stable=0; fi
        prev=$cur
        [ "$stable" -ge 5 ] && break
    done
    [ "$stable" -ge 5 ]
    refute grep -q 'everything sent' "$T/client.err"
}

@test "exercise 6 answer: SO_REUSEADDR on the restart alone does not beat TIME_WAIT" {
    server_stopped_with_client --no-reuseaddr
    run "${RUN[@]}" server --port "$PORT"
    [ "$status" -eq 1 ]
    [ "$output" = "server: bind: Address already in use" ]
}

@test "the SOMAXCONN the text prints is the one in this machine's headers" {
    doc_cmd 01_socket_basics.md 'echo SOMAXCONN | cc -include sys/socket.h -E -P - | tail -n 1'
    [ "$status" -eq 0 ]
    [ "$output" = "$(doc_block 'echo SOMAXCONN | cc -include sys/socket.h -E -P - | tail -n 1')" ]
}

@test "./run sigpipe: --keep-sigpipe dies with status 141 on the second send; the default server logs EPIPE and serves on" {
    doc_cmd 01_socket_basics.md './run sigpipe'
    [ "$status" -eq 0 ]
    block_shape_in_output './run sigpipe'
    dies=$(section "A server that keeps SIGPIPE's default action")
    echo "$dies"
    grep -qxF '   Exit status 141 = 128 + 13: killed by SIGPIPE in its second send, without a word.' <<<"$dies"
    # its last words: one byte echoed, one more read; the send after it killed it
    [ "$(grep '^  \[server\] server: ' <<<"$dies" | tail -n 2 | sed 's/fd=[0-9]*/fd=N/')" = "$(printf '%s\n' \
        '  [server] server: send fd=N <- 1 bytes' '  [server] server: recv fd=N -> 1 bytes')" ]
    refute grep -q 'send: ' <<<"$dies"
    lives=$(section 'The same with the default server')
    echo "$lives"
    grep -qE '^  \[server\] server: 127\.0\.0\.1:[0-9]+: send: Broken pipe$' <<<"$lives"
    grep -qxF '  [client2] still alive' <<<"$lives"
    grep -qxF '  [server] server: stopping' <<<"$lives"
}

# accepts_by NAME SECTION_TEXT: how many accept lines server NAME traced there.
accepts_by() { grep -cE "^  \[$1\] server: accept fd=[0-9]+ from 127\.0\.0\.1:[0-9]+$" <<<"$2" || true; }

@test "./run reuseport: 16 clients spread over both servers; after one exits, all 6 new ones go to the other" {
    doc_cmd 01_socket_basics.md './run reuseport'
    [ "$status" -eq 0 ]
    block_shape_in_output './run reuseport'
    [ "$(plain | grep -c '^  \[\(one\|two\)\] listening on 127\.0\.0\.1:')" -eq 2 ]
    [ "$(plain | sed -n 's/^  \[\(one\|two\)\] listening on //p' | sort -u | wc -l)" -eq 1 ] # one port
    plain | grep -qxF '  [three] server: bind: Address already in use'
    both=$(section '16 clients, one after another')
    echo "$both"
    a=$(accepts_by one "$both")
    b=$(accepts_by two "$both")
    [ "$((a + b))" -eq 16 ]
    [ "$a" -ge 1 ] # (a 1 in 2^15 chance of seeing none: the hash of 16 ports)
    [ "$b" -ge 1 ]
    grep -qxF "   Server one accepted $a, server two $b." <<<"$both"
    after=$(section 'Server one exits')
    echo "$after"
    grep -qxF '  [one] server: stopping' <<<"$after"
    [ "$(accepts_by one "$after")" -eq 0 ]
    [ "$(accepts_by two "$after")" -eq 6 ]
}
