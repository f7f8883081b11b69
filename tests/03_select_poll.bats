#!/usr/bin/env bats
# Lesson 3 -- select and poll: one thread, many clients; accept errors;
# the FD_SETSIZE limit; the single-threaded client.

load helpers

L=03_select_poll

many_clients_echo() {
    start_server server "$(bin $L server)" --api "$1" --port 0
    mkdir "$T/c"
    for i in $(seq 200); do head -c 65536 /dev/urandom >"$T/c/in.$i"; done
    pids=()
    # The clients are the optimised build: the server is what is under test.
    for i in $(seq 200); do
        timeout 60 "$ROOT/$L/client" --port "$PORT" <"$T/c/in.$i" >"$T/c/out.$i" 2>"$T/c/err.$i" &
        pids+=($!)
    done
    failed=0
    for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
    [ "$failed" -eq 0 ]
    for i in $(seq 200); do cmp -s "$T/c/in.$i" "$T/c/out.$i" || { echo "client $i differs"; false; }; done
    refute grep -q 'refused\|BUG' "$T/server.err"
}

@test "poll: 200 concurrent clients each get their 64 KiB of random bytes back identical" {
    many_clients_echo poll
}

@test "select: 200 concurrent clients each get their 64 KiB of random bytes back identical" {
    many_clients_echo select
}

vanishing_client() {
    start_server server "$(bin $L server)" --api "$1" --port 0
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$a" before
    # A client that sends without reading, then is killed with unread data:
    # its kernel resets the connection (RST).
    start_bg hog "$ROOT/$L/client" --port "$PORT" --send-first 20000000
    hog=$PID
    wait_until 10 grep -q 'sent 2097152 of' "$T/hog.err"
    kill -KILL "$hog"
    wait_exit "$hog" 5 || true
    echo_on "$a" after
    exec {b}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$b" newcomer
    exec {a}>&- {b}>&-
}

@test "poll: a client that vanishes with a reset does not disturb the others" {
    vanishing_client poll
}

@test "select: a client that vanishes with a reset does not disturb the others" {
    vanishing_client select
}

# The text's Ctrl-Z experiment, without the text: slots 1..3 hold a, b, c;
# while the server is stopped a closes and c sends a line, so one poll()
# reports both. Closing a moves c into slot 1, which must be looked at
# again in the same turn (i++ there leaves c's line for a later poll).
@test "poll: the entry moved into a closed connection's slot is served in the same turn" {
    start_server server "$(bin $L server)" --api poll --port 0 -v
    local server=$PID a b c a_fd a_peer c_fd got
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$a" alice
    exec {b}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$b" bob
    exec {c}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$c" carol
    a_fd=$(sed -n 's/^server: accept fd=\([0-9]*\) .*(1 connections)$/\1/p' "$T/server.err")
    a_peer=$(sed -n 's/^server: accept fd=[0-9]* from \([^ ]*\) (1 connections)$/\1/p' "$T/server.err")
    c_fd=$(sed -n 's/^server: accept fd=\([0-9]*\) .*(3 connections)$/\1/p' "$T/server.err")
    kill -STOP "$server"
    wait_until 5 grep -qE '^State:[[:space:]]+T' "/proc/$server/status"
    exec {a}>&-
    printf 'late\n' >&"$c"
    wait_until 10 fin_and_line_waiting
    kill -CONT "$server"
    read -r -t 5 -u "$c" got
    [ "$got" = late ]
    exec {b}>&- {c}>&-
    grep -A4 -x 'server: poll -> 2 ready of 4' "$T/server.err" | diff - <(cat <<TRACE
server: poll -> 2 ready of 4
server: poll: fd=$a_fd POLLIN
server: recv fd=$a_fd -> 0 bytes: $a_peer closed its side
server: close fd=$a_fd (done)
server: poll: fd=$c_fd POLLIN
TRACE
)
}

