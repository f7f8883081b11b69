#!/usr/bin/env bats
# Lesson 8's text (appendix A): every command lessons/08_udp_roundtrip.md
# prints is run here, exactly as printed, in the situation the text sets up
# (a timestamp server or a receiver started by hand), and its output is
# checked against what the text says it shows.

load helpers

L=08_udp_roundtrip
MD=08_udp_roundtrip.md

# The programs the text starts by hand, through ./run, with the sanitizer build.
run_bg_server() {
    local name=$1
    shift
    start_server "$name" env LESSON=$L BIN_DIR="$BIN_ROOT/$L" "$ROOT/run" "$@"
    export PORT
}

# Every "probe N: round trip R µs, offset O µs" line has R > 0.
round_trips_positive() {
    local r
    while read -r r; do
        awk -v r="$r" 'BEGIN { exit !(r > 0) }' || return 1
    done < <(sed -n 's/.*probe [0-9]*: round trip \([-0-9.]*\) µs, offset.*/\1/p' <<<"$output")
}

@test "make lesson-8 && ./run builds the lesson and tours probes, boundaries, truncation, loss and late replies within 15 s" {
    fresh_copy_built tools # the tools built already: this test reads the lesson's own cc lines
    doc_cmd 08_udp_roundtrip.md 'make lesson-8 && ./run'
    [ "$status" -eq 0 ]
    [ "$DOC_SECONDS" -le 15 ]
    [[ $output == *"lesson 8 (08_udp_roundtrip) is built: type ./run (or ./run --help)"* ]]
    [[ $output == *"[client] 10 probes: 10 replies, 0 lost, 0 late or duplicate and 0 forged replies ignored"* ]]
    grep -qE '\[client\] best estimate: probe [0-9]+ \(smallest round trip, [0-9.]+ µs\): offset -?[0-9.]+ µs, within ±[0-9.]+ µs$' <<<"$output"
    grep -qE '\[receiver\] recv #3 from 127\.0\.0\.1:[0-9]+: 5 bytes: "three"$' <<<"$output"
    [[ $output == *'100 bytes, truncated to 16 (MSG_TRUNC): "0123456789012345"; the other 84 bytes are gone'* ]]
    grep -qE '\[client\] probe [0-9]+: lost \(timeout after 300 ms\)$' <<<"$output"
    [[ $output == *"[client] late reply to probe 1 (it had timed out), ignored"* ]]
    [[ $output == *"[client] duplicate reply to probe 1, ignored"* ]]
}

@test "./run probes: ten replies, positive round trips, a best offset within 1000 µs of 0" {
    doc_cmd 08_udp_roundtrip.md './run probes'
    [ "$status" -eq 0 ]
    [[ $output == *"[client] 10 probes: 10 replies, 0 lost, 0 late or duplicate and 0 forged replies ignored"* ]]
    round_trips_positive
    [[ $output =~ best\ estimate:\ probe\ [0-9]+\ \(smallest\ round\ trip,\ [0-9.]+\ µs\):\ offset\ (-?[0-9]+)\.[0-9]\ µs ]]
    off=${BASH_REMATCH[1]}
    [ "${off#-}" -lt 1000 ]
    [[ $output == *"[server] server: Terminated: stopping: 10 datagrams, 10 answered, 0 dropped, 0 ignored"* ]]
    [[ $output == *"server exit status 0"* ]]
}

@test "./run server --port 0 -v, as the text starts it, and the client's -v numbers add up as the text computes them" {
    # doc_cmd 08_udp_roundtrip.md './run server --port 0 -v'
    # (it runs until stopped, so it is started in the background here)
    printed_in 08_udp_roundtrip.md './run server --port 0 -v'
    run_bg_server srv server --port 0 -v
    [ "$(head -n 1 "$T/srv.out")" = "listening on 127.0.0.1:$PORT" ]
    doc_cmd 08_udp_roundtrip.md './run client --port $PORT --count 3 -v'
    [ "$status" -eq 0 ]
    [ "$(grep -c '^client: probe [123]: T1 ' <<<"$output")" -eq 3 ]
    # probe 1 by hand: round trip = (T4-T1) - (T3-T2), offset = ((T2-T1) + (T3-T4)) / 2
    read -r d41 d32 d21 d34 < <(sed -n 's/^client: probe 1: T4-T1 \([0-9]*\), T3-T2 \([0-9]*\), T2-T1 \(-\{0,1\}[0-9]*\), T3-T4 \(-\{0,1\}[0-9]*\) (ns)$/\1 \2 \3 \4/p' <<<"$output")
    [ -n "$d34" ]
    rtt_ns=$((d41 - d32)) off_ns=$(((d21 + d34) / 2))
    want=$(awk -v r="$rtt_ns" -v o="$off_ns" 'BEGIN { printf "probe 1: round trip %.1f µs, offset %.1f µs", r / 1000, o / 1000 }')
    grep -qxF -- "$want" <<<"$output"
    # the server's trace shows the T2 the client got
    t2=$(sed -n 's/^client: probe 1: T1 [0-9]*  T2 \([0-9]*\) .*/\1/p' <<<"$output")
    wait_until 5 grep -q "probe 1: T2 ${t2:0:10}\.${t2:10} T3 " "$T/srv.err"
}

