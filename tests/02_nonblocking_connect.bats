#!/usr/bin/env bats
# Lesson 2 -- non-blocking connect: the four outcomes, their exit statuses,
# the timeout's accuracy, retries with backoff.

load helpers

L=02_nonblocking_connect

# A port nobody listens on: a server's port, after the server stopped.
closed_port() {
    start_server gone "$(bin $L server)" --port 0
    stop_pid "$PID"
}

ms_now() { echo $(($(date +%s%N) / 1000000)); }

@test "connected: result line names the peer and the time, exit status 0" {
    start_server server "$(bin $L server)" --port 0
    run client --port "$PORT" --timeout 1000 --connect-only
    [ "$status" -eq 0 ]
    [[ $output =~ ^client:\ connected\ to\ 127\.0\.0\.1:$PORT\ in\ [0-9]+\.[0-9]\ ms$ ]]
}

@test "connected client still echoes 1 MiB of random bytes identically (lesson 1 behaviour)" {
    start_server server "$(bin $L server)" --port 0
    head -c 1048576 /dev/urandom >"$T/in"
    timeout 30 "$(bin $L client)" --port "$PORT" <"$T/in" >"$T/echoed" 2>"$T/client.err"
    cmp "$T/in" "$T/echoed"
    grep -q '^client: connected to' "$T/client.err"
}

@test "refused: a closed port gives 'refused' and exit status 1" {
    closed_port
    run client --port "$PORT" --timeout 1000 --connect-only
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ refused\ by\ 127\.0\.0\.1:$PORT\ after\ [0-9]+\.[0-9]\ ms$ ]]
}

@test "timed out: a full accept queue makes connect time out at --timeout, not before" {
    start_server full "$(bin $L full_listener)" --port 0
    start=$(ms_now)
    run client --port "$PORT" --timeout 600 --connect-only
    took=$(($(ms_now) - start))
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ timed\ out\ after\ ([0-9]+)\.[0-9]\ ms\ connecting\ to\ 127\.0\.0\.1:$PORT$ ]]
    reported=${BASH_REMATCH[1]}
    # never early (poll rounds its timeout up); late only by a loaded
    # machine's scheduling, so the upper bounds are loose
    [ "$reported" -ge 600 ]
    [ "$reported" -le 2600 ]
    [ "$took" -ge 600 ]
    [ "$took" -le 10000 ]
}

@test "timed out: waiting with select instead of poll gives the same result" {
    start_server full "$(bin $L full_listener)" --port 0
    run client --port "$PORT" --timeout 400 --connect-only --wait select
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ timed\ out\ after\ ([0-9]+)\.[0-9]\ ms ]]
    [ "${BASH_REMATCH[1]}" -ge 400 ]
    [ "${BASH_REMATCH[1]}" -le 2400 ]
}

@test "self-connect: a socket bound to its destination is detected, exit status 1" {
    run client --port 0 --self-connect --timeout 1000 --connect-only
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ self-connect:\ 127\.0\.0\.1:([0-9]+)\ is\ connected\ to\ itself ]]
    [ "${BASH_REMATCH[1]}" -gt 0 ]
}

# time_wait_on PORT: a connection on PORT is in TIME_WAIT (for wait_until).
time_wait_on() { ss -tanH state time-wait "( sport = :$1 )" | grep -q .; }

@test "after a self-connect even a server with SO_REUSEADDR cannot bind the port during TIME_WAIT" {
    run client --port 0 --self-connect --timeout 1000 --connect-only
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ self-connect:\ 127\.0\.0\.1:([0-9]+)\ is\ connected\ to\ itself ]]
    port=${BASH_REMATCH[1]}
    wait_until 5 time_wait_on "$port"
    # the server sets SO_REUSEADDR (it has --no-reuseaddr to turn it off);
    # the TIME_WAIT entry came from the client's socket, which did not
    run timeout 10 "$(bin $L server)" --port "$port"
    [ "$status" -eq 1 ]
    [ "$output" = "server: bind: Address already in use" ]
}

@test "self-connect on a chosen closed port, waiting with select" {
    closed_port
    run client --port "$PORT" --self-connect --timeout 1000 --connect-only --wait select
    [ "$status" -eq 1 ]
    [[ $output == "client: self-connect: 127.0.0.1:$PORT is connected to itself"* ]]
}

@test "--retry 2 on a closed port: three attempts, delays of 100 then 200 ms, exit 1" {
    closed_port
    start=$(ms_now)
    run client --port "$PORT" --timeout 1000 --retry 2 --connect-only
    took=$(($(ms_now) - start))
    [ "$status" -eq 1 ]
    [ "$(grep -c '^client: refused by' <<<"$output")" -eq 3 ]
    [ "${lines[1]}" = "client: retry 1 of 2 in 100 ms" ]
    [ "${lines[3]}" = "client: retry 2 of 2 in 200 ms" ]
    echo "three attempts with backoff: $took ms"
    # 300 ms of sleep at least (the program's start only adds to it: a
    # lower bound holds however loaded the machine is)
    [ "$took" -ge 300 ]
}

@test "--retry connects once a late server appears on the port" {
    run env BIN_DIR="$BIN_ROOT/$L" timeout 30 "$ROOT/$L/run" retry
    [ "$status" -eq 0 ]
    [[ $output == *"[client] client: refused by"* ]]
    [[ $output == *"[client] client: retry 1 of 6 in 100 ms"* ]]
    [[ $output == *"[client] client: connected to"* ]]
    [[ $output == *"exit status 0"* ]]
}

