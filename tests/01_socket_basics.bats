#!/usr/bin/env bats
# Lesson 1 -- socket basics: blocking echo, the naive recv() bug, readn,
# SIGPIPE, SO_REUSEADDR, the blocking-echo deadlock, ttcp.

load helpers

L=01_socket_basics
MD=01_socket_basics.md
LONG=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-+ # 64 bytes

@test "server prints 'listening on 127.0.0.1:PORT' with the port the kernel chose" {
    start_server server "$(bin $L server)" --port 0
    [[ $(head -1 "$T/server.out") =~ ^listening\ on\ 127\.0\.0\.1:[0-9]+$ ]]
    [ "$PORT" -gt 0 ]
    ss -tlnH "sport = :$PORT" | grep -q LISTEN
}

@test "echo of 1 MiB of random bytes comes back identical" {
    start_server server "$(bin $L server)" --port 0
    head -c 1048576 /dev/urandom >"$T/in"
    timeout 30 "$(bin $L client)" --port "$PORT" <"$T/in" >"$T/echoed"
    cmp "$T/in" "$T/echoed"
}

@test "at the end of its input the client half-closes, reads the whole echo, and exits 0" {
    start_server server "$(bin $L server)" --port 0 -v
    # 10 s: far more than an echo of two lines takes; a missing shutdown hangs both sides
    run timeout 10 "$(bin $L client)" --port "$PORT" < <(printf 'hello\nworld\n')
    echo "client exit status: $status"
    [ "$status" -eq 0 ]
    [ "$output" = "$(printf 'hello\nworld')" ]
    wait_until 5 grep -q 'close fd=' "$T/server.err"
    grep -qE '^server: recv fd=[0-9]+ -> 0 bytes: 127\.0\.0\.1:[0-9]+ closed its side$' "$T/server.err"
}

@test "clients are served one after another: the second waits until the first leaves" {
    start_server server "$(bin $L server)" --port 0
    open_input first
    start_bg first "$(bin $L client)" --port "$PORT" <"$T/first.in"
    first=$PID
    echo one >&5
    wait_until 5 grep -q one "$T/first.out"
    printf 'two\n' >"$T/two"
    start_bg second "$(bin $L client)" --port "$PORT" <"$T/two"
    second=$PID
    sleep 0.5 # a window in which nothing may happen: the second client waits in the listen queue
    [ ! -s "$T/second.out" ]
    exec 5>&- # the first client's input ends: it half-closes and leaves
    wait_exit "$first" 10
    wait_exit "$second" 10
    [ "$(cat "$T/second.out")" = two ]
    for i in 1 2 3 4 5; do
        [ "$(echo "client $i" | timeout 10 "$(bin $L client)" --port "$PORT")" = "client $i" ]
    done
}

@test "naive receiver merges two messages sent back to back into one recv" {
    start_server receiver "$(bin $L receiver)" --mode naive --port 0 --late
    "$(bin $L sender)" --port "$PORT" hello world
    wait_exit "$PID" 10
    run cat "$T/receiver.out"
    [ "${lines[1]}" = 'recv #1 -> 10 bytes: "helloworld"' ]
    [ "${lines[2]}" = "  printf(\"%s\") shows: helloworld$(printf '?%.0s' {1..40})<next variable>" ]
    [ "${lines[3]}" = 'recv #2 -> 0 bytes: the sender closed the connection' ]
}

@test "naive receiver cuts a 64-byte message at 50 bytes and prints stale bytes after the rest" {
    start_server receiver "$(bin $L receiver)" --mode naive --port 0 --late
    "$(bin $L sender)" --port "$PORT" "$LONG"
    wait_exit "$PID" 10
    run cat "$T/receiver.out"
    [ "${lines[1]}" = "recv #1 -> 50 bytes: \"${LONG:0:50}\"" ]
    [ "${lines[3]}" = 'recv #2 -> 14 bytes: "OPQRSTUVWXYZ-+"' ]
    # 14 new bytes, then the 36 old bytes that followed them in the buffer
    [ "${lines[4]}" = "  printf(\"%s\") shows: OPQRSTUVWXYZ-+${LONG:14:36}<next variable>" ]
}

