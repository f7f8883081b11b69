#!/usr/bin/env bats
# Lesson 7 -- reliability: the finished server under conditions a unit test
# does not reach. A thousand connections through a proxy that cuts every
# stream at random; a sweep of every kind of bad input while honest load
# runs; a slowloris; a storm of signals during a 100 MiB echo; clients that
# vanish mid-stream (reply accounting); SIGTERM during a flood; valgrind on
# the optimised build and ThreadSanitizer on --threads.
#
# After every test the server holds exactly the descriptors it held when it
# started (or, if the test stopped it, it exited 0 with nothing open):
# every test calls fds_at_baseline or exited_cleanly, and teardown fails a
# test that forgot to.

load helpers

L=07_shutdown
SERVER_OPT=$ROOT/$L/server # the optimised build (make all): RSS and valgrind
PROTOCOL_ERRORS=(
    "bad-flags:bad flags (not 0 or 1)"
    "origin-zero:origin_size 0"
    "origin-too-big:origin_size over 10 MiB"
    "compress-zero:compress_size 0"
    "compress-too-big:compress_size over 10 MiB"
    "bad-lz4:lz4: match offset before the start of the output"
    "lz4-wrong-size:lz4: output shorter than origin_size"
)

teardown() {
    local rc=0
    # BATS_TEST_COMPLETED: the test body passed; then it must have checked the fds.
    if [ -n "${SERVER:-}" ] && [ -n "${BATS_TEST_COMPLETED:-}" ] && [ -z "${FDS_CHECKED:-}" ]; then
        echo "this test never checked the server's descriptors (fds_at_baseline or exited_cleanly)"
        rc=1
    fi
    common_teardown || rc=1
    return $rc
}

# ---- helpers ----

# loadgen_clean PID NAME: wait for a loadgen started as start_bg NAME; it must
# exit 0 with no error and no mismatch. Sets LOAD_OUTPUT to what it printed.
loadgen_clean() {
    local rc=0
    wait_exit "$1" 60 || rc=$?
    LOAD_OUTPUT=$(cat "$T/$2.out")
    echo "$LOAD_OUTPUT"
    [ "$rc" -eq 0 ] || { echo "loadgen exit status $rc"; return 1; }
    [ "$(field errors "$LOAD_OUTPUT")" -eq 0 ]
    [ "$(field mismatches "$LOAD_OUTPUT")" -eq 0 ]
}

# invariant LINE: msgs_queued = msgs_sent + msgs_dropped + msgs_pending.
invariant() {
    local q s d p
    q=$(counter msgs_queued "$1") s=$(counter msgs_sent "$1") d=$(counter msgs_dropped "$1") p=$(counter msgs_pending "$1")
    [ "$q" -eq $((s + d + p)) ] || { echo "queued $q != sent $s + dropped $d + pending $p"; return 1; }
}

# need_fds N: skip unless this machine lets a process open N descriptors.
need_fds() {
    local hard
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] || [ "$hard" -ge "$1" ] ||
        skip "needs $1 file descriptors per process; the hard limit here is $hard"
}

