#!/usr/bin/env bats
# Lesson 7's text: every command lessons/07_shutdown.md prints is run here,
# exactly as printed (the demo scenarios; closer and fetch by hand; the
# counters, SIGUSR1 and SIGTERM against a server started as the text starts
# it), and its output is checked against what the text says it shows.

load helpers

L=07_shutdown
MD=07_shutdown.md
ANSWER=4194304

# The servers the text starts by hand (they run until stopped), started
# here in the background from the sanitizer build. ./run execs the server,
# so PID is the server's own process id.
run_server() {
    start_server srv env LESSON=$L BIN_DIR="$BIN_ROOT/$L" "$ROOT/run" server "$@"
    export PORT SERVER_PID=$PID
}
run_closer() {
    start_server closer "$(bin $L closer)" "$@"
    export PORT
}

# A fetch that lost the tail to a RST: exit 1, an exact prefix, then ECONNRESET.
fetch_lost_the_tail() {
    [ "$status" -eq 1 ]
    local re="^fetch: received ([0-9]+) of $ANSWER bytes, then ECONNRESET \(Connection reset by peer\): ([0-9]+) bytes lost$"
    [[ $1 =~ $re ]]
    local got=${BASH_REMATCH[1]} lost=${BASH_REMATCH[2]}
    [ "$lost" -gt 0 ]
    [ $((got + lost)) -eq $ANSWER ]
}

# n_stats_lines: how many "stats on SIGUSR1" lines the server has printed.
n_stats_lines() { grep -c '^stats on SIGUSR1' "$T/srv.out" || true; }

@test "make lesson-7 && ./run shows the RST loss, the graceful close and a graceful stop within 20 s" {
    fresh_copy_built tools # the tools built already: this test reads the lesson's own cc lines
    doc_cmd 07_shutdown.md 'make lesson-7 && ./run'
    [ "$status" -eq 0 ]
    [ "$DOC_SECONDS" -le 20 ]
    [[ $output == *"server: Terminated: stopping gracefully"* ]]
    [[ $output == *"lesson 7 (07_shutdown) is built: type ./run (or ./run --help)"* ]]
    [[ $output == *"== close() with the client's second request unread: the kernel sends RST."* ]]
    [ "$(grep -cE '\[fetch\] fetch: received [0-9]+ of 4194304 bytes, then ECONNRESET' <<<"$output")" -eq 2 ]
    [[ $output == *"[fetch] fetch: received 4194304 of 4194304 bytes, then end of stream: complete"* ]]
    [[ $output == *"[client] client: 3 messages sent, 3 replies, all intact"* ]]
    [[ $output == *"   server exit status 0"* ]]
}

@test "./run rst: close() and SO_LINGER {1,0} lose the tail with ECONNRESET; the graceful close loses nothing" {
    doc_cmd 07_shutdown.md './run rst'
    [ "$status" -eq 0 ]
    [ "$(grep -cx '  \[closer\] closer: answered GET 4194304: all 4194304 bytes handed to the kernel' <<<"$output")" -eq 3 ]
    grep -qx '  \[closer\] closer: close() with 7 unread bytes in the receive buffer: RST' <<<"$output"
    grep -qx '  \[closer\] closer: linger0: SO_LINGER {1, 0}, close(): RST' <<<"$output"
    grep -qx "  \[closer\] closer: graceful: FIN sent, 7 unread bytes discarded, client's FIN received, close()" <<<"$output"
    grep -qx '  \[fetch\] fetch: received 4194304 of 4194304 bytes, then end of stream: complete' <<<"$output"
    # both RST endings: an exact prefix, then ECONNRESET, and the rest lost
    n=0
    while read -r got lost; do
        [ "$lost" -gt 0 ]
        [ $((got + lost)) -eq $ANSWER ]
        n=$((n + 1))
    done < <(sed -n 's/.*fetch: received \([0-9]*\) of 4194304 bytes, then ECONNRESET (Connection reset by peer): \([0-9]*\) bytes lost$/\1 \2/p' <<<"$output")
    [ "$n" -eq 2 ]
}

