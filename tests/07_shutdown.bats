#!/usr/bin/env bats
# Lesson 7 -- closing without losing data: close() with unread bytes and
# SO_LINGER {1,0} send RST (the answer's tail is lost), a graceful close
# loses nothing; half-close; the graceful stop on SIGTERM/SIGINT; idle and
# linger timeouts; counters on SIGUSR1.

load helpers

L=07_shutdown
ANSWER=4194304 # 4 MiB: more than the socket buffers hold, so part of it is in flight at close()

# rst_loses_the_tail MODE: closer hangs up with MODE; fetch, reading late,
# gets an exact prefix of the answer (it checks every byte), then ECONNRESET.
rst_loses_the_tail() {
    start_server closer "$(bin $L closer)" --once --close "$1" --port 0
    run timeout 30 "$(bin $L fetch)" --port "$PORT" --bytes $ANSWER --read-delay-ms 200
    [ "$status" -eq 1 ]
    re="^fetch: received ([0-9]+) of $ANSWER bytes, then ECONNRESET \(Connection reset by peer\): ([0-9]+) bytes lost$"
    [[ $output =~ $re ]]
    got=${BASH_REMATCH[1]} lost=${BASH_REMATCH[2]}
    [ "$got" -lt $ANSWER ]
    [ "$lost" -gt 0 ]
    [ $((got + lost)) -eq $ANSWER ]
    wait_exit "$PID" 10
    grep -qx "closer: answered GET $ANSWER: all $ANSWER bytes handed to the kernel" "$T/closer.out"
}

@test "close() with the next request unread sends RST: the client gets a byte-exact prefix, then ECONNRESET" {
    rst_loses_the_tail close
    grep -qx 'closer: close() with 7 unread bytes in the receive buffer: RST' "$T/closer.out"
}

@test "SO_LINGER {1,0} then close() sends RST: the tail of the answer is lost, ECONNRESET" {
    rst_loses_the_tail linger0
    grep -qx 'closer: linger0: SO_LINGER {1, 0}, close(): RST' "$T/closer.out"
}

@test "graceful close (shutdown, read until FIN, close): all 4 MiB arrive byte-exact, then end of stream" {
    start_server closer "$(bin $L closer)" --once --close graceful --port 0
    run timeout 30 "$(bin $L fetch)" --port "$PORT" --bytes $ANSWER --read-delay-ms 200
    [ "$status" -eq 0 ]
    [ "$output" = "fetch: received $ANSWER of $ANSWER bytes, then end of stream: complete" ]
    wait_exit "$PID" 10
    grep -qx "closer: graceful: FIN sent, 7 unread bytes discarded, client's FIN received, close()" \
        "$T/closer.out"
}

@test "graceful close is bounded: a client that never sends its FIN is closed after --linger-ms" {
    start_server closer "$(bin $L closer)" --once --close graceful --linger-ms 500 --port 0
    exec 7<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'GET 10\n' >&7
    read -r -N 10 -t 5 -u 7 answer
    [ "$answer" = "abcdefghij" ]
    # we keep the connection open and never close our side
    wait_exit "$PID" 5
    grep -qx 'closer: graceful: no FIN from the client within 500 ms (Resource temporarily unavailable), close()' \
        "$T/closer.out"
    exec 7<&-
}

@test "half-close: a client that sends 1000 messages then shutdown(SHUT_WR) gets all 1000 replies" {
    start_server server "$(bin $L server)" --port 0
    run timeout 60 "$(bin $L client)" --port "$PORT" --quiet --repeat 1000 --body-bytes 10000
    [ "$status" -eq 0 ]
    [[ $output == *"client: 1000 messages sent, 1000 replies, all intact"* ]]
    line=$(stats "$PID")
    echo "$line"
    [ "$(counter closed_peer "$line")" -eq 1 ]
    [ "$(counter closed_error "$line")" -eq 0 ]
    [ "$(counter msgs_in "$line")" -eq 1000 ]
    [ "$(counter msgs_sent "$line")" -eq 1000 ]
}

@test "SIGTERM: idle connections get a FIN, new connections are refused, the server exits 0 with its counters" {
    sigterm_stops_gracefully
}

@test "SIGINT stops gracefully too, with exit status 0" {
    sigint_stops_gracefully
}

