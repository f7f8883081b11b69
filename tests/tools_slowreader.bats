#!/usr/bin/env bats
# Tools -- slowreader, the peer that does not keep up: at a set read rate it still gets every
# echo back intact (just late), and when it never reads, the lesson-5 server stops reading it
# but keeps it open and goes on serving everybody else. Its drip mode reads exactly BYTES, then
# nothing for MS, and again; its result line tells a server's FIN from its RST.

load helpers

L5=05_framing
L6=06_send_queue

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

# reader_bytes: "RECEIVED READ" for the slowreader's connection to $PORT: the reply bytes its
# kernel has received, and how many of those it has read (received, less its Recv-Q). ss -i
# adds an indented line of counters per socket; bytes_received is left out while it is 0.
reader_bytes() {
    ss -tinH state established "( dport = :$PORT )" | awk '
        /^[0-9]/ { recvq = $1 }
        match($0, /bytes_received:[0-9]+/) { got = substr($0, RSTART + 15, RLENGTH - 15) }
        END { print got + 0, got - recvq }'
}

# reader_got RECEIVED READ: the slowreader's kernel has received at least RECEIVED reply bytes
# and the slowreader has read at least READ of them (for wait_until).
reader_got() {
    local counts
    counts=$(reader_bytes)
    [ "${counts% *}" -ge "$1" ] && [ "${counts#* }" -ge "$2" ]
}

# drip_bursts LOG BYTES MS: the recvfrom() calls of an `strace -ttt` LOG, cut into bursts where
# the running total reaches a multiple of BYTES. Prints one line per pause and then
# "bursts=N total=B crossed=C short=S": C reads that went past the end of a burst, S pauses
# shorter than 90% of MS (a lower bound only: a loaded machine makes pauses longer, not shorter).
drip_bursts() {
    awk -v bytes="$2" -v ms="$3" '
        /recvfrom\(/ && / = [0-9]+$/ && $NF > 0 {
            t = $1 ~ /^[0-9]+\.[0-9]+$/ ? $1 : $2 # strace -f puts a PID first
            if (filled == bytes) { # the first read after a full burst: the pause is over
                pause = (t - full_at) * 1000
                printf "pause %.0f ms\n", pause
                if (pause < 0.9 * ms)
                    short++
                filled = 0
            }
            filled += $NF
            total += $NF
            if (filled > bytes)
                crossed++
            if (filled == bytes) {
                bursts++
                full_at = t
            }
        }
        END { printf "bursts=%d total=%d crossed=%d short=%d\n", bursts, total, crossed, short }' "$1"
}

# fin_after_three NAME MODE...: the lesson-6 server echoes three 1000-byte messages to a
# slowreader reading in MODE, and is then stopped. It has read all its input, so closing sends
# a FIN, after the replies: the slowreader reads them all, then sees the end of the stream.
fin_after_three() {
    local name=$1 server reader rc=0
    shift
    start_server "$name" "$(bin $L6 server)" --port 0
    server=$PID
    start_bg "$name-reader" "$(bin tools slowreader)" --port "$PORT" --send 3 --size 1000 \
        --read-for 30 "$@"
    reader=$PID
    wait_until 10 reader_got 3075 0 # every reply is in the slowreader's kernel
    kill -TERM "$server"
    wait_exit "$reader" 10 || rc=$?
    echo "$*: exit $rc: $(cat "$T/$name-reader.out")"
    [ "$rc" -eq 0 ]
    [ "$(cat "$T/$name-reader.out")" = "slowreader: server closed the connection after 3 messages (3075 bytes)" ]
}

# reset_by_stale_close NAME MODE...: a slowreader reading in MODE sends far more than the
# lesson-6 server will queue for it. The server stops reading it (high-water), and when the
# queue has made no progress for 300 ms closes it with its input unread: the kernel sends a
# RST, not a FIN. What arrived before the RST is still read and counted.
reset_by_stale_close() {
    local name=$1 frame=65561 m b # a frame: 25-byte header, 65536-byte body
    shift
    start_server "$name" "$(bin $L6 server)" --stale-ms 300 --stale-check-ms 100 --port 0
    run timeout 30 "$(bin tools slowreader)" --port "$PORT" --send 200 --size 65536 \
        --read-for 20 "$@"
    echo "$*: exit $status: $output"
    [ "$status" -eq 0 ]
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: closed: stale output ' "$T/$name.err"
    [[ $output =~ ^slowreader:\ server\ reset\ the\ connection\ after\ ([0-9]+)\ messages\ \(([0-9]+)\ bytes\)$ ]]
    m=${BASH_REMATCH[1]}
    b=${BASH_REMATCH[2]}
    # B counts every byte received, headers included: M whole replies and part of the next
    [ "$b" -ge $((m * frame)) ]
    [ "$b" -lt $(((m + 1) * frame)) ]
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

@test "--drip 10000:500 reads the replies in bursts of exactly 10000 bytes, at least 500 ms apart (strace)" {
    if ! strace -o /dev/null true 2>/dev/null; then
        skip "strace is not installed or cannot trace here"
    fi
    start_server server "$(bin $L6 server)" --port 0
    # LeakSanitizer cannot run under ptrace
    export ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}"
    # ten 4000-byte replies: bursts that end inside a message, and never on a 4 KiB read
    run timeout 60 strace -qq -ttt -s 0 -e trace=recvfrom -o "$T/strace.log" \
        "$(bin tools slowreader)" --port "$PORT" --send 10 --size 3975 --drip 10000:500 --expect 10
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output =~ ^slowreader:\ received\ 10\ messages\ \(40000\ bytes\)\ in\ [0-9]+\.[0-9]\ s,\ all\ intact$ ]]
    summary=$(drip_bursts "$T/strace.log" 10000 500)
    echo "$summary"
    [[ $summary == *"bursts=4 total=40000 crossed=0 short=0" ]]
    [ "$(grep -c '^pause ' <<<"$summary")" -eq 3 ]
}

