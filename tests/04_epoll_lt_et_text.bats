#!/usr/bin/env bats
# Lesson 4's text: every command lessons/04_epoll_lt_et.md prints is run
# here, exactly as printed, against the server the text starts (an
# et-no-drain server reading 1024 bytes at a time, an edge-triggered one),
# and its output is checked against what the text says it shows.

load helpers

L=04_epoll_lt_et
MD=04_epoll_lt_et.md

# The broken server the text starts by hand, with the sanitizer build.
broken_server() {
    start_server server "$(bin $L server)" --mode et-no-drain --read-bytes 1024 --port 0
    export PORT
}

# section NAME: the lines of $output from "== --mode NAME:" to the next "==".
section() {
    awk -v want="== --mode $1:" '
        index($0, "== ") { on = index($0, want) > 0; next }
        on' <<<"$output"
}

# The server's next readiness line after the first "all sent: EPOLLIN on".
event_after_all_sent() {
    awk '/all sent: EPOLLIN on/ { armed = 1; next }
         armed && /epoll: fd=/ { sub(/.*epoll: fd=[0-9]+ /, ""); print; exit }' "$1"
}

@test "make lesson-4 && ./run builds the lesson and tours modes and oneshot within 15 s" {
    fresh_copy_built tools # the tools built already: this test reads the lesson's own cc lines
    doc_cmd 04_epoll_lt_et.md 'make lesson-4 && ./run'
    [ "$status" -eq 0 ]
    [ "$DOC_SECONDS" -le 15 ]
    [ "$(grep -c 'burst: sent 4000 bytes in one write, 4000 came back' <<<"$output")" -eq 2 ]
    [[ $output == *"lesson 4 (04_epoll_lt_et) is built: type ./run (or ./run --help)"* ]]
    [[ $output == *"[client] burst: sent 4000 bytes in one write, 1024 came back"* ]]
    [[ $output == *"2976 bytes stay in the kernel"* ]]
    [[ $output == *"re-arm (EPOLLONESHOT)"* ]]
}

@test "./run modes: lt and et echo all 4000 bytes, et-no-drain 1024, then 1024 more after the nudge" {
    doc_cmd_shared 04_epoll_lt_et.md './run modes'
    [ "$status" -eq 0 ]
    [ "$(grep -c '\[client\] burst: sent 4000 bytes in one write, 4000 came back$' <<<"$output")" -eq 2 ]
    [ "$(grep -c '\[client\] nudge: sent 1 more byte, 1 more came back (4001 of 4001 in all)$' <<<"$output")" -eq 2 ]
    section et-no-drain | grep -q '\[client\] burst: sent 4000 bytes in one write, 1024 came back$'
    section et-no-drain | grep -q '\[client\] nudge: sent 1 more byte, 1024 more came back (2048 of 4001 in all)$'
    [ "$(grep -c '\[server\] server: stopping (0 connections open)$' <<<"$output")" -eq 3 ]
    # the narrator's summary, as the text quotes it
    [[ $output == *"   lt: epoll reported the socket again after every partial read (4 events)."* ]]
    [[ $output == *"   et: one event; the server read until EAGAIN (the last recv says so)."* ]]
    [[ $output == *"   et-no-drain: one event, one read; 2976 bytes stay in the kernel and no event comes"* ]]
    [[ $output == *"   for them. Only the client's next byte (the nudge) made a new edge, and one more read."* ]]
}

@test "./run modes: the first connection is fd 6, as the text explains (0-2 std, 3 listener, 4 spare, 5 epoll)" {
    # as a student runs it: with only fds 0-2 open (bats holds more, which
    # the programs would inherit)
    doc_cmd_shared 04_epoll_lt_et.md './run modes'
    [ "$status" -eq 0 ]
    [ "$(grep -cE '\[server\] server: accept fd=6 from 127\.0\.0\.1:[0-9]+ \(1 connections\)$' <<<"$output")" -eq 3 ]
    grep -qF 'The first connection is fd 6 in' "$ROOT/lessons/$MD"
    # what fds 3, 4 and 5 are in a running server
    start_server server bash -c 'for f in /proc/self/fd/*; do n=${f##*/}; [ "$n" -le 2 ] || eval "exec $n>&-"; done; exec "$0" "$@"' \
        "$(bin $L server)" --port 0
    [[ $(readlink "/proc/$PID/fd/3") == socket:* ]]
    [ "$(readlink "/proc/$PID/fd/4")" = /dev/null ]
    [ "$(readlink "/proc/$PID/fd/5")" = 'anon_inode:[eventpoll]' ]
}