@test "stop deadline: a client that never reads is closed after --stop-timeout-ms, its replies counted as dropped" {
    start_server server "$(bin $L server)" --port 0 --stop-timeout-ms 1000
    server=$PID
    start_bg lazy "$(bin tools slowreader)" --port "$PORT" --never-read --send 2000 --size 4096 \
        --read-for 20
    wait_until 10 grep -q 'reading paused' "$T/server.err"
    kill -TERM "$server"
    wait_exit "$server" 10
    grep -qx 'server: stop deadline (1000 ms): closing 1 connection(s) not done yet' "$T/server.err"
    line=$(grep '^stats at exit' "$T/server.out")
    echo "$line"
    [ "$(counter closed_stop_deadline "$line")" -eq 1 ]
    [ "$(counter msgs_dropped "$line")" -gt 0 ]
    [ $(($(counter msgs_sent "$line") + $(counter msgs_dropped "$line"))) -eq "$(counter msgs_queued "$line")" ]
}

@test "SIGTERM with replies queued: the server flushes them all, then sends its FIN" {
    # a 4 KiB send buffer and a client reading 100 kB/s: most of the 30 replies
    # (300 kB) wait in the server's own queue when the stop begins
    start_server server "$(bin $L server)" --port 0 --sndbuf 4096 --stop-timeout-ms 30000 -v
    server=$PID
    start_bg reader "$(bin tools slowreader)" --port "$PORT" --send 30 --size 10000 \
        --read-rate 100000 --read-for 60
    reader=$PID
    wait_until 10 bash -c "[ \$(grep -c 'frame complete' '$T/server.err') -eq 30 ]"
    line=$(stats "$server")
    echo "before SIGTERM: $line"
    [ "$(counter msgs_in "$line")" -eq 30 ]
    [ "$(counter msgs_pending "$line")" -gt 0 ] # the condition: replies still queued
    kill -TERM "$server"
    wait_exit "$reader" 60
    # slowreader checks every byte; its end of stream comes after the 30th reply
    [ "$(cat "$T/reader.out")" = "slowreader: server closed the connection after 30 messages (300750 bytes)" ]
    wait_exit "$server" 10
    line=$(grep '^stats at exit' "$T/server.out")
    echo "$line"
    [ "$(counter msgs_sent "$line")" -eq 30 ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
    [ "$(counter closed_stop "$line")" -eq 1 ]
}

@test "--threads 2: SIGTERM while workers hold replies: they are delivered before the connection ends" {
    start_server server "$(bin $L server)" --port 0 --threads 2 --stop-timeout-ms 30000 -v
    server=$PID
    # 4 LZ4 messages of 10 MiB each: a worker needs a good part of a second for each
    start_bg client "$(bin $L client)" --port "$PORT" --quiet --compress --pattern repeat \
        --body-bytes 10485760 --repeat 4
    client=$PID
    wait_until 30 bash -c "[ \$(grep -c 'frame complete' '$T/server.err') -eq 4 ]"
    kill -TERM "$server"
    wait_exit "$client" 60
    grep -q '^client: 4 messages sent, 4 replies, all intact ' "$T/client.out"
    wait_exit "$server" 10
    # the condition: at least one reply left the server after the stop began
    sent_after=$(sed -n '/stopping gracefully/,$p' "$T/server.err" | grep -c '^server: send fd=') || true
    echo "replies sent after SIGTERM: $sent_after"
    [ "$sent_after" -ge 1 ]
    line=$(grep '^stats at exit' "$T/server.out")
    echo "$line"
    [ "$(counter msgs_in "$line")" -eq 4 ]
    [ "$(counter msgs_sent "$line")" -eq 4 ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
}

@test "SIGTERM while reading is paused at the high-water mark: every whole request already read is answered" {
    # 10 kB requests: the last read's whole frames wait in the input buffer
    stop_while_paused 60 10000
    [ "$REPLIES" -gt 10 ] # more than the queue held when reading paused
}

@test "SIGTERM with connections still in the accept queue: each is accepted and gets a FIN, never a reset" {
    stop_with_accept_queue
}

@test "an idle server sleeps until its nearest deadline: no periodic wake-up for the stale-output check" {
    start_traced server -qq -o "$T/strace.log" -e trace=epoll_wait -- "$(bin $L server)" --port 0
    exec 7<>"/dev/tcp/127.0.0.1/$PORT"
    wait_until 5 bash -c "[ \$(ss -tnH state established '( sport = :$PORT )' | wc -l) -eq 1 ]"
    stats "$TRACED_PID" >/dev/null # a signal ends the sleep: strace completes its line
    # each sleep's timeout: none while nothing is open (-1), then until the idle deadline (60 s)
    timeouts=$(sed -n 's/^epoll_wait(.*, \(-\{0,1\}[0-9]*\)) = .*/\1/p' "$T/strace.log")
    echo "$timeouts"
    [ "$(wc -l <<<"$timeouts")" -ge 2 ]
    for ms in $timeouts; do
        [ "$ms" -eq -1 ] || [ "$ms" -ge 59000 ]
    done
    exec 7<&-
}

# drip_reader NAME: one 8 MB reply (an empty queue takes a message of any
# size), read 64 KiB every 500 ms: about 128 kB/s, a minute for the whole reply.
drip_reader() {
    start_bg "$1" "$(bin tools slowreader)" --port "$PORT" --send 1 --size 8000000 \
        --rcvbuf 65536 --drip 65536:500 --read-for 60
}

@test "a drip reader (64 KiB every 500 ms) is never stale, but stays over the high-water mark: closed as too slow, aborted" {
    start_server server "$(bin $L server)" --port 0 --sndbuf 65536 --stale-ms 3000 --slow-ms 4000
    server=$PID
    drip_reader drip
    wait_exit "$PID" 30
    re='^slowreader: server reset the connection after 0 messages \(([0-9]+) bytes\)$'
    [[ $(cat "$T/drip.out") =~ $re ]]
    [ "${BASH_REMATCH[1]}" -ge $((4 * 65536)) ] # bursts all along: never 3 s without progress
    grep -Eq '^server: 127\.0\.0\.1:[0-9]+: closed: too slow \([0-9]+ bytes queued, over the high-water mark for 4000 ms\)$' \
        "$T/server.err"
    line=$(stats "$server")
    echo "$line"
    [ "$(counter closed_slow "$line")" -eq 1 ]
    [ "$(counter closed_stale "$line")" -eq 0 ]
    # SO_LINGER {1, 0}: a RST, and nothing of the connection left on the server's side
    [ "$(ss -tnH "( sport = :$PORT )" | wc -l)" -eq 0 ]
}

@test "--drop close: the dropped drip reader's socket stays behind, an orphan in FIN-WAIT-1 with its Send-Q" {
    start_server server "$(bin $L server)" --port 0 --sndbuf 65536 --slow-ms 1000 --drop close
    server=$PID
    drip_reader drip
    wait_until 10 grep -q 'closed: too slow' "$T/server.err"
    stats "$server" >/dev/null # a later turn: the close is done
    orphan=$(ss -tnH state fin-wait-1 "( sport = :$PORT )")
    echo "$orphan"
    [ "$(wc -l <<<"$orphan")" -eq 1 ]
    [ "$(awk '{ print $2 }' <<<"$orphan")" -gt 0 ] # bytes the kernel still owes the peer
    wait_exit "$PID" 30
    # the kernel delivered them, then the FIN
    grep -Eqx 'slowreader: server closed the connection after 0 messages \([0-9]+ bytes\)' "$T/drip.out"
}

@test "a steady reader under the limit (1 MB/s) is kept: its queue passes the high-water mark, but never for --slow-ms" {
    start_server server "$(bin $L server)" --port 0 --sndbuf 65536 --slow-ms 1000
    server=$PID
    run timeout 60 "$(bin tools slowreader)" --port "$PORT" --send 100 --size 20000 \
        --read-rate 1000000 --expect 100 --read-for 30
    [ "$status" -eq 0 ]
    [[ $output =~ ^slowreader:\ received\ 100\ messages\ \(2002500\ bytes\)\ in\ .*,\ all\ intact$ ]]
    grep -q 'reading paused' "$T/server.err" # the condition: over the mark at times
    line=$(stats "$server")
    echo "$line"
    [ "$(counter closed_slow "$line")" -eq 0 ]
    [ "$(counter msgs_sent "$line")" -eq 100 ]
}

@test "a second SIGTERM during the stop ends it at once (still exit 0)" {
    start_server server "$(bin $L server)" --port 0 --linger-ms 60000 --stop-timeout-ms 60000
    server=$PID
    exec 7<>"/dev/tcp/127.0.0.1/$PORT"
    wait_until 5 bash -c "[ \$(ss -tnH state established '( sport = :$PORT )' | wc -l) -eq 1 ]"
    kill -TERM "$server"
    at_eof 7 # lingering now: waiting a minute for our FIN, which we do not send
    kill -TERM "$server"
    wait_exit "$server" 5
    grep -q 'server: Terminated again: stopping now' "$T/server.err"
    grep -q ' closed_stop_deadline=1 ' "$T/server.out"
    exec 7<&-
}

@test "idle timeout: a silent connection is closed with a FIN after --idle-ms, counted as idle" {
    start_server server "$(bin $L server)" --port 0 --idle-ms 500
    exec 7<>"/dev/tcp/127.0.0.1/$PORT"
    start=$EPOCHREALTIME
    read -r -t 5 -u 7 got || rc=$?
    end=$EPOCHREALTIME
    [ "${rc:-0}" -eq 1 ] # end of stream, not a timeout
    [ -z "$got" ]
    elapsed_ms=$(((${end/./} - ${start/./}) / 1000))
    echo "closed after $elapsed_ms ms"
    [ "$elapsed_ms" -ge 450 ]
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: idle for 500 ms: closing$' "$T/server.err"
    exec 7<&-
    line=$(stats "$PID")
    [ "$(counter closed_idle "$line")" -eq 1 ]
}

@test "bytes every 300 ms keep a connection alive past --idle-ms 1000 (activity restarts the timer)" {
    start_server server "$(bin $L server)" --port 0 --idle-ms 1000
    start_server proxy "$(bin tools chunkproxy)" --upstream "127.0.0.1:$PORT" --port 0 \
        --chunk 10 --delay-ms 300 --direction up
    # 4 messages of 5 bytes = 120 bytes = 12 chunks, 300 ms apart: 3.6 s, never 1 s quiet
    run timeout 30 "$(bin $L client)" --port "$PORT" --quiet aaaaa bbbbb ccccc ddddd
    [ "$status" -eq 0 ]
    [[ $output == *"client: 4 messages sent, 4 replies, all intact"* ]]
    refute grep -q 'idle for' "$T/server.err"
}

@test "linger timeout: a peer that never answers the idle close's FIN is closed after --linger-ms" {
    start_server server "$(bin $L server)" --port 0 --idle-ms 300 --linger-ms 500
    exec 7<>"/dev/tcp/127.0.0.1/$PORT"
    at_eof 7 # the idle close's FIN; we keep our side open and never send ours
    wait_alive "$PID" 10 grep -qE '^server: 127\.0\.0\.1:[0-9]+: no FIN within 500 ms of ours: closing$' \
        "$T/server.err"
    line=$(stats "$PID")
    echo "$line"
    [ "$(counter open "$line")" -eq 0 ]
    [ "$(counter closed_linger_timeout "$line")" -eq 1 ]
    [ "$(counter closed_idle "$line")" -eq 0 ]
    exec 7<&-
}

@test "backpressure is not a slowloris: a client paused at the high-water mark outlives --frame-ms" {
    # --stale-ms 60000: only the frame deadline (500 ms) could close it within 3 s
    start_server server "$(bin $L server)" --port 0 --frame-ms 500 --stale-ms 60000
    server=$PID
    start_bg lazy "$(bin tools slowreader)" --port "$PORT" --never-read --send 2000 --size 4096 \
        --read-for 3
    lazy=$PID
    wait_until 10 grep -q 'reading paused' "$T/server.err"
    wait_exit "$lazy" 20
    grep -qE '^slowreader: never read; still open after [0-9.]+ s$' "$T/lazy.out"
    refute grep -q 'a message took over' "$T/server.err"
    line=$(stats "$server")
    echo "$line"
    [ "$(counter closed_frame_timeout "$line")" -eq 0 ]
}

@test "SIGUSR1 prints consistent counters and the server goes on serving" {
    start_server server "$(bin $L server)" --port 0
    run timeout 10 "$(bin $L client)" --port "$PORT" --quiet --repeat 50 hello
    [ "$status" -eq 0 ]
    line=$(stats "$PID")
    echo "$line"
    [ "$(counter accepted "$line")" -eq 1 ]
    [ "$(counter msgs_in "$line")" -eq 50 ]
    [ "$(counter msgs_queued "$line")" -eq 50 ]
    [ "$(counter msgs_sent "$line")" -eq 50 ]
    [ "$(counter bytes_in "$line")" -eq $((50 * 30)) ]
    [ "$(counter bytes_out "$line")" -eq $((50 * 30)) ]
    run timeout 10 "$(bin $L client)" --port "$PORT" --quiet again
    [ "$status" -eq 0 ]
    kill -0 "$PID"
}

@test "--max-conns 2: a third connection is refused at once and counted" {
    max_conns_refused
}

@test "out of file descriptors (ulimit -n 32): extra clients are refused, the server keeps serving" {
    out_of_fds_refused
}

@test "--threads 4: a graceful stop delivers the workers' replies before the half-close" {
    start_server server "$(bin $L server)" --port 0 --threads 4
    run timeout 60 "$(bin $L client)" --port "$PORT" --quiet --compress --repeat 500 --body-bytes 20000
    [ "$status" -eq 0 ]
    [[ $output == *"client: 500 messages sent, 500 replies, all intact"* ]]
    kill -TERM "$PID"
    wait_exit "$PID" 10
    grep -q '^stats at exit: accepted=1 open=0 refused=0 msgs_in=500 msgs_queued=500 msgs_sent=500 msgs_dropped=0 ' \
        "$T/server.out"
}

@test "new flags reject bad values with one line and exit 2" {
    run "$(bin $L server)" --idle-ms soon
    [ "$status" -eq 2 ]
    [ "$output" = "server: --idle-ms wants a number in 0..86400000, not 'soon'" ]
    run "$(bin $L server)" --linger-ms 0
    [ "$status" -eq 2 ]
    [ "$output" = "server: --linger-ms wants a number in 1..3600000, not '0'" ]
    run "$(bin $L closer)" --close slam
    [ "$status" -eq 2 ]
    [ "$output" = "closer: --close wants close, linger0 or graceful, not 'slam'" ]
    run "$(bin $L fetch)" --bytes 5
    [ "$status" -eq 2 ]
    [ "$output" = "fetch: --port is required" ]
}

# ex6_server DIR: a copy of the lesson with exercise 6's change: signals_setup
# moved below workers_start, and (unless KEEP_MASK=1) the workers' full mask removed.
ex6_server() {
    cp -r "$ROOT/$L" "$1"
    sed -i '/s.signal_fd = signals_setup();/d' "$1/server.c"
    sed -i '/die("starting worker threads");/{n;s/^    }$/    }\n    s.signal_fd = signals_setup();/}' "$1/server.c"
    grep -A1 'die("starting worker threads");' "$1/server.c" | grep -q '^    }$' # the edit found its place
    grep -q '^    s.signal_fd = signals_setup();$' "$1/server.c"
    [ "${KEEP_MASK:-0}" = 1 ] ||
        sed -i '/pthread_sigmask(SIG_SETMASK/d; /sigset_t all, old;/d; /sigfillset(&all);/d' "$1/workers.c"
    make --no-print-directory -s -C "$1" server >/dev/null
}

@test "exercise 6: with signals set up after the workers and no mask of their own, SIGTERM kills; with the mask, the stop is graceful" {
    ex6_server "$T/broken"
    start_server server "$T/broken/server" --port 0 --threads 4
    run client --port "$PORT" ping # the loop runs: the signals are set up
    [ "$status" -eq 0 ]
    kill -TERM "$PID"
    rc=0
    wait_exit "$PID" 10 || rc=$?
    [ "$rc" -eq 143 ] # killed by SIGTERM: a worker took it, with the default action
    refute grep -q 'stopping gracefully' "$T/server.err"
    KEEP_MASK=1 ex6_server "$T/masked"
    start_server masked "$T/masked/server" --port 0 --threads 4
    run client --port "$PORT" ping
    [ "$status" -eq 0 ]
    kill -TERM "$PID"
    wait_exit "$PID" 10 # exit 0
    grep -q 'server: Terminated: stopping gracefully' "$T/masked.err"
}

@test "et: accept failing for one connection (EPROTO) does not end the accept loop (lesson 4's fix, carried)" {
    # 14-byte fixed records: the helper's "served anyway\n" is one message
    accept_one_connection_error_skipped --framing fixed --record-bytes 14
}

@test "et: an accept error not about one connection (ENOBUFS) pauses accepting: the listener is DEL'd, then ADDed, and the queued client served" {
    accept_paused_listener_readded --framing fixed --record-bytes 14
}

@test "the client: getsockopt(SO_ERROR) failing after the connect (strace injects ENOBUFS): one line naming it, exit status 1" {
    connect_so_error_fails $L
}

@test "getsockopt(SO_ERROR) failing after an EPOLLERR (strace injects ENOBUFS) closes that connection with one line naming it; a new client is served" {
    so_error_query_fails $L --framing fixed --record-bytes 14
}
