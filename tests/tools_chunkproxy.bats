#!/usr/bin/env bats
# Tools -- chunkproxy, the re-chunking proxy: every byte comes back however the stream is cut,
# the cuts and batches really reach the receiver, half-closes pass through, a reset or a dead
# upstream closes one pair only, and SIGTERM stops it cleanly.

load helpers

L1=01_socket_basics
L4=04_epoll_lt_et

# start_echo_proxy [PROXY ARGS...]: lesson 4's echo server behind chunkproxy. Sets UPORT (the
# server's port), PORT (the proxy's) and PROXY_PID; the proxy's log is $T/proxy.err.
start_echo_proxy() {
    start_server upstream "$(bin $L4 server)" --mode lt --port 0
    UPORT=$PORT
    start_server proxy "$(bin tools chunkproxy)" --upstream "127.0.0.1:$UPORT" "$@"
    PROXY_PID=$PID
}

# echo_through NAME BYTES: BYTES random bytes through the proxy to the echo server and back
# with lesson 4's client (which half-closes at the end of its input); they must be identical.
echo_through() {
    head -c "$2" /dev/urandom >"$T/$1.in"
    timeout 60 "$(bin $L4 client)" --port "$PORT" <"$T/$1.in" >"$T/$1.back" 2>"$T/client-$1.err"
    cmp "$T/$1.in" "$T/$1.back"
}

# start_receiver_proxy [PROXY ARGS...]: lesson 1's naive receiver behind chunkproxy. Sets
# RECEIVER_PID and PORT (the proxy's).
start_receiver_proxy() {
    start_server receiver "$(bin $L1 receiver)" --mode naive --port 0
    RECEIVER_PID=$PID
    start_server proxy "$(bin tools chunkproxy)" --upstream "127.0.0.1:$PORT" "$@"
}

# received_lines: the naive receiver's one line per recv() (call once it has exited).
received_lines() {
    grep '^recv #' "$T/receiver.out"
}

# writes_to SIDE: the sizes of the proxy's writes to SIDE (client or upstream), one a line.
writes_to() {
    sed -n "s/^chunkproxy: client [^ ]*: write \([0-9]*\) bytes to $1\$/\1/p" "$T/proxy.err"
}

@test "64 KiB comes back identical through the proxy cutting byte by byte" {
    start_echo_proxy --chunk 1
    echo_through bytes 65536
}

@test "1 MiB comes back identical through chunks of 7, 1 and 300 bytes in turn" {
    start_echo_proxy --chunk 7,1,300
    echo_through list 1048576
}

@test "1 MiB comes back identical through seeded random chunks of 1 to 4000 bytes" {
    start_echo_proxy --chunk random:1-4000 --seed 42
    echo_through random 1048576
}

@test "1 MiB comes back identical through batches coalesced to 100000 bytes" {
    start_echo_proxy --coalesce-bytes 100000
    echo_through coalesce 1048576
}

@test "with --chunk 3 every write in both directions of a 30-byte echo is exactly 3 bytes" {
    start_echo_proxy --chunk 3 -v
    run timeout 10 "$(bin $L4 client)" --port "$PORT" < <(printf '%s' 012345678901234567890123456789)
    [ "$status" -eq 0 ]
    [[ $output == *012345678901234567890123456789 ]] # stderr's "connected" line comes first
    [ "$(writes_to upstream | tr '\n' ' ')" = "3 3 3 3 3 3 3 3 3 3 " ]
    [ "$(writes_to client | tr '\n' ' ')" = "3 3 3 3 3 3 3 3 3 3 " ]
}

@test "--direction down forwards the request whole and cuts only the echo" {
    start_echo_proxy --chunk 3 --direction down -v
    run timeout 10 "$(bin $L4 client)" --port "$PORT" < <(printf '%s' 012345678901234567890123456789)
    [ "$status" -eq 0 ]
    [ "$(writes_to upstream)" = 30 ]
    [ "$(writes_to client | tr '\n' ' ')" = "3 3 3 3 3 3 3 3 3 3 " ]
}

@test "a 20-byte message in 5-byte chunks 50 ms apart takes at least 150 ms to come through" {
    start_echo_proxy --chunk 5 --delay-ms 50
    start=$EPOCHREALTIME
    echo_through delayed 20
    end=$EPOCHREALTIME
    # four chunks, three delays on the way there alone (a lower bound only: machines are slow)
    elapsed_ms=$(((${end/./} - ${start/./}) / 1000))
    echo "took $elapsed_ms ms"
    [ "$elapsed_ms" -ge 150 ]
}