fd_limit() {
    # With 16 fds (3 std, listener, spare) about 11 connections fit.
    start_server server bash -c 'ulimit -n 16 && for fd in $(seq 3 15); do eval "exec $fd>&-"; done; exec "$0" "$@"' "$(bin $L server)" --api "$1" --port 0
    server=$PID
    fds=()
    for i in $(seq 11); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        fds+=("$fd")
    done
    echo_on "${fds[0]}" first
    before=$(cpu_ms "$server")
    extra=()
    for i in $(seq 20); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        extra+=("$fd")
    done
    # every extra connection is closed by the server at once: end of file
    closed=0
    for fd in "${extra[@]}"; do at_eof "$fd" && closed=$((closed + 1)); done
    [ "$closed" -ge 15 ]
    sleep 1 # a measurement window: a spinning accept loop would burn it all
    spent=$(($(cpu_ms "$server") - before))
    echo "server CPU time over the scenario: $spent ms"
    [ "$spent" -lt 500 ] # a spinning accept loop burns all of it
    grep -q 'refused: out of file descriptors' "$T/server.err"
    # the ones it kept still work; after some leave, newcomers are served
    echo_on "${fds[1]}" still-here
    full=$(open_fds "$server")
    for fd in "${extra[@]}" "${fds[@]:0:5}"; do exec {fd}>&-; done
    # the server has seen the five leave and closed their descriptors
    wait_until 10 fds_at_most "$server" $((full - 5))
    exec {n}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$n" newcomer
    kill -0 "$server"
}

@test "poll under ulimit -n 16: extra clients are closed cleanly, no spinning, newcomers served later" {
    fd_limit poll
}

@test "select under ulimit -n 16: extra clients are closed cleanly, no spinning, newcomers served later" {
    fd_limit select
}

@test "select refuses a connection whose fd would be >= FD_SETSIZE, and keeps serving" {
    [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge 1100 ] ||
        skip "needs a hard fd limit of at least 1100 (ulimit -Hn is $(ulimit -Hn))"
    # fds 10..1023 taken before the server starts: the listener gets 3, the
    # spare 4, connections 5..9, and the sixth would be 1024.
    start_server server bash -c 'ulimit -n 2048 && for fd in $(seq 3 9); do eval "exec $fd>&-"; done && for fd in $(seq 10 1023); do eval "exec $fd</dev/null"; done; exec "$0" "$@"' \
        "$(bin $L server)" --api select --port 0
    fds=()
    for i in $(seq 5); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        fds+=("$fd")
        echo_on "$fd" "client $i"
    done
    exec {sixth}<>"/dev/tcp/127.0.0.1/$PORT"
    at_eof "$sixth"
    wait_until 5 grep -qE '^server: 127\.0\.0\.1:[0-9]+: refused: fd 1024 >= FD_SETSIZE \(1024\)$' "$T/server.err"
    echo_on "${fds[4]}" "still served"
}

@test "poll serves fds above FD_SETSIZE (no such limit)" {
    [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge 1100 ] ||
        skip "needs a hard fd limit of at least 1100 (ulimit -Hn is $(ulimit -Hn))"
    start_server server bash -c 'ulimit -n 2048 && for fd in $(seq 3 9); do eval "exec $fd>&-"; done && for fd in $(seq 10 1023); do eval "exec $fd</dev/null"; done; exec "$0" "$@"' \
        "$(bin $L server)" --api poll --port 0
    for i in $(seq 8); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        echo_on "$fd" "client $i"
    done
    refute grep -q refused "$T/server.err"
}

@test "--max-conns 3: the fourth connection is closed at once with a log line" {
    start_server server "$(bin $L server)" --api poll --port 0 --max-conns 3
    for i in 1 2 3; do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        echo_on "$fd" "client $i"
    done
    exec {fourth}<>"/dev/tcp/127.0.0.1/$PORT"
    at_eof "$fourth"
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: refused: --max-conns reached$' "$T/server.err"
}

@test "-v traces every readiness event, with both APIs" {
    for api in poll select; do
        start_server "$api" "$(bin $L server)" --api "$api" --port 0 -v
        [ "$(echo hi | timeout 10 "$(bin $L client)" --port "$PORT" 2>/dev/null)" = hi ]
        stop_pid "$PID"
        grep -qE "^server: $api -> [0-9]+ ready" "$T/$api.err"
        grep -qE '^server: accept fd=[0-9]+ from 127\.0\.0\.1:[0-9]+ \(1 connections\)$' "$T/$api.err"
        grep -qE '^server: recv fd=[0-9]+ -> 3 bytes$' "$T/$api.err"
        grep -qE '^server: close fd=[0-9]+ \(done\)$' "$T/$api.err"
    done
    grep -qE '^server: poll: fd=[0-9]+ POLLIN$' "$T/poll.err"
    grep -qE '^server: readable fd=[0-9]+$' "$T/select.err"
}