@test "readn receiver prints each 5-byte message whole, whatever recv returned" {
    start_server receiver "$(bin $L receiver)" --mode readn --size 5 --port 0 --late
    "$(bin $L sender)" --port "$PORT" hel loworl d
    wait_exit "$PID" 10
    run cat "$T/receiver.out"
    [ "${lines[1]}" = 'message #1 (5 bytes): "hello"' ]
    [ "${lines[2]}" = 'message #2 (5 bytes): "world"' ]
    [ "${lines[3]}" = 'end of stream after 2 messages' ]
}

@test "readn receiver prints each 5-byte message whole when the bytes arrive one at a time" {
    start_server receiver "$(bin $L receiver)" --mode readn --size 5 --port 0
    receiver=$PID
    # the proxy writes every byte alone, 10 ms apart: each recv() finds one byte
    start_server proxy "$(bin tools chunkproxy)" --upstream "127.0.0.1:$PORT" --port 0 \
        --chunk 1 --delay-ms 10 --direction up -v
    "$(bin $L sender)" --port "$PORT" hello world
    wait_exit "$receiver" 10
    run cat "$T/receiver.out"
    echo "receiver printed: $output"
    [ "${lines[1]}" = 'message #1 (5 bytes): "hello"' ]
    [ "${lines[2]}" = 'message #2 (5 bytes): "world"' ]
    [ "${lines[3]}" = 'end of stream after 2 messages' ]
    [ "${#lines[@]}" -eq 4 ]
    # the 10 bytes really went out as 10 writes of 1 byte
    writes=$(sed -n 's/^chunkproxy: client [^ ]*: write \([0-9]*\) bytes to upstream$/\1/p' "$T/proxy.err" | tr '\n' ' ')
    echo "proxy writes to the receiver: $writes"
    [ "$writes" = "1 1 1 1 1 1 1 1 1 1 " ]
}

@test "readn receiver reports a message cut short by the end of the stream" {
    start_server receiver "$(bin $L receiver)" --mode readn --size 8 --port 0
    "$(bin $L sender)" --port "$PORT" abc
    wait_exit "$PID" 10
    grep -qx 'end of stream in the middle of message #1 (3 of 8 bytes)' "$T/receiver.out"
}

@test "a client that resets mid-transfer does not kill the server; the next client is served" {
    start_server server "$(bin $L server)" --port 0
    server=$PID
    # This client never reads, so the server soon blocks in send(); killing
    # it with unread data in its receive buffer makes its kernel send RST.
    # The server meets the reset in send() (or, if it had just finished a
    # send on a loaded machine, in its next recv()).
    start_bg hog "$(bin $L client)" --port "$PORT" --send-first 20000000
    hog=$PID
    wait_until 10 grep -q 'sent 2097152 of' "$T/hog.err"
    kill -KILL "$hog"
    wait_exit "$hog" 5 || true
    wait_until 10 grep -qE '(send|recv): (Connection reset by peer|Broken pipe)' "$T/server.err"
    kill -0 "$server" # SIGPIPE did not kill it
    [ "$(echo next | timeout 10 "$(bin $L client)" --port "$PORT")" = next ]
}

@test "a client that closed before its echo came back gives EPIPE in send, not a SIGPIPE death" {
    # --chunk 1: one byte echoed per send(). The sender's socket is closed, so
    # the first echoed byte draws an RST; the server's socket had already seen
    # the FIN (CLOSE_WAIT), so the next send() fails with EPIPE and raises SIGPIPE.
    start_server server "$(bin $L server)" --port 0 --chunk 1
    server=$PID
    open_input first
    start_bg first "$(bin $L client)" --port "$PORT" <"$T/first.in"
    first=$PID
    echo one >&5
    wait_until 5 grep -q one "$T/first.out"
    # the server is busy with the first client: the sender connects, sends
    # and closes while it waits in the listen queue
    "$(bin $L sender)" --port "$PORT" "$LONG"
    exec 5>&- # the first client leaves; the server takes the sender's connection
    wait_exit "$first" 10
    wait_until 10 bash -c "grep -q 'send: ' '$T/server.err' || ! kill -0 $server"
    kill -0 "$server" # SIGPIPE did not kill it
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: send: Broken pipe$' "$T/server.err"
    [ "$(echo next | timeout 10 "$(bin $L client)" --port "$PORT")" = next ]
}

