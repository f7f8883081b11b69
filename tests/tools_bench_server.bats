#!/usr/bin/env bats
# Tools -- bench, its section on the finished server: in a tiny configuration it prints the
# lesson 7 / lesson 4 pingpong table, the one-way rows, the idle-memory rows and the system
# call count, and writes the table to server.txt (the numbers themselves are not checked: the
# machines are shared and noisy).

load helpers

@test "bench's server section prints its table and writes server.txt" {
    for b in 07_shutdown/server 04_epoll_lt_et/server tools/loadgen tools/sink; do
        [ -x "$ROOT/$b" ] || skip "$b is not built (make all)"
    done
    run env SERVER_BENCH=only SERVER_BENCH_MESSAGES=2000 SERVER_BENCH_IDLE_CONNS=50 \
        SERVER_BENCH_HOLD_S=1 SERVER_BENCH_SYSCALL_MESSAGES=100 BENCH_OUT="$T/bench" \
        SERVER_BENCH_COPY="$T/images/server_bench.txt" timeout 120 "$ROOT/tools/bench"
    echo "status $status"
    echo "$output"
    [ "$status" -eq 0 ]
    table=$T/bench/server.txt
    [ -s "$table" ]
    cmp "$table" "$T/images/server_bench.txt"
    grep -qE '^ +conns +size \| +L7 msg/s +MB/s +p50 us +p99 us +us/msg +lg% \| +L4 msg/s +MB/s +p50 us +p99 us +us/msg +lg% \| +L7/L4$' "$table"
    grep -qx 'is the run with the median msg/s of 3, the two servers taking turns.' "$table"
    # three runs per cell and per one-way row, each reported as it ends
    [ "$(grep -cE 'lesson 7, 100 conns, 16384 B, run [123]: [0-9]+ msg/s' <<<"$output")" -eq 3 ]
    [ "$(grep -cE 'sink, run [123]: [0-9]+ msg/s' <<<"$output")" -eq 3 ]
    # one row per connection count and size, every cell measured
    [ "$(grep -cE '^ +(1|100|1000) +(16|16384) \| +[0-9]+ +[0-9.]+ +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9]+ \| +[0-9]+ +[0-9.]+ +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9]+ \| +[0-9.]+$' "$table")" -eq 6 ]
    grep -qE '^  lesson 7 echo \(loadgen --mode oneway\) +[0-9.]+ MB/s$' "$table"
    grep -qE '^  sink, read only \(--raw --no-replies\) +[0-9.]+ MB/s$' "$table"
    grep -qE '^  16 KiB pingpong at 100 conns \(L7\) / sink +[0-9.]+$' "$table"
    grep -qx 'Resident memory per idle connection, 50 connections held open:' "$table"
    grep -qE '^  lesson 7 +[0-9]+ +[0-9]+ +-?[0-9]+$' "$table"
    grep -qE '^  lesson 4 +[0-9]+ +[0-9]+ +-?[0-9]+$' "$table"
    grep -qE '^  ([0-9.]+|n/a) calls per message' "$table"
    # the bench's servers are stopped on the way out
    refute pgrep -f "^$ROOT/tools/sink --port 0" >/dev/null
}

@test "bench rejects a bad SERVER_BENCH_RUNS with one line and exit 2, before measuring anything" {
    run env SERVER_BENCH=only SERVER_BENCH_RUNS=0 BENCH_OUT="$T/bench" timeout 20 "$ROOT/tools/bench"
    [ "$status" -eq 2 ]
    [ "$output" = "bench: SERVER_BENCH_MESSAGES, _IDLE_CONNS, _HOLD_S, _SYSCALL_MESSAGES and _RUNS want positive numbers, not '0'" ]
    [ ! -e "$T/bench/server.txt" ]
}