@test "the one-thread client echoes lesson 1's 20 MB deadlock payload" {
    run env BIN_DIR="$BIN_ROOT/$L" timeout 60 "$ROOT/$L/run" bigecho
    [ "$status" -eq 0 ]
    [[ $output == *"sent 20000000 bytes, received 20000000 back"* ]]
}

@test "the client still reports connect outcomes (lesson 2 behaviour)" {
    run "$(bin $L client)" --port 0 --self-connect --connect-only
    [ "$status" -eq 1 ]
    [[ $output == "client: self-connect: "* ]]
}

@test "bad --api value gets a one-line error and exit 2" {
    run "$(bin $L server)" --api epoll
    [ "$status" -eq 2 ]
    [ "$output" = "server: --api wants select or poll, not 'epoll'" ]
}

@test "a refused client that has sent nothing reads the end of the stream" {
    start_server server "$(bin $L server)" --api poll --port 0 --max-conns 1
    exec {first}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$first" "the one kept"
    run timeout 10 "$(bin $L client)" --port "$PORT" </dev/null
    [ "$status" -eq 0 ] # recv returned 0: the end of the stream
    [[ ${lines[0]} == "client: connected to "* ]]
    [ "${#lines[@]}" -eq 1 ]
}

@test "a refused client whose bytes were already queued gets a reset: Connection reset by peer" {
    refused_after_sending $L --api=poll
}

# After a reset the pending error is reported once: the first send fails
# with ECONNRESET (later ones with EPIPE).
@test "the server's first send after the client's reset fails with ECONNRESET" {
    start_server server "$(bin $L server)" --api poll --port 0 -v
    # a client that sends 20 MB without reading: the server's echo stalls
    # (waiting for writable), then the client is killed with unread data
    start_bg hog "$ROOT/$L/client" --port "$PORT" --send-first 20000000
    local hog=$PID
    wait_until 10 grep -q 'wait for writable' "$T/server.err"
    kill -KILL "$hog"
    wait_exit "$hog" 5 || true
    wait_until 10 grep -q 'close fd=' "$T/server.err"
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: send: Connection reset by peer$' "$T/server.err"
    refute grep -q 'Broken pipe' "$T/server.err"
}

@test "poll: SIGTERM is blocked except inside ppoll, which unblocks it while it waits" {
    stop_race_closed $L --api poll
}

@test "select: SIGTERM is blocked except inside pselect, which unblocks it while it waits" {
    stop_race_closed $L --api select
}

# The client never blocks in a write to stdout: with a reader that stops
# reading, it waits in poll(), and finishes once the reader comes back.
@test "the client waits in poll(), not in write(), while its stdout is not read" {
    start_server server "$(bin $L server)" --api poll --port 0
    head -c 20000000 /dev/urandom >"$T/in.data"
    mkfifo "$T/out.fifo"
    exec 6<>"$T/out.fifo" # held open, not read: the pipe fills up
    "$(bin $L client)" --port "$PORT" <"$T/in.data" >"$T/out.fifo" 2>"$T/client.err" 6>&- &
    local client=$!
    STARTED+=("$client")
    # everything stalls: the client stops reading the socket, the server
    # stops reading the client (its echo cannot go out), and what the
    # client still sends waits unread in the server's socket (Recv-Q)
    wait_until 20 bash -c "ss -tnH state established '( sport = :$PORT )' | awk '\$1 > 0 { f = 1 } END { exit !f }'"
    wait_until 5 grep -q poll "/proc/$client/wchan"
    echo "client waits in: $(cat "/proc/$client/wchan")"
    head -c 20000000 <&6 >"$T/out.data" &
    local reader=$!
    wait_exit "$client" 30
    wait_exit "$reader" 10
    exec 6>&-
    cmp "$T/in.data" "$T/out.data"
}

@test "the client: getsockopt(SO_ERROR) failing after the connect (strace injects ENOBUFS): one line naming it, exit status 1" {
    connect_so_error_fails $L
}
