#!/usr/bin/env bats
# Lesson 6's text: every command lessons/06_send_queue.md prints is run
# here, exactly as printed (the demo scenarios, and the "how much does
# send() take" experiment against a server started as the text starts it),
# and its output is checked against what the text says it shows.

load helpers

L=06_send_queue
MD=06_send_queue.md

# The server the text starts by hand, through ./run, with the sanitizer build.
run_server() {
    start_server srv env LESSON=$L BIN_DIR="$BIN_ROOT/$L" "$ROOT/run" server "$@"
    export PORT
}

# The ss columns of the experiment: the server's socket has the local
# address 127.0.0.1:$PORT, the client's has it as its peer.
server_recvq() { awk -v me="127.0.0.1:$PORT" '$1 == "ESTAB" && $4 == me { print $2 }' <<<"$output"; }
server_sendq() { awk -v me="127.0.0.1:$PORT" '$1 == "ESTAB" && $4 == me { print $3 }' <<<"$output"; }
client_recvq() { awk -v me="127.0.0.1:$PORT" '$1 == "ESTAB" && $5 == me { print $2 }' <<<"$output"; }
client_sendq() { awk -v me="127.0.0.1:$PORT" '$1 == "ESTAB" && $5 == me { print $3 }' <<<"$output"; }

# The bytes slowreader says the kernel accepted.
accepted_bytes() {
    [[ $output =~ slowreader:\ sent\ [0-9]+\ of\ 4096\ messages\ \(([0-9]+)\ bytes\)\;\ received\ 0\ bytes ]] || return 1
    echo "${BASH_REMATCH[1]}"
}

@test "make lesson-6 && ./run builds the lesson and tours flood, broadcast and stale within 20 s" {
    fresh_copy_built tools # the tools built already: this test reads the lesson's own cc lines
    doc_cmd 06_send_queue.md 'make lesson-6 && ./run'
    [ "$status" -eq 0 ]
    [ "$DOC_SECONDS" -le 20 ]
    [ "$(grep -c 'client: 0 messages sent, 8000 received' <<<"$output")" -eq 2 ]
    [[ $output == *"lesson 6 (06_send_queue) is built: type ./run (or ./run --help)"* ]]
    [[ $output == *"Echo flood: a client sends 256 MB and never reads."* ]]
    grep -qE '\[server\] server: 127\.0\.0\.1:[0-9]+: [0-9]+ bytes queued > high-water 1048576: reading paused$' <<<"$output"
    grep -qE '\[server\] server: 127\.0\.0\.1:[0-9]+: closed: output cap \([0-9]+ bytes queued, 1049 more\)$' <<<"$output"
    grep -qE '\[server\] server: 127\.0\.0\.1:[0-9]+: closed: stale output \([0-9]+ bytes queued, no progress for [0-9]+ ms\)$' <<<"$output"
}

@test "./run flood: reading paused at the high-water mark, the client stopped by its kernel, server memory flat" {
    doc_cmd 06_send_queue.md './run flood'
    [ "$status" -eq 0 ]
    [[ $output =~ \[server\]\ server:\ 127\.0\.0\.1:[0-9]+:\ ([0-9]+)\ bytes\ queued\ \>\ high-water\ 1048576:\ reading\ paused ]]
    queued=${BASH_REMATCH[1]}
    # the high-water mark plus at most one 64 KiB message
    [ "$queued" -gt 1048576 ]
    [ "$queued" -le $((1048576 + 65561)) ]
    [[ $output == *"[reader] slowreader: never read; still open after 3.0 s"* ]]
    # far more than any SO_SNDBUF default, far less than the 256 MiB it tried
    bytes=$(accepted_bytes)
    [ "$bytes" -gt 2000000 ]
    [ "$bytes" -lt 268435456 ]
    # flat: the RSS after 2500 ms is within 2 MB of the RSS after 500 ms
    first=$(sed -n 's/.*server RSS after 500 ms: \([0-9]*\) kB$/\1/p' <<<"$output")
    last=$(sed -n 's/.*server RSS after 2500 ms: \([0-9]*\) kB$/\1/p' <<<"$output")
    [ -n "$first" ]
    [ -n "$last" ]
    [ $((last - first)) -lt 2048 ]
    refute grep -q 'closed: output cap' <<<"$output"
}

