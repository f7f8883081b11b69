#!/usr/bin/env bats
# Tools -- slowreader, the peer that does not keep up: at a set read rate it still gets every
# echo back intact (just late), and when it never reads, the lesson-5 server stops reading it
# but keeps it open and goes on serving everybody else.

load helpers

L5=05_framing

# slow_send_queue: bytes waiting in the send queue of the client end of the connection to the
# server on $PORT, as /proc/net/tcp shows it (tx_queue, hex): they pile up there once the server
# stops reading that client.
slow_send_queue() {
    local sl local_addr remote_addr state queues rest hexport
    hexport=$(printf '%04X' "$PORT")
    while read -r sl local_addr remote_addr state queues rest; do
        # state 01: ESTABLISHED
        if [ "${remote_addr##*:}" = "$hexport" ] && [ "$state" = 01 ]; then
            echo $((16#${queues%%:*}))
            return
        fi
    done </proc/net/tcp
    echo 0
}

# backed_up: the server has stopped reading the slow reader (over 500 kB stuck on its side).
backed_up() {
    [ "$(slow_send_queue)" -gt 500000 ]
}

@test "reading at 50 KB/s, slowreader gets 100 echoed messages back intact in at least 1.5 s" {
    start_server server "$(bin $L5 server)" --port 0
    start=$EPOCHREALTIME
    run timeout 30 "$(bin tools slowreader)" --port "$PORT" --send 100 --size 1000 \
        --read-rate 50000 --expect 100
    end=$EPOCHREALTIME
    elapsed_ms=$(((${end/./} - ${start/./}) / 1000))
    echo "$output"
    echo "took $elapsed_ms ms"
    [ "$status" -eq 0 ]
    [[ $output =~ ^slowreader:\ received\ 100\ messages\ \(102500\ bytes\)\ in\ [0-9]+\.[0-9]\ s,\ all\ intact$ ]]
    # 100 x (25 + 1000) bytes at 50000 bytes/s, less one 4 KiB burst: about 2 s (lower bound
    # only: a slow machine takes longer)
    [ "$elapsed_ms" -ge 1500 ]
}

@test "a slowreader that never reads stays open on the lesson-5 server, which serves others" {
    start_server server "$(bin $L5 server)" --port 0
    SERVER_PID=$PID
    # --read-for 15: time enough for the backlog to build even on a loaded
    # machine (it once took 8 s), with the check below still to come
    start_bg slow "$(bin tools slowreader)" --port "$PORT" --never-read --send 2000 --size 4096 \
        --read-for 15
    SLOW_PID=$PID
    wait_until 12 backed_up
    echo "stuck in the slow reader's send queue: $(slow_send_queue) bytes"
    run timeout 10 "$(bin $L5 client)" --port "$PORT" hello
    [ "$status" -eq 0 ]
    [[ $output == *'reply #1: 5 bytes: "hello"'* ]]
    kill -0 "$SLOW_PID" # the other client was served while the slow one was still there
    rc=0
    wait_exit "$SLOW_PID" 20 || rc=$?
    [ "$rc" -eq 0 ]
    [[ $(cat "$T/slow.out") =~ ^slowreader:\ never\ read\;\ still\ open\ after\ [0-9]+\.[0-9]\ s$ ]]
    kill -0 "$SERVER_PID"
}

@test "slowreader with --read-rate and --never-read together exits 2 with one line" {
    run "$(bin tools slowreader)" --port 1 --read-rate 100 --never-read
    echo "$output"
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ ${lines[0]} == 'slowreader: --never-read reads nothing: not with --read-rate' ]]
}
