#!/usr/bin/env bats
# Lesson 6's other design, sendthread: one send thread woken by a semaphore. The same echo,
# ordering and slow-client checks as the server's eventfd design (run here on both, from
# send_queue_checks.bash), under ASan and under ThreadSanitizer; the generation check, the
# release of the send thread at exit, bad options; the comparison the text prints.

load helpers
load send_queue_checks

L=06_send_queue
MD=06_send_queue.md

# ThreadSanitizer's reports go to files too, whichever build runs (--bin build/tsan as well)
setup() {
    common_setup
    export TSAN_OPTIONS="log_path=$T/san/tsan:halt_on_error=1:exitcode=66"
}

tsan_bin() {
    [ -x "$TSAN_ROOT/$L/$1" ] || skip "no ThreadSanitizer build in $TSAN_ROOT (make sanitize-thread)"
    echo "$TSAN_ROOT/$L/$1"
}

@test "send thread: random bodies of 1 B to 64 KiB on 18 connections all come back intact" {
    check_echo_intact "$(bin $L sendthread)" --threads 4
}

@test "send thread: pipelined replies come back in order through partial writes; vanishing clients harm no one" {
    check_order "$(bin $L sendthread)" --threads 4
}

@test "send thread: a client that reads nothing for 3 s does not stall another; memory bounded; it gets everything" {
    # the optimised build, whose memory is what we measure (as lesson 6's flood test)
    check_slow_client 8192 "$ROOT/$L/sendthread" --threads 2
}

@test "eventfd server: the same echo check (the checks are the ones the two designs share)" {
    check_echo_intact "$(bin $L server)" --threads 4
}

@test "eventfd server: the same ordering check" {
    check_order "$(bin $L server)" --threads 4
}

@test "eventfd server: the same slow-client check" {
    check_slow_client 8192 "$ROOT/$L/server" --threads 2
}

@test "send thread under ThreadSanitizer: the echo check reports nothing" {
    check_echo_intact "$(tsan_bin sendthread)" --threads 4
}

@test "send thread under ThreadSanitizer: the ordering check (direct sends and EPOLLOUT flushes take turns) reports nothing" {
    check_order "$(tsan_bin sendthread)" --threads 4
}

@test "send thread under ThreadSanitizer: the slow-client check reports nothing" {
    check_slow_client 0 "$(tsan_bin sendthread)" --threads 2
}

@test "send thread: a reply for a connection closed before it was sent is dropped, not sent to the next client on its fd" {
    # One worker, 1.5 s per reply: A's reply is still being computed when A is closed and B,
    # given A's fd number, sends its own message. B must get its own reply and nothing else.
    start_server server "$(bin $L sendthread)" --threads 1 --worker-delay-ms 1500 --port 0 -v
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    # the lesson protocol: flags 0, origin_size 11, compress_size 0, 16 reserved zeros, body
    printf '\x00\x00\x00\x00\x0b\x00\x00\x00\x00' >&"$a"
    printf '\x00%.0s' $(seq 16) >&"$a"
    printf 'reply for A' >&"$a"
    wait_until 10 grep -q '^sendthread: frame complete fd=' "$T/server.err"
    printf 'GET / HTTP/1.0\r\n\r\n' >&"$a" # a protocol error: the server closes A now
    wait_until 10 grep -q '^sendthread: close fd=.* protocol error' "$T/server.err"
    fd=$(sed -n 's/^sendthread: accept fd=\([0-9]*\) .*/\1/p' "$T/server.err" | head -n 1)
    run timeout 20 "$(peer_bin tools slowreader)" --port "$PORT" --send 1 --size 11 --expect 1 --read-for 15
    echo "B: $output"
    exec {a}>&-
    [ "$status" -eq 0 ]
    [[ $output == *"slowreader: received 1 messages"*"all intact"* ]]
    # the condition was forced: B had A's fd number, and A's reply came back during B's turn
    [ "$(grep -c "^sendthread: accept fd=$fd " "$T/server.err")" -eq 2 ]
    grep -q "^sendthread: reply for fd=$fd generation 1 dropped: connection gone" "$T/server.err"
}

@test "send thread: SIGTERM while it sleeps in sem_wait: the post at exit releases it; exit 0 within 5 s" {
    start_server server "$(bin $L sendthread)" --threads 2 --port 0
    server=$PID
    run timeout 60 "$(peer_bin $L client)" --port "$PORT" --repeat 100 --quiet hello
    [ "$status" -eq 0 ]
    sleep 0.2 # nothing left to send: the send thread is asleep in sem_wait
    kill -TERM "$server"
    wait_exit "$server" 5
    grep -q '^sendthread: stopping (0 connections open): 100 replies sent or queued, 0 dropped' "$T/server.err"
}

@test "send thread: bad options get a one-line error and exit 2" {
    for args in "--threads 0" "--threads many" "--low-water 10 --high-water 10" "--bogus" "--port"; do
        # shellcheck disable=SC2086 # the options are words
        run "$(bin $L sendthread)" $args
        echo "$args -> $output"
        [ "$status" -eq 2 ]
        [ "${#lines[@]}" -eq 1 ]
    done
}

@test "./run classic runs five clients through sendthread, every reply intact" {
    [ -x "$BIN_ROOT/$L/client" ] || skip "the build under test has no client (the TSan build: servers only)"
    run env BIN_DIR="$BIN_ROOT/$L" TOOLS_BIN_DIR="$BIN_ROOT/tools" timeout 60 "$ROOT/$L/run" classic
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(grep -c 'client: 500 messages sent, 500 replies, all intact' <<<"$output")" -eq 5 ]
    [[ $output == *"[sendthread] sendthread: stopping (0 connections open): 2500 replies"* ]]
}

@test "tools/sendthread_bench (quick) prints the text's table: both designs, the ratio row, every cell a number" {
    export SENDTHREAD_BENCH_MESSAGES=2000 SENDTHREAD_BENCH_RUNS=1 # enough for a CPU tick or ten
    doc_cmd 06_send_queue.md 'tools/sendthread_bench'
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 5 ]
    [[ ${lines[1]} =~ ^design\ +p50\ us\ +p50\ slow\ +cpu\ us/msg\ +syscalls/msg\ +futex/msg$ ]]
    num='[0-9]+(\.[0-9]+)?'
    [[ ${lines[2]} =~ ^eventfd\ \(server\)(\ +$num){5}$ ]]
    [[ ${lines[3]} =~ ^send\ thread(\ +$num){5}$ ]]
    [[ ${lines[4]} =~ ^send\ thread\ /\ eventfd(\ +$num){5}$ ]]
}

@test "the text's send-thread table has the shape the bench prints" {
    table=$(awk '$0 == "$ tools/sendthread_bench" { on = 1; next } on && /^```/ { exit } on' "$ROOT/lessons/$MD")
    echo "$table"
    [ "$(wc -l <<<"$table")" -eq 5 ]
    grep -qE '^send thread / eventfd( +[0-9]+\.[0-9]+){5}$' <<<"$table"
}
