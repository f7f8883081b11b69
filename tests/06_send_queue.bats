#!/usr/bin/env bats
# Lesson 6 -- the send queue: partial writes, backpressure (watermarks), the
# output cap, stale output, EPOLLOUT only while queued, worker threads with
# generation numbers (also under ThreadSanitizer), fairness.

load helpers

L=06_send_queue

partial_writes() {
    # A 4 KiB send buffer makes nearly every reply a partial write; the
    # reader takes 16 MB/s in small token-bucket steps.
    start_server server "$(bin $L server)" --mode "$1" --sndbuf 4096 --port 0
    run timeout 60 "$(bin tools slowreader)" --port "$PORT" --send 512 --size 65536 \
        --read-rate 16000000 --expect 512 --read-for 50
    [ "$status" -eq 0 ]
    [[ $output == *"slowreader: received 512 messages"*"all intact"* ]]
}

@test "lt: 32 MiB echoed through a tiny SO_SNDBUF to a slow reader arrive byte-exact, in order" {
    partial_writes lt
}

@test "et: 32 MiB echoed through a tiny SO_SNDBUF to a slow reader arrive byte-exact, in order" {
    partial_writes et
}

@test "echo flood: 200 MiB sent without reading; server RSS stays within the watermark bound; nothing lost" {
    echo_flood_bounded

}

@test "reading resumes only at the low-water mark, so each pause drains high minus low before the next" {
    # 4 MB of replies through a 4 KiB send buffer to a reader taking 8 MB/s:
    # the queue rises and falls across the marks (256 KiB and 64 KiB) many times.
    start_server server "$(bin $L server)" --sndbuf 4096 --high-water 262144 --low-water 65536 --port 0
    run timeout 60 "$(bin tools slowreader)" --port "$PORT" --send 60 --size 65536 \
        --read-rate 8000000 --expect 60 --read-for 30
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"slowreader: received 60 messages"*"all intact"* ]]
    paused=$(grep -c 'reading paused' "$T/server.err" || true)
    resumed=$(sed -n 's/.*: \([0-9]*\) bytes queued <= low-water 65536: reading resumed$/\1/p' "$T/server.err")
    echo "reading paused $paused times; bytes queued at each resume:" $resumed
    [ -n "$resumed" ]
    for q in $resumed; do
        [ "$q" -le 65536 ]
    done
    # Hysteresis: from one pause to the next the queue drains at least
    # 262144 - 65536 bytes, and 60 replies of 65561 bytes pass through it.
    [ "$paused" -le $((60 * 65561 / (262144 - 65536) + 1)) ]
}

@test "messages left in the input buffer when reading paused are answered on resume, though the client sends nothing more" {
    # Lines framing, so that bash can be the client. A 400 kB line and five
    # small ones in one write: the server reads them all, and its echo of the
    # big line (through a 4 KiB send buffer, to a client not reading yet)
    # passes the high-water mark; the small lines wait in c->in. Nothing more
    # arrives, so only the resume itself can answer them.
    start_server server "$(bin $L server)" --framing lines --max-line 500000 --sndbuf 4096 \
        --high-water 100000 --low-water 20000 --port 0
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    {
        head -c 400000 /dev/zero | tr '\0' x
        printf '\r\n'
        for i in 1 2 3 4 5; do printf 'small %d\r\n' "$i"; done
    } >"$T/request"
    cat "$T/request" >&"$fd"
    wait_alive "$PID" 10 grep -q 'reading paused' "$T/server.err"
    n=$(stat -c %s "$T/request")
    rc=0
    timeout 5 head -c "$n" <&"$fd" >"$T/echo" || rc=$?
    echo "sent $n bytes, received $(stat -c %s "$T/echo") (head: status $rc); the last lines back:"
    tail -c 60 "$T/echo" | tr -d '\r'
    cmp "$T/request" "$T/echo"
    grep -q 'reading resumed' "$T/server.err"
}

@test "broadcast: a never-reading member is closed for output cap; three others get every message in order" {
    broadcast_caps_never_reader

}