@test "--drip pauses with the replies waiting: between bursts it has read exactly 10000 bytes, then 20000" {
    start_server server "$(bin $L6 server)" --port 0
    start_bg reader "$(bin tools slowreader)" --port "$PORT" --send 10 --size 3975 \
        --drip 10000:2000 --expect 10 --read-for 60
    # all 40000 bytes of replies are in the slowreader's kernel; it takes them 10000 at a time
    wait_until 10 reader_got 40000 10000
    first=$(reader_bytes)
    wait_until 10 reader_got 40000 20000
    second=$(reader_bytes)
    echo "received, read: after the first burst $first, after the second $second"
    [ "$first" = "40000 10000" ]
    [ "$second" = "40000 20000" ]
}

@test "a FIN reads as 'server closed the connection after M messages (B bytes)', in every reading mode" {
    fin_after_three fast
    fin_after_three rate --read-rate 100000
    fin_after_three drip --drip 1000:100
}

@test "a RST reads as 'server reset the connection after M messages (B bytes)', at a drip or a rate" {
    reset_by_stale_close drip --drip 4096:10000
    reset_by_stale_close rate --read-rate 1
}

@test "bad --drip values, and --drip with --read-rate or --never-read: one line on stderr, exit 2" {
    cases=(
        "--drip 0:1500|--drip BYTES wants a number in 1..1073741824, not '0'"
        "--drip 65536:0|--drip MS wants a number in 1..3600000, not '0'"
        "--drip 65536|--drip wants BYTES:MS (e.g. 65536:1500), not '65536'"
        "--drip 64k:1500|--drip BYTES wants a number in 1..1073741824, not '64k'"
        "--drip 65536:1.5|--drip MS wants a number in 1..3600000, not '1.5'"
        "--drip 1073741825:1500|--drip BYTES wants a number in 1..1073741824, not '1073741825'"
        "--drip 65536:3600001|--drip MS wants a number in 1..3600000, not '3600001'"
        "--drip 65536:1500 --read-rate 100|--drip reads in bursts: not with --read-rate"
        "--never-read --drip 65536:1500|--drip reads in bursts: not with --never-read"
    )
    for c in "${cases[@]}"; do
        read -ra args <<<"${c%%|*}"
        run "$(bin tools slowreader)" --port 1 "${args[@]}"
        echo "${c%%|*}: exit $status: $output"
        [ "$status" -eq 2 ]
        [ "${#lines[@]}" -eq 1 ]
        [ "${lines[0]}" = "slowreader: ${c#*|}" ]
    done
}

@test "--rcvbuf fixes the reader's receive buffer: the server's end holds the rest (bad values: one line, exit 2)" {
    start_server server "$(bin 07_shutdown server)" --port 0
    start_bg reader "$(bin tools slowreader)" --port "$PORT" --send 1 --size 4000000 --rcvbuf 16384 \
        --drip 1024:60000 --read-for 30
    # the server's socket fills (megabytes), and the reader's kernel holds at
    # most its 16 KiB buffer's worth (the kernel books it double): far less
    # than the 128 KiB a default, autotuned buffer starts with
    wait_until 10 bash -c "[ \$(ss -tnH '( sport = :$PORT )' | awk '{ q += \$3 } END { print q + 0 }') -gt 1000000 ]"
    held=$(ss -tnH "( dport = :$PORT )" | awk '{ q += $2 } END { print q + 0 }')
    echo "the reader's Recv-Q: $held bytes"
    [ "$held" -gt 0 ]
    [ "$held" -le 32768 ]
    run "$(bin tools slowreader)" --port 1 --rcvbuf 10
    [ "$status" -eq 2 ]
    [ "$output" = "slowreader: --rcvbuf wants a number in 1024..1073741824, not '10'" ]
    run "$(bin tools slowreader)" --port 1 --never-read --rcvbuf 4096
    [ "$status" -eq 2 ]
    [ "$output" = "slowreader: --never-read sets its own SO_RCVBUF: not with --rcvbuf" ]
}