@test "closer --close close by hand, and fetch: ECONNRESET, the tail of 4 MiB lost, exit 1" {
    # doc_cmd 07_shutdown.md '07_shutdown/closer --once --close close --port 0'
    # (it runs until it has served one client, so it is started in the background here)
    printed_in 07_shutdown.md '07_shutdown/closer --once --close close --port 0'
    run_closer --once --close close --port 0
    doc_cmd 07_shutdown.md '07_shutdown/fetch --port $PORT --read-delay-ms 200'
    fetch_lost_the_tail "$output"
    wait_exit "$PID" 10
    grep -qx "closer: answered GET $ANSWER: all $ANSWER bytes handed to the kernel" "$T/closer.out"
    grep -qx 'closer: close() with 7 unread bytes in the receive buffer: RST' "$T/closer.out"
}

@test "closer --close graceful by hand, and fetch: all 4 MiB, then end of stream, exit 0" {
    # the text prints the --close close command and says "with closer
    # --close graceful", so only fetch is run as printed
    grep -qF 'With `closer --close graceful`, `fetch` gets all 4194304 bytes' "$ROOT/lessons/$MD"
    run_closer --once --close graceful --port 0
    doc_cmd 07_shutdown.md '07_shutdown/fetch --port $PORT --read-delay-ms 200'
    [ "$status" -eq 0 ]
    [ "$output" = "fetch: received $ANSWER of $ANSWER bytes, then end of stream: complete" ]
    wait_exit "$PID" 10
    grep -qx "closer: graceful: FIN sent, 7 unread bytes discarded, client's FIN received, close()" \
        "$T/closer.out"
}

@test "an answer already in the client's receive buffer survives the RST (Linux), but the end is still ECONNRESET" {
    run_closer --once --close close --port 0
    doc_cmd 07_shutdown.md '07_shutdown/fetch --port $PORT --bytes 100000 --read-delay-ms 500'
    [ "$status" -eq 1 ]
    [ "$output" = "fetch: received 100000 of 100000 bytes, then ECONNRESET (Connection reset by peer): 0 bytes lost" ]
    wait_exit "$PID" 10
    grep -qx 'closer: close() with 7 unread bytes in the receive buffer: RST' "$T/closer.out"
}

@test "./run halfclose: the client's FIN comes first, the server still sends all three replies, then closes (peer)" {
    doc_cmd 07_shutdown.md './run halfclose'
    [ "$status" -eq 0 ]
    for r in '#1: 3 bytes: "one"' '#2: 3 bytes: "two"' '#3: 5 bytes: "three"'; do
        grep -qF "[client] reply $r" <<<"$output"
    done
    grep -qE '\[client\] client: 3 messages sent, 3 replies, all intact' <<<"$output"
    grep -qE '\[server\] server: recv fd=[0-9]+ -> 0 bytes: 127\.0\.0\.1:[0-9]+ closed its side$' <<<"$output"
    grep -qE '\[server\] server: close fd=[0-9]+ \(open, peer\)$' <<<"$output"
    [ "$(grep -c 'frame complete' <<<"$output")" -eq 3 ]
    line=$(grep 'stats at exit' <<<"$output")
    [ "$(counter closed_peer "$line")" -eq 1 ]
    [ "$(counter closed_error "$line")" -eq 0 ]
    [ "$(counter msgs_in "$line")" -eq 3 ]
    [ "$(counter msgs_sent "$line")" -eq 3 ]
    refute grep -qi 'reset' <<<"$output"
}

