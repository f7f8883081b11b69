#!/usr/bin/env bats
# The repository as a student meets it: fresh copy, make lesson-N, ./run,
# every lesson building alone, code style, the README's commands.

load helpers

lesson_dirs() { (cd "$ROOT" && ls -d [0-9][0-9]_*/ | tr -d /); }

# demo_in_fresh_copy N SECONDS: `make lesson-N && ./run` in a fresh copy;
# the demo (not the build) must finish within SECONDS. Sets $output.
demo_in_fresh_copy() {
    fresh_copy
    run timeout 120 bash -c "cd '$T/fresh' && make lesson-$1 >/dev/null && SECONDS=0 && ./run && echo took \$SECONDS s"
    [ "$status" -eq 0 ]
    local took
    took=$(sed -n 's/^took \([0-9]*\) s$/\1/p' <<<"$output")
    [ -n "$took" ] && [ "$took" -le "$2" ]
}

@test "./run with no lesson built says to type make lesson-1 first" {
    fresh_copy
    run "$T/fresh/run"
    [ "$status" -eq 2 ]
    [ "$output" = "run: no lesson is built yet: type 'make lesson-1' first (or lesson-2, ...)" ]
}

@test "make lesson-1 && ./run finishes within 15 s showing the naive receiver and the deadlock" {
    doc_cmd README.md 'make lesson-1 && ./run'
    [ "$status" -eq 0 ]
    [[ $output == *'recv #1 -> 10 bytes: "helloworld"'* ]]
    [[ $output == *'message #1 (5 bytes): "hello"'* ]]
    [[ $output == *"stuck: client pid"* ]]
    # timed on its own, without the build
    SECONDS=0
    run timeout 15 "$T/fresh/run"
    [ "$status" -eq 0 ]
    [ "$SECONDS" -le 15 ]
}

@test "make lesson-2 && ./run finishes within 15 s showing the four connect outcomes" {
    demo_in_fresh_copy 2 15
    for r in "connected to" "refused by" "timed out after" "self-connect:"; do
        [[ $output == *"client: $r"* ]]
    done
}

@test "make lesson-3 && ./run finishes within 15 s showing clients served at once and the fd limit" {
    demo_in_fresh_copy 3 15
    [[ $output == *"[alice] a2"* && $output == *"[bob] b2"* && $output == *"[carol] c2"* ]]
    [[ $output == *"refused: out of file descriptors"* ]]
    [[ $output == *"[client] served again"* ]]
}

@test "make lesson-4 && ./run finishes within 15 s showing lt, et and the stuck data of et-no-drain" {
    demo_in_fresh_copy 4 15
    [ "$(grep -c 'burst: sent 4000 bytes in one write, 4000 came back' <<<"$output")" -eq 2 ]
    [[ $output == *"burst: sent 4000 bytes in one write, 1024 came back"* ]]
    [[ $output == *"re-arm (EPOLLONESHOT)"* ]]
}

@test "make lesson-5 && ./run shows the naive failure and the framed fix through the proxy within 15 s" {
    demo_in_fresh_copy 5 15
    [[ $output == *'[naive] naive recv #1: 17 bytes: "one\r\ntwo\r\nthree\r\n"'* ]]
    [[ $output == *"[framed] client: 3 messages sent, 3 replies, all intact"* ]]
    [[ $output == *"[naive] client: 2 messages sent, 8 recv() calls returned them"* ]]
    [[ $output == *"protocol error: bad flags (not 0 or 1)"* ]]
}

@test "make lesson-6 && ./run shows the flood, the capped broadcast member and the stale close within 20 s" {
    demo_in_fresh_copy 6 20
    [[ $output == *"reading paused"* ]]
    [[ $output == *"closed: output cap"* ]]
    [ "$(grep -c 'client: 0 messages sent, 8000 received' <<<"$output")" -eq 2 ]
    [[ $output == *"closed: stale output"* ]]
}

@test "make lesson-7 && ./run shows the RST loss, the graceful close and a graceful stop within 20 s" {
    demo_in_fresh_copy 7 20
    [ "$(grep -c 'then ECONNRESET (Connection reset by peer)' <<<"$output")" -eq 2 ]
    [[ $output == *"fetch: received 4194304 of 4194304 bytes, then end of stream: complete"* ]]
    [[ $output == *"client: 3 messages sent, 3 replies, all intact"* ]]
    [[ $output == *"server: Terminated: stopping gracefully"* ]]
    [[ $output == *"server exit status 0"* ]]
}

