#!/usr/bin/env bats
# Appendix 10 -- the finished server on io_uring: the same protocol, rules
# and counters as lessons 7 and 9, with reads and writes described in a
# submission ring and their results taken from a completion ring. The
# protocol checks of lessons 6 to 9 (helpers.bash) run against it; the
# suite's own tests prove the completion model's mechanisms: no read or
# write system call in the loop, one io_uring_enter for many operations, no
# receive armed while a client is over the high-water mark, and one clear
# line where the kernel offers no io_uring.

load helpers

L=10_io_uring

# Where io_uring cannot be used (a kernel before 6.0, the sysctl
# kernel.io_uring_disabled, a container's seccomp filter) the server says
# so in one line and exits 3: every test that needs the rings then skips
# with that line as the reason (need_uring). Any other failure to start is
# not a reason to skip: those tests fail.

# ---- where there is no io_uring ----

@test "no io_uring (io_uring_setup fails with ENOSYS or EPERM): one line that says so and why, exit 3, nothing listening" {
    local err
    for err in ENOSYS EPERM; do
        run env SERVER_NO_URING=$err timeout 10 "$(bin $L server)" --port 0
        echo "$output"
        [ "$status" -eq 3 ]
        [ "${#lines[@]}" -eq 1 ]
        [[ ${lines[0]} == "server: io_uring is not available here: io_uring_setup: "* ]]
        refute grep -q 'listening on' <<<"$output"
    done
    run env SERVER_NO_URING=ENOSYS timeout 10 "$(bin $L server)" --port 0
    [[ $output == *"Function not implemented"* ]]
    run env SERVER_NO_URING=EPERM timeout 10 "$(bin $L server)" --port 0
    [[ $output == *"Operation not permitted"* ]]
}

# ---- the protocol, as lessons 6 to 9 promise it ----

@test "1000 pipelining connections through a random-chunking proxy: every reply byte-exact, counters exact" {
    need_uring
    pipelining_through_proxy_exact
}

@test "bad peers beside pipelined load: 7 protocol errors, an RST and a half-close mid-frame, 300 abandoned connections; the load untouched" {
    need_uring
    bad_peers_beside_pipelined_load
}

@test "LZ4: pipelined compressed requests are answered compressed, each reply checked" {
    need_uring
    lz4_pipelined_checked
}

@test "--threads 2: pipelined small, LZ4 and 200 kB requests are answered in order, each checked" {
    need_uring
    threads_pipelined_checked
}

@test "broadcast: a never-reading member is closed for output cap; three others get every message in order" {
    need_uring
    broadcast_caps_never_reader
}

@test "SIGTERM during a pipelined flood: every message the server decoded is answered and verified, exit 0" {
    need_uring
    stop_during_pipelined_flood
}

@test "SIGTERM while reading is paused with whole requests buffered: every request already read is answered" {
    need_uring
    stop_while_paused 3000 1000
    [ "$(counter closed_stop "$LINE")" -eq 1 ]
}

@test "SIGTERM: idle connections get a FIN, new connections are refused, the server exits 0 with its counters" {
    need_uring
    sigterm_stops_gracefully
}

@test "SIGTERM with connections still in the accept queue: each is accepted and gets a FIN, never a reset" {
    need_uring
    stop_with_accept_queue
}

@test "--max-conns 2: a third connection is refused at once and counted" {
    need_uring
    max_conns_refused
}

@test "out of file descriptors (ulimit -n 32): extra clients are refused, the server keeps serving" {
    need_uring
    out_of_fds_refused
}

# ---- the completion model ----

# (backpressure by hand, the receive cancelled and armed again: the text's
# experiment, run by tests/10_io_uring_text.bats)

@test "echo flood: 200 MiB sent without reading; server RSS stays within the watermark bound; nothing lost" {
    need_uring
    # plus the ring of provided buffers: until the receive's cancel takes
    # effect, the kernel may fill every one of them, and those bytes are
    # kept in c->in (RECV_BUFFERS x RECV_BUFFER_BYTES = 256 x 16 KiB)
    grep -qx '#define RECV_BUFFERS      256' "$ROOT/$L/server.h"
    grep -qx '#define RECV_BUFFER_BYTES (16u << 10)' "$ROOT/$L/server.h"
    echo_flood_bounded 4096
}

@test "no read or write system call in the loop: 100 connections x 100 messages travel through io_uring_enter, fewer than one per message" {
    need_uring
    need_strace
    start_traced server -f -e trace=io_uring_enter,read,recvfrom,recvmsg,readv,write,sendto,sendmsg,writev,epoll_wait \
        -o "$T/strace.log" -- "$(bin $L server)" --port 0
    run timeout 60 "$(bin tools loadgen)" --port "$PORT" --conns 100 --messages 100 --size 16 --timeout 50
    loadgen_ok 10000
    kill -TERM "$TRACED_PID"
    wait_exit "$PID" 10
    enters=$(grep -c 'io_uring_enter(' "$T/strace.log")
    echo "io_uring_enter: $enters calls for 10000 messages"
    [ "$enters" -lt 10000 ]
    # between "listening on" and the SIGTERM, the socket I/O is all in the
    # rings: no read or write call at all, nor a readiness wait
    awk '/write\(1, "listening on/ { on = 1; next } /--- SIGTERM/ { on = 0 } on' "$T/strace.log" >"$T/loop.log"
    [ "$(grep -c 'io_uring_enter(' "$T/loop.log")" -ge 1 ]
    refute grep -E '(^|\] )(read|recvfrom|recvmsg|readv|write|sendto|sendmsg|writev|epoll_wait)\(' "$T/loop.log"
}
