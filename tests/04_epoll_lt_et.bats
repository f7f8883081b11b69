#!/usr/bin/env bats
# Lesson 4 -- epoll, level- and edge-triggered: both modes deliver a burst,
# et-no-drain strands bytes until the client writes again, ET accepts
# every queued connection, EPOLLONESHOT re-arms.

load helpers

L=04_epoll_lt_et

burst() { # MODE BYTES [server args...]: the client's two result lines
    local mode=$1 bytes=$2
    shift 2
    start_server "server-$mode" "$(bin $L server)" --mode "$mode" --port 0 "$@"
    run timeout 30 "$(bin $L client)" --port "$PORT" --burst "$bytes" --nudge
    [ "$status" -eq 0 ]
}

@test "lt delivers a 1 MiB burst sent in one write" {
    burst lt 1048576
    [ "${lines[1]}" = "burst: sent 1048576 bytes in one write, 1048576 came back" ]
}

@test "et delivers a 1 MiB burst sent in one write" {
    burst et 1048576
    [ "${lines[1]}" = "burst: sent 1048576 bytes in one write, 1048576 came back" ]
}

@test "et reads until EAGAIN: one event, several reads, all 4000 bytes back" {
    burst et 4000 --read-bytes 1024 -v
    [ "${lines[1]}" = "burst: sent 4000 bytes in one write, 4000 came back" ]
    grep -qE '^server: drained fd=[0-9]+: EAGAIN after 5 reads$' "$T/server-et.err"
}

@test "lt with small reads gets one event per read and delivers everything" {
    burst lt 4000 --read-bytes 1024 -v
    [ "${lines[1]}" = "burst: sent 4000 bytes in one write, 4000 came back" ]
    [ "$(grep -cE '^server: recv fd=[0-9]+ -> (1024|928) bytes$' "$T/server-lt.err")" -eq 4 ]
}

@test "et: a client that went quiet after its echo does not hold up the next one (non-blocking sockets)" {
    start_server server "$(bin $L server)" --mode et --port 0
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    # the drain's last recv on a's socket must say EAGAIN, not sleep until a writes again
    echo_on "$a" "a, then quiet"
    exec {b}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$b" "b, while a is quiet"
    echo_on "$a" "a again"
    exec {a}>&- {b}>&-
}

@test "et-no-drain leaves bytes undelivered until the client writes again" {
    burst et-no-drain 10000 --read-bytes 1024
    # one edge, one read: 1024 bytes echoed, 8976 stuck in the server's kernel
    [ "${lines[1]}" = "burst: sent 10000 bytes in one write, 1024 came back" ]
    # the client's next byte is a new edge: exactly one more read
    [ "${lines[2]}" = "nudge: sent 1 more byte, 1024 more came back (2048 of 10001 in all)" ]
}

@test "et-no-drain with a 1 MiB burst: part of it stays stranded, even after a nudge" {
    burst et-no-drain 1048576
    # Usually the whole MiB goes in one write; on a loaded machine the first
    # send() may take less, and the rest find no room once the server stops
    # reading. Either way, fewer bytes come back than went out.
    [[ ${lines[1]} =~ ^burst:\ sent\ (([0-9]+)\ of\ )?1048576\ bytes\ in\ (one\ write|[0-9]+\ writes)(\ \(no\ room\ for\ the\ rest\))?,\ ([0-9]+)\ came\ back$ ]]
    sent=${BASH_REMATCH[2]:-1048576}
    [ "${BASH_REMATCH[5]}" -lt "$sent" ]
    # The nudge usually brings nothing (the stranded bytes have closed the
    # receive window); on a loaded machine window updates can let more edges
    # through, and how many bytes come back then depends on timing (one run
    # saw over half). What always holds: part of the megabyte never comes back.
    [[ ${lines[2]} =~ ^nudge:\ (sent\ 1\ more\ byte|no\ room\ for\ 1\ more\ byte),\ [0-9]+\ more\ came\ back\ \(([0-9]+)\ of\ 1048577\ in\ all\)$ ]]
    [ "${BASH_REMATCH[2]}" -lt 1048577 ]
}