@test "make lesson-8 && ./run shows the probes, three datagrams in and out, MSG_TRUNC and timeouts within 15 s" {
    demo_in_fresh_copy 8 15
    [[ $output == *"[client] 10 probes: 10 replies, 0 lost"* ]]
    [[ $output == *"best estimate: probe "* ]]
    [[ $output == *'5 bytes: "three"'* ]]
    [[ $output == *"truncated to 16 (MSG_TRUNC)"* ]]
    [[ $output == *"lost (timeout after 300 ms)"* ]]
    [[ $output == *"late reply to probe 1 (it had timed out), ignored"* ]]
}

@test "make lesson-1 && ./run --help lists the lesson's scenarios" {
    doc_cmd README.md 'make lesson-1 && ./run --help'
    [ "$status" -eq 0 ]
    for s in naive readn echo deadlock ttcp; do
        grep -qE "^  $s " <<<"$output"
    done
}

@test "every lesson directory builds alone, with gcc and with clang, warnings as errors" {
    fresh_copy
    command -v clang >/dev/null || skip "clang is not installed (gcc build checked by make test)"
    for d in $(lesson_dirs); do
        run make -C "$T/fresh/$d" CC=clang
        [ "$status" -eq 0 ] || { echo "$output"; false; }
        [ -x "$T/fresh/$d/server" ] && [ -x "$T/fresh/$d/client" ]
        make -C "$T/fresh/$d" clean >/dev/null
        run make -C "$T/fresh/$d" CC=gcc
        [ "$status" -eq 0 ] || { echo "$output"; false; }
    done
}

@test "every lesson directory has a text in lessons/ and a test suite" {
    for d in $(lesson_dirs); do
        [ -s "$ROOT/lessons/$d.md" ] || { echo "missing lessons/$d.md"; false; }
        [ -s "$ROOT/tests/$d.bats" ] || { echo "missing tests/$d.bats"; false; }
    done
}

@test "the C sources follow .clang-format" {
    command -v clang-format >/dev/null || skip "clang-format is not installed"
    cd "$ROOT"
    run clang-format --dry-run -Werror [0-9][0-9]_*/*.[ch] tools/*.c fuzz/*.c
    [ "$status" -eq 0 ] || { echo "$output" | head -40; false; }
}

@test "cppcheck finds nothing in the C sources" {
    command -v cppcheck >/dev/null || skip "cppcheck is not installed"
    cd "$ROOT"
    for d in $(lesson_dirs) tools fuzz; do
        run cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
            --inline-suppr -D_GNU_SOURCE "$d"
        [ "$status" -eq 0 ] || { echo "$d: $output"; false; }
    done
}

@test "make test explains how to get bats when it is missing and cannot be installed" {
    mkdir "$T/bin"
    for f in /usr/bin/* /bin/*; do
        case ${f##*/} in bats | npm | npx) ;; *) ln -sf "$f" "$T/bin/" 2>/dev/null ;; esac
    done
    run env PATH="$T/bin" IGNORE_SYSTEM_BATS=1 BATS_INSTALL_DIR="$T/nobats" "$ROOT/tests/run_suites" --bin "$BIN_ROOT" 00_none
    [ "$status" -eq 1 ]
    [[ $output == *"sudo apt-get install bats"* ]]
    [[ $output == *"npm install --prefix .bats bats@"* ]]
    [ "${lines[-1]}" = "0 passed, 1 failed" ]
}

@test "make bench prints the ttcp table and the scaling table" {
    # the README's command, in a small configuration (the full one takes minutes)
    export SCALE_NS="10 100" SCALE_ROUNDS=300 SCALE_RUNS=3 TTCP_BYTES=4M
    export SERVER_BENCH_MESSAGES=2000 SERVER_BENCH_IDLE_CONNS=50 SERVER_BENCH_HOLD_S=1 \
        SERVER_BENCH_SYSCALL_MESSAGES=200
    doc_cmd README.md 'make bench'
    [ "$status" -eq 0 ]
    grep -qE '^ *length +messages +seconds +MB/s$' <<<"$output"
    grep -qE '^ *stream +- +[0-9.]+ +[0-9.]+$' <<<"$output"
}

@test "make clean removes what was built" {
    fresh_copy
    make -C "$T/fresh" lesson-1 >/dev/null
    [ -x "$T/fresh/01_socket_basics/server" ]
    doc_cmd README.md 'make clean'
    [ "$status" -eq 0 ]
    [ ! -e "$T/fresh/.current-lesson" ]
    [ ! -e "$T/fresh/01_socket_basics/server" ]
    [ ! -e "$T/fresh/tools/ttcp" ]
}

@test "every command printed in README.md is run by a test (make test is what CI runs)" {
    missing=0
    while IFS= read -r cmd; do
        [ "$cmd" = "make test" ] && continue
        grep -qF -- "doc_cmd README.md '$cmd'" "$ROOT"/tests/*.bats || { echo "untested: $cmd"; missing=1; }
    done < <(doc_commands README.md)
    [ "$missing" -eq 0 ]
}