@test "ss -uan shows one unconnected UDP socket for the server" {
    run_bg_server srv server --port 0 -v
    run "$(bin $L client)" --port "$PORT" --count 2 --interval-ms 0
    [ "$status" -eq 0 ]
    doc_cmd 08_udp_roundtrip.md 'ss -uan "sport = :$PORT"'
    [ "$status" -eq 0 ]
    [ "$(grep -cE "^UNCONN +0 +0 +127\.0\.0\.1:$PORT +0\.0\.0\.0:\*" <<<"$output")" -eq 1 ]
    [ "$(grep -c ":$PORT " <<<"$output")" -eq 1 ]
}

@test "five bytes sent to the server are logged as a wrong size and ignored; the next client is served" {
    run_bg_server srv server --port 0 -v
    doc_cmd 08_udp_roundtrip.md './run sender --port $PORT hello'
    [ "$status" -eq 0 ]
    [ "$output" = "sent datagram #1: 5 bytes" ]
    wait_until 5 grep -qE '^server: 127\.0\.0\.1:[0-9]+: ignored a 5-byte datagram: wrong size \(a probe is 32 bytes\)$' "$T/srv.err"
    run "$(bin $L client)" --port "$PORT" --count 1
    [ "$status" -eq 0 ]
}

@test "./run threads: three clients all answered, the four threads' counts add up to 150" {
    doc_cmd 08_udp_roundtrip.md './run threads'
    [ "$status" -eq 0 ]
    for c in alice bob carol; do
        [[ $output == *"[$c] 50 probes: 50 replies, 0 lost, 0 late or duplicate and 0 forged replies ignored"* ]]
    done
    [[ $output =~ stopping:\ 150\ datagrams,\ 150\ answered,\ 0\ dropped,\ 0\ ignored\ \(answered\ per\ thread:\ ([0-9]+)\ ([0-9]+)\ ([0-9]+)\ ([0-9]+)\) ]]
    [ $((BASH_REMATCH[1] + BASH_REMATCH[2] + BASH_REMATCH[3] + BASH_REMATCH[4])) -eq 150 ]
}

@test "./run boundaries: three datagrams queued, three recv() calls, each one whole datagram" {
    doc_cmd 08_udp_roundtrip.md './run boundaries'
    [ "$status" -eq 0 ]
    [[ $output == *"[receiver] after 300 ms: FIONREAD says 3 bytes (the size of the next datagram only)"* ]]
    grep -qE '\[receiver\] recv #1 from 127\.0\.0\.1:[0-9]+: 3 bytes: "one"$' <<<"$output"
    grep -qE '\[receiver\] recv #2 from 127\.0\.0\.1:[0-9]+: 3 bytes: "two"$' <<<"$output"
    grep -qE '\[receiver\] recv #3 from 127\.0\.0\.1:[0-9]+: 5 bytes: "three"$' <<<"$output"
    [[ $output == *"[receiver] receiver: 3 datagrams, 3 recv() calls, buffer 65536 bytes"* ]]
}

@test "./run truncate: MSG_TRUNC reports 100 bytes, 16 kept, 84 gone" {
    doc_cmd 08_udp_roundtrip.md './run truncate'
    [ "$status" -eq 0 ]
    grep -qE '\[receiver\] recv #1 from 127\.0\.0\.1:[0-9]+: 5 bytes: "hello"$' <<<"$output"
    grep -qE '\[receiver\] recv #2 from 127\.0\.0\.1:[0-9]+: 100 bytes, truncated to 16 \(MSG_TRUNC\): "0123456789012345"; the other 84 bytes are gone$' <<<"$output"
}

@test "./run receiver --port 0 --buffer 16, as the text starts it, and a 70000-byte datagram: EMSGSIZE" {
    # doc_cmd 08_udp_roundtrip.md './run receiver --port 0 --buffer 16'
    # (it runs until stopped, so it is started in the background here)
    printed_in 08_udp_roundtrip.md './run receiver --port 0 --buffer 16'
    run_bg_server rcv receiver --port 0 --buffer 16
    [ "$(head -n 1 "$T/rcv.out")" = "listening on 127.0.0.1:$PORT" ]
    doc_cmd 08_udp_roundtrip.md './run sender --port $PORT --fill 70000'
    [ "$status" -eq 1 ]
    [ "$output" = "sender: send: Message too long" ]
    [ "$(wc -l <"$T/rcv.out")" -eq 1 ] # nothing arrived
}