# "${WITH_FDS[@]}" CMD...: run CMD (exec'd: the same PID) with a soft descriptor
# limit of at least 4096 (the 1000- and 2000-connection tests need it: the
# proxy holds two descriptors per connection).
WITH_FDS=(bash -c '[ "$(ulimit -Sn)" = unlimited ] || [ "$(ulimit -Sn)" -ge 4096 ] ||
    ulimit -Sn 4096 || exit 125; exec "$@"' with_fds)

# serve BINARY ARGS...: start the server as "server" on port 0 (with room for
# 4096 descriptors) and record, once its loop runs (it has answered a
# SIGUSR1: its epoll and eventfd exist), SERVER and BASE_FDS.
serve() {
    local prog=$1
    shift
    start_server server "${WITH_FDS[@]}" "$prog" "$@" --port 0
    SERVER=$PID
    stats "$SERVER" >/dev/null
    BASE_FDS=$(open_fds "$SERVER")
    echo "server pid $SERVER: $BASE_FDS descriptors at start"
}

# fds_at_baseline: within 10 s the server holds exactly the descriptors it started with.
fds_at_baseline() {
    wait_until 10 fds_back_to "$SERVER" "$BASE_FDS" || {
        echo "server fds: $BASE_FDS at start, $(open_fds "$SERVER") now:"
        ls -l "/proc/$SERVER/fd"
        return 1
    }
    FDS_CHECKED=1
}

# exited_cleanly: for a test that stopped the server: it exited 0 with no
# connection open (the kernel took back its descriptors; it closed every one itself).
exited_cleanly() {
    local rc=0
    wait_exit "$SERVER" 60 || rc=$?
    [ "$rc" -eq 0 ] || { echo "server exit status $rc"; return 1; }
    grep -q '^stats at exit: accepted=[0-9]* open=0 ' "$T/server.out"
    grep -qx 'server: stopped' "$T/server.err"
    FDS_CHECKED=1
}

loadgen() { "$(bin tools loadgen)" "$@"; }
badpeer() { "$(bin tools badpeer)" "$@"; }

# ---- 1. many connections, streams cut at random ----

@test "1000 connections x random sizes through a random-chunking proxy: every reply byte-exact, counters exact" {
    need_fds 4096
    serve "$(bin $L server)"
    run timeout 120 "${WITH_FDS[@]}" "$(bin tools loadgen)" --port "$PORT" --conns 1000 --size 1-20000 \
        --messages 3 --via-proxy 'random:1-3000' --seed 42 --timeout 100
    loadgen_ok 3000
    [ "$(field conns "$output")" -eq 1000 ]
    bytes=$(field bytes "$output")
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "$line"
    counters_exact "$line" 1000 3000 "$bytes"
    kill -0 "$SERVER"
    fds_at_baseline
}

# ---- 2. every kind of bad input, while honest load runs throughout ----

# sweep BINARY: the bad-input sweep against BINARY --idle-ms 500 while a
# loadgen keeps 10 connections busy. Leaves LOAD_OUTPUT, LINE (final counters).
sweep() {
    local entry scenario reason rc
    need_fds 4096
    serve "$1" --idle-ms 500
    RSS_START=$(rss_kb "$SERVER")
    start_bg load "${WITH_FDS[@]}" "$(bin tools loadgen)" --port "$PORT" --conns 10 --size 1-20000 \
        --duration 8 --seed 7 --timeout 60
    load=$PID
    wait_until 10 counter_ge msgs_in 100 # all 10 connected and busy
    local sweep_start=$EPOCHREALTIME
    for entry in "${PROTOCOL_ERRORS[@]}"; do
        scenario=${entry%%:*} reason=${entry#*:}
        run timeout 20 "$(bin tools badpeer)" --port "$PORT" "$scenario"
        echo "$output"
        [ "$status" -eq 0 ]
        [[ $output =~ ^badpeer:\ $scenario:\ server\ closed\ the\ connection\ after\ [0-9]+\ ms\ \((EOF|reset)\)$ ]]
        [ "$(grep -cF ": protocol error: $reason" "$T/server.err")" -eq 1 ]
    done
    # a header trickled one byte a second: the idle timeout (500 ms) closes it
    run timeout 20 "$(bin tools badpeer)" --port "$PORT" trickle --interval-ms 1000 --wait-ms 10000
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output =~ ^badpeer:\ trickle:\ server\ closed\ the\ connection\ after\ ([0-9]+)\ ms,\ 1\ bytes\ sent$ ]]
    [ "${BASH_REMATCH[1]}" -ge 450 ]
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: idle for 500 ms: closing$' "$T/server.err"
    run timeout 60 "${WITH_FDS[@]}" "$(bin tools badpeer)" --port "$PORT" abandon --count 2000 --wait-ms 30000
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "badpeer: abandon: opened and abandoned 2000 connections" ]
    run timeout 20 "$(bin tools badpeer)" --port "$PORT" rst-mid-frame
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "badpeer: rst-mid-frame: sent 525 bytes, then reset" ]
    run timeout 20 "$(bin tools badpeer)" --port "$PORT" half-close-mid-frame
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output =~ ^badpeer:\ half-close-mid-frame:\ server\ closed\ the\ connection\ after\ [0-9]+\ ms\ \(EOF\)$ ]]
    local sweep_end=$EPOCHREALTIME
    echo "the sweep took $(((${sweep_end/./} - ${sweep_start/./}) / 1000)) ms"
    # the load ran throughout: it is still running now that the sweep is over
    kill -0 "$load" || { echo "loadgen (--duration 8) ended before the sweep did"; false; }
    loadgen_clean "$load" load
    [ "$(field closed_by_server "$LOAD_OUTPUT")" -eq 0 ]
    wait_until 10 counter_is open 0
    LINE=$(stats "$SERVER")
    echo "$LINE"
    kill -0 "$SERVER"
    # 10 loadgen + 7 protocol + trickle + 2000 abandoned + rst + half-close
    [ "$(counter accepted "$LINE")" -eq 2020 ]
    [ "$(counter refused "$LINE")" -eq 0 ]
    [ "$(counter closed_protocol "$LINE")" -eq 7 ]
    [ "$(counter closed_error "$LINE")" -eq 1 ] # the RST
    # loadgen, abandon and half-close end as 'peer'; the trickle (and any abandoned
    # connection the loaded machine left quiet for 500 ms before its FIN) as 'idle'
    [ "$(counter closed_idle "$LINE")" -ge 1 ]
    [ $(($(counter closed_peer "$LINE") + $(counter closed_idle "$LINE"))) -eq 2012 ]
    for r in frame_timeout output_cap stale stop stop_deadline linger_timeout; do
        [ "$(counter "closed_$r" "$LINE")" -eq 0 ] || { echo "closed_$r is not 0"; false; }
    done
    # every message decoded was answered: loadgen's, and the valid one each protocol badpeer sends first
    [ "$(counter msgs_in "$LINE")" -eq $(($(field messages "$LOAD_OUTPUT") + 7)) ]
    [ "$(counter msgs_sent "$LINE")" -eq "$(counter msgs_in "$LINE")" ]
    [ "$(counter msgs_queued "$LINE")" -eq "$(counter msgs_in "$LINE")" ]
    [ "$(counter msgs_dropped "$LINE")" -eq 0 ]
    [ "$(counter msgs_pending "$LINE")" -eq 0 ]
    [ "$(grep -c 'protocol error' "$T/server.err")" -eq 7 ]
    fds_at_baseline
}

