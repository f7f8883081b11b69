#!/usr/bin/env bats
# Tools -- the scaling benchmark: scalebench (N idle connections, one busy one), svgplot,
# and the scaling part of tools/bench.

load helpers

L3=03_select_poll

need_lesson3() {
    [ -x "$(bin $L3 server)" ] || skip "lesson 3 is not built"
}

# is_svg FILE: one <svg> element from the first byte to the last line, and well-formed XML
# where xmllint is there to say so.
is_svg() {
    [ "$(head -c 4 "$1")" = "<svg" ]
    [ "$(tail -n 1 "$1")" = "</svg>" ]
    if command -v xmllint >/dev/null; then
        xmllint --noout "$1"
    fi
}

@test "scalebench holds 50 idle connections and prints one well-formed result line" {
    need_lesson3
    start_server server "$(bin $L3 server)" --api poll --port 0
    run timeout 60 "$(bin tools scalebench)" --port "$PORT" --idle 50 --rounds 200 --runs 3
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 1 ]
    re='^idle=50 active=1 rounds=200 size=16 median_us=([0-9]+\.[0-9]{2}) min_us=([0-9]+\.[0-9]{2})$'
    [[ ${lines[0]} =~ $re ]]
    median=${BASH_REMATCH[1]} min=${BASH_REMATCH[2]}
    # a real measurement: more than zero, and the fastest run is no slower than the median
    awk -v m="$median" -v n="$min" 'BEGIN { exit !(n > 0 && n <= m) }'
}

@test "scalebench exits 3 when the select server refuses idle connections past FD_SETSIZE" {
    need_lesson3
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] || [ "$hard" -ge 1200 ] || skip "the hard fd limit (ulimit -Hn) is $hard, below 1200"
    # The server must run out of select's 1024 bits, not out of descriptors (EMFILE) first.
    soft=$(ulimit -Sn)
    [ "$soft" = unlimited ] || [ "$soft" -ge 1200 ] || ulimit -Sn 1200
    start_server server "$(bin $L3 server)" --api select --port 0
    run timeout 60 "$(bin tools scalebench)" --port "$PORT" --idle 1100 --rounds 10 --runs 1
    [ "$status" -eq 3 ]
    re="^scalebench: server refused ([0-9]+) of 1100 idle connections \(select's FD_SETSIZE limit\?\)$"
    [[ $output =~ $re ]]
    # fds 0..1023 minus stdio, the listening socket and the spare: about 1019 are held
    refused=${BASH_REMATCH[1]}
    [ "$refused" -ge 77 ]
    [ "$refused" -le 100 ]
    grep -q 'refused: fd 1024 >= FD_SETSIZE' "$T/server.err"
}

@test "scalebench reports a server that is not there in one line and exits 1" {
    start_server server "$(bin tools ttcp)" --receive --port 0
    stop_pid "$PID" # nobody listens on this port any more
    run timeout 30 "$(bin tools scalebench)" --port "$PORT" --idle 5
    [ "$status" -eq 1 ]
    [ "$output" = "scalebench: connect to 127.0.0.1 port $PORT: Connection refused" ]
}

@test "scalebench names both numbers when the hard fd limit is too low for N" {
    run bash -c "ulimit -n 200 && timeout 30 '$(bin tools scalebench)' --port 9 --idle 500"
    [ "$status" -eq 1 ]
    [ "$output" = "scalebench: 517 file descriptors needed, but the hard limit (ulimit -Hn) is 200" ]
}

@test "svgplot turns a small table into a well-formed SVG with one line per series" {
    printf '%s\n' '# api N us' 'select 10 12.5' 'select 100 30.1' 'poll 100 25' 'poll 10 11' \
        'poll 1000 190' '' 'epoll 10 9.5' 'epoll 1000 9.9' >"$T/data"
    "$(bin tools svgplot)" --title 'select & poll <vs> epoll' --xlabel 'idle "N"' \
        <"$T/data" >"$T/plot.svg"
    is_svg "$T/plot.svg"
    [ "$(grep -c '<polyline' "$T/plot.svg")" -eq 3 ]
    for name in select poll epoll; do
        grep -q ">$name</text>" "$T/plot.svg"
    done
    grep -qF '>select &amp; poll &lt;vs&gt; epoll</text>' "$T/plot.svg"
    grep -qF '>idle &quot;N&quot;</text>' "$T/plot.svg"
    # the X axis is labelled by decades
    for tick in 10 100 1000; do
        grep -q ">$tick</text>" "$T/plot.svg"
    done
}

@test "svgplot rejects a malformed line, naming it, and writes nothing" {
    printf 'poll 10 11\npoll ten 25\n' >"$T/data"
    run "$(bin tools svgplot)" --title t <"$T/data"
    [ "$status" -eq 1 ]
    [ "$output" = "svgplot: line 2: expected 'SERIES X Y'" ]
}

@test "tools/bench prints the scaling table for every N and writes a well-formed plot" {
    for t in ttcp scalebench svgplot; do
        [ -x "$ROOT/tools/$t" ] || skip "the normal build is missing tools/$t (make all)"
    done
    # (the finished-server section has its own test: tools_bench_server.bats)
    run env SCALE_NS="10 100" SCALE_ROUNDS=300 SCALE_RUNS=3 TTCP_BYTES=1M SYSCALL_ROUNDS=300 \
        SERVER_BENCH=0 BENCH_OUT="$T/bench" timeout 300 "$ROOT/tools/bench"
    [ "$status" -eq 0 ]
    [[ $output == *"table: $T/bench/scaling.txt"* ]]
    [[ $output == *"plot:  $T/bench/scaling.svg"* ]]
    run cat "$T/bench/scaling.txt"
    [[ ${lines[0]} =~ ^\ +N\ +rounds\ +select\ +poll\ +epoll$ ]]
    # one row per N; select and poll measured whenever lesson 3 is built
    cell='([0-9]+\.[0-9]{2}|-|n/a)'
    [[ ${lines[1]} =~ ^\ +10\ +300\ +$cell\ +$cell\ +$cell$ ]]
    [[ ${lines[2]} =~ ^\ +100\ +300\ +$cell\ +$cell\ +$cell$ ]]
    [ "$(grep -cE '^ +[0-9]+ +[0-9]+ ' "$T/bench/scaling.txt")" -eq 2 ]
    if [ -x "$ROOT/$L3/server" ]; then
        grep -qE '^ +10 +300 +[0-9]+\.[0-9]{2} +[0-9]+\.[0-9]{2} ' "$T/bench/scaling.txt"
        grep -q '^poll: a round trip at N=100 costs [0-9.]*x what it costs at N=10$' \
            "$T/bench/scaling.txt"
    fi
    is_svg "$T/bench/scaling.svg"
}