@test "three writes 50 ms apart reach the naive receiver as one recv when coalesced to 9 bytes" {
    start_receiver_proxy --coalesce-bytes 9 --coalesce-ms 1000
    timeout 10 "$(bin $L1 sender)" --port "$PORT" --gap-ms 50 aaa bbb ccc
    wait_exit "$RECEIVER_PID" 10
    run received_lines
    [ "$output" = 'recv #1 -> 9 bytes: "aaabbbccc"
recv #2 -> 0 bytes: the sender closed the connection' ]
}

@test "three 3-byte writes reach the naive receiver as nine 1-byte recvs when cut byte by byte" {
    # The receiver is not --late: it waits in recv() and takes each byte as it comes. The
    # 20 ms between chunks keep them apart; back to back, the nine 1-byte segments would pile
    # up in its receive buffer while it prints, and one recv() would take several.
    start_receiver_proxy --chunk 1 --delay-ms 20
    timeout 10 "$(bin $L1 sender)" --port "$PORT" aaa bbb ccc
    wait_exit "$RECEIVER_PID" 10
    run received_lines
    expected=
    n=0
    for c in a a a b b b c c c; do
        expected+="recv #$((++n)) -> 1 bytes: \"$c\""$'\n'
    done
    [ "$output" = "${expected}recv #10 -> 0 bytes: the sender closed the connection" ]
}

@test "a half-close passes through: the echo still arrives and each EOF becomes a shutdown" {
    start_echo_proxy --chunk random:1-100 -v
    echo_through half 5000 # the client half-closes first, then reads the rest of the echo
    grep -n 'EOF from' "$T/proxy.err" >"$T/eofs"
    cat "$T/eofs"
    [ "$(wc -l <"$T/eofs")" -eq 2 ]
    grep -q ': EOF from client -> shutdown(SHUT_WR) to upstream$' <(sed -n 1p "$T/eofs")
    grep -q ': EOF from upstream -> shutdown(SHUT_WR) to client$' <(sed -n 2p "$T/eofs")
    grep -q ': close (open)$' "$T/proxy.err"
}

@test "50 concurrent clients each get their 64 KiB back identical through random chunks" {
    start_echo_proxy --chunk random:1-1000
    pids=()
    for i in $(seq 50); do
        head -c 65536 /dev/urandom >"$T/in.$i"
        timeout 60 "$(bin $L4 client)" --port "$PORT" <"$T/in.$i" >"$T/back.$i" 2>/dev/null &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    for i in $(seq 50); do cmp "$T/in.$i" "$T/back.$i"; done
}

@test "a client that never reads its echo stalls the proxy in bounded memory, without spinning" {
    start_echo_proxy --chunk random:1-4000
    # lesson 4's deadlock experiment: 50 MB sent before a single byte of the echo is read
    start_bg hog "$(bin $L4 client)" --port "$PORT" --send-first 50000000
    # stalled: the client's progress lines (one per MiB) stop
    stalled() {
        local before
        before=$(wc -c <"$T/hog.err")
        sleep 0.5
        [ "$before" -gt 0 ] && [ "$(wc -c <"$T/hog.err")" -eq "$before" ]
    }
    wait_until 30 stalled
    cpu_before=$(cpu_ms "$PROXY_PID")
    sleep 1 # a measurement window: a busy loop would burn it all
    cpu_spent=$(($(cpu_ms "$PROXY_PID") - cpu_before))
    rss_kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$PROXY_PID/status")
    echo "stalled after: $(tail -n 1 "$T/hog.err"); proxy: ${cpu_spent} ms CPU in 1 s, ${rss_kb} kB"
    # A busy loop would burn about 1000 ms; a proxy that kept reading would hold the tens of
    # MB the kernel's buffers could not (the sanitizer runtime alone takes about 10 MB).
    [ "$cpu_spent" -lt 300 ]
    [ "$rss_kb" -lt 30000 ]
    grep -q 'client: sent [0-9]* of 50000000 bytes' "$T/hog.err"
    refute grep -q 'everything sent' "$T/hog.err"
}

@test "a client that resets its connection resets the upstream one too, and nothing else" {
    start_echo_proxy -v
    exec {other}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$other" 'still here'
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$fd" hello
    # An echo left unread when the socket closes makes the kernel send RST instead of FIN.
    printf 'unread\n' >&"$fd"
    wait_until 5 grep -q ': write 7 bytes to client$' "$T/proxy.err"
    exec {fd}>&-
    # lesson 4's server logs the reset the proxy passed on
    wait_until 5 grep -q ': Connection reset by peer$' "$T/upstream.err"
    grep -qE '^chunkproxy: client 127\.0\.0\.1:[0-9]+: (recv from|send to) client: Connection reset by peer$' \
        "$T/proxy.err"
    grep -q ': close (open, reset)$' "$T/proxy.err"
    echo_on "$other" 'unaffected'
    exec {other}>&-
}

@test "with its upstream down the proxy closes each client at once, logs one line, runs on" {
    start_server dead "$(bin tools ttcp)" --receive --port 0
    stop_pid "$PID" # nobody listens on this port any more
    dead=$PORT
    start_server proxy "$(bin tools chunkproxy)" --upstream "127.0.0.1:$dead"
    for attempt in 1 2; do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        at_eof "$fd"
        exec {fd}>&-
        [ "$(wc -l <"$T/proxy.err")" -eq "$attempt" ]
    done
    grep -qE "^chunkproxy: client 127\.0\.0\.1:[0-9]+: connect to upstream 127\.0\.0\.1:$dead: Connection refused$" \
        "$T/proxy.err"
    kill -0 "$PID"
}

@test "SIGTERM stops the proxy with status 0 while a client is connected" {
    start_echo_proxy --chunk 2
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$fd" 'through the proxy'
    kill -TERM "$PROXY_PID"
    rc=0
    wait_exit "$PROXY_PID" 5 || rc=$?
    [ "$rc" -eq 0 ]
    at_eof "$fd"
    exec {fd}>&-
}