@test "ET accepts every one of many connections that arrive together" {
    start_server server "$(bin $L server)" --mode et --port 0
    # Stop the server while 300 clients connect: the kernel completes their
    # handshakes and queues them, and on SIGCONT the listener reports ONE
    # edge for all of them. Accepting fewer than all would strand the rest.
    kill -STOP "$PID"
    fds=()
    for i in $(seq 300); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        fds+=("$fd")
    done
    kill -CONT "$PID"
    for i in 0 99 150 299; do echo_on "${fds[$i]}" "conn $i"; done
    for fd in "${fds[@]}"; do echo_on "$fd" x || { echo "fd $fd not served"; false; }; done
    for fd in "${fds[@]}"; do exec {fd}>&-; done
}

@test "EPOLLONESHOT: the server re-arms the fd after every event" {
    start_server server "$(bin $L server)" --mode lt --oneshot --port 0 -v
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$a" one
    echo_on "$a" two
    exec {a}>&-
    [ "$(grep -cE '^server: fd=[0-9]+: re-arm \(EPOLLONESHOT\)$' "$T/server.err")" -ge 2 ]
}

@test "EPOLLOUT is turned on only while output is pending, then off again" {
    # A 4 KiB send buffer on the server side and a client that sends 1 MB
    # before reading: the echo soon hits EAGAIN (EPOLLOUT on); once the
    # client reads, the pending bytes drain (EPOLLIN on again).
    start_server server "$(bin $L server)" --mode lt --sndbuf 4096 --port 0 -v
    run timeout 30 "$(bin $L client)" --port "$PORT" --send-first 1000000
    [ "$status" -eq 0 ]
    [[ $output == *"client: received 1000000 bytes back"* ]]
    grep -qE '^server: fd=[0-9]+: EAGAIN: EPOLLOUT on$' "$T/server.err"
    grep -qE '^server: fd=[0-9]+: all sent: EPOLLIN on$' "$T/server.err"
}

@test "lt: an idle connection wakes the loop no more (no EPOLLOUT while nothing is pending)" {
    start_server server "$(bin $L server)" --mode lt --port 0 -v
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$a" hello
    before=$(grep -c '^server: epoll_wait -> ' "$T/server.err")
    sleep 0.5 # a measurement window: an idle socket watched for EPOLLOUT would wake the loop all through it
    after=$(grep -c '^server: epoll_wait -> ' "$T/server.err")
    echo "epoll_wait returned $before times before the window, $after after"
    [ "$after" -eq "$before" ]
    echo_on "$a" "still served"
    exec {a}>&-
}

@test "200 concurrent clients each get their 64 KiB back identical, in lt and et" {
    for mode in lt et; do
        start_server "s-$mode" "$(bin $L server)" --mode "$mode" --port 0
        mkdir -p "$T/$mode"
        pids=()
        for i in $(seq 200); do
            head -c 65536 /dev/urandom >"$T/$mode/in.$i"
            timeout 60 "$ROOT/$L/client" --port "$PORT" <"$T/$mode/in.$i" >"$T/$mode/out.$i" 2>/dev/null &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p"; done
        for i in $(seq 200); do cmp -s "$T/$mode/in.$i" "$T/$mode/out.$i" || { echo "$mode client $i"; false; }; done
    done
}

@test "a vanishing client (RST) does not disturb the others" {
    start_server server "$(bin $L server)" --mode et --port 0
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$a" before
    start_bg hog "$(bin $L client)" --port "$PORT" --send-first 20000000
    wait_until 10 grep -q 'sent 2097152 of' "$T/hog.err"
    { kill -KILL "$PID" && wait "$PID"; } 2>/dev/null || true
    echo_on "$a" after
}

@test "an epoll_ctl failure for one connection closes that connection only" {
    if ! strace -o /dev/null true 2>/dev/null; then
        skip "strace is not installed or cannot trace here"
    fi
    # strace starts the server and makes its 3rd epoll_ctl fail with ENOSPC,
    # as past fs.epoll.max_user_watches: the 1st adds the listener, the 2nd
    # client a, the 3rd client b.
    start_traced server -qq -o "$T/strace.log" -e trace=epoll_ctl -e inject=epoll_ctl:error=ENOSPC:when=3 \
        -- "$(bin $L server)" --mode lt --port 0
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$a" first # a is watched before b connects
    exec {b}<>"/dev/tcp/127.0.0.1/$PORT"
    at_eof "$b"
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: epoll_ctl: No space left on device$' "$T/server.err"
    echo_on "$a" "still served"
    exec {c}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$c" newcomer
    exec {a}>&- {b}>&- {c}>&-
}