# queues_stuck PORT PID...: wait (at most 20 s) until the send and receive
# queues of the connections on PORT stop moving for 1 s: both ends are
# blocked. Fails at once if one of the processes PID... has exited.
queues_stuck() {
    local port=$1 prev="" cur stable=0 pid
    shift
    for _ in $(seq 100); do
        sleep 0.2 # one sample of the queues every 0.2 s
        for pid in "$@"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "process $pid exited before the queues on port $port filled" >&2
                return 1
            fi
        done
        cur=$(ss -tnH state established "( sport = :$port or dport = :$port )" | awk '{ print $1, $2 }' | sort)
        if [ -n "$cur" ] && [ "$cur" = "$prev" ]; then stable=$((stable + 1)); else stable=0; fi
        prev=$cur
        [ "$stable" -ge 5 ] && return 0
    done
    echo "the queues on port $port still moved after 20 s: $cur" >&2
    return 1
}

# is_stopped PID: the process is stopped by a signal (state T).
is_stopped() { [ "$(ps -o state= -p "$1")" = T ]; }

@test "writen finishes an echo step that a stop signal (Ctrl-Z, fg) cut short in send" {
    # 16 MiB echoed in steps of 1 MiB, to a client whose output nobody reads
    # yet (a fifo): the server blocks in send() part-way through a step.
    start_server server "$(bin $L server)" --port 0 --chunk 1048576
    server=$PID
    head -c 16777216 /dev/urandom >"$T/in"
    open_input echo # the client's stdout; the test holds it open on fd 5
    start_bg client bash -c 'exec "$@" >"$0"' "$T/echo.in" "$(bin $L client)" --port "$PORT" <"$T/in"
    client=$PID
    queues_stuck "$PORT" "$server" "$client"
    # A stop signal wakes the blocked send(), which returns the bytes it has
    # queued so far: a short write. writen() must send the rest after SIGCONT.
    kill -STOP "$server"
    wait_until 5 is_stopped "$server"
    kill -CONT "$server"
    start_bg reader bash -c 'exec cat "$0" >"$1"' "$T/echo.in" "$T/echoed"
    reader=$PID
    wait_exit "$client" 60
    exec 5>&- # the last writer of the fifo is gone: the reader sees its end
    wait_exit "$reader" 10
    echo "sent $(stat -c %s "$T/in") bytes, echoed $(stat -c %s "$T/echoed")"
    cmp "$T/in" "$T/echoed"
}

@test "SIGTERM stops the server with exit status 0" {
    start_server server "$(bin $L server)" --port 0
    kill -TERM "$PID"
    rc=0
    wait_exit "$PID" 5 || rc=$?
    [ "$rc" -eq 0 ]
    grep -q 'server: stopping' "$T/server.err"
}

@test "a second server on a port in use fails with one line naming the cause" {
    start_server server "$(bin $L server)" --port 0
    run "$(bin $L server)" --port "$PORT"
    [ "$status" -eq 1 ]
    [ "$output" = "server: bind: Address already in use" ]
}

@test "bad arguments get a one-line error and exit status 2" {
    run "$(bin $L server)" --port 70000
    [ "$status" -eq 2 ]
    [ "$output" = "server: --port wants a number in 0..65535, not '70000'" ]
    run "$(bin $L client)" --port 1 --send-first -5
    [ "$status" -eq 2 ]
    [ "$output" = "client: --send-first wants a number in 1..1099511627776, not '-5'" ]
    run "$(bin $L server)" --chunk 4k
    [ "$status" -eq 2 ]
    [ "$output" = "server: --chunk wants a number in 1..1048576, not '4k'" ]
}

@test "client reports a refused connection in one line and exits 1" {
    start_server server "$(bin $L server)" --port 0
    stop_pid "$PID" # nobody listens on this port any more
    run "$(bin $L client)" --port "$PORT" </dev/null
    [ "$status" -eq 1 ]
    [ "$output" = "client: connect to 127.0.0.1 port $PORT: Connection refused" ]
}

# The server closes first when stopped with a client connected, so its side
# of that connection waits in TIME_WAIT. Restarting on the same port then
# needs SO_REUSEADDR.
restart_with_time_wait() {
    start_server server "$(bin $L server)" --port 0
    open_input c
    start_bg c "$(bin $L client)" --port "$PORT" <"$T/c.in"
    echo ping >&5
    wait_until 5 grep -q ping "$T/c.out"
    stop_pid "${STARTED[0]}"
    exec 5>&-
    wait_until 5 bash -c "ss -tanH state time-wait | grep -q ':$PORT '"
}

