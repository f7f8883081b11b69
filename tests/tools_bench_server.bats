#!/usr/bin/env bats
# Tools -- bench, its section on the finished server: in a tiny configuration it prints the
# lesson 9 / lesson 4 pingpong table, the lesson 9 / lesson 7 table, the completion model's
# table (lesson 10 on io_uring / lesson 9, with system calls per message at each cell), the
# one-way rows, the idle-memory rows, the system call counts of lessons 10, 9 and 7 and the
# instructions per message of lessons 10, 9, 7 and 4 (or why callgrind was skipped), and
# writes the table to server.txt (the timed numbers themselves are not checked: the machines
# are shared and noisy). Where io_uring cannot be used, lesson 10's place says why.

load helpers

BINS="10_io_uring/server 09_performance/server 07_shutdown/server 04_epoll_lt_et/server tools/loadgen tools/sink"

# callgrind_works: valgrind is installed and callgrind runs here (bench counts instructions).
callgrind_works() {
    command -v valgrind >/dev/null 2>&1 || return 1
    valgrind -q --tool=callgrind --callgrind-out-file=/dev/null true 2>/dev/null
}

@test "bench's server section prints its table and writes server.txt" {
    for b in $BINS; do
        [ -x "$ROOT/$b" ] || skip "$b is not built (make all)"
    done
    run env SERVER_BENCH=only SERVER_BENCH_MESSAGES=2000 SERVER_BENCH_IDLE_CONNS=50 \
        SERVER_BENCH_HOLD_S=1 SERVER_BENCH_SYSCALL_MESSAGES=100 \
        SERVER_BENCH_CALLGRIND_MESSAGES=50 BENCH_OUT="$T/bench" \
        SERVER_BENCH_COPY="$T/images/server_bench.txt" timeout 180 "$ROOT/tools/bench"
    echo "status $status"
    echo "$output"
    [ "$status" -eq 0 ]
    table=$T/bench/server.txt
    [ -s "$table" ]
    cmp "$table" "$T/images/server_bench.txt"
    grep -qE '^ +conns +size \| +L9 msg/s +MB/s +p50 us +p99 us +us/msg +lg% \| +L4 msg/s +MB/s +p50 us +p99 us +us/msg +lg% \| +L9/L4$' "$table"
    # lesson 10 takes part where io_uring can be used (the server says so when it cannot)
    if grep -q '^  skipped: server: io_uring is not available here: ' "$table"; then
        grep -qx 'each cell is the run with the median msg/s of 3, the servers of lessons 9, 7 and 4' "$table"
        L10=no
    else
        grep -qx 'each cell is the run with the median msg/s of 3, the servers of lessons 10, 9, 7 and 4' "$table"
        L10=yes
        [ "$(grep -cE 'lesson 10, 100 conns, 16384 B, run [123]: [0-9]+ msg/s' <<<"$output")" -eq 3 ]
        grep -qx 'The completion model: lesson 10 (io_uring) against lesson 9 (epoll), from the same' "$table"
        grep -qE '^ +conns +size \| +L10 msg/s +us/msg +calls/msg \| +L9 msg/s +us/msg +calls/msg \| +msg/s +us/msg$' "$table"
        # the four cells, each measured: msg/s, CPU per message, calls per message
        [ "$(grep -cE '^ +(100|1000) +(16|16384) \| +[0-9]+ +[0-9.]+ +-?[0-9.]+ \| +[0-9]+ +[0-9.]+ +-?[0-9.]+ \| +[0-9.]+ +[0-9.]+$' "$table")" -eq 4 ]
        grep -qE '^  lesson 10: ([0-9.]+|n/a) calls per message' "$table"
    fi
    # three runs per cell of each server and per one-way row, each reported as it ends
    [ "$(grep -cE 'lesson 9, 100 conns, 16384 B, run [123]: [0-9]+ msg/s' <<<"$output")" -eq 3 ]
    [ "$(grep -cE 'lesson 7, 100 conns, 16384 B, run [123]: [0-9]+ msg/s' <<<"$output")" -eq 3 ]
    [ "$(grep -cE 'lesson 4, 100 conns, 16384 B, run [123]: [0-9]+ msg/s' <<<"$output")" -eq 3 ]
    [ "$(grep -cE 'sink, run [123]: [0-9]+ msg/s' <<<"$output")" -eq 3 ]
    # one row per connection count and size in both tables, every cell measured
    [ "$(grep -cE '^ +(1|100|1000) +(16|16384) \| +[0-9]+ +[0-9.]+ +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9]+ \| +[0-9]+ +[0-9.]+ +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9]+ \| +[0-9.]+$' "$table")" -eq 6 ]
    grep -qx 'What the fast path buys: lesson 9 against lesson 7 (the same server without it),' "$table"
    grep -qE '^ +conns +size \| +L9 msg/s +us/msg \| +L7 msg/s +p50 us +p99 us +us/msg +lg% \| +L9/L7$' "$table"
    [ "$(grep -cE '^ +(1|100|1000) +(16|16384) \| +[0-9]+ +[0-9.]+ \| +[0-9]+ +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9]+ \| +[0-9.]+$' "$table")" -eq 6 ]
    grep -qE '^  lesson 9 echo \(loadgen --mode oneway\) +[0-9.]+ MB/s$' "$table"
    grep -qE '^  lesson 7 echo \(loadgen --mode oneway\) +[0-9.]+ MB/s$' "$table"
    grep -qE '^  sink, read only \(--raw --no-replies\) +[0-9.]+ MB/s$' "$table"
    grep -qE '^  16 KiB pingpong at 100 conns \(L9\) / sink +[0-9.]+$' "$table"
    grep -qx 'Resident memory per idle connection, 50 connections held open:' "$table"
    grep -qE '^  lesson 9 +[0-9]+ +[0-9]+ +-?[0-9]+$' "$table"
    grep -qE '^  lesson 7 +[0-9]+ +[0-9]+ +-?[0-9]+$' "$table"
    grep -qE '^  lesson 4 +[0-9]+ +[0-9]+ +-?[0-9]+$' "$table"
    grep -qE '^  lesson 9: ([0-9.]+|n/a) calls per message' "$table"
    grep -qE '^  lesson 7: ([0-9.]+|n/a) calls per message' "$table"
    grep -qx '50 messages, less a run with 1 message per connection (which cancels the start,' "$table"
    if callgrind_works; then
        for l in 9 7 4 $([ "$L10" = yes ] && echo 10); do
            grep -qE "^  lesson $l: [1-9][0-9]* instructions per echoed 16-byte message \(user space, callgrind; load run minus a 1-message run\)$" "$table"
        done
        [ "$(grep -cE '^    of which trace\(\): ' "$table")" -eq "$([ "$L10" = yes ] && echo 4 || echo 3)" ]
        # lesson 4's loop calls trace() for every epoll_wait and every read: never 0
        grep -A1 '^  lesson 4: [0-9]* instructions' "$table" | tail -n 1 |
            grep -qE '^    of which trace\(\): [0-9.]+% \([1-9][0-9]* instructions per message\)$'
    else
        grep -qE '^  skipped: valgrind (is not installed|cannot run callgrind here)' "$table"
    fi
    # the bench's servers are stopped on the way out
    refute pgrep -f "^$ROOT/tools/sink --port 0" >/dev/null
    refute pgrep -f "callgrind-out-file=.*/callgrind-l(4|7|9|10)-" >/dev/null
}

