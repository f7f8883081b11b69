#!/usr/bin/env bats
# Lesson 2's text: every command lessons/02_nonblocking_connect.md prints is
# run here, exactly as printed, in the situation the text describes (a
# server listening, a closed port, the full listener), and its output is
# checked against what the text says it shows.

load helpers

L=02_nonblocking_connect

# The situations the text sets up before running a command with $PORT.
listening_server() {
    start_server server "$(bin $L server)" --port 0
    export PORT
}

closed_port() { # a port nobody listens on: a server's port, after it stopped
    start_server gone "$(bin $L server)" --port 0
    stop_pid "$PID"
    export PORT
}

full_listener() {
    start_server full "$(bin $L full_listener)" --port 0
    export PORT
}

# ss: is a connect to $PORT in SYN-SENT, with at least one SYN retransmitted?
syn_retransmitted() {
    ss -tnoH state syn-sent "( dport = :$PORT )" | grep -q 'timer:(on,[^,]*,[1-9]'
}

@test "make lesson-2 && ./run builds the lesson and shows the four outcomes with exit statuses within 15 s" {
    doc_cmd 02_nonblocking_connect.md 'make lesson-2 && ./run'
    [ "$status" -eq 0 ]
    [ "$DOC_SECONDS" -le 15 ]
    for r in "connected to" "refused by" "timed out after" "self-connect:"; do
        [[ $output == *"client: $r"* ]]
    done
    build_transcript_is 02_nonblocking_connect.md 'make lesson-2 && ./run'
    grep -A1 '\[client\] client: connected to 127\.0\.0\.1:' <<<"$output" | grep -q 'exit status 0'
    grep -A1 '\[client\] client: refused by 127\.0\.0\.1:' <<<"$output" | grep -q 'exit status 1'
    grep -A1 '\[client\] client: timed out after [0-9]*\.[0-9] ms' <<<"$output" | grep -q 'exit status 1'
    [[ $output =~ timed\ out\ after\ ([0-9]+)\.[0-9]\ ms ]]
    [ "${BASH_REMATCH[1]}" -ge 900 ]
    [ "${BASH_REMATCH[1]}" -le 1500 ]
    [ "$(grep -A1 'is connected to itself' <<<"$output" | grep -c 'exit status 1')" -eq 2 ]
}

@test "grep of tcp_syn_* shows the SYN retry count the text explains" {
    doc_cmd 02_nonblocking_connect.md 'grep . /proc/sys/net/ipv4/tcp_syn_*'
    [ "$status" -eq 0 ]
    grep -qE '^/proc/sys/net/ipv4/tcp_syn_retries:[0-9]+$' <<<"$output"
}

@test "./run server --port 0, as the text starts it, prints its port first" {
    # doc_cmd 02_nonblocking_connect.md './run server --port 0'
    # (it runs until stopped, so it is started in the background here)
    printed_in 02_nonblocking_connect.md './run server --port 0'
    start_server server env LESSON=$L BIN_DIR="$BIN_ROOT/$L" "$ROOT/run" server --port 0
    [ "$(head -n 1 "$T/server.out")" = "listening on 127.0.0.1:$PORT" ]
    [ "$PORT" -gt 0 ]
}

@test "with a server listening, the client prints 'connected' and exits 0" {
    listening_server
    doc_cmd 02_nonblocking_connect.md './run client --port $PORT --timeout 1000 --connect-only'
    [ "$status" -eq 0 ]
    [[ $output =~ ^client:\ connected\ to\ 127\.0\.0\.1:$PORT\ in\ [0-9]+\.[0-9]\ ms$ ]]
}

@test "after the server stopped, the same command prints 'refused' and exits 1" {
    closed_port
    doc_cmd 02_nonblocking_connect.md './run client --port $PORT --timeout 1000 --connect-only'
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ refused\ by\ 127\.0\.0\.1:$PORT\ after\ [0-9]+\.[0-9]\ ms$ ]]
}

@test "strace shows EINPROGRESS, a writable socket, and SO_ERROR = ECONNREFUSED" {
    if ! strace -o /dev/null true 2>/dev/null; then
        skip "strace is not installed or cannot trace here"
    fi
    # LeakSanitizer cannot run under ptrace; the leak checks live in other tests.
    export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
    closed_port
    doc_cmd 02_nonblocking_connect.md 'strace -qq -e signal=none -e trace=connect,poll,getsockopt ./run client --port $PORT --timeout 1000 --connect-only'
    [ "$status" -eq 1 ]
    # (the socket is fd 3 in a shell; under bats, which holds fds open, it may be higher)
    grep -qE "^connect\([0-9]+, .*htons\($PORT\).* = -1 EINPROGRESS" <<<"$output"
    grep -qE '^poll\(\[\{fd=[0-9]+, events=POLLOUT\}\], 1, [0-9]+\) += 1 .*revents=POLLOUT\|POLLERR\|POLLHUP' <<<"$output"
    grep -qE '^getsockopt\([0-9]+, SOL_SOCKET, SO_ERROR, \[ECONNREFUSED\], \[4\]\) = 0$' <<<"$output"
    grep -q "^client: refused by 127.0.0.1:$PORT after" <<<"$output"
}