@test "without SO_REUSEADDR a restart fails while a connection is in TIME_WAIT" {
    restart_with_time_wait
    run "$(bin $L server)" --port "$PORT" --no-reuseaddr
    [ "$status" -eq 1 ]
    [ "$output" = "server: bind: Address already in use" ]
}

@test "with SO_REUSEADDR the server restarts on the same port despite TIME_WAIT" {
    restart_with_time_wait
    start_server server2 "$(bin $L server)" --port "$PORT"
    [ "$(echo back | timeout 10 "$(bin $L client)" --port "$PORT")" = back ]
}

@test "the deadlock scenario is detected as stuck within its bound and cleaned up" {
    run env BIN_DIR="$BIN_ROOT/$L" timeout 40 "$ROOT/$L/run" deadlock
    [ "$status" -eq 0 ]
    [[ $output == *"stuck: client pid "* ]]
    # the two ends of the connection, each with bytes waiting in Send-Q
    pid=$(sed -n 's/.*stuck: client pid \([0-9]*\).*/\1/p' <<<"$output")
    [ "$(grep -cE '^   \[(server|client) end\] +127\.0\.0\.1:[0-9]+ +127\.0\.0\.1:[0-9]+ +[0-9]+ +[1-9][0-9]{5,}$' <<<"$output")" -eq 2 ]
    # each row is labelled with the end it belongs to, by its local port
    port=$(sed -n 's/^  \[server\] listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' <<<"$output")
    grep -qE "^   \[server end\] +127\.0\.0\.1:$port " <<<"$output"
    grep -qE "^   \[client end\] +127\.0\.0\.1:[0-9]+ +127\.0\.0\.1:$port " <<<"$output"
    [[ $output == *"[client2] still alive"* ]]
    refute kill -0 "$pid" 2>/dev/null
}

@test "ttcp prints a throughput table for every message length and the stream ceiling" {
    start_server ttcp "$(bin tools ttcp)" --receive --port 0
    run timeout 120 "$(bin tools ttcp)" --transmit --table --port "$PORT" --bytes 2M
    [ "$status" -eq 0 ]
    [[ ${lines[0]} =~ ^\ *length\ +messages\ +seconds\ +MB/s$ ]]
    for len in 64 256 1024 4096 16384 65536 262144 1048576; do
        grep -qE "^ *$len +[0-9]+ +[0-9]+\.[0-9]{3} +[0-9]+\.[0-9]{2}$" <<<"$output"
    done
    grep -qE '^ *stream +- +[0-9]+\.[0-9]{3} +[0-9]+\.[0-9]{2}$' <<<"$output"
    # throughput must be a real measurement, never zero
    refute grep -qE ' 0\.00$' <<<"$output"
}

# in_close_wait PORT: our end of a connection to PORT got the server's FIN.
in_close_wait() { ss -tanH state close-wait "( dport = :$1 )" | grep -q .; }
# no_conn_to PORT: no socket of ours is connected to PORT any more (reset).
no_conn_to() { [ -z "$(ss -tanH "( dport = :$1 )")" ]; }
# only_main_thread PID: the process runs, with one thread left.
only_main_thread() { [ "$(ls "/proc/$1/task" 2>/dev/null | wc -l)" -eq 1 ]; }

@test "the client's exit status comes from its reader: 0 after a clean close, even when a later send fails" {
    start_server server "$(bin $L server)" --port 0
    server=$PID
    open_input c # the client's stdin, on fd 5
    # The client's stdout is a fifo the test fills first, so the reader
    # thread blocks writing the echo: the writer's failed send then
    # certainly comes before the reader sees the end of the stream.
    mkfifo "$T/c.stdout"
    exec 6<>"$T/c.stdout"
    head -c 65536 /dev/zero >&6
    start_bg c bash -c 'exec 6>&- "$@" >"$0"' "$T/c.stdout" "$(bin $L client)" --port "$PORT" -v <"$T/c.in"
    client=$PID
    echo first >&5
    wait_until 5 grep -qE '^client: recv fd=[0-9]+ -> 6 bytes$' "$T/c.err"
    stop_pid "$server" # it had read everything: a clean close, FIN
    wait_until 5 in_close_wait "$PORT"
    echo second >&5 # the closed server's kernel answers with RST
    wait_until 5 no_conn_to "$PORT"
    echo third >&5 # this send fails
    wait_until 5 grep -qE '^client: send: (Broken pipe|Connection reset by peer)$' "$T/c.err"
    # the writer thread ended and the process lives on: nothing but main's
    # return decides the status (a writer calling exit() would end it here)
    wait_until 5 only_main_thread "$client"
    head -c 65536 <&6 >/dev/null # let the reader go on
    rc=0
    wait_exit "$client" 10 || rc=$?
    [ "$rc" -eq 0 ]
    read -r -t 2 -u 6 echoed
    [ "$echoed" = first ]
    exec 6>&-
}