@test "./run stop: an idle client gets a FIN, a paused one every reply to what was read, a never-reading one the deadline; exit 0" {
    doc_cmd 07_shutdown.md './run stop'
    [ "$status" -eq 0 ]
    # busy and lazy both pass the mark (a queue the client's kernel absorbs
    # may resume and pause again: count connections, not lines)
    [ "$(sed -n 's/.*server: \(127\.0\.0\.1:[0-9]*\): [0-9]* bytes queued > high-water 100000: reading paused$/\1/p' <<<"$output" | sort -u | wc -l)" -eq 2 ]
    grep -qx "   \[idle\] end of stream: the server's FIN; we close our side too" <<<"$output"
    grep -qx '  \[server\] server: Terminated: stopping gracefully' <<<"$output"
    grep -qx '  \[server\] server: stopping: no new connections; finishing 3 connection(s) within 3000 ms' <<<"$output"
    grep -qx '  \[server\] server: stop deadline (3000 ms): closing 1 connection(s) not done yet' <<<"$output"
    grep -qE '^  \[lazy\] slowreader: never read; server closed the connection after [0-9.]+ s$' <<<"$output"
    grep -qx '   server exit status 0' <<<"$output"
    re='\[busy\] client: server closed the connection after ([0-9]+) of 60 replies'
    [[ $output =~ $re ]]
    busy=${BASH_REMATCH[1]}
    [ "$busy" -ge 10 ] # far more than the queue held when reading paused
    line=$(grep 'stats at exit' <<<"$output")
    echo "$line"
    in=$(counter msgs_in "$line") sent=$(counter msgs_sent "$line") dropped=$(counter msgs_dropped "$line")
    [ "$in" -eq $((sent + dropped)) ]
    [ "$sent" -ge "$busy" ]
    [ "$dropped" -gt 0 ]                                   # lazy's replies, at the deadline
    # msgs_unanswered: lazy's whole requests left in c->in when its reading
    # paused; 0 when each read happened to bring one message (the text says so)
    [ "$(counter msgs_pending "$line")" -eq 0 ]
    [ "$(counter closed_stop "$line")" -eq 2 ]             # idle and busy
    [ "$(counter closed_stop_deadline "$line")" -eq 1 ]    # lazy
    [ "$(counter closed_error "$line")" -eq 0 ]
    [ "$(counter open "$line")" -eq 0 ]
}

@test "./run idle: a silent connection ends with a FIN after about 1000 ms, counted as idle" {
    doc_cmd 07_shutdown.md './run idle'
    [ "$status" -eq 0 ]
    grep -qE '\[server\] server: 127\.0\.0\.1:[0-9]+: idle for 1000 ms: closing$' <<<"$output"
    [[ $output =~ the\ connection\ ended\ after\ ([0-9]+)\ ms\ \(end\ of\ stream:\ a\ FIN,\ not\ a\ RST\) ]]
    ms=${BASH_REMATCH[1]}
    [ "$ms" -ge 950 ]
    [ "$ms" -lt 5000 ]
    line=$(grep 'stats at exit' <<<"$output")
    [ "$(counter closed_idle "$line")" -eq 1 ]
    [ "$(counter closed_error "$line")" -eq 0 ]
}

@test "./run slowloris: a byte every 500 ms is never idle; the 3 s frame deadline closes it" {
    doc_cmd 07_shutdown.md './run slowloris'
    [ "$status" -eq 0 ]
    grep -qE '\[server\] server: 127\.0\.0\.1:[0-9]+: closed: a message took over 3000 ms \([0-9]+ bytes of it so far\)$' <<<"$output"
    [[ $output =~ badpeer:\ trickle:\ server\ closed\ the\ connection\ after\ ([0-9]+)\ ms ]]
    ms=${BASH_REMATCH[1]}
    [ "$ms" -ge 2900 ]
    [ "$ms" -lt 8000 ]
    refute grep -q 'idle for' <<<"$output"
    line=$(grep 'stats at exit' <<<"$output")
    [ "$(counter closed_frame_timeout "$line")" -eq 1 ]
    [ "$(counter closed_idle "$line")" -eq 0 ]
}

@test "./run drip: the drip reader is never stale but closed as too slow; close leaves an orphan in FIN-WAIT-1, abort nothing" {
    doc_cmd 07_shutdown.md './run drip'
    [ "$status" -eq 0 ]
    [ "$(grep -cE '^  \[server\] server: 127\.0\.0\.1:[0-9]+: closed: too slow \([0-9]+ bytes queued, over the high-water mark for 4000 ms\)$' <<<"$output")" -eq 2 ]
    refute grep -q 'stale output' <<<"$output"
    # --drop close: one orphan row with bytes still owed; --drop abort: the header alone
    close_ss=$(sed -n '/--drop close, just after/,/--drop abort/p' <<<"$output" | grep '^  \[ss\]')
    echo "$close_ss"
    [ "$(wc -l <<<"$close_ss")" -eq 2 ]
    [ "$(tail -n 1 <<<"$close_ss" | awk '{ print $3 }')" -gt 0 ]
    abort_ss=$(sed -n '/--drop abort, just after/,$p' <<<"$output" | grep '^  \[ss\]')
    [ "$(wc -l <<<"$abort_ss")" -eq 1 ]
    grep -Eqx '  \[drip\] slowreader: server closed the connection after 0 messages \([0-9]+ bytes\)' <<<"$output"
    grep -Eqx '  \[drip\] slowreader: server reset the connection after 0 messages \([0-9]+ bytes\)' <<<"$output"
    [ "$(grep -c ' closed_stale=0 closed_slow=1 ' <<<"$output")" -eq 2 ]
}

