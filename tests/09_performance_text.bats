#!/usr/bin/env bats
# Lesson 9's text (appendix B): every command lessons/09_performance.md
# prints is run here, exactly as printed, and its output is checked against
# what the text says it shows.

load helpers

L=09_performance
MD=09_performance.md

@test "make lesson-9 && ./run shows one send for a read's replies and the system calls against lesson 7, within 20 s" {
    command -v strace >/dev/null || skip "strace is not installed: the syscalls scenario has nothing to count"
    fresh_copy_built tools # the tools built already: this test reads the lesson's own cc lines
    doc_cmd 09_performance.md 'make lesson-9 && ./run'
    [ "$status" -eq 0 ]
    [ "$DOC_SECONDS" -le 20 ]
    [[ $output == *"lesson 9 (09_performance) is built: type ./run (or ./run --help)"* ]]
    # batching: one read of five requests, five frames, one send
    grep -Eq '^  \[server\] server: recv fd=[0-9]+ -> 145 bytes \(145 buffered\)$' <<<"$output"
    [ "$(grep -cE '^  \[server\] server: frame complete fd=[0-9]+: 4 bytes$' <<<"$output")" -eq 5 ]
    grep -Eq '^  \[server\] server: send fd=[0-9]+: 145 bytes of replies collected from this read: one send$' <<<"$output"
    [ "$(grep -cE '^  \[server\] server: send fd=[0-9]+ <- ' <<<"$output")" -eq 1 ]
    grep -q '\[client\] client: 5 messages sent, 5 replies, all intact' <<<"$output"
    # system calls: lesson 7 one send per reply, lesson 9 a few for all 1000
    grep -qx '   lesson 7: 1000 system calls to send the 1000 replies' <<<"$output"
    re='   lesson 9: ([0-9]+) system calls to send the 1000 replies'
    [[ $output =~ $re ]]
    echo "lesson 9: ${BASH_REMATCH[1]} sends"
    [ "${BASH_REMATCH[1]}" -ge 1 ]
    [ "${BASH_REMATCH[1]}" -le 10 ]
    [ "$(grep -c 'client: 1000 messages sent, 1000 replies, all intact' <<<"$output")" -eq 2 ]
}

@test "--high-water 1: five pipelined requests are still answered one by one (the text's third rule)" {
    start_server server "$(bin $L server)" --port 0 --high-water 1 --low-water 0 -v
    run client --port "$PORT" --one-write --repeat 5 ping
    [ "$status" -eq 0 ]
    [[ $output == *"client: 5 messages sent, 5 replies, all intact"* ]]
    # the queue passes the mark after each reply: no batch of five, one send per reply
    [ "$(grep -cE '^server: send fd=[0-9]+ <- ' "$T/server.err")" -eq 5 ]
}

@test "a client that does not pipeline is answered directly: no reply is collected, one sendmsg per request" {
    start_server server "$(bin $L server)" --port 0 -v
    run client --port "$PORT" --pingpong --repeat 20 ping
    [ "$status" -eq 0 ]
    [[ $output == *"client: 20 messages sent, 20 replies, all intact"* ]]
    [ "$(grep -cE '^server: send fd=[0-9]+ <- 29 bytes \(direct\)$' "$T/server.err")" -eq 20 ]
    refute grep -q 'collected from this read' "$T/server.err"
}

@test "every command printed in lessons/09_performance.md is run by a test" { every_doc_cmd_is_tested $MD; }

@test "the benchmark table the text quotes is lessons/images/server_bench.txt as it is" {
    doc_cmd 09_performance.md 'cat lessons/images/server_bench.txt'
    [ "$status" -eq 0 ]
    quoted=$(awk '$0 == "$ cat lessons/images/server_bench.txt" { on = 1; next } on && /^```/ { exit } on' "$ROOT/lessons/$MD")
    [ "$quoted" = "$output" ] || {
        echo "the text's copy of server_bench.txt is out of date:"
        diff <(echo "$quoted") <(echo "$output")
        return 1
    }
    # the numbers the text reads out of it
    grep -q '  lesson 9: 585 instructions per echoed 16-byte message' <<<"$output"
    grep -q '  lesson 7: 890 instructions per echoed 16-byte message' <<<"$output"
    grep -q '    of which trace(): 6.9% (62 instructions per message)' <<<"$output"
    grep -Eq '^  lesson 9 +[0-9]+ +[0-9]+ +404$' <<<"$output"
    grep -Eq '^  lesson 7 +[0-9]+ +[0-9]+ +667$' <<<"$output"
    grep -Eq '^  lesson 9 echo \(loadgen --mode oneway\) +1824\.[0-9]+ MB/s$' <<<"$output"
    grep -Eq '^  lesson 7 echo \(loadgen --mode oneway\) +1967\.[0-9]+ MB/s$' <<<"$output"
    # "0.88 to 1.04 here": the lowest and highest L9/L7 ratios
    l9l7=$(sed -n '/lesson 9 against lesson 7/,/^$/p' <<<"$output" | awk -F'|' 'NF == 4 && $4 ~ /^ *[0-9.]+ *$/ { print $4 + 0 }' | sort -n)
    [ "$(head -n 1 <<<"$l9l7")" = 0.88 ]
    [ "$(tail -n 1 <<<"$l9l7")" = 1.04 ]
}
