#!/usr/bin/env bats
# Lesson 10's text (appendix C): every command lessons/10_io_uring.md
# prints is run here, exactly as printed, and its output is checked against
# what the text says it shows. Where io_uring cannot be used, the tests that
# need the rings skip with the server's own line as the reason.

load helpers

L=10_io_uring
MD=10_io_uring.md

@test "make lesson-10 && ./run traces the rings and counts the system calls against lesson 7, within 20 s" {
    need_uring
    command -v strace >/dev/null || skip "strace is not installed: the syscalls scenario has nothing to count"
    fresh_copy_built tools # the tools built already: this test reads the lesson's own cc lines
    doc_cmd 10_io_uring.md 'make lesson-10 && ./run'
    [ "$status" -eq 0 ]
    [ "$DOC_SECONDS" -le 20 ]
    [[ $output == *"lesson 10 (10_io_uring) is built: type ./run (or ./run --help)"* ]]
    # rings: one receive armed for the one connection; the three requests'
    # 86 bytes arrive in one or more completions, three frames, replies sent
    [ "$(grep -cE '^  \[server\] server: fd=[0-9]+: multishot receive armed$' <<<"$output")" -eq 1 ]
    bytes=$(sed -nE 's/^  \[server\] server: recv fd=[0-9]+ -> ([0-9]+) bytes \([0-9]+ buffered\)$/\1/p' <<<"$output" |
        awk '{ n += $1 } END { print n + 0 }')
    [ "$bytes" -eq 86 ]
    [ "$(grep -cE '^  \[server\] server: frame complete fd=[0-9]+: [35] bytes$' <<<"$output")" -eq 3 ]
    grep -qE '^  \[server\] server: io_uring_enter -> [0-9]+ completions$' <<<"$output"
    grep -q '\[client\] client: 3 messages sent, 3 replies, all intact' <<<"$output"
    # system calls: lesson 7 about two per message, lesson 10 well under one
    re='   lesson 7: [0-9]+ system calls for 10000 messages, ([0-9.]+) per message; the most frequent:'
    [[ $output =~ $re ]]
    awk -v x="${BASH_REMATCH[1]}" 'BEGIN { exit !(x >= 1.9) }'
    re='   lesson 10: [0-9]+ system calls for 10000 messages, ([0-9.]+) per message; the most frequent:'
    [[ $output =~ $re ]]
    echo "lesson 10: ${BASH_REMATCH[1]} calls per message"
    awk -v x="${BASH_REMATCH[1]}" 'BEGIN { exit !(x < 0.5) }'
    # lesson 7's two most frequent: a read and a send per message; lesson 10's: io_uring_enter
    grep -A2 '   lesson 7: ' <<<"$output" | sed -n 2,3p | grep -qE '^     readv +1[0-9]{4}$'
    grep -A2 '   lesson 7: ' <<<"$output" | sed -n 2,3p | grep -qE '^     sendmsg +10000$'
    grep -A1 '   lesson 10: ' <<<"$output" | sed -n 2p | grep -qE '^     io_uring_enter +[0-9]+$'
    [ "$(grep -c 'loadgen: 100 conns, pingpong, 16 bytes, raw: 10000 messages, .*; 0 errors' <<<"$output")" -eq 2 ]
}

@test "backpressure by hand: the receive is cancelled at the high-water mark and armed again at the low-water mark; all 500 replies intact" {
    need_uring
    # doc_cmd 10_io_uring.md './run server --port 0 -v --high-water 1000000 --low-water 250000'
    # (it runs until stopped, so it is started in the background here)
    printed_in 10_io_uring.md './run server --port 0 -v --high-water 1000000 --low-water 250000'
    start_server server env LESSON=$L BIN_DIR="$BIN_ROOT/$L" "$ROOT/run" server --port 0 -v \
        --high-water 1000000 --low-water 250000
    export PORT # the printed command reads it, as in the reader's shell
    doc_cmd 10_io_uring.md './run client --port $PORT --quiet --pause-ms 2000 --body-bytes 65536 --repeat 500'
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 2 ]
    [[ ${lines[0]} =~ ^client:\ connected\ to\ 127\.0\.0\.1:$PORT\ in\ [0-9.]+\ ms$ ]]
    [[ ${lines[1]} =~ ^client:\ 500\ messages\ sent,\ 500\ replies,\ all\ intact\ \([0-9]+\ recv\ calls,\ [0-9]+\ ms\)$ ]]
    # the order the text gives: armed, paused, cancelled ... resumed, armed again
    grep -oE 'multishot receive armed|reading paused|reading stops: receive cancelled|reading resumed' \
        "$T/server.err" | uniq >"$T/events"
    cat "$T/events"
    [ "$(sed -n 1p "$T/events")" = "multishot receive armed" ]
    [ "$(grep -A1 -x 'reading paused' "$T/events" | grep -cx 'reading stops: receive cancelled')" -ge 1 ]
    [ "$(grep -A1 -x 'reading resumed' "$T/events" | grep -cx 'multishot receive armed')" -ge 1 ]
    # as many times as the queue crossed the marks: each pause ends in a resume
    [ "$(grep -cx 'reading paused' "$T/events")" -eq "$(grep -cx 'reading resumed' "$T/events")" ]
}

@test "SERVER_NO_URING=EPERM: the one line the text shows, and exit status 3" {
    doc_cmd 10_io_uring.md 'SERVER_NO_URING=EPERM ./run server --port 0'
    [ "$status" -eq 3 ]
    shown=$(awk '$0 == "$ SERVER_NO_URING=EPERM ./run server --port 0" { on = 1; next } on && /^```/ { exit } on' "$ROOT/lessons/$MD")
    [ "$output" = "$shown" ]
}

@test "cat /proc/sys/kernel/io_uring_disabled prints 0, 1 or 2, as the text says" {
    [ -e /proc/sys/kernel/io_uring_disabled ] || skip "this kernel has no kernel.io_uring_disabled (before 6.6)"
    doc_cmd 10_io_uring.md 'cat /proc/sys/kernel/io_uring_disabled'
    [ "$status" -eq 0 ]
    [[ $output =~ ^[012]$ ]]
    grep -qF '(0: allowed; 1: only for processes with `CAP_SYS_ADMIN` or in the group' "$ROOT/lessons/$MD"
}

@test "--mode is gone: lesson 10's server refuses it with its usage, exit 2" {
    run "$(bin $L server)" --mode et --port 0
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "$(bin $L server): unrecognized option '--mode'" ]
    refute grep -q -- '--mode' <<<"$(sed 1d <<<"$output")" # not in the usage
}

@test "every command printed in lessons/10_io_uring.md is run by a test" { every_doc_cmd_is_tested $MD; }