@test "./run modes prints what the text shows: the server's trace, the client's lines and the notes, line for line in each mode" {
    # as a student runs it, so that the fd numbers are the text's
    doc_cmd_shared 04_epoll_lt_et.md './run modes'
    [ "$status" -eq 0 ]
    demo_streams_are 04_epoll_lt_et.md './run modes' - server client
}

@test "./run modes: lt gets one EPOLLIN per 1024-byte read (4 for the burst, 1 for the nudge)" {
    doc_cmd_shared 04_epoll_lt_et.md './run modes'
    [ "$status" -eq 0 ]
    lt=$(section lt)
    [ "$(grep -cE 'server: epoll: fd=[0-9]+ EPOLLIN$' <<<"$lt")" -eq 5 ]
    [ "$(grep -cE 'server: recv fd=[0-9]+ -> 1024 bytes$' <<<"$lt")" -eq 3 ]
    [ "$(grep -cE 'server: recv fd=[0-9]+ -> 928 bytes$' <<<"$lt")" -eq 1 ]
    [ "$(grep -cE 'server: recv fd=[0-9]+ -> 1 bytes$' <<<"$lt")" -eq 1 ]
    grep -qE 'server: recv fd=[0-9]+ -> 0 bytes: 127\.0\.0\.1:[0-9]+ closed its side$' <<<"$lt"
    refute grep -q 'drained' <<<"$lt"
}

@test "./run modes: et gets one event per write and reads until EAGAIN (5 reads, then 2)" {
    doc_cmd_shared 04_epoll_lt_et.md './run modes'
    [ "$status" -eq 0 ]
    et=$(section et)
    [ "$(grep -cE 'server: epoll: fd=[0-9]+ EPOLLIN$' <<<"$et")" -eq 2 ]
    grep -qE 'server: drained fd=[0-9]+: EAGAIN after 5 reads$' <<<"$et"
    grep -qE 'server: drained fd=[0-9]+: EAGAIN after 2 reads$' <<<"$et"
}

@test "./run modes: et-no-drain reads once per event, and the reset at the end is EPOLLERR, Broken pipe" {
    doc_cmd_shared 04_epoll_lt_et.md './run modes'
    [ "$status" -eq 0 ]
    broken=$(section et-no-drain)
    # burst, nudge, FIN: three events with data, one 1024-byte read each
    [ "$(grep -cE 'server: recv fd=[0-9]+ -> 1024 bytes$' <<<"$broken")" -eq 3 ]
    [ "$(grep -cE 'server: epoll: fd=[0-9]+ EPOLLIN$' <<<"$broken")" -eq 2 ]
    grep -qE 'server: epoll: fd=[0-9]+ EPOLLIN EPOLLRDHUP$' <<<"$broken"
    grep -qE 'server: epoll: fd=[0-9]+ EPOLLIN EPOLLRDHUP EPOLLHUP EPOLLERR$' <<<"$broken"
    grep -qE 'server: 127\.0\.0\.1:[0-9]+: Broken pipe$' <<<"$broken"
    refute grep -q 'drained' <<<"$broken"
}

@test "./run server --mode et -v and the slow reader: EPOLLOUT on, all sent, then the MOD reports waiting data" {
    # doc_cmd 04_epoll_lt_et.md './run server --mode et --port 0 -v'
    # (it runs until stopped, so it is started in the background here)
    printed_in 04_epoll_lt_et.md './run server --mode et --port 0 -v'
    start_server srv env LESSON=$L BIN_DIR="$BIN_ROOT/$L" "$ROOT/run" server --mode et --port 0 -v
    export PORT
    [ "$(head -n 1 "$T/srv.out")" = "listening on 127.0.0.1:$PORT" ]
    doc_cmd 04_epoll_lt_et.md '(exec 3<>/dev/tcp/127.0.0.1/$PORT; head -c 20000000 /dev/zero >&3 & sleep 1; head -c 20000000 <&3 | wc -c)'
    [ "$status" -eq 0 ]
    [ "$output" = 20000000 ]
    grep -qE '^server: send fd=[0-9]+: kernel took [0-9]+ of [0-9]+ bytes: wait for writable$' "$T/srv.err"
    grep -qE '^server: fd=[0-9]+: EAGAIN: EPOLLOUT on$' "$T/srv.err"
    grep -qE '^server: epoll: fd=[0-9]+ EPOLLOUT$' "$T/srv.err"
    grep -qE '^server: fd=[0-9]+: all sent: EPOLLIN on$' "$T/srv.err"
    # the first time output drained, data was waiting: the MOD reported it
    [ "$(event_after_all_sent "$T/srv.err")" = EPOLLIN ]
}