@test "./run server --port 0, as the text starts it, and the flood: slowreader's bytes are in six places" {
    # doc_cmd 06_send_queue.md './run server --port 0'
    # (it runs until stopped, so it is started in the background here)
    printed_in 06_send_queue.md './run server --port 0'
    run_server --port 0
    [ "$(head -n 1 "$T/srv.out")" = "listening on 127.0.0.1:$PORT" ]
    doc_cmd 06_send_queue.md '(tools/slowreader --port $PORT --never-read --send 4096 --size 65536 --read-for 3 -v & sleep 2; ss -tn "( sport = :$PORT or dport = :$PORT )"; wait)'
    [ "$status" -eq 0 ]
    [[ $output == *"slowreader: never read; still open after 3.0 s"* ]]
    bytes=$(accepted_bytes)
    srq=$(server_recvq) ssq=$(server_sendq) crq=$(client_recvq) csq=$(client_sendq)
    [ -n "$srq" ]
    [ -n "$ssq" ]
    [ -n "$crq" ]
    [ -n "$csq" ]
    # The server's own send buffer grew far past its 16 KiB default.
    [ "$ssq" -gt 65536 ]
    # What is in none of the kernel queues is in the server's c->out and c->in:
    # the high-water mark and a little more.
    in_server=$((bytes - srq - ssq - crq - csq))
    [ "$in_server" -gt 1048576 ]
    [ "$in_server" -lt $((2 * 1048576)) ]
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: [0-9]+ bytes queued > high-water 1048576: reading paused$' "$T/srv.err"
}

@test "./run server --port 0 --sndbuf 4096: the server's Send-Q is 8 KiB, the rest as before" {
    # doc_cmd 06_send_queue.md './run server --port 0 --sndbuf 4096'
    # (it runs until stopped, so it is started in the background here)
    printed_in 06_send_queue.md './run server --port 0 --sndbuf 4096'
    run_server --port 0 --sndbuf 4096
    [ "$(head -n 1 "$T/srv.out")" = "listening on 127.0.0.1:$PORT" ]
    doc_cmd 06_send_queue.md '(tools/slowreader --port $PORT --never-read --send 4096 --size 65536 --read-for 3 -v & sleep 2; ss -tn "( sport = :$PORT or dport = :$PORT )"; wait)'
    [ "$status" -eq 0 ]
    bytes=$(accepted_bytes)
    srq=$(server_recvq) ssq=$(server_sendq) crq=$(client_recvq) csq=$(client_sendq)
    [ -n "$ssq" ]
    [ "$ssq" -gt 0 ]
    [ "$ssq" -le 8192 ]
    in_server=$((bytes - srq - ssq - crq - csq))
    [ "$in_server" -gt 1048576 ]
    [ "$in_server" -lt $((2 * 1048576)) ]
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: [0-9]+ bytes queued > high-water 1048576: reading paused$' "$T/srv.err"
}