@test "./run full_listener --port 0, as the text starts it, reports a full accept queue" {
    # doc_cmd 02_nonblocking_connect.md './run full_listener --port 0'
    # (it runs until stopped, so it is started in the background here)
    printed_in 02_nonblocking_connect.md './run full_listener --port 0'
    start_server fl env LESSON=$L BIN_DIR="$BIN_ROOT/$L" "$ROOT/run" full_listener --port 0
    [ "$(head -n 1 "$T/fl.out")" = "listening on 127.0.0.1:$PORT" ]
    wait_until 5 grep -qx 'full_listener: accept queue full: new connections will hang' "$T/fl.err"
}

@test "ss -tln shows the full listener's queue: 1 connection waiting, backlog 0" {
    full_listener
    doc_cmd 02_nonblocking_connect.md 'ss -tln "sport = :$PORT"'
    [ "$status" -eq 0 ]
    grep -qE "^LISTEN +1 +0 +127\.0\.0\.1:$PORT " <<<"$output"
}

@test "against the full listener the same command times out after about 1000 ms, exit 1" {
    full_listener
    doc_cmd 02_nonblocking_connect.md './run client --port $PORT --timeout 1000 --connect-only'
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ timed\ out\ after\ ([0-9]+)\.[0-9]\ ms\ connecting\ to\ 127\.0\.0\.1:$PORT$ ]]
    [ "${BASH_REMATCH[1]}" -ge 900 ]
    [ "${BASH_REMATCH[1]}" -le 1500 ]
}

@test "--wait select against the full listener times out the same way" {
    full_listener
    doc_cmd 02_nonblocking_connect.md './run client --port $PORT --timeout 1000 --connect-only --wait select'
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ timed\ out\ after\ ([0-9]+)\.[0-9]\ ms\ connecting\ to\ 127\.0\.0\.1:$PORT$ ]]
    [ "${BASH_REMATCH[1]}" -ge 900 ]
    [ "${BASH_REMATCH[1]}" -le 1500 ]
}

@test "with --timeout 10000 the client waits the whole ten seconds, then times out" {
    full_listener
    doc_cmd 02_nonblocking_connect.md './run client --port $PORT --timeout 10000 --connect-only'
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ timed\ out\ after\ ([0-9]+)\.[0-9]\ ms\ connecting\ to\ 127\.0\.0\.1:$PORT$ ]]
    [ "${BASH_REMATCH[1]}" -ge 9500 ]
    [ "${BASH_REMATCH[1]}" -le 12000 ]
}

@test "ss -tno state syn-sent shows the waiting connect and its retransmitted SYNs" {
    full_listener
    start_bg waiting "$(bin $L client)" --port "$PORT" --timeout 20000 --connect-only
    wait_until 10 syn_retransmitted
    doc_cmd 02_nonblocking_connect.md 'ss -tno state syn-sent'
    [ "$status" -eq 0 ]
    grep -qE "127\.0\.0\.1:[0-9]+ +127\.0\.0\.1:$PORT +timer:\(on,[^,]*,[1-9][0-9]*\)" <<<"$output"
}

@test "the ephemeral port range is two numbers" {
    doc_cmd 02_nonblocking_connect.md 'cat /proc/sys/net/ipv4/ip_local_port_range'
    [ "$status" -eq 0 ]
    [[ $output =~ ^[0-9]+[[:space:]]+[0-9]+$ ]]
}

@test "--self-connect with --port 0: the socket is connected to itself, exit 1" {
    doc_cmd 02_nonblocking_connect.md './run client --port 0 --self-connect --connect-only'
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ self-connect:\ 127\.0\.0\.1:([0-9]+)\ is\ connected\ to\ itself\ \(after\ [0-9]+\.[0-9]\ ms\)$ ]]
    [ "${BASH_REMATCH[1]}" -gt 0 ]
}

@test "./run retry: refused, retries after 100 then 200 ms, connects to the late server, exit 0" {
    doc_cmd 02_nonblocking_connect.md './run retry'
    [ "$status" -eq 0 ]
    [[ $output == *"[client] client: refused by 127.0.0.1:"* ]]
    [[ $output == *"[client] client: retry 1 of 6 in 100 ms"* ]]
    [[ $output == *"[client] client: retry 2 of 6 in 200 ms"* ]]
    grep -A1 '\[client\] client: connected to 127\.0\.0\.1:' <<<"$output" | grep -q 'exit status 0'
}

@test "--retry 3 on a closed port: four refusals, delays 100, 200, 400 ms, exit 1" {
    closed_port
    doc_cmd 02_nonblocking_connect.md './run client --port $PORT --timeout 1000 --retry 3 --connect-only'
    [ "$status" -eq 1 ]
    [ "$(grep -c "^client: refused by 127.0.0.1:$PORT after" <<<"$output")" -eq 4 ]
    [ "${lines[1]}" = "client: retry 1 of 3 in 100 ms" ]
    [ "${lines[3]}" = "client: retry 2 of 3 in 200 ms" ]
    [ "${lines[5]}" = "client: retry 3 of 3 in 400 ms" ]
    [ "${#lines[@]}" -eq 7 ]
}

@test "every command printed in lessons/02_nonblocking_connect.md is run by a test" { every_doc_cmd_is_tested 02_nonblocking_connect.md; }