@test "a server that keeps SIGPIPE's default dies with status 141 when it sends to a reset connection" {
    # The scene of the EPIPE test above, with --keep-sigpipe: the second send
    # to the closed peer raises SIGPIPE, and nothing catches it.
    start_server server "$(bin $L server)" --port 0 --chunk 1 --keep-sigpipe
    server=$PID
    open_input first
    start_bg first "$(bin $L client)" --port "$PORT" <"$T/first.in"
    first=$PID
    echo one >&5
    wait_until 5 grep -q one "$T/first.out"
    "$(bin $L sender)" --port "$PORT" "$LONG"
    exec 5>&-
    wait_exit "$first" 10
    rc=0
    wait_exit "$server" 10 || rc=$?
    [ "$rc" -eq 141 ] # 128 + 13: killed by signal 13, SIGPIPE
    [ "$(kill -l "$rc")" = PIPE ]
    refute grep -q 'send: ' "$T/server.err" # it died without a word
}

@test "send() of 0 bytes returns 0 and the receiver sees nothing of it" {
    start_server receiver "$(bin $L receiver)" --mode naive --port 0 --late
    run "$(bin $L sender)" -v --port "$PORT" hello "" world
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = 'sender: send #2: 0 bytes -> send() returned 0' ]
    wait_exit "$PID" 10
    run cat "$T/receiver.out"
    [ "${lines[1]}" = 'recv #1 -> 10 bytes: "helloworld"' ]
    [ "${lines[3]}" = 'recv #2 -> 0 bytes: the sender closed the connection' ]
}

@test "an empty message alone: the receiver's first recv() returns 0, the end of the stream" {
    start_server receiver "$(bin $L receiver)" --mode naive --port 0 --late
    "$(bin $L sender)" --port "$PORT" ""
    wait_exit "$PID" 10
    run cat "$T/receiver.out"
    [ "${lines[1]}" = 'recv #1 -> 0 bytes: the sender closed the connection' ]
    [ "${#lines[@]}" -eq 2 ]
}

@test "SOMAXCONN in this machine's C library headers is 4096 or 128" {
    run bash -c 'echo SOMAXCONN | cc -include sys/socket.h -E -P - | tail -n 1'
    [ "$status" -eq 0 ]
    [[ $output =~ ^(4096|128)$ ]]
}

# backlog_of PORT: the backlog ss shows (Send-Q) for the listener on PORT.
backlog_of() { ss -tlnH "sport = :$1" | awk '{ print $3 }'; }

@test "listen() caps a backlog above net.core.somaxconn at somaxconn; a small one is kept" {
    somax=$(cat /proc/sys/net/core/somaxconn)
    start_server big "$(bin $L server)" --port 0 --backlog $((somax + 1000))
    [ "$(backlog_of "$PORT")" -eq "$somax" ]
    start_server small "$(bin $L server)" --port 0 --backlog 3
    [ "$(backlog_of "$PORT")" -eq 3 ]
}

# listeners_on PORT: how many listening sockets ss shows on PORT.
listeners_on() { ss -tlnH "sport = :$1" | wc -l; }
# queued_on PORT: connections waiting in all the accept queues on PORT.
queued_on() { ss -tlnH "sport = :$1" | awk '{ q += $2 } END { print q + 0 }'; }

