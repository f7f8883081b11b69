# send_queue_checks.bash -- the echo, ordering and slow-client checks that both of lesson 6's
# thread designs must pass: the server's (--threads, replies back through an eventfd) and
# sendthread's (one send thread woken by a semaphore). Loaded after helpers.bash; each check
# takes the server command (program and options; --port 0 is added).
#
#   check_echo_intact CMD...        random bodies of 1..64 KiB, every byte checked
#   check_order CMD...              pipelined replies in order per connection, through
#                                   partial writes, beside clients that vanish mid-stream
#   check_slow_client KB CMD...     a client that reads nothing for 3 s: another client is
#                                   served meanwhile, server RSS grows by less than KB kB
#                                   (0: not measured), and the slow one gets everything
# The clients come from the build under test if it has them (the ThreadSanitizer build has
# only the servers), else from the normal build: peer_bin DIR PROGRAM.

peer_bin() {
    if [ -x "$(bin "$1" "$2")" ]; then bin "$1" "$2"; else echo "$ROOT/$1/$2"; fi
}

check_echo_intact() {
    start_server server "$@" --port 0
    # loadgen checks every byte of every reply; the sizes and bodies come from --seed
    run timeout 120 "$(peer_bin tools loadgen)" --port "$PORT" --conns 8 --messages 150 \
        --size 1-65536 --seed 7
    loadgen_ok 1200
    local i pids=()
    for i in $(seq 10); do
        timeout 120 "$(peer_bin 06_send_queue client)" --port "$PORT" --quiet --repeat 20 \
            --body-bytes $((i * 6000)) --pattern random --seed "$i" >"$T/echo.$i" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    cat "$T"/echo.*
    [ "$(cat "$T"/echo.* | grep -c 'client: 20 messages sent, 20 replies, all intact')" -eq 10 ]
    kill -0 "$PID"
}

check_order() {
    # A 4 KiB send buffer makes nearly every reply a partial write, so the loop's EPOLLOUT
    # flush and the direct sends take turns; slowreader checks message i's bytes are i+j.
    start_server server "$@" --sndbuf 4096 --port 0
    run timeout 120 "$(peer_bin tools slowreader)" --port "$PORT" --send 256 --size 65536 \
        --read-rate 16000000 --expect 256 --read-for 100
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"slowreader: received 256 messages"*"all intact"* ]]
    local i pids=()
    for i in $(seq 20); do
        # distinct content per client: a reply out of order or on the wrong connection fails it
        timeout 120 "$(peer_bin 06_send_queue client)" --port "$PORT" --repeat 300 --quiet \
            "client $i says hello" >"$T/order.$i" 2>&1 &
        pids+=($!)
    done
    clients_vanish 5 "$(peer_bin 06_send_queue client)"
    for p in "${pids[@]}"; do wait "$p"; done
    [ "$(cat "$T"/order.* | grep -c 'client: 300 messages sent, 300 replies, all intact')" -eq 20 ]
    kill -0 "$PID"
}

check_slow_client() {
    local bound_kb=$1 server base peak now rc=0
    shift
    start_server server "$@" --port 0
    server=$PID
    base=$(rss_kb "$server")
    # 50 MiB of requests; their replies wait for a reader that starts after 3 s
    start_bg slow "$(peer_bin 06_send_queue client)" --port "$PORT" --pause-ms 3000 \
        --body-bytes 65536 --repeat 800 --quiet
    local slow=$PID
    wait_alive "$server" 10 grep -q 'reading paused' "$T/server.err"
    run timeout 10 "$(peer_bin 06_send_queue client)" --port "$PORT" --pingpong --repeat 100 --quiet ping
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"client: 100 messages sent, 100 replies, all intact"* ]]
    peak=$(rss_kb "$server")
    for _ in $(seq 10); do # sample while the slow client is still not reading
        now=$(rss_kb "$server")
        [ "$now" -le "$peak" ] || peak=$now
        sleep 0.1
    done
    echo "server VmRSS: baseline $base kB, peak while the slow client did not read $peak kB"
    [ "$bound_kb" -eq 0 ] || [ $((peak - base)) -lt "$bound_kb" ]
    wait_exit "$slow" 120 || rc=$?
    [ "$rc" -eq 0 ]
    grep -q 'client: 800 messages sent, 800 replies, all intact' "$T/slow.out" "$T/slow.err"
}
