#!/usr/bin/env bats
# Tools -- badpeer, the client that misbehaves on purpose. Against the lesson-6 server: every
# protocol error costs the server that one connection, with a log line naming the rule broken,
# and the next client is served; peers that vanish mid-frame or in hundreds leave it serving
# and give back every descriptor; a slow trickle is not closed (lesson 6 has no idle timeout).
# And the signal storm, which later lessons aim at their servers.

load helpers

L6=06_send_queue

badpeer() { "$(bin tools badpeer)" "$@"; }

# serves_hello: a well-behaved client still gets its echo from the server on $PORT.
serves_hello() {
    run timeout 10 "$(bin $L6 client)" --port "$PORT" hello
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *'reply #1: 5 bytes: "hello"'* ]]
}

# closes_for SCENARIO REASON: the server closes the bad peer's connection and logs
# "server: PEER: protocol error: REASON", and still serves the next client.
closes_for() {
    start_server server "$(bin $L6 server)" --port 0
    run timeout 20 "$(bin tools badpeer)" --port "$PORT" "$1"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output =~ ^badpeer:\ $1:\ server\ closed\ the\ connection\ after\ [0-9]+\ ms\ \((EOF|reset)\)$ ]]
    grep -qF ": protocol error: $2" "$T/server.err"
    [ "$(grep -c 'protocol error' "$T/server.err")" -eq 1 ]
    serves_hello
}

@test "flags other than 0 or 1 make the server close that connection for 'bad flags (not 0 or 1)'" {
    closes_for bad-flags 'bad flags (not 0 or 1)'
}

@test "origin_size 0 makes the server close that connection for 'origin_size 0'" {
    closes_for origin-zero 'origin_size 0'
}

@test "origin_size over 10 MiB makes the server close that connection at once, body unsent" {
    closes_for origin-too-big 'origin_size over 10 MiB'
}

@test "compress_size 0 on an LZ4 frame makes the server close that connection for 'compress_size 0'" {
    closes_for compress-zero 'compress_size 0'
}

@test "compress_size over 10 MiB makes the server close that connection at once, body unsent" {
    closes_for compress-too-big 'compress_size over 10 MiB'
}

@test "an LZ4 match reaching in front of the output makes the server close that connection" {
    closes_for bad-lz4 'lz4: match offset before the start of the output'
}

@test "a valid LZ4 block shorter than origin_size makes the server close that connection" {
    closes_for lz4-wrong-size 'lz4: output shorter than origin_size'
}

@test "a peer that resets its connection in the middle of a frame leaves the server serving" {
    start_server server "$(bin $L6 server)" --port 0
    run timeout 20 "$(bin tools badpeer)" --port "$PORT" rst-mid-frame
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "badpeer: rst-mid-frame: sent 525 bytes, then reset" ]
    serves_hello
}

@test "a peer that half-closes in the middle of a frame is closed by the server, which goes on serving" {
    start_server server "$(bin $L6 server)" --port 0
    run timeout 20 "$(bin tools badpeer)" --port "$PORT" half-close-mid-frame
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output =~ ^badpeer:\ half-close-mid-frame:\ server\ closed\ the\ connection\ after\ [0-9]+\ ms\ \(EOF\)$ ]]
    serves_hello
}

@test "200 connections abandoned mid-header leave the server with the descriptors it had before" {
    start_server server "$(bin $L6 server)" --port 0
    SERVER_PID=$PID
    before=$(open_fds "$SERVER_PID")
    run timeout 30 "$(bin tools badpeer)" --port "$PORT" abandon --count 200
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "badpeer: abandon: opened and abandoned 200 connections" ]
    wait_until 10 fds_back_to "$SERVER_PID" "$before" ||
        { echo "server fds: $before before, $(open_fds "$SERVER_PID") after"; false; }
    serves_hello
}

@test "a one-byte-a-second trickle is still open after 2.5 s on lesson 6, which has no idle timeout" {
    start_server server "$(bin $L6 server)" --port 0
    # in the background, so that the -v trace lands in $T/trickle.err (shown on failure)
    start_bg trickle "$(bin tools badpeer)" --port "$PORT" trickle --wait-ms 2500 -v
    rc=0
    wait_exit "$PID" 10 || rc=$?
    [ "$rc" -eq 1 ]
    [[ $(cat "$T/trickle.out") =~ ^badpeer:\ trickle:\ still\ open\ after\ 2[5-9][0-9][0-9]\ ms,\ 3\ bytes\ sent$ ]]
}

@test "signal-storm sends a process that ignores USR2 rate x time signals, paced over that time" {
    start_bg target bash -c 'trap "" USR2; exec sleep 10'
    start=$EPOCHREALTIME
    run timeout 10 "$(bin tools badpeer)" signal-storm --pid "$PID" --signal USR2 --rate 1000 \
        --for-ms 500
    end=$EPOCHREALTIME
    elapsed_ms=$(((${end/./} - ${start/./}) / 1000))
    echo "$output"
    echo "took $elapsed_ms ms"
    [ "$status" -eq 0 ]
    # one signal per 1 ms deadline in [0, 500) ms; a late one is sent at once, not skipped
    [ "$output" = "badpeer: signal-storm: sent 500 signals to $PID" ]
    [ "$elapsed_ms" -ge 490 ]
    kill -0 "$PID"
}

@test "signal-storm stops with exit 1 and one line when the process is gone" {
    bash -c 'exit 0' &
    gone=$!
    wait "$gone"
    run timeout 10 "$(bin tools badpeer)" signal-storm --pid "$gone" --for-ms 500
    echo "$output"
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 1 ]
    [ "${lines[0]}" = "badpeer: signal-storm: kill $gone: No such process, after 0 signals" ]
}

@test "badpeer with an unknown scenario exits 2 with one line" {
    run badpeer --port 1 nonsense
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [ "${lines[0]}" = "badpeer: no scenario 'nonsense' (try --help)" ]
}

@test "badpeer without --port exits 2 with one line" {
    run badpeer bad-flags
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [ "${lines[0]}" = "badpeer: bad-flags: --port P is required (try --help)" ]
}

@test "badpeer --help lists every scenario and exits 0" {
    run badpeer --help
    [ "$status" -eq 0 ]
    for s in bad-flags origin-zero origin-too-big compress-zero compress-too-big bad-lz4 \
        lz4-wrong-size trickle abandon rst-mid-frame half-close-mid-frame signal-storm; do
        [[ $output == *"$s"* ]] || { echo "missing: $s"; false; }
    done
}