@test "bench skips the instruction count in one line that says why when callgrind cannot run" {
    for b in $BINS; do
        [ -x "$ROOT/$b" ] || skip "$b is not built (make all)"
    done
    # a valgrind that fails as a broken installation would, first in PATH
    mkdir -p "$T/fakebin"
    printf '#!/bin/sh\necho "valgrind: a stand-in that runs nothing" >&2\nexit 1\n' >"$T/fakebin/valgrind"
    chmod +x "$T/fakebin/valgrind"
    run env PATH="$T/fakebin:$PATH" SERVER_BENCH=only SERVER_BENCH_RUNS=1 \
        SERVER_BENCH_MESSAGES=200 SERVER_BENCH_IDLE_CONNS=10 SERVER_BENCH_HOLD_S=1 \
        SERVER_BENCH_SYSCALL_MESSAGES=10 BENCH_OUT="$T/bench" timeout 120 "$ROOT/tools/bench"
    echo "status $status"
    echo "$output"
    [ "$status" -eq 0 ]
    grep -qx '   skipped: valgrind cannot run callgrind here: valgrind: a stand-in that runs nothing' <<<"$output"
    [ "$(grep '^  skipped: ' "$T/bench/server.txt" | grep -vc 'io_uring is not available')" -eq 1 ]
    grep -qx '  skipped: valgrind cannot run callgrind here: valgrind: a stand-in that runs nothing' "$T/bench/server.txt"
    refute grep -qE '^  lesson [0-9]+: [0-9]+ instructions per echoed' "$T/bench/server.txt"
}

@test "bench rejects a bad SERVER_BENCH_RUNS with one line and exit 2, before measuring anything" {
    run env SERVER_BENCH=only SERVER_BENCH_RUNS=0 BENCH_OUT="$T/bench" timeout 20 "$ROOT/tools/bench"
    [ "$status" -eq 2 ]
    [ "$output" = "bench: SERVER_BENCH_MESSAGES, _IDLE_CONNS, _HOLD_S, _SYSCALL_MESSAGES and _RUNS want positive numbers, not '0'" ]
    [ ! -e "$T/bench/server.txt" ]
}

@test "bench rejects SERVER_BENCH_CALLGRIND_MESSAGES=1: the load run must outnumber the 1-message run" {
    run env SERVER_BENCH=only SERVER_BENCH_CALLGRIND_MESSAGES=1 BENCH_OUT="$T/bench" timeout 20 "$ROOT/tools/bench"
    [ "$status" -eq 2 ]
    [ "$output" = "bench: SERVER_BENCH_CALLGRIND_MESSAGES wants a number >= 2, not '1'" ]
    [ ! -e "$T/bench/server.txt" ]
}