@test "--retry 6: the delay doubles from 100 ms and stops growing at the 2000 ms cap" {
    closed_port
    start_bg client "$(bin $L client)" --port "$PORT" --timeout 1000 --retry 6 --connect-only
    # the sixth retry is announced after 100 + 200 + 400 + 800 + 1600 ms of sleep
    wait_until 20 grep -q '^client: retry 6 of 6 in ' "$T/client.err"
    delays=$(sed -n 's/^client: retry [0-9]* of 6 in \([0-9]*\) ms$/\1/p' "$T/client.err" | tr '\n' ' ')
    echo "delays: $delays"
    [ "$delays" = "100 200 400 800 1600 2000 " ]
}

@test "--wait poll connects a socket whose fd is above FD_SETSIZE" {
    connect_poll_above_fd_setsize
    [[ ${lines[1]} =~ ^client:\ connected\ fd=1031\ 127\.0\.0\.1:[0-9]+\ -\>\ 127\.0\.0\.1:$PORT$ ]]
}

@test "--wait select refuses a socket fd above FD_SETSIZE with a line naming FD_SETSIZE, exit 1" {
    connect_select_fd_too_high
}

@test "the outcomes demo shows all four results with their exit statuses" {
    run env BIN_DIR="$BIN_ROOT/$L" timeout 30 "$ROOT/$L/run" outcomes
    [ "$status" -eq 0 ]
    grep -A1 '\[client\] client: connected to' <<<"$output" | grep -q 'exit status 0'
    grep -A1 '\[client\] client: refused by' <<<"$output" | grep -q 'exit status 1'
    grep -A1 '\[client\] client: timed out after' <<<"$output" | grep -q 'exit status 1'
    [ "$(grep -A1 'is connected to itself' <<<"$output" | grep -c 'exit status 1')" -eq 2 ]
}

@test "bad --timeout, --retry and --wait values get a one-line error and exit 2" {
    run client --port 1 --timeout 0
    [ "$status" -eq 2 ]
    [ "$output" = "client: --timeout wants a number in 1..3600000, not '0'" ]
    run client --port 1 --timeout 5x
    [ "$status" -eq 2 ]
    [ "$output" = "client: --timeout wants a number in 1..3600000, not '5x'" ]
    run client --port 1 --retry -1
    [ "$status" -eq 2 ]
    [ "$output" = "client: --retry wants a number in 0..100, not '-1'" ]
    run client --port 1 --wait epoll
    [ "$status" -eq 2 ]
    [ "$output" = "client: --wait wants poll or select" ]
}

# ---- connect() returning 0 at once: the exception connect.c's comment names ----

# fastopen_setting: net.ipv4.tcp_fastopen of this network namespace; skips
# the test when it lacks the client bit (1): TCP_FASTOPEN_CONNECT cannot be set.
fastopen_setting() {
    TFO=$(cat /proc/sys/net/ipv4/tcp_fastopen)
    if [ $((TFO & 1)) -eq 0 ]; then
        skip "net.ipv4.tcp_fastopen=$TFO lacks the client bit (1): setting TCP_FASTOPEN_CONNECT fails"
    fi
}

@test "a non-blocking connect on loopback is EINPROGRESS, with TCP_FASTOPEN_CONNECT too until a cookie is held; TCP_FASTOPEN_NO_COOKIE makes it 0, SYN unsent" {
    fastopen_setting
    run timeout 30 "$BIN_ROOT/tests/tfo_connect"
    echo "net.ipv4.tcp_fastopen=$TFO; $(uname -r)"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 4 ]
    [ "${lines[0]}" = "plain: connect() = -1 EINPROGRESS, SYN sent" ]
    [ "${lines[3]}" = "TCP_FASTOPEN_CONNECT and TCP_FASTOPEN_NO_COOKIE: connect() = 0, SYN not sent" ]
    if [ $((TFO & 2)) -ne 0 ]; then
        # with the server bit the listener hands out cookies, and one for
        # 127.0.0.1 may be cached already: the next test shows that case
        return 0
    fi
    [ "${lines[1]}" = "TCP_FASTOPEN_CONNECT, first: connect() = -1 EINPROGRESS, SYN sent" ]
    [ "${lines[2]}" = "TCP_FASTOPEN_CONNECT, after a handshake: connect() = -1 EINPROGRESS, SYN sent" ]
}

@test "with TCP_FASTOPEN_CONNECT, once the first handshake brought a Fast Open cookie, connect() returns 0 at once, SYN unsent (private network namespace)" {
    if ! unshare -n true 2>/dev/null; then
        skip "cannot make a network namespace here (unshare -n needs root or user namespaces)"
    fi
    # a fresh namespace: no cookie cached yet, and a setting of its own
    # (client and server bits) that leaves the machine's alone
    run timeout 30 unshare -n bash -c 'ip link set lo up && echo 3 >/proc/sys/net/ipv4/tcp_fastopen && exec "$0"' \
        "$BIN_ROOT/tests/tfo_connect"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "plain: connect() = -1 EINPROGRESS, SYN sent
TCP_FASTOPEN_CONNECT, first: connect() = -1 EINPROGRESS, SYN sent
TCP_FASTOPEN_CONNECT, after a handshake: connect() = 0, SYN not sent
TCP_FASTOPEN_CONNECT and TCP_FASTOPEN_NO_COOKIE: connect() = 0, SYN not sent" ]
}

@test "getsockopt(SO_ERROR) failing after the connect (strace injects ENOBUFS): one line naming it, exit status 1" {
    connect_so_error_fails $L
}