@test "counters by hand: SIGUSR1 with replies pending, again after the client's reset, then SIGTERM: exit 0" {
    # doc_cmd 07_shutdown.md './run server --port 0'
    # (it runs until stopped, so it is started in the background here)
    printed_in 07_shutdown.md './run server --port 0'
    run_server --port 0
    [ "$(head -n 1 "$T/srv.out")" = "listening on 127.0.0.1:$PORT" ]
    doc_cmd 07_shutdown.md '(tools/slowreader --port $PORT --never-read --send 2000 --size 4096 --read-for 2 & sleep 1; kill -USR1 $SERVER_PID; wait)'
    [ "$status" -eq 0 ]
    [[ $output == *"slowreader: never read; still open after 2.0 s"* ]]
    wait_until 5 grep -q '^stats on SIGUSR1' "$T/srv.out"
    first=$(grep '^stats on SIGUSR1' "$T/srv.out" | head -n 1)
    echo "$first"
    # queue full: replies pending, the invariant holds
    [ "$(counter open "$first")" -eq 1 ]
    [ "$(counter msgs_pending "$first")" -gt 0 ]
    [ "$(counter msgs_queued "$first")" -eq $(($(counter msgs_sent "$first") + $(counter msgs_dropped "$first") + $(counter msgs_pending "$first"))) ]
    [ "$(counter msgs_in "$first")" -eq "$(counter msgs_queued "$first")" ]
    # slowreader's exit with unread data is a reset: the pending replies become dropped
    wait_until 5 grep -q 'Connection reset by peer' "$T/srv.err"
    doc_cmd 07_shutdown.md 'kill -USR1 $SERVER_PID'
    [ "$status" -eq 0 ]
    wait_until 5 bash -c "[ \$(grep -c '^stats on SIGUSR1' '$T/srv.out') -eq 2 ]"
    second=$(grep '^stats on SIGUSR1' "$T/srv.out" | tail -n 1)
    echo "$second"
    [ "$(counter open "$second")" -eq 0 ]
    [ "$(counter msgs_pending "$second")" -eq 0 ]
    [ "$(counter msgs_dropped "$second")" -eq "$(counter msgs_pending "$first")" ]
    [ "$(counter msgs_sent "$second")" -eq "$(counter msgs_sent "$first")" ]
    [ "$(counter closed_error "$second")" -eq 1 ]
    doc_cmd 07_shutdown.md 'kill -TERM $SERVER_PID'
    [ "$status" -eq 0 ]
    wait_exit "$SERVER_PID" 10
    grep -q '^server: Terminated: stopping gracefully$' "$T/srv.err"
    grep -q '^server: stopped$' "$T/srv.err"
    last=$(grep '^stats at exit' "$T/srv.out")
    [ "$(counter msgs_queued "$last")" -eq $(($(counter msgs_sent "$last") + $(counter msgs_dropped "$last"))) ]
}

@test "the close reasons the text lists are the server's" {
    for r in peer protocol idle frame_timeout output_cap stale slow error stop stop_deadline linger_timeout; do
        grep -qF "[CLOSE_${r^^}] = \"$r\"" "$ROOT/$L/conn.c"
        grep -qF "\`$r\`" "$ROOT/lessons/$MD"
    done
}

@test "every command printed in lessons/07_shutdown.md is run by a test" { every_doc_cmd_is_tested 07_shutdown.md; }

@test "a counter only ever grows: the server's files never decrement one (nothing counted early, corrected later)" {
    re='count\.[a-z_]+(\[[^]]*\])? *(--|-=)'
    grep -qE "$re" <<<'    s->count.msgs_in--;' # the pattern finds a decrement
    grep -qE "$re" <<<'    s->count.closed[r] -= 1;'
    run grep -nE "$re" "$ROOT/$L"/*.c
    echo "$output"
    [ "$status" -eq 1 ]
    grep -q 'A counter only ever grows' "$ROOT/lessons/07_shutdown.md" # the sentence this test proves
}