@test "./run broadcast: the never-reading member is closed by the output cap, the readers get all 8000" {
    doc_cmd 06_send_queue.md './run broadcast'
    [ "$status" -eq 0 ]
    [ "$(grep -cE '\[server\] server: 127\.0\.0\.1:[0-9]+: closed: output cap \([0-9]+ bytes queued, 1049 more\)$' <<<"$output")" -eq 1 ]
    [[ $output =~ closed:\ output\ cap\ \(([0-9]+)\ bytes\ queued ]]
    q=${BASH_REMATCH[1]}
    # queued + the next message would pass 2 MiB; queued alone did not
    [ "$q" -le 2097152 ]
    [ $((q + 1049)) -gt 2097152 ]
    [[ $output == *"[sender] client: 8000 messages sent, 0 received"* ]]
    [[ $output == *"[alice] client: 0 messages sent, 8000 received"* ]]
    [[ $output == *"[bob] client: 0 messages sent, 8000 received"* ]]
}

@test "./run stale: the reader that stopped is closed for stale output after about a second" {
    doc_cmd 06_send_queue.md './run stale'
    [ "$status" -eq 0 ]
    [[ $output =~ closed:\ stale\ output\ \([0-9]+\ bytes\ queued,\ no\ progress\ for\ ([0-9]+)\ ms\) ]]
    ms=${BASH_REMATCH[1]}
    [ "$ms" -gt 1000 ] # the limit is a floor; a loaded machine only adds
    [ "$ms" -lt 10000 ]
    grep -qE '\[reader\] slowreader: never read; server closed the connection after [0-9.]+ s$' <<<"$output"
    refute grep -q 'closed: output cap' <<<"$output"
}

@test "./run nagle: 20 intact round trips each way; about 40 ms each with Nagle, next to nothing without" {
    doc_cmd 06_send_queue.md './run nagle'
    [ "$status" -eq 0 ]
    [[ $output =~ \[nagle-on\]\ client:\ 20\ messages\ sent,\ 20\ replies,\ all\ intact\ \(20\ recv\ calls,\ ([0-9]+)\ ms\) ]]
    on=${BASH_REMATCH[1]}
    [[ $output =~ \[nodelay\]\ client:\ 20\ messages\ sent,\ 20\ replies,\ all\ intact\ \(20\ recv\ calls,\ ([0-9]+)\ ms\) ]]
    off=${BASH_REMATCH[1]}
    # Nagle + delayed ACK is a floor (about 40 ms per round trip), so only a
    # lower bound is asserted, and that TCP_NODELAY removed it in the same run.
    [ "$on" -ge 400 ]
    [ "$off" -lt "$on" ]
}

@test "./run threads: five clients, 500 replies each, all intact and in order" {
    doc_cmd 06_send_queue.md './run threads'
    [ "$status" -eq 0 ]
    for i in 1 2 3 4 5; do
        grep -qE "^  \[c$i\] client: 500 messages sent, 500 replies, all intact \([0-9]+ recv calls?, [0-9]+ ms\)$" <<<"$output"
    done
    [[ $output == *"[server] server: stopping (0 connections open)"* ]]
}

@test "./run --help lists the scenarios of lesson 6" {
    doc_cmd 06_send_queue.md './run --help'
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "usage: ./run [SCENARIO]            lesson 6: the send queue and backpressure" ]
    for s in tour flood broadcast stale nagle threads; do
        grep -qE "^  $s " <<<"$output"
    done
}

@test "the scenario lines the text quotes under ./run --help are the ones it prints" {
    doc_cmd 06_send_queue.md './run --help'
    [ "$status" -eq 0 ]
    quoted=$(awk '$0 == "$ ./run --help" { on = 1; next } on && /^```/ { exit } on && !/^\[\.\.\./' "$ROOT/lessons/$MD")
    while IFS= read -r line; do
        grep -qxF -- "$line" <<<"$output"
    done <<<"$quoted"
}

@test "every command printed in lessons/06_send_queue.md is run by a test" { every_doc_cmd_is_tested 06_send_queue.md; }

@test "./run fairness: the interactive client's p50, p99 and max with the caps on and off, medians of 5 alternating runs" {
    doc_cmd 06_send_queue.md './run fairness'
    [ "$status" -eq 0 ]
    grep -qx '   budgets         p50      p99      max' <<<"$output"
    grep -qE '^   on +[0-9]+ +[0-9]+ +[0-9]+$' <<<"$output"
    grep -qE '^   off +[0-9]+ +[0-9]+ +[0-9]+$' <<<"$output"
    # each row: p50 <= p99 <= max (five real measurements each, not placeholders)
    for b in on off; do
        read -r p50 p99 max < <(sed -nE "s/^   $b +([0-9]+) +([0-9]+) +([0-9]+)$/\1 \2 \3/p" <<<"$output")
        [ "$p50" -gt 0 ]
        [ "$p50" -le "$p99" ]
        [ "$p99" -le "$max" ]
    done
}
