#!/usr/bin/env bats
# Tools -- loadgen, the load generator, and sink, the server that only reads: every reply is
# checked byte for byte in each mode (pingpong, oneway, LZ4, raw streams, sizes drawn from a
# range, a re-chunking proxy in between), a wrong reply and a dead or silent server make it
# fail, and the sink counts exactly the bytes loadgen says it sent.

load helpers

L4=04_epoll_lt_et
L6=06_send_queue

# loadgen ARGS...: run the load generator (bounded) and show what it printed.
loadgen() {
    run timeout 120 "$(bin tools loadgen)" "$@"
    echo "status $status"
    echo "$output"
}

# finished_ok CONNS MESSAGES: the two closing lines are there, every reply was checked, no error.
finished_ok() {
    [ "$status" -eq 0 ]
    [[ ${lines[-2]} =~ ^loadgen:\ $1\ conns,\ .*\ $(($1 * $2))\ messages,\ .*\;\ 0\ errors$ ]]
    [[ ${lines[-1]} == "result conns=$1 "* ]]
    [ "$(field messages)" -eq $(($1 * $2)) ]
    [ "$(field errors)" -eq 0 ]
    [ "$(field mismatches)" -eq 0 ]
}

@test "loadgen in pingpong with 10 connections checks every reply of lesson 6's server" {
    start_server server "$(bin $L6 server)" --port 0
    loadgen --port "$PORT" --conns 10 --messages 50
    finished_ok 10 50
    [ "$(field mode)" = pingpong ]
    [ "$(field bytes)" -eq $((10 * 50 * 16)) ]
    [[ ${lines[-1]} =~ \ p50_us=[0-9]+\ p99_us=[0-9]+\ max_us=[0-9]+\  ]]
    [[ ${lines[-1]} == *' server_cpu_us_per_msg=-' ]]
}

@test "loadgen in oneway keeps a window in flight and checks the streamed replies" {
    start_server server "$(bin $L6 server)" --port 0
    loadgen --port "$PORT" --conns 4 --mode oneway --messages 2000 --size 300 --window 16384
    finished_ok 4 2000
    [ "$(field mode)" = oneway ]
    [ "$(field bytes)" -eq $((4 * 2000 * 300)) ]
}

@test "loadgen with --compress sends LZ4 bodies and checks the decompressed replies" {
    start_server server "$(bin $L6 server)" --port 0
    loadgen --port "$PORT" --conns 3 --compress --size 20000 --messages 30
    finished_ok 3 30
    [ "$(field compress)" = 1 ]
    [[ ${lines[-2]} == *', 20000 bytes, lz4: '* ]]
}

@test "loadgen with --size MIN-MAX draws the sizes, and the same seed draws the same ones" {
    start_server server "$(bin $L6 server)" --port 0
    loadgen --port "$PORT" --conns 2 --mode oneway --size 1-5000 --messages 200 --seed 7
    finished_ok 2 200
    [ "$(field size)" = 1-5000 ]
    first=$(field bytes)
    [ "$first" -gt 400 ]
    [ "$first" -lt $((400 * 5000)) ]
    loadgen --port "$PORT" --conns 2 --mode oneway --size 1-5000 --messages 200 --seed 7
    [ "$(field bytes)" -eq "$first" ]
    loadgen --port "$PORT" --conns 2 --mode oneway --size 1-5000 --messages 200 --seed 8
    [ "$(field bytes)" -ne "$first" ]
}

@test "loadgen with --raw streams plain bytes through lesson 4's echo server, both modes" {
    start_server server "$(bin $L4 server)" --port 0
    loadgen --port "$PORT" --raw --conns 5 --size 1000 --messages 40
    finished_ok 5 40
    [[ ${lines[-2]} == *', 1000 bytes, stream: '* ]]
    loadgen --port "$PORT" --raw --mode oneway --conns 5 --size 1-3000 --messages 300
    finished_ok 5 300
}

@test "loadgen drives 1000 connections through lesson 6's server" {
    [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge 2100 ] ||
        skip "the hard limit on open files ($(ulimit -Hn)) is below 2100"
    ulimit -Sn "$(ulimit -Hn)" # the server inherits it; loadgen raises its own
    start_server server "$(bin $L6 server)" --port 0
    loadgen --port "$PORT" --conns 1000 --messages 5
    finished_ok 1000 5
}

@test "loadgen through chunkproxy with random cuts still gets every reply intact" {
    start_server server "$(bin $L6 server)" --port 0
    spec="random:1-$((RANDOM % 200 + 1))"
    echo "chunk spec $spec"
    loadgen --port "$PORT" --conns 4 --mode oneway --size 1-2000 --messages 100 --compress \
        --via-proxy "$spec" --seed "$RANDOM"
    finished_ok 4 100
    # the proxy is stopped on the way out: nothing of it is left running
    refute pgrep -f "chunkproxy --upstream 127.0.0.1:$PORT " >/dev/null
}

