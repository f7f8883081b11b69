#!/usr/bin/env bats
# Tools -- slowreader, the peer that does not keep up: at a set read rate it still gets every
# echo back intact (just late), and when it never reads, the lesson-5 server stops reading it
# but keeps it open and goes on serving everybody else.

load helpers

L5=05_framing

# unread_by_server: bytes the slow reader sent that the server has not read: in the server's
# receive queue, or still in the slow reader's send queue. Where they sit depends on how far the
# kernel has grown the server's receive window (tcp_rmem allows up to 32 MB here), so count both.
# ss columns with a state filter: Recv-Q Send-Q Local Peer.
unread_by_server() {
    ss -tnH state established "( sport = :$PORT or dport = :$PORT )" | awk -v port=":$PORT" '
        $3 ~ port "$" { total += $1 } # the server end: what it has not read
        $4 ~ port "$" { total += $2 } # the client end: what has not left yet
        END { print total + 0 }'
}

# backed_up: the server has stopped reading the slow reader (over 500 kB unread).
backed_up() {
    [ "$(unread_by_server)" -gt 500000 ]
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
    echo "sent by the slow reader, not read by the server: $(unread_by_server) bytes"
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