@test "the same slow reader against --mode lt shows EPOLLOUT switched on and off too" {
    start_server srv "$(bin $L server)" --mode lt --port 0 -v
    export PORT
    doc_cmd 04_epoll_lt_et.md '(exec 3<>/dev/tcp/127.0.0.1/$PORT; head -c 20000000 /dev/zero >&3 & sleep 1; head -c 20000000 <&3 | wc -c)'
    [ "$status" -eq 0 ]
    [ "$output" = 20000000 ]
    grep -qE '^server: fd=[0-9]+: EAGAIN: EPOLLOUT on$' "$T/srv.err"
    grep -qE '^server: fd=[0-9]+: all sent: EPOLLIN on$' "$T/srv.err"
    refute grep -q 'drained' "$T/srv.err"
}

@test "./run server --mode et-no-drain --read-bytes 1024 -v, as the text starts it, reads once per event" {
    # doc_cmd 04_epoll_lt_et.md './run server --mode et-no-drain --read-bytes 1024 --port 0 -v'
    # (it runs until stopped, so it is started in the background here)
    printed_in 04_epoll_lt_et.md './run server --mode et-no-drain --read-bytes 1024 --port 0 -v'
    start_server srv env LESSON=$L BIN_DIR="$BIN_ROOT/$L" "$ROOT/run" server --mode et-no-drain --read-bytes 1024 --port 0 -v
    [ "$(head -n 1 "$T/srv.out")" = "listening on 127.0.0.1:$PORT" ]
    run timeout 20 "$(bin $L client)" --port "$PORT" --burst 4000
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = "burst: sent 4000 bytes in one write, 1024 came back" ]
    # One event, one read; the 2976 bytes left made no other event. (The
    # client's FIN, when it closed, is a new arrival: look only before it.)
    before_fin=$(sed '/EPOLLRDHUP/,$d' "$T/srv.err")
    [ "$(grep -cE '^server: epoll: fd=[0-9]+ EPOLLIN$' <<<"$before_fin")" -eq 1 ]
    [ "$(grep -cE '^server: recv fd=[0-9]+ -> 1024 bytes$' <<<"$before_fin")" -eq 1 ]
    refute grep -q 'drained' "$T/srv.err"
}

@test "the burst client against the broken server: 1024 back, the nudge buys 1024 more" {
    broken_server
    doc_cmd 04_epoll_lt_et.md './run client --port $PORT --burst 4000 --nudge'
    [ "$status" -eq 0 ]
    [[ ${lines[0]} =~ ^client:\ connected\ to\ 127\.0\.0\.1:$PORT\ in\ [0-9]+\.[0-9]\ ms$ ]]
    [ "${lines[1]}" = "burst: sent 4000 bytes in one write, 1024 came back" ]
    [ "${lines[2]}" = "nudge: sent 1 more byte, 1024 more came back (2048 of 4001 in all)" ]
}

@test "a 1 MiB burst to the broken server: a read or a few, and ss finds every other byte in the two kernels" {
    broken_server
    doc_cmd 04_epoll_lt_et.md './run client --port $PORT --burst 1048576 --nudge'
    [ "$status" -eq 0 ]
    # one 1024-byte read per edge: usually one edge, sometimes a few
    [[ ${lines[1]} =~ ^burst:\ sent\ 1048576\ bytes\ in\ one\ write,\ ([0-9]+)\ came\ back$ ]]
    back=${BASH_REMATCH[1]}
    [ "$back" -ge 1024 ]
    [ "$back" -le 16384 ]
    [ $((back % 1024)) -eq 0 ]
    [ "${lines[2]}" = "nudge: sent 1 more byte, 0 more came back ($back of 1048577 in all)" ]
    doc_cmd 04_epoll_lt_et.md 'ss -tn "( sport = :$PORT or dport = :$PORT )"'
    [ "$status" -eq 0 ]
    recvq=$(awk -v me="127.0.0.1:$PORT" '$1 == "ESTAB" && $4 == me { print $2 }' <<<"$output")
    sendq=$(awk -v me="127.0.0.1:$PORT" '$1 == "FIN-WAIT-1" && $5 == me { print $3 }' <<<"$output")
    [ -n "$recvq" ]
    [ -n "$sendq" ]
    [ "$recvq" -gt 0 ]
    # the megabyte + the nudge byte + the FIN's sequence number
    [ $((back + recvq + sendq)) -eq 1048578 ]
}