@test "broadcast: the capped member's memory is given back (RSS near baseline, optimised build)" {
    start_server server "$ROOT/$L/server" --service broadcast --port 0
    server=$PID
    base=$(rss_kb "$server")
    base_fds=$(open_fds "$server")
    start_bg lazy "$(bin tools slowreader)" --port "$PORT" --never-read --read-for 20
    wait_until 10 fds_back_to "$server" $((base_fds + 1)) # the member is accepted
    run client --port "$PORT" --expect 0 --quiet --body-bytes 4096 --repeat 3000
    [ "$status" -eq 0 ]
    wait_until 10 grep -q 'closed: output cap' "$T/server.err"
    wait_until 10 fds_back_to "$server" "$base_fds" # the member is closed and freed
    after=$(rss_kb "$server")
    echo "server VmRSS: baseline $base kB, after the cap closed the member $after kB"
    [ $((after - base)) -lt 3072 ] # the 2 MiB queue was freed (glibc may keep a little)
}

@test "stale output closes a reader that stopped reading" {
    start_server server "$(bin $L server)" --stale-ms 500 --stale-check-ms 100 --port 0
    run timeout 30 "$(bin tools slowreader)" --port "$PORT" --never-read --send 2048 --size 4096 --read-for 10
    [ "$status" -eq 0 ]
    [[ $output == *"server closed the connection after"* ]]
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: closed: stale output \([0-9]+ bytes queued, no progress for [0-9]+ ms\)$' "$T/server.err"
}

@test "stale output spares a slow reader that keeps reading: every send from the queue restarts its clock" {
    # 4 MB of replies through a 4 KiB send buffer to a reader taking 2 MB/s:
    # the queue stays non-empty for about 2 s, four times --stale-ms, but it moves.
    start_server server "$(bin $L server)" --sndbuf 4096 --stale-ms 500 --stale-check-ms 100 --port 0
    run timeout 60 "$(bin tools slowreader)" --port "$PORT" --send 60 --size 65536 \
        --read-rate 2000000 --expect 60 --read-for 30
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"slowreader: received 60 messages"*"all intact"* ]]
    grep -q 'reading paused' "$T/server.err" # the queue was long (over 1 MiB) at some point
    refute grep -q 'closed: stale output' "$T/server.err"
}

@test "default marks: a client that reads as it sends (ping-pong, 64 KiB) never meets high water; one that pipelines 8 MB before reading does" {
    start_server server "$(bin $L server)" --port 0
    run client --port "$PORT" --pingpong --repeat 64 --body-bytes 65536 --pattern random --quiet
    [ "$status" -eq 0 ]
    refute grep -q 'reading paused' "$T/server.err"
    # the same 64 KiB bodies, 128 of them (8 MB), sent for a second before reading one reply
    run client --port "$PORT" --pause-ms 1000 --repeat 128 --body-bytes 65536 --pattern random --quiet
    echo "$output"
    [ "$status" -eq 0 ]
    wait_until 5 grep -q 'reading paused' "$T/server.err"
}

@test "EPOLLOUT is armed only while output is queued: one on and one off per episode, none when writes are whole" {
    start_server server "$(bin $L server)" --port 0 -v
    run client --port "$PORT" --pingpong --repeat 100 --quiet hello
    [ "$status" -eq 0 ]
    [ "$(grep -c 'EPOLLOUT on' "$T/server.err" || true)" -eq 0 ]
    [ "$(grep -c '(direct)' "$T/server.err")" -eq 100 ]
    start_server small "$(bin $L server)" --sndbuf 4096 --port 0 -v
    # --expect 1: the client keeps the connection open (no half-close), so the
    # queue drains on a live connection and EPOLLOUT is switched off
    run client --port "$PORT" --pause-ms 500 --expect 1 --body-bytes 200000 --quiet
    [ "$status" -eq 0 ]
    on=$(grep -c 'EPOLLOUT on' "$T/small.err" || true)
    off=$(grep -c 'EPOLLOUT off' "$T/small.err" || true)
    echo "EPOLLOUT on: $on, off: $off"
    [ "$on" -ge 1 ]
    [ "$on" -eq "$off" ]
}

@test "no spin: 20 idle connections and a stuck reader (reading paused, output queued) cost well under 100 ms of CPU in 2 s" {
    start_server server "$(bin $L server)" --port 0
    server=$PID
    for i in $(seq 20); do exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; done
    start_bg lazy "$(bin tools slowreader)" --port "$PORT" --never-read --send 2048 --size 4096 --read-for 10
    wait_alive "$server" 10 grep -q 'reading paused' "$T/server.err"
    before=$(cpu_ms "$server")
    # a measurement window: a server spinning on EPOLLOUT, or on EPOLLIN for
    # the requests it does not read while reading is paused, would burn it
    sleep 2
    spent=$(($(cpu_ms "$server") - before))
    echo "server CPU over 2 s with a stuck reader: $spent ms"
    [ "$spent" -lt 100 ]
}

