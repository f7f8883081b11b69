#!/usr/bin/env bats
# Tools -- myths: the experiments behind the lessons' "common misconception"
# boxes (lessons 2, 3, 4 and 5), run as the texts print them, and again from
# the sanitizer build. Each asserts the measured behaviour, line by line.

load helpers

myths() { timeout 30 "$(bin tools myths)" "$@"; }

@test "et-epollout: one EPOLLET registration reports EPOLLOUT again once the full send buffer drains (lesson 4)" {
    doc_cmd 04_epoll_lt_et.md 'tools/myths et-epollout'
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = "1. connected, buffer empty: epoll_wait -> EPOLLOUT" ]
    [[ ${lines[2]} =~ ^2\.\ sent\ [0-9]+\ bytes\ until\ EAGAIN,\ nobody\ reads:\ epoll_wait\ \(200\ ms\)\ -\>\ nothing$ ]]
    [[ ${lines[3]} =~ ^3\.\ the\ peer\ read\ all\ [0-9]+\ bytes,\ no\ epoll_ctl\ since:\ epoll_wait\ -\>\ EPOLLOUT$ ]]
    run myths et-epollout
    [ "$status" -eq 0 ]
}

@test "connect-eintr: EINTR, then EALREADY (non-blocking), writable + SO_ERROR 0, 0 then EISCONN; a blocking retry waits (lesson 2)" {
    doc_cmd 02_nonblocking_connect.md 'tools/myths connect-eintr'
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = "1. blocking connect(), SIGALRM after 200 ms: EINTR" ]
    [ "${lines[2]}" = "2. connect() again, non-blocking: EALREADY (the attempt goes on)" ]
    [[ ${lines[3]} =~ ^3\.\ poll\(POLLOUT\)\ \(one\ connection\ accepted\ at\ 300\ ms\):\ writable\ after\ [0-9.]+\ s,\ SO_ERROR\ 0:\ connected$ ]]
    [ "${lines[4]}" = "4. connect() once more: 0 (Linux reports the finished attempt once)" ]
    [ "${lines[5]}" = "   and again: EISCONN" ]
    [[ ${lines[6]} =~ ^5\.\ another\ socket:\ EINTR,\ then\ a\ blocking\ connect\(\)\ again:\ 0\ after\ [0-9.]+\ s:\ Linux\ waited\ for\ the\ same\ attempt$ ]]
    run myths connect-eintr
    [ "$status" -eq 0 ]
}

@test "send-zero: send() to a closed peer gives 5, then EPIPE; to a reset one ECONNRESET, then EPIPE; never 0 (lesson 3)" {
    doc_cmd 03_select_poll.md 'tools/myths send-zero'
    echo "$output"
    [ "$status" -eq 0 ]
    want=$(printf '%s\n' \
        '1. the peer called close(): a FIN; recv() -> 0 (end of stream)' \
        '   send(5 bytes) -> 5' \
        '   send(5 bytes) -> -1 EPIPE' \
        '   send(5 bytes) -> -1 EPIPE' \
        '2. the peer reset the connection (SO_LINGER {1, 0}, close)' \
        '   send(5 bytes) -> -1 ECONNRESET' \
        '   send(5 bytes) -> -1 EPIPE' \
        '   send(5 bytes) -> -1 EPIPE' \
        'send() returned 0: never')
    [ "$output" = "$want" ]
    run myths send-zero
    [ "$status" -eq 0 ]
}

@test "packed-header: 25 bytes packed, 28 padded; without htonl a 5 reads as 83886080 (lesson 5)" {
    doc_cmd 05_framing.md 'tools/myths packed-header'
    echo "$output"
    [ "$status" -eq 0 ]
    want=$(printf '%s\n' \
        'sizeof: 25 packed, 28 without the attribute (padding after flags)' \
        '1. origin_size = 5: bytes 0-8 = 00 05 00 00 00 00 00 00 00; a big-endian reader sees origin_size 83886080' \
        '2. origin_size = htonl(5): bytes 0-8 = 00 00 00 00 05 00 00 00 00; a big-endian reader sees origin_size 5')
    [ "$output" = "$want" ]
    run myths packed-header
    [ "$status" -eq 0 ]
}

@test "a packed header sent without htonl gets the lesson-5 server's 'origin_size over 10 MiB: got 83886080 = 05 00 00 00'" {
    start_server server "$(bin 05_framing server)" --port 0
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
    printf '\x00\x05\x00\x00\x00\x00\x00\x00\x00' >&"$fd"
    at_eof "$fd"
    exec {fd}>&-
    grep -qx 'server: 127\.0\.0\.1:[0-9]*: protocol error: origin_size over 10 MiB: got 83886080 = 05 00 00 00' "$T/server.err"
}

@test "myths without a known experiment: usage, exit 2" {
    run myths nonsense
    [ "$status" -eq 2 ]
    [ "$output" = "usage: myths et-epollout|connect-eintr|send-zero|packed-header" ]
}