@test "./run loss: lost probes time out at 300 ms, the server dropped exactly those, probes = replies + lost" {
    doc_cmd 08_udp_roundtrip.md './run loss'
    [ "$status" -eq 0 ]
    [[ $output =~ \[client\]\ 10\ probes:\ ([0-9]+)\ replies,\ ([0-9]+)\ lost ]]
    replies=${BASH_REMATCH[1]} lost=${BASH_REMATCH[2]}
    [ "$lost" -gt 0 ]
    [ $((replies + lost)) -eq 10 ]
    [ "$(grep -cE '\[client\] probe [0-9]+: lost \(timeout after 300 ms\)$' <<<"$output")" -eq "$lost" ]
    [ "$(grep -cE '\[server\] server: 127\.0\.0\.1:[0-9]+: probe [0-9]+ dropped \(--drop 30\)$' <<<"$output")" -eq "$lost" ]
    [[ $output == *"stopping: 10 datagrams, $replies answered, $lost dropped, 0 ignored"* ]]
}

@test "./run late: late replies are named by probe and ignored; duplicates too" {
    doc_cmd 08_udp_roundtrip.md './run late'
    [ "$status" -eq 0 ]
    [[ $output == *"[client] late reply to probe 1 (it had timed out), ignored"* ]]
    [[ $output == *"[client] 4 probes: 0 replies, 4 lost, "* ]]
    [[ $output == *"[client] client: no reply to any of the 4 probes"* ]]
    [[ $output == *"[client] duplicate reply to probe 1, ignored"* ]]
    [[ $output == *"[client] duplicate reply to probe 2, ignored"* ]]
    [[ $output == *"[client] 3 probes: 3 replies, 0 lost, 2 late or duplicate and 0 forged replies ignored"* ]]
}

@test "./run forged: each forged reply is rejected by its T1, each real one accepted" {
    doc_cmd 08_udp_roundtrip.md './run forged'
    [ "$status" -eq 0 ]
    for n in 1 2 3; do
        grep -qE "\[client\] reply to probe $n with origin T1 [0-9]+ but we sent [0-9]+: forged or stale, ignored$" <<<"$output"
        grep -qE "\[client\] probe $n: round trip [0-9.]+ µs, offset -?[0-9.]+ µs$" <<<"$output"
    done
    [[ $output == *"[client] 3 probes: 3 replies, 0 lost, 0 late or duplicate and 3 forged replies ignored"* ]]
    [[ $output == *"server exit status 0"* ]]
}

@test "./run hold: T3 - T2 is about 20 ms, the round trips stay far below it" {
    doc_cmd 08_udp_roundtrip.md './run hold'
    [ "$status" -eq 0 ]
    [ "$(grep -c '\[client\] probe [123]: round trip' <<<"$output")" -eq 3 ]
    while read -r r; do
        [ "$r" -lt 20000 ] # had the hold not been taken out, each would be over 20 ms
    done < <(sed -n 's/.*\[client\] probe [0-9]*: round trip \([0-9]*\)\.[0-9] µs.*/\1/p' <<<"$output")
    # T3 - T2 from the server's trace: at least the 20 ms hold
    while read -r t2 t3; do
        [ $((${t3/./} - ${t2/./})) -ge 20000000 ]
    done < <(sed -n 's/.*32 bytes, probe [0-9]*: T2 \([0-9.]*\) T3 \([0-9.]*\)$/\1 \2/p' <<<"$output")
}

@test "fifty probes 1 ms apart against the server started by hand: all answered, round trips positive" {
    run_bg_server srv server --port 0 -v
    doc_cmd 08_udp_roundtrip.md './run client --port $PORT --count 50 --interval-ms 1'
    [ "$status" -eq 0 ]
    [[ $output == *"50 probes: 50 replies, 0 lost, 0 late or duplicate and 0 forged replies ignored"* ]]
    round_trips_positive
}

@test "./run --help lists the scenarios of lesson 8" {
    doc_cmd 08_udp_roundtrip.md './run --help'
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "usage: ./run [SCENARIO]            lesson 8 (appendix A): UDP, round trip and clock offset" ]
    for s in tour probes boundaries truncate loss late forged hold threads; do
        grep -qE "^  $s " <<<"$output"
    done
}

@test "the log lines the text's table quotes are the ones probe.c and server.c produce" {
    for reason in 'wrong size (a probe is 32 bytes)' 'bad magic (not \"RTT\")' 'not a query'; do
        grep -qF -- "$reason" "$ROOT/$L/probe.c"
    done
    grep -qF '`ignored a 5-byte datagram: wrong size (a probe is 32 bytes)`' "$ROOT/lessons/$MD"
    grep -qF '`ignored a 32-byte datagram: bad magic (not "RTT")`' "$ROOT/lessons/$MD"
    grep -qF '`ignored a 32-byte datagram: not a query`' "$ROOT/lessons/$MD"
    grep -qE '^#define PROBE_BYTES +32$' "$ROOT/$L/probe.h"
}

@test "every command printed in lessons/08_udp_roundtrip.md is run by a test" { every_doc_cmd_is_tested 08_udp_roundtrip.md; }