@test "no EPOLLOUT spin after a drain: a connection idle once its queue emptied costs well under 100 ms of CPU in 2 s" {
    # Lines framing, so that bash can be the client; a 4 KiB send buffer, so
    # that the 200 kB echo is queued, then drained as we read it. The
    # connection stays open and idle, its socket writable.
    start_server server "$(bin $L server)" --framing lines --max-line 300000 --sndbuf 4096 --port 0 -v
    server=$PID
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    {
        head -c 200000 /dev/zero | tr '\0' x
        printf '\r\n'
    } >"$T/line"
    cat "$T/line" >&"$fd"
    timeout 10 head -c 200002 <&"$fd" >"$T/echo"
    cmp "$T/line" "$T/echo"
    grep -q 'queueing the rest' "$T/server.err" # the queue was used
    wait_until 10 grep -q 'from the queue (0 left)' "$T/server.err"
    before=$(cpu_ms "$server")
    sleep 2 # a measurement window: EPOLLOUT left on would report the idle socket on every turn
    spent=$(($(cpu_ms "$server") - before))
    echo "server CPU over 2 s with one idle connection after its queue drained: $spent ms"
    [ "$spent" -lt 100 ]
}

threads_many_clients() {
    local dir=$1 server_bin=$2
    start_server threads "$server_bin" --threads 4 --port 0
    pids=()
    for i in $(seq 50); do
        # distinct content per client: a reply delivered to the wrong
        # connection would not match and fail that client
        "$ROOT/$L/client" --port "$PORT" --repeat 1000 --quiet "client $i says hello" \
            >"$T/t.$i" 2>&1 &
        pids+=($!)
    done
    clients_vanish 10 "$ROOT/$L/client" # mid-stream, while the others run
    for p in "${pids[@]}"; do wait "$p"; done
    [ "$(cat "$T"/t.* | grep -c 'client: 1000 messages sent, 1000 replies, all intact')" -eq 50 ]
    kill -0 "$PID"
}

@test "threads: 50 clients x 1000 messages with --threads 4 all get their own replies; vanishing clients harm no one" {
    threads_many_clients asan "$(bin $L server)"
}

@test "threads: the same run under ThreadSanitizer reports nothing" {
    [ -x "$TSAN_ROOT/$L/server" ] || skip "no ThreadSanitizer build in $TSAN_ROOT (make test builds one)"
    export TSAN_OPTIONS="log_path=$T/san/tsan:halt_on_error=1:exitcode=66"
    threads_many_clients tsan "$TSAN_ROOT/$L/server"
}

# frames_from FD N: the server's trace shows at least N whole frames read on FD.
frames_from() { [ "$(grep -c "^server: frame complete fd=$1: " "$T/server.err")" -ge "$2" ]; }

@test "threads: a late reply for a closed connection is dropped, not sent to the next client on its fd (generation check)" {
    # One worker, kept busy by A's 10 LZ4 bodies of 10 MiB (each decompressed
    # and compressed again). A is killed while the worker is at it; B connects,
    # is given A's fd number, and A's replies come back after that.
    start_server server "$(bin $L server)" --threads 1 --port 0 -v
    # A's first message is small: its reply comes at once and A leaves it
    # unread, so that killing A sends a reset and the server frees the fd now
    # (after a plain end of stream it would wait for A's replies).
    start_bg a "$ROOT/$L/client" --port "$PORT" --compress --pause-ms 60000 \
        --body-bytes 10485760 --pattern repeat --repeat 10 --quiet small
    a=$PID
    wait_until 10 grep -q '^server: accept fd=' "$T/server.err"
    fd=$(sed -n 's/^server: accept fd=\([0-9]*\) .*/\1/p' "$T/server.err" | head -n 1)
    wait_until 20 frames_from "$fd" 20 # every request of A is with the worker
    wait_until 20 grep -q "^server: send fd=$fd <- " "$T/server.err" # A has the small reply
    kill -KILL "$a"
    wait_until 10 grep -q "^server: close fd=$fd " "$T/server.err"
    # B checks every reply against its own requests, and waits for them as
    # long as the worker needs (A's work comes first)
    run timeout 60 "$(bin tools slowreader)" --port "$PORT" --send 5 --size 1000 --expect 5 --read-for 50
    echo "B: $output"
    [ "$status" -eq 0 ]
    [[ $output == *"slowreader: received 5 messages"*"all intact"* ]]
    # the condition was forced: B had A's fd number, and a reply of A's came back during B's turn
    [ "$(grep -c "^server: accept fd=$fd " "$T/server.err")" -eq 2 ]
    awk -v fd="$fd" 'index($0, "server: accept fd=" fd " ") == 1 { n++ }
        n == 2 && index($0, "server: reply for fd=" fd " generation 1 dropped") == 1 { late++ }
        END { exit late == 0 }' "$T/server.err"
}