@test "under ulimit -n 16 extra clients are closed cleanly and newcomers served later" {
    start_server server bash -c 'ulimit -n 16 && for fd in $(seq 3 15); do eval "exec $fd>&-"; done; exec "$0" "$@"' "$(bin $L server)" --mode et --port 0
    base=$(open_fds "$PID")
    fds=()
    for i in $(seq 30); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        fds+=("$fd")
    done
    # wait_alive: a server that has died will neither write the line nor close fds
    wait_alive "$PID" 5 grep -q 'refused: out of file descriptors' "$T/server.err"
    for fd in "${fds[@]}"; do exec {fd}>&-; done
    wait_alive "$PID" 10 fds_back_to "$PID" "$base" # the server has closed every one it had
    exec {n}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$n" newcomer
}

@test "bad --mode and --read-bytes values get a one-line error and exit 2" {
    run "$(bin $L server)" --mode fast
    [ "$status" -eq 2 ]
    [ "$output" = "server: --mode wants lt, et or et-no-drain, not 'fast'" ]
    run "$(bin $L server)" --read-bytes 0
    [ "$status" -eq 2 ]
    [ "$output" = "server: --read-bytes wants a number in 1..65536, not '0'" ]
}

@test "a refused client that has sent nothing reads the end of the stream (--max-conns 1)" {
    start_server server "$(bin $L server)" --mode et --port 0 --max-conns 1
    exec {first}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$first" "the one kept"
    exec {second}<>"/dev/tcp/127.0.0.1/$PORT"
    at_eof "$second"
}

@test "a refused client whose bytes were already queued gets a reset (--max-conns 1)" {
    refused_after_sending $L --mode=et
}

@test "lt: SIGTERM is blocked except inside epoll_pwait, which unblocks it while it waits" {
    stop_race_closed $L --mode lt
}

@test "et: accept failing for one connection (EPROTO) does not end the accept loop" {
    accept_error_injected $L et EPROTO
    grep -q 'accept4(.*= -1 EPROTO' "$T/strace.log"
    refute grep -q pausing "$T/server.err"
}

@test "et: an accept error not about one connection (ENOBUFS) pauses accepting; the queued client is served after it" {
    accept_error_injected $L et ENOBUFS
    grep -qE '^server: accept: No buffer space available, pausing accept for 100 ms$' "$T/server.err"
    # the listener left the interest list and came back (DEL, then ADD)
    grep -qE '^epoll_ctl\([0-9]+, EPOLL_CTL_DEL, ' "$T/strace.log"
    [ "$(grep -cE '^epoll_ctl\([0-9]+, EPOLL_CTL_ADD, [0-9]+, \{events=EPOLLIN\|EPOLLET, data=\{u32=0, u64=0\}\}' "$T/strace.log")" -eq 2 ]
}

@test "a 64 MiB burst, more than the socket buffers hold, comes back whole (the client reads while it sends)" {
    for mode in lt et; do
        start_server "server-$mode" "$(bin $L server)" --mode "$mode" --port 0
        run timeout 60 "$(bin $L client)" --port "$PORT" --burst 67108864
        [ "$status" -eq 0 ]
        [[ ${lines[1]} =~ ^burst:\ sent\ 67108864\ bytes\ in\ [0-9a-z]+\ writes?,\ 67108864\ came\ back$ ]]
    done
}

@test "-v: a 4000-byte burst goes out in one send() call" {
    start_server server "$(bin $L server)" --mode lt --port 0
    run timeout 20 "$(bin $L client)" --port "$PORT" --burst 4000 -v
    [ "$status" -eq 0 ]
    [ "$(grep -cE '^client: send fd=[0-9]+ <- ' <<<"$output")" -eq 1 ]
    grep -qE '^client: send fd=[0-9]+ <- 4000 bytes$' <<<"$output"
    grep -qx 'burst: sent 4000 bytes in one write, 4000 came back' <<<"$output"
}

@test "the client: getsockopt(SO_ERROR) failing after the connect (strace injects ENOBUFS): one line naming it, exit status 1" {
    connect_so_error_fails $L
}

@test "lt: getsockopt(SO_ERROR) failing after an EPOLLERR (strace injects ENOBUFS) closes that connection with one line naming it; a new client is served" {
    so_error_query_fails $L --mode lt
}

@test "et: getsockopt(SO_ERROR) failing after an EPOLLERR (strace injects ENOBUFS) closes that connection with one line naming it; a new client is served" {
    so_error_query_fails $L --mode et
}