@test "loadgen --no-replies into the sink: the sink counts every byte sent, headers included" {
    start_server sink "$(bin tools sink)" -v
    SINK_PID=$PID
    loadgen --port "$PORT" --conns 5 --mode oneway --no-replies --size 1000 --messages 400
    finished_ok 5 400
    # loadgen's bytes are body bytes; the sink also reads the 25-byte header of each message
    [ "$(field bytes)" -eq $((5 * 400 * 1000)) ]
    closed() { [ "$(grep -c 'closed after' "$T/sink.err")" -eq 5 ]; }
    wait_until 10 closed
    kill -TERM "$SINK_PID"
    wait_exit "$SINK_PID" 5
    grep -qx "sink: received $((5 * 400 * (25 + 1000))) bytes on 5 connections" "$T/sink.out"
}

@test "loadgen reports a wrong reply as a mismatch naming connection, message and byte" {
    # lesson 6's server in broadcast mode sends each message to the other clients: each of
    # the two connections gets the other's first message as its "reply"
    start_server server "$(bin $L6 server)" --port 0 --service broadcast
    loadgen --port "$PORT" --conns 2 --messages 1 --timeout 10
    [ "$status" -eq 1 ]
    [ "$(field mismatches)" -ge 1 ]
    [[ $output =~ loadgen:\ conn\ [01]\ message\ 0:\ body\ byte\ 0\ is\ 0x3[01],\ expected\ 0x3[01] ]]
}

@test "loadgen --raw against the protocol server fails: the server drops it as a protocol error" {
    start_server server "$(bin $L6 server)" --port 0
    loadgen --port "$PORT" --raw --conns 3 --size 100 --messages 5 --timeout 10
    [ "$status" -eq 1 ]
    [ "$(field errors)" -eq 3 ]
    [[ $output == *'loadgen: conn '?': server closed the connection with 1 replies due'* ]]
    grep -q 'protocol error' "$T/server.err"
}

@test "loadgen --until-closed sees lesson 6's server stop: it resets or closes every connection" {
    start_server server "$(bin $L6 server)" --port 0
    SERVER_PID=$PID
    start_bg loadgen "$(bin tools loadgen)" --port "$PORT" --conns 10 --until-closed \
        --duration 30 --timeout 40
    LOADGEN_PID=$PID
    has_replies() { [ "$(cpu_ms "$SERVER_PID")" -gt 100 ]; }
    wait_until 20 has_replies
    kill -TERM "$SERVER_PID"
    rc=0
    wait_exit "$LOADGEN_PID" 20 || rc=$?
    output=$(cat "$T/loadgen.out")
    echo "status $rc"
    # Lesson 6 closes every connection at once on SIGTERM, wherever it is: between messages
    # (an EOF, the expected end), or with a request unread (a reset) or a reply half sent (a
    # cut reply), both errors. Which one each connection sees is a race; every connection
    # ends one of these ways, and the exit status says whether any was an error.
    errors=$(field errors)
    [ $((errors + $(field closed_by_server))) -eq 10 ]
    if [ "$errors" -eq 0 ]; then [ "$rc" -eq 0 ]; else [ "$rc" -eq 1 ]; fi
    [ "$(field messages)" -gt 0 ]
}

@test "loadgen --hold keeps the connections open and says so on stdout" {
    start_server server "$(bin $L6 server)" --port 0
    loadgen --port "$PORT" --conns 20 --messages 0 --hold 1
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = 'loadgen: holding 20 connections' ]
    [ "$(field messages)" -eq 0 ]
}

@test "loadgen --timeout ends a run against a server that never answers, with exit 1" {
    start_server sink "$(bin tools sink)"
    start=$SECONDS
    loadgen --port "$PORT" --conns 3 --timeout 2
    [ "$status" -eq 1 ]
    [ $((SECONDS - start)) -lt 10 ]
    [[ $output == *'loadgen: timed out after 2 s: 3 connections unfinished'*'3 replies due'* ]]
    [ "$(field errors)" -ge 1 ]
}

@test "loadgen to a closed port counts every refused connection and exits 1" {
    start_server sink "$(bin tools sink)"
    port=$PORT
    stop_pid "$PID"
    loadgen --port "$port" --conns 5 --timeout 10
    [ "$status" -eq 1 ]
    [ "$(field errors)" -eq 5 ]
    [[ $output == *'Connection refused'* ]]
}

@test "loadgen with a bad option exits 2 with one line" {
    run "$(bin tools loadgen)" --port 1 --mode sideways
    echo "$output"
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [ "${lines[0]}" = "loadgen: --mode wants pingpong or oneway, not 'sideways'" ]
    run "$(bin tools loadgen)" --port 1 --no-replies
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [ "${lines[0]}" = 'loadgen: --no-replies needs --mode oneway' ]
}