@test "threads, deterministic (generation check, test hook): a reply held back past its connection's close is dropped; the new client on that fd gets only its own" {
    # SERVER_WORKER_DELAY_MS holds every job 1500 ms. A sends one good frame
    # (it goes to the worker) and then a bad one: the server closes A at once,
    # with A's reply still out. B connects at once and gets A's fd number.
    SERVER_WORKER_DELAY_MS=1500 start_server server "$(bin $L server)" --threads 1 --port 0 -v
    z16='\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    printf "\x00\x00\x00\x00\x05\x00\x00\x00\x00${z16}hello\x02" >&"$a"
    wait_alive "$PID" 5 grep -q 'protocol error: bad flags' "$T/server.err"
    fd=$(sed -n 's/^server: accept fd=\([0-9]*\) .*/\1/p' "$T/server.err" | head -n 1)
    wait_alive "$PID" 5 grep -q "^server: close fd=$fd " "$T/server.err"
    run timeout 20 "$(bin tools slowreader)" --port "$PORT" --send 1 --size 1000 --expect 1 --read-for 15
    echo "B: $output"
    exec {a}>&-
    [ "$status" -eq 0 ]
    [[ $output == *"slowreader: received 1 messages"*"all intact"* ]]
    # B had A's fd number, and A's reply came back while B was connected, and was dropped
    [ "$(grep -c "^server: accept fd=$fd " "$T/server.err")" -eq 2 ]
    awk -v fd="$fd" 'index($0, "server: accept fd=" fd " ") == 1 { n++ }
        n == 2 && index($0, "server: reply for fd=" fd " generation 1 dropped") == 1 { late++ }
        END { exit late != 1 }' "$T/server.err"
}

fairness() {
    start_server server "$(bin $L server)" --mode "$1" --port 0
    start_bg flood "$(bin $L client)" --port "$PORT" --body-bytes 1048576 --repeat 200 --quiet
    run timeout 10 "$(bin $L client)" --port "$PORT" --pingpong --repeat 100 --quiet ping
    [ "$status" -eq 0 ]
    [[ $output == *"client: 100 messages sent, 100 replies, all intact"* ]]
}

@test "fairness (lt): while one client floods, another's 100 ping-pongs all complete" {
    fairness lt
}

@test "fairness (et, read and write budgets): while one client floods, another's 100 ping-pongs complete" {
    fairness et
}

# both_waiting: two connections to the server, each with over 100 kB unread in its receive queue.
both_waiting() {
    [ "$(ss -tnH state established "( sport = :$PORT )" | awk '$1 > 100000' | wc -l)" -eq 2 ]
}

# read_ahead SERVER_ARGS...: the server is stopped (SIGSTOP) while two
# clients connect and fill its receive queues and their own send buffers
# (6.5 MB each, replies unread); when it runs again, both are ready in the
# same wake-up, with megabytes behind them. The 4 KiB send buffer makes
# replies pile up in the queue. Sets AHEAD: the bytes read from the
# connection served first before the other's first read.
read_ahead() {
    start_server server "$(bin $L server)" --mode et --sndbuf 4096 --port 0 -v "$@"
    server=$PID
    kill -STOP "$server"
    for c in a b; do
        start_bg "flood-$c" "$ROOT/$L/client" --port "$PORT" --pause-ms 60000 --body-bytes 65536 --repeat 100 --quiet
    done
    wait_until 10 both_waiting
    kill -CONT "$server"
    wait_until 10 grep -q '^server: accept fd=.* (2 connections)$' "$T/server.err"
    mapfile -t fds < <(sed -n 's/^server: accept fd=\([0-9]*\) .*/\1/p' "$T/server.err")
    wait_until 10 grep -q "^server: recv fd=${fds[0]} " "$T/server.err"
    wait_until 10 grep -q "^server: recv fd=${fds[1]} " "$T/server.err"
    AHEAD=$(awk '/^server: recv fd=[0-9]+ -> [0-9]+ bytes/ {
        if (first == "") first = $3
        if ($3 != first) exit
        n += $5
    } END { print n }' "$T/server.err")
    echo "read from one flooder before the other's first read: $AHEAD bytes (READ_BUDGET_BYTES: 262144)"
}