@test "SO_REUSEPORT: two servers share a port and the kernel spreads connections between them" {
    start_server one "$(bin $L server)" --port 0 --reuseport -v
    start_server two "$(bin $L server)" --port "$PORT" --reuseport -v
    [ "$(listeners_on "$PORT")" -eq 2 ]
    for i in $(seq 20); do
        [ "$(echo "c$i" | timeout 10 "$(bin $L client)" --port "$PORT")" = "c$i" ]
    done
    a=$(grep -c '^server: accept fd=' "$T/one.err")
    b=$(grep -c '^server: accept fd=' "$T/two.err")
    echo "server one accepted $a, server two $b"
    [ "$((a + b))" -eq 20 ]
    [ "$a" -ge 1 ] # (a 1 in 2^19 chance of seeing none: the hash of 20 ports)
    [ "$b" -ge 1 ]
    # without SO_REUSEPORT a third server cannot join
    run timeout 10 "$(bin $L server)" --port "$PORT"
    [ "$status" -eq 1 ]
    [ "$output" = "server: bind: Address already in use" ]
}

@test "SO_REUSEPORT: when one server exits, its queued connections are reset and new ones go to the other" {
    [ "$(cat /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null || echo 0)" -eq 0 ] # (1 would move them)
    start_server one "$(bin $L server)" --port 0 --reuseport -v
    one=$PID
    start_server two "$(bin $L server)" --port "$PORT" --reuseport -v
    # 12 connections: each server accepts one and serves it; the others queue
    fds=()
    for _ in $(seq 12); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        fds+=("$fd")
    done
    wait_until 5 bash -c "[ \$(ss -tlnH 'sport = :$PORT' | awk '{ q += \$2 } END { print q }') -eq 10 ]"
    q_one=$(ss -tlnpH "sport = :$PORT" | awk -v pid="pid=$one," 'index($0, pid) { print $2 }')
    echo "queued at server one: $q_one"
    stop_pid "$one"
    [ "$(listeners_on "$PORT")" -eq 1 ]
    [ "$(queued_on "$PORT")" -eq $((10 - q_one)) ] # server two's queue is untouched
    # our ends of the 12 connections: the one server one served got its FIN
    # (CLOSE-WAIT); those in its queue were reset and are gone; server two's
    # are untouched (ESTAB)
    ss -tanH "( dport = :$PORT )"
    [ "$(ss -tanH state close-wait "( dport = :$PORT )" | wc -l)" -eq 1 ]
    [ "$(ss -tanH state established "( dport = :$PORT )" | wc -l)" -eq $((11 - q_one)) ]
    [ "$(ss -tanH "( dport = :$PORT )" | wc -l)" -eq $((12 - q_one)) ]
    # a new connection goes to server two's queue
    exec {late}<>"/dev/tcp/127.0.0.1/$PORT"
    wait_until 5 bash -c "[ \$(ss -tlnH 'sport = :$PORT' | awk '{ print \$2 }') -eq $((11 - q_one)) ]"
}

# The text's claim about a thread blocked in read(): pthread_kill with a
# handler installed without SA_RESTART makes that read fail with EINTR; with
# SA_RESTART the read goes on waiting. A small program, built here.
@test "pthread_kill interrupts a thread blocked in read() only without SA_RESTART" {
    cat >"$T/kick.c" <<'C'
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void on_signal(int signo) { (void)signo; }
static void *reader(void *arg)
{
    char c;
    (void)arg;
    ssize_t n = read(STDIN_FILENO, &c, 1);
    printf("read -> %zd (%s)\n", n, n == -1 ? strerror(errno) : "data");
    fflush(stdout);
    return NULL;
}
int main(int argc, char **argv)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sa.sa_flags = argc > 1 && strcmp(argv[1], "restart") == 0 ? SA_RESTART : 0;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    usleep(300000); /* long enough for the reader to be inside read() */
    pthread_kill(t, SIGUSR1);
    usleep(300000);
    printf("main: done\n");
    fflush(stdout);
    _exit(0);
}
C
    cc -std=c11 -D_GNU_SOURCE -pthread -o "$T/kick" "$T/kick.c"
    open_input kick # stdin that never has data
    run timeout 10 "$T/kick" <"$T/kick.in"
    [ "$output" = "$(printf 'read -> -1 (Interrupted system call)\nmain: done')" ]
    run timeout 10 "$T/kick" restart <"$T/kick.in"
    [ "$output" = "main: done" ]
    grep -qF 'it makes the blocked `read` fail with EINTR' "$ROOT/lessons/$MD"
}