@test "bad-input sweep under load (optimised build): 7 protocol errors, trickle, 2000 abandoned, RST, half-close; fds and RSS back to baseline" {
    [ -x "$SERVER_OPT" ] || { echo "no optimised build at $SERVER_OPT: run make all"; false; }
    sweep "$SERVER_OPT"
    rss_end=$(rss_kb "$SERVER")
    echo "server VmRSS: $RSS_START kB at start, $rss_end kB after the sweep (bound: +2048 kB)"
    [ "$rss_end" -le $((RSS_START + 2048)) ]
}

@test "bad-input sweep under load (ASan+UBSan build): no memory error, same counters, fds back to baseline" {
    sweep "$(bin $L server)"
}

# ---- 3. slowloris ----

@test "slowloris: a byte every 500 ms is never idle for 1 s, but the 3 s frame deadline closes it" {
    serve "$(bin $L server)" --idle-ms 1000 --frame-ms 3000
    run timeout 30 "$(bin tools badpeer)" --port "$PORT" trickle --interval-ms 500 --wait-ms 20000
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output =~ ^badpeer:\ trickle:\ server\ closed\ the\ connection\ after\ ([0-9]+)\ ms,\ [0-9]+\ bytes\ sent$ ]]
    [ "${BASH_REMATCH[1]}" -ge 2500 ]
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: closed: a message took over 3000 ms \([0-9]+ bytes of it so far\)$' \
        "$T/server.err"
    refute grep -q 'idle for' "$T/server.err"
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "$line"
    [ "$(counter closed_frame_timeout "$line")" -eq 1 ]
    [ "$(counter closed_idle "$line")" -eq 0 ]
    fds_at_baseline
}