@test "fairness (et read budget): of two flooders ready at once, the second is read before the first has had 512 KiB" {
    read_ahead
    [ "$AHEAD" -lt 524288 ]
}

@test "--budgets off (./run fairness): the first flooder is read until its queue passes the high-water mark, past 512 KiB, before the second" {
    read_ahead --budgets off
    [ "$AHEAD" -ge 524288 ]
    grep -q 'reading paused' "$T/server.err"
}

@test "bad --service, --threads and watermark values get a one-line error and exit 2" {
    run "$(bin $L server)" --service chat
    [ "$status" -eq 2 ]
    [ "$output" = "server: --service wants echo or broadcast, not 'chat'" ]
    run "$(bin $L server)" --low-water 2000 --high-water 1000
    [ "$status" -eq 2 ]
    [ "$output" = "server: --low-water must be below --high-water" ]
    run "$(bin $L server)" --service broadcast --threads 2
    [ "$status" -eq 2 ]
    [ "$output" = "server: --threads works with --service echo only" ]
}

@test "out of memory for the connection table (test hook SERVER_FAIL_ALLOC) refuses that connection with one line; the server goes on" {
    SERVER_FAIL_ALLOC=table start_server server "$(bin $L server)" --port 0
    for _ in 1 2; do
        run client --port "$PORT" ping
        [ "$status" -eq 1 ]
    done
    # two refusals: the first did not take the server down
    [ "$(grep -Ec '^server: 127\.0\.0\.1:[0-9]+: refused: out of memory$' "$T/server.err")" -eq 2 ]
}

@test "--threads 2: out of memory for a reply closes that connection at once, as our failure, not a protocol error" {
    SERVER_FAIL_ALLOC=reply start_server server "$(bin $L server)" --port 0 --threads 2
    run timeout 20 "$(bin $L client)" --port "$PORT" ping
    [ "$status" -eq 1 ] # not a hang: the worker's failure comes back to the loop
    [[ $output == *"client: server closed the connection after 0 of 1 replies"* ]]
    grep -Eq '^server: 127\.0\.0\.1:[0-9]+: closed: out of memory for a reply$' "$T/server.err"
    refute grep -q 'protocol error' "$T/server.err"
}

@test "SIGTERM is blocked except inside epoll_pwait, which unblocks it while it waits (lesson 4's fix, carried)" {
    # fixed 6-byte records: the helper's "hello\n" is one message, echoed as it came
    stop_race_closed $L --mode lt --framing fixed --record-bytes 6
}

@test "the client: getsockopt(SO_ERROR) failing after the connect (strace injects ENOBUFS): one line naming it, exit status 1" {
    connect_so_error_fails $L
}

@test "getsockopt(SO_ERROR) failing after an EPOLLERR (strace injects ENOBUFS) closes that connection with one line naming it; a new client is served" {
    so_error_query_fails $L --framing fixed --record-bytes 14
}

@test "et: accept failing for one connection (EPROTO) does not end the accept loop (lesson 4's fix, carried)" {
    # 14-byte fixed records: the helper's "served anyway\n" is one message
    accept_one_connection_error_skipped --framing fixed --record-bytes 14
}

@test "et: an accept error not about one connection (ENOBUFS) pauses accepting: the listener is DEL'd, then ADDed, and the queued client served" {
    accept_paused_listener_readded --framing fixed --record-bytes 14
}

@test "et: 300 connections that arrive together are all accepted on one edge (accept until EAGAIN, lesson 4's fix, carried)" {
    et_accepts_whole_burst --framing fixed --record-bytes 2
}