@test "./run burst: lt and et echo the whole MiB; et-no-drain strands part of it, even after the nudge" {
    doc_cmd 04_epoll_lt_et.md './run burst'
    [ "$status" -eq 0 ]
    local mode
    for mode in lt et; do
        grep -qE "^  \[client $mode\] burst: sent 1048576 bytes in [a-z0-9]+ writes?, 1048576 came back\$" <<<"$output"
        grep -qxF "  [client $mode] nudge: sent 1 more byte, 1 more came back (1048577 of 1048577 in all)" <<<"$output"
        # one sentence per line, the burst's result before the nudge's
        grep -A1 "\[client $mode\] burst:" <<<"$output" | tail -n 1 | grep -q "^  \[client $mode\] nudge:"
    done
    # How many edges et-no-drain sees while the megabyte streams in depends on timing
    # (two 64 KiB reads on an idle machine, more under load: the text says so), and the
    # nudge usually brings nothing back (the stranded bytes have closed the receive
    # window; under load a window update can let one more edge through). What always
    # holds: part of the megabyte never comes back.
    [[ $output =~ \[client\ et-no-drain\]\ burst:\ sent\ 1048576\ bytes\ in\ [a-z0-9]+\ writes?,\ ([0-9]+)\ came\ back ]]
    back=${BASH_REMATCH[1]}
    [[ $output =~ \[client\ et-no-drain\]\ nudge:\ sent\ 1\ more\ byte,\ [0-9]+\ more\ came\ back\ \(([0-9]+)\ of\ 1048577\ in\ all\) ]]
    echo "et-no-drain: $back came back from the burst, ${BASH_REMATCH[1]} in all"
    [ "$back" -lt 1048576 ]
    [ "${BASH_REMATCH[1]}" -lt 1048577 ]
    # lt and et closed their connection; et-no-drain usually never saw the FIN (1 open),
    # but a late echo that reaches the client after it stopped reading makes its close a
    # reset, which the server does see (0 open). The text says both.
    stops=$(grep -oE '\[server\] server: stopping \([0-9]+ connections open\)' <<<"$output" | tr -dc '0-9\n')
    [ "$(head -2 <<<"$stops" | tr '\n' ' ')" = "0 0 " ]
    [[ $(sed -n 3p <<<"$stops") =~ ^[01]$ ]]
    grep -qF 'busy machine a late echo can still' "$ROOT/lessons/$MD"
    grep -qxF "== 1 MiB offered to one send() against each mode (reads of up to 64 KiB):" <<<"$(sed 's/\x1b\[[0-9;]*m//g' <<<"$output")"
    [[ $output == *"   With et-no-drain even the nudge cannot help once the server's receive window is"* ]]
    [[ $output == *"   full: the extra byte cannot get in, so no new edge ever comes."* ]]
}

@test "./run oneshot: the server re-arms the connection after each of the two lines" {
    doc_cmd 04_epoll_lt_et.md './run oneshot'
    [ "$status" -eq 0 ]
    [[ $output == *"[client] one"* ]]
    [[ $output == *"[client] two"* ]]
    [ "$(grep -cE '\[server\] server: fd=[0-9]+: re-arm \(EPOLLONESHOT\)$' <<<"$output")" -eq 2 ]
    grep -qE '\[server\] server: epoll: fd=[0-9]+ EPOLLIN EPOLLRDHUP$' <<<"$output"
    [ "$(grep -cE '\[server\] server: recv fd=[0-9]+ -> 4 bytes$' <<<"$output")" -eq 2 ]
    [[ $output == *"   With several threads sharing one epoll set, ONESHOT guarantees that only one"* ]]
    [[ $output == *"   thread handles a given connection at a time; the re-arm hands it back."* ]]
}

@test "the scaling table the text quotes is the one make bench wrote (lessons/images/scaling.txt)" {
    # The block after the line "```text" in the scaling section, up to its "```".
    quoted=$(awk '/^## Scaling/ { s = 1 } s && /^```text$/ { on = 1; next }
                  on && /^```$/ { exit } on' "$ROOT/lessons/$MD")
    [ -n "$quoted" ]
    [ "$quoted" = "$(cat "$ROOT/lessons/images/scaling.txt")" ]
    [ -f "$ROOT/lessons/images/scaling.svg" ]
}

@test "every command printed in lessons/04_epoll_lt_et.md is run by a test" { every_doc_cmd_is_tested 04_epoll_lt_et.md; }