# ---- 4. EINTR ----

@test "EINTR storm: ~1000 SIGUSR2/s during a 100 MiB echo: every byte back, no connection dropped" {
    serve "$(bin $L server)"
    start_bg storm "$(bin tools badpeer)" signal-storm --pid "$SERVER" --signal USR2 --rate 1000 --for-ms 120000
    storm=$PID
    wait_until 10 counter_ge usr2 1
    before=$(counter usr2 "$(stats "$SERVER")")
    run timeout 120 "$(bin tools loadgen)" --port "$PORT" --mode oneway --conns 1 --size 65536 \
        --messages 1600 --timeout 100
    echo "$output"
    after=$(counter usr2 "$(stats "$SERVER")")
    kill -0 "$storm" # the storm covered the whole echo
    kill "$storm"
    wait "$storm" || true
    echo "SIGUSR2 handled: $before before the echo, $after after"
    [ "$status" -eq 0 ]
    [ "$(field messages "$output")" -eq 1600 ]
    [ "$(field bytes "$output")" -eq $((1600 * 65536)) ]
    [ "$(field errors "$output")" -eq 0 ]
    [ "$(field mismatches "$output")" -eq 0 ]
    [ "$(field closed_by_server "$output")" -eq 0 ]
    [ "$after" -gt "$before" ]
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "$line"
    [ "$(counter msgs_in "$line")" -eq 1600 ]
    [ "$(counter msgs_sent "$line")" -eq 1600 ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
    [ "$(counter closed_error "$line")" -eq 0 ]
    [ "$(counter closed_peer "$line")" -eq 1 ]
    fds_at_baseline
}

# ---- 5. accounting ----

@test "accounting: with clients killed mid-stream, queued = sent + dropped + pending; at exit pending = 0, dropped > 0" {
    # --stale-ms 60000: the never-reading clients keep their queues until we kill them
    serve "$(bin $L server)" --stale-ms 60000
    # three oneway floods, each killed (SIGKILL: the kernel resets) in mid-stream
    for i in 1 2 3; do
        start_bg "flood$i" "$(bin tools loadgen)" --port "$PORT" --mode oneway --conns 2 \
            --size 1-65536 --duration 60 --seed "$i"
        flood=$PID
        target=$(($(counter msgs_in "$(stats "$SERVER")") + 300))
        wait_until 20 counter_ge msgs_in "$target"
        { kill -KILL "$flood" && wait "$flood"; } 2>/dev/null || true
    done
    # two clients that never read: their queues fill past the high-water mark
    start_bg lazy1 "$(bin tools slowreader)" --port "$PORT" --never-read --send 2000 --size 4096 --read-for 60
    lazy1=$PID
    start_bg lazy2 "$(bin tools slowreader)" --port "$PORT" --never-read --send 2000 --size 4096 --read-for 60
    lazy2=$PID
    wait_until 20 bash -c "[ \$(grep -c 'reading paused' '$T/server.err') -ge 2 ]"
    line=$(stats "$SERVER")
    echo "mid-run: $line"
    invariant "$line"
    [ "$(counter msgs_pending "$line")" -gt 0 ] # the invariant's third term is exercised
    { kill -KILL "$lazy1" "$lazy2" && wait "$lazy1" "$lazy2"; } 2>/dev/null || true
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "all gone: $line"
    invariant "$line"
    [ "$(counter msgs_pending "$line")" -eq 0 ]
    [ "$(counter msgs_dropped "$line")" -gt 0 ]
    [ "$(counter msgs_queued "$line")" -eq "$(counter msgs_in "$line")" ] # echo: one reply per message
    fds_at_baseline
    kill -TERM "$SERVER"
    exited_cleanly
    exit_line=$(grep '^stats at exit' "$T/server.out")
    echo "$exit_line"
    [ "$(counter msgs_pending "$exit_line")" -eq 0 ]
    [ "$(counter msgs_queued "$exit_line")" -eq $(($(counter msgs_sent "$exit_line") + $(counter msgs_dropped "$exit_line"))) ]
    [ "$(counter msgs_dropped "$exit_line")" -gt 0 ]
}

# ---- 7. SIGTERM during a flood ----

@test "SIGTERM during a flood: every message the server decoded is answered, loadgen verifies them all, exit 0" {
    # generous stop and linger bounds: under load the test must not meet them
    serve "$(bin $L server)" --stop-timeout-ms 30000 --linger-ms 30000
    floods=()
    for i in 1 2 3; do
        start_bg "flood$i" "$(bin tools loadgen)" --port "$PORT" --mode oneway --conns 2 \
            --size 1-65536 --duration 60 --until-closed --seed "$i" --timeout 90
        floods+=("$PID")
    done
    wait_until 20 counter_ge accepted 6
    target=$(($(counter msgs_in "$(stats "$SERVER")") + 500))
    wait_until 20 counter_ge msgs_in "$target"
    kill -TERM "$SERVER"
    exited_cleanly
    grep -q 'server: Terminated: stopping gracefully' "$T/server.err"
    verified=0
    for i in 1 2 3; do
        loadgen_clean "${floods[$((i - 1))]}" "flood$i"
        [ "$(field closed_by_server "$LOAD_OUTPUT")" -eq 2 ]
        verified=$((verified + $(field messages "$LOAD_OUTPUT")))
    done
    line=$(grep '^stats at exit' "$T/server.out")
    echo "$line"
    echo "loadgen verified $verified replies"
    [ "$(counter msgs_in "$line")" -eq "$(counter msgs_sent "$line")" ]
    [ "$(counter msgs_queued "$line")" -eq "$(counter msgs_sent "$line")" ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
    [ "$(counter msgs_pending "$line")" -eq 0 ]
    [ "$(counter msgs_sent "$line")" -eq "$verified" ]
    [ "$(counter closed_stop "$line")" -eq 6 ]
}

# With --threads, msgs_in counts a message when the worker's reply comes
# back (service.c deliver_job), not when it is handed over: a bad LZ4 body,
# which only the worker can find, is then never counted at all, exactly as
# without threads (no count to correct afterwards).
@test "--threads 2: a bad LZ4 body is a protocol error, not a message: the same counters as without threads" {
    serve "$(bin $L server)" --threads 2
    for scenario in bad-lz4 lz4-wrong-size; do
        run timeout 20 "$(bin tools badpeer)" --port "$PORT" "$scenario"
        echo "$output"
        [ "$status" -eq 0 ]
    done
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "$line"
    [ "$(counter closed_protocol "$line")" -eq 2 ]
    # each badpeer sends one valid message (echoed) before its bad one
    [ "$(counter msgs_sent "$line")" -eq 2 ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
    [ "$(counter msgs_queued "$line")" -eq 2 ]
    [ "$(counter msgs_in "$line")" -eq 2 ] # with the bug: 4
    fds_at_baseline
}

# ---- 8. valgrind ----

@test "valgrind memcheck (optimised build): load, LZ4, a protocol error, an idle close, SIGTERM: 0 errors, no leak" {
    command -v valgrind >/dev/null || skip "valgrind is not installed"
    [ -x "$SERVER_OPT" ] || { echo "no optimised build at $SERVER_OPT: run make all"; false; }
    serve valgrind --log-file="$T/valgrind.log" --leak-check=full \
        --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \
        "$SERVER_OPT" --idle-ms 1500
    run timeout 120 "$(bin tools loadgen)" --port "$PORT" --conns 20 --messages 15 --size 1-5000 --timeout 100
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(field messages "$output")" -eq 300 ]
    run timeout 120 "$(bin tools loadgen)" --port "$PORT" --conns 20 --messages 15 --size 1-5000 \
        --compress --seed 2 --timeout 100
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(field messages "$output")" -eq 300 ]
    run timeout 60 "$(bin tools badpeer)" --port "$PORT" bad-lz4 --wait-ms 30000
    echo "$output"
    [ "$status" -eq 0 ]
    exec 7<>"/dev/tcp/127.0.0.1/$PORT"
    rc=0
    read -r -t 30 -u 7 got || rc=$?
    [ "$rc" -eq 1 ] # end of stream: the idle close
    [ -z "$got" ]
    exec 7<&-
    wait_until 20 counter_is open 0
    fds_at_baseline
    kill -TERM "$SERVER"
    rc=0
    wait_exit "$SERVER" 60 || rc=$?
    echo "valgrind exit status $rc"
    cat "$T/valgrind.log"
    [ "$rc" -eq 0 ]
    line=$(grep '^stats at exit' "$T/server.out")
    [ "$(counter msgs_in "$line")" -eq 601 ]
    [ "$(counter msgs_sent "$line")" -eq 601 ]
    [ "$(counter closed_protocol "$line")" -eq 1 ]
    [ "$(counter closed_idle "$line")" -eq 1 ]
    valgrind_clean "$T/valgrind.log"
}

# ---- 9. ThreadSanitizer ----

@test "ThreadSanitizer: --threads 4 with LZ4 load and a SIGTERM mid-run reports nothing, answers everything" {
    [ -x "$TSAN_ROOT/$L/server" ] || skip "no ThreadSanitizer build in $TSAN_ROOT (make test builds one)"
    export TSAN_OPTIONS="log_path=$T/san/tsan:halt_on_error=1:exitcode=66"
    serve "$TSAN_ROOT/$L/server" --threads 4 --stop-timeout-ms 30000 --linger-ms 30000
    start_bg load "$(bin tools loadgen)" --port "$PORT" --mode oneway --conns 8 --compress \
        --size 1-20000 --duration 60 --until-closed --timeout 90
    load=$PID
    wait_until 20 counter_ge accepted 8
    target=$(($(counter msgs_in "$(stats "$SERVER")") + 300))
    wait_until 30 counter_ge msgs_in "$target"
    kill -TERM "$SERVER"
    exited_cleanly
    loadgen_clean "$load" load
    [ "$(field closed_by_server "$LOAD_OUTPUT")" -eq 8 ]
    line=$(grep '^stats at exit' "$T/server.out")
    echo "$line"
    [ "$(counter msgs_in "$line")" -eq "$(counter msgs_sent "$line")" ]
    [ "$(counter msgs_sent "$line")" -eq "$(field messages "$LOAD_OUTPUT")" ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
    # teardown fails the test if TSan wrote a report to $T/san
}

# ---- 9. out of memory, through the test hook SERVER_FAIL_ALLOC ----

@test "out of memory for the connection table refuses that connection only, with one line; the server goes on" {
    export SERVER_FAIL_ALLOC=table
    serve "$(bin $L server)"
    for _ in 1 2; do
        exec 7<>"/dev/tcp/127.0.0.1/$PORT"
        at_eof 7 # refused: closed at once
        exec 7<&-
    done
    line=$(stats "$SERVER")
    echo "$line"
    [ "$(counter refused "$line")" -eq 2 ]
    [ "$(counter accepted "$line")" -eq 0 ]
    [ "$(grep -Ec '^server: 127\.0\.0\.1:[0-9]+: refused: out of memory$' "$T/server.err")" -eq 2 ]
    fds_at_baseline
}

@test "out of memory while decompressing closes that connection as an error, not a protocol error; others are served" {
    export SERVER_FAIL_ALLOC=decompress
    serve "$(bin $L server)"
    run client --port "$PORT" --compress ping
    [ "$status" -eq 1 ]
    run client --port "$PORT" ping # not compressed: no allocation to fail
    [ "$status" -eq 0 ]
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "$line"
    [ "$(counter closed_error "$line")" -eq 1 ]
    [ "$(counter closed_protocol "$line")" -eq 0 ]
    [ "$(counter msgs_unanswered "$line")" -eq 1 ]
    [ "$(counter msgs_sent "$line")" -eq 1 ]
    grep -Eq '^server: 127\.0\.0\.1:[0-9]+: closed: out of memory for a message$' "$T/server.err"
    refute grep -q 'protocol error' "$T/server.err"
    fds_at_baseline
}

@test "--threads 2: out of memory for a reply ends that connection at once, counted as an error, not a protocol error" {
    export SERVER_FAIL_ALLOC=reply
    serve "$(bin $L server)" --threads 2
    run timeout 20 "$(bin $L client)" --port "$PORT" ping
    [ "$status" -eq 1 ] # not a hang: the worker's failure comes back to the loop
    [[ $output == *"client: server closed the connection after 0 of 1 replies"* ]]
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "$line"
    [ "$(counter closed_error "$line")" -eq 1 ]
    [ "$(counter closed_protocol "$line")" -eq 0 ]
    # as without threads: a message nobody could answer is unanswered, not "in"
    [ "$(counter msgs_in "$line")" -eq 0 ]
    [ "$(counter msgs_unanswered "$line")" -eq 1 ]
    grep -Eq '^server: 127\.0\.0\.1:[0-9]+: closed: out of memory for a reply$' "$T/server.err"
    fds_at_baseline
}

@test "--threads 2: the worker threads block every signal; the loop thread alone takes SIGUSR2" {
    serve "$(bin $L server)" --threads 2
    workers=0
    for task in "/proc/$SERVER/task/"*; do
        mask=$((16#$(awk '/^SigBlk:/ { print $2 }' "$task/status")))
        echo "thread ${task##*/}: SigBlk $(printf '%x' "$mask")"
        if [ "${task##*/}" = "$SERVER" ]; then
            [ $((mask >> (12 - 1) & 1)) -eq 0 ] # the loop thread: SIGUSR2 open
        else
            [ $((mask >> (12 - 1) & 1)) -eq 1 ] # SIGUSR2 blocked
            [ $((mask >> (15 - 1) & 1)) -eq 1 ] # SIGTERM blocked
            workers=$((workers + 1))
        fi
    done
    [ "$workers" -eq 2 ]
    fds_at_baseline
}

@test "broadcast with a 4 KiB send buffer: each member's copy that did not fit is finished through EPOLLOUT" {
    # Every copy is queued from inside the sender's decoding loop; the loop
    # settles each member at the end of the turn (EPOLLOUT on), not from there.
    serve "$(bin $L server)" --service broadcast --sndbuf 4096
    start_bg member-a "$(bin $L client)" --port "$PORT" --expect 20
    pid_a=$PID
    start_bg member-b "$(bin $L client)" --port "$PORT" --expect 20
    pid_b=$PID
    wait_until 10 counter_is open 2
    body=$(head -c 60000 /dev/zero | tr '\0' y)
    run client --port "$PORT" --expect 0 --quiet --repeat 20 "$body"
    [ "$status" -eq 0 ]
    wait_exit "$pid_a" 30
    wait_exit "$pid_b" 30
    grep -q "client: 0 messages sent, 20 received" "$T/member-a.out"
    grep -q "client: 0 messages sent, 20 received" "$T/member-b.out"
    line=$(stats "$SERVER")
    echo "$line"
    [ "$(counter msgs_sent "$line")" -eq 40 ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
    fds_at_baseline
}
