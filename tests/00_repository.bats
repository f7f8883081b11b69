#!/usr/bin/env bats
# The repository as a student meets it: fresh copy, make lesson-N, ./run,
# every lesson building alone, code style, the README's commands.

load helpers

lesson_dirs() { (cd "$ROOT" && ls -d [0-9][0-9]_*/ | tr -d /); }

@test "./run with no lesson built says to type make lesson-1 first" {
    fresh_copy
    run "$T/fresh/run"
    [ "$status" -eq 2 ]
    [ "$output" = "run: no lesson is built yet: type 'make lesson-1' first (or lesson-2, ...)" ]
}

@test "make lesson-1 && ./run (the README's first command) works in a fresh copy, the demo within 15 s" {
    doc_cmd README.md 'make lesson-1 && ./run'
    [ "$status" -eq 0 ]
    [[ $output == *'recv #1 -> 10 bytes: "helloworld"'* ]]
    [[ $output == *'message #1 (5 bytes): "hello"'* ]]
    [[ $output == *"stuck: client pid"* ]]
    [ "$DOC_SECONDS" -le 15 ]
}

# The other lessons' `make lesson-N && ./run` (time bound included) are run by
# their text suites, tests/0N_*_text.bats, as their texts print them.

@test "make lesson-1 && ./run --help lists the lesson's scenarios" {
    fresh_copy_built # the build is the previous test's; this one reads --help
    doc_cmd README.md 'make lesson-1 && ./run --help'
    [ "$status" -eq 0 ]
    for s in naive readn echo deadlock ttcp; do
        grep -qE "^  $s " <<<"$output"
    done
}

# (make test itself builds every lesson directory alone with gcc first: `make all`)
@test "every lesson's sources compile with clang too, warnings as errors; lesson 9's Makefile links its server with it" {
    fresh_copy
    command -v clang >/dev/null || skip "clang is not installed (gcc build checked by make test)"
    for d in $(lesson_dirs); do
        # every source file of the lesson, with the lesson's flags (clang's
        # -Wall and -Wextra warnings come from parsing and semantic analysis,
        # which -fsyntax-only runs; only code generation is skipped)
        run bash -c "cd '$T/fresh/$d' && clang -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -fsyntax-only *.c"
        [ "$status" -eq 0 ] || { echo "$output"; false; }
    done
    # and the biggest lesson's own Makefile links its server with it
    run make -C "$T/fresh/09_performance" CC=clang server
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    [ -x "$T/fresh/09_performance/server" ]
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
    run clang-format --dry-run -Werror [0-9][0-9]_*/*.[ch] tools/*.c fuzz/*.c tests/*.c
    [ "$status" -eq 0 ] || { echo "$output" | head -40; false; }
}

@test "cppcheck finds nothing in the C sources" {
    command -v cppcheck >/dev/null || skip "cppcheck is not installed"
    cd "$ROOT"
    for d in $(lesson_dirs) tools fuzz tests; do
        run cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
            --inline-suppr -D_GNU_SOURCE "$d"
        [ "$status" -eq 0 ] || { echo "$d: $output"; false; }
    done
}

@test "make test explains how to get bats when it is missing and cannot be installed" {
    mkdir "$T/bin"
    # every command but bats and npm (one ln for them all: thousands of
    # ln processes took half a minute; names already linked are skipped)
    ln -s /usr/bin/* "$T/bin/" 2>/dev/null || true
    ln -s /bin/* "$T/bin/" 2>/dev/null || true
    rm -f "$T/bin/bats" "$T/bin/npm" "$T/bin/npx"
    run env PATH="$T/bin" IGNORE_SYSTEM_BATS=1 BATS_INSTALL_DIR="$T/nobats" "$ROOT/tests/run_suites" --bin "$BIN_ROOT" 00_none
    [ "$status" -eq 1 ]
    [[ $output == *"sudo apt-get install bats"* ]]
    [[ $output == *"npm install --prefix .bats bats@"* ]]
    [ "${lines[-1]}" = "0 passed, 1 failed" ]
}

@test "make bench prints the ttcp table and the scaling table" {
    # the README's command, in a small configuration (the full one takes minutes)
    export SCALE_NS="10 100" SCALE_ROUNDS=300 SCALE_RUNS=3 TTCP_BYTES=4M SYSCALL_ROUNDS=300
    fresh_copy_built # make bench depends on make all; building is checked elsewhere
    # SERVER_BENCH=0: without the section on the finished server, which
    # tests/tools_bench_server.bats runs on its own (SERVER_BENCH=only)
    export SERVER_BENCH=0
    doc_cmd README.md 'make bench'
    [ "$status" -eq 0 ]
    grep -qE '^ *length +messages +seconds +MB/s$' <<<"$output"
    grep -qE '^ *stream +- +[0-9.]+ +[0-9.]+$' <<<"$output"
    grep -qE '^ +[0-9]+ +300 +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$T/fresh/build/bench/scaling.txt"
    if command -v strace >/dev/null; then # .ci/run installs it
        grep -qE '^lesson 4 \(lt\): [0-9]+\.[0-9]{2} system calls per echoed 16-byte message' <<<"$output"
    else
        grep -qF 'skipped: strace is not installed' <<<"$output"
    fi
    [ ! -e "$T/fresh/build/bench/server.txt" ]
}

@test "make clean removes what was built" {
    fresh_copy_built # every lesson and tool, as make all leaves them
    make -C "$T/fresh" lesson-1 >/dev/null
    [ -x "$T/fresh/01_socket_basics/server" ]
    [ -x "$T/fresh/07_shutdown/server" ]
    doc_cmd README.md 'make clean'
    [ "$status" -eq 0 ]
    [ ! -e "$T/fresh/.current-lesson" ]
    [ ! -e "$T/fresh/01_socket_basics/server" ]
    [ ! -e "$T/fresh/07_shutdown/server" ]
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

# ---- checks that can fail ----

# planted_checks FILE: a suite with each kind of check that cannot fail,
# next to the live forms of the same checks.
planted_checks() {
    # (written as AT_TEST: bats would turn an "@test" line here into a test of this file)
    sed 's/^AT_TEST /@test /' >"$1" <<'PLANTED'
AT_TEST "planted" {
    a=1 b=2
    [ "$a" -eq 2 ] && [ "$b" -eq 2 ]
    v=$(false) && [ "$v" -eq 2 ]
    ! grep -q . <<<"x"
    for i in 1 2; do
        [ "$i" -eq 2 ] && [ "$b" -eq 2 ]
    done
    [ "$a" -eq 1 ] || { [ "$b" -eq 2 ] && [ "$a" -eq 2 ]; }
    [ -z "$a" ] && return
    [ "$a" -gt 0 ] && count=$((count + 1))
    awk 'BEGIN { exit !(1 && 1) }'
    [[ $a == 1 && $b == 2 ]]
    live() {
        [ "$a" -eq 1 ] && [ "$b" -eq 2 ]
    }
    [ "$a" -eq 1 ] && [ "$b" -eq 2 ]
}
PLANTED
}

@test "a check before the last one in an && list, or a bare !, cannot fail a bats test (why the lint exists)" {
    planted_checks "$T/planted.bats"
    # the first check on lines 3, 4 and 7 (when i is 1) is false, and line 5's
    # grep succeeds, yet the test passes
    run "$BATS_ROOT/bin/bats" --tap "$T/planted.bats" # the bats running this suite
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = "ok 1 planted" ]
}

@test "the assertion lint flags each planted check that cannot fail, and nothing else" {
    planted_checks "$T/planted.bats"
    run "$ROOT/tests/lint_assertions" "$T/planted.bats"
    echo "$output"
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 4 ]
    [[ ${lines[0]} == "$T/planted.bats:3: && list of checks "*': [ "$a" -eq 2 ] && [ "$b" -eq 2 ]' ]]
    [[ ${lines[1]} == "$T/planted.bats:4: && list of checks "*': v=$(false) && [ "$v" -eq 2 ]' ]]
    [[ ${lines[2]} == "$T/planted.bats:5: bare ! mid-body checks nothing "*': ! grep -q . <<<"x"' ]]
    [[ ${lines[3]} == "$T/planted.bats:7: && list of checks "*': [ "$i" -eq 2 ] && [ "$b" -eq 2 ]' ]]
}

@test "every check in the test suites can fail: the assertion lint passes on tests/" {
    run "$ROOT/tests/lint_assertions" "$ROOT"/tests/*.bats "$ROOT/tests/helpers.bash"
    echo "$output"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
}

# ---- make mutants: the harness itself, on one real mutant and two planted ones ----

@test "run_mutants reports a real mutant killed, a no-op change SURVIVED and lines no longer in the file stale" {
    mkdir "$T/m"
    cp "$ROOT/tests/mutants/01_readn_loop" "$T/m/"
    cat >"$T/m/01_planted_noop" <<'MUTANT'
# planted: changes only a comment, so no test can notice
file: 01_socket_basics/net.c
suites: 01_socket_basics
filter: whatever recv returned
--- original
        if (got == 0) /* the peer closed: return what we have */
--- mutant
        if (got == 0) /* a comment that says something else */
MUTANT
    cat >"$T/m/01_planted_stale" <<'MUTANT'
# planted: lines that are in no file
file: 01_socket_basics/net.c
suites: 01_socket_basics
--- original
    this line was never written
--- mutant
MUTANT
    run env MUTANT_LOG_DIR="$T/logs" timeout 600 "$ROOT/tests/run_mutants" --jobs 2 --dir "$T/m"
    echo "$output"
    [ "$status" -eq 1 ]
    grep -qx '01_readn_loop: killed by readn .*' <<<"$output"
    grep -qx "01_planted_noop: SURVIVED (1 passed, 0 failed; output in $T/logs/01_planted_noop.log)" <<<"$output"
    grep -qx '01_planted_stale: stale (the original lines occur 0 times in 01_socket_basics/net.c, not once)' <<<"$output"
    [ "${lines[-1]}" = "3 mutants, 1 killed, 1 survived, 1 stale" ]
    grep -q '^ok 1 readn receiver prints each 5-byte message whole, whatever recv returned' "$T/logs/01_planted_noop.log"
    # the working tree is untouched
    grep -qxF '        if (got == 0) /* the peer closed: return what we have */' "$ROOT/01_socket_basics/net.c"
}

@test "every mutant in tests/mutants is well formed and applies: its original lines are in its file once (30 or more)" {
    run "$ROOT/tests/run_mutants" --check
    echo "$output"
    [ "$status" -eq 0 ]
    [[ ${lines[-1]} =~ ^([0-9]+)\ mutants,\ ([0-9]+)\ apply,\ 0\ stale,\ 0\ broken$ ]]
    [ "${BASH_REMATCH[1]}" -eq "${BASH_REMATCH[2]}" ]
    [ "${BASH_REMATCH[1]}" -ge 30 ]
}

# server_srcs DIR: the server's own C files, as DIR's Makefile lists them.
server_srcs() { sed -n 's/^SERVER_SRCS := //p' "$ROOT/$1/Makefile"; }

# The lessons whose server is split into files by concept.
SPLIT_SERVERS=(06_send_queue 07_shutdown 09_performance)

@test "the call-graph check finds a planted cycle between two files (why a clean result means something)" {
    mkdir -p "$T/cycle"
    printf 'void b(int n);\nvoid a(int n) { if (n > 0) b(n - 1); }\n' >"$T/cycle/a.c"
    printf 'void a(int n);\nvoid b(int n) { if (n > 0) a(n - 1); }\n' >"$T/cycle/b.c"
    printf 'void a(int n);\nint main(void) { a(3); return 0; }\n' >"$T/cycle/main.c"
    run "$ROOT/tests/call_graph" "$T/cycle" main.c a.c b.c
    echo "$output"
    [ "$status" -eq 1 ]
    [[ $output == *"main -> a"* ]]
    [[ $output == *"call cycle between files:"* ]]
}

@test "no call cycle between the server's files (lessons 6+): each file calls only files below it" {
    for d in "${SPLIT_SERVERS[@]}"; do
        echo "== $d"
        # shellcheck disable=SC2046 # one word per file
        run "$ROOT/tests/call_graph" "$ROOT/$d" $(server_srcs "$d")
        echo "$output"
        [ "$status" -eq 0 ]
        [[ $output == *"loop_epoll -> handlers"* ]] # the graph is really there
    done
}

@test "the shape check flags a planted 91-line function and a 500-line file" {
    { printf 'int f(int x,\n      int y)\n{\n'; for i in $(seq 86); do echo "    x += $i;"; done; printf '    return x + y;\n}\n'; } >"$T/long.c"
    seq 500 | sed 's|^|// |' >"$T/big.c"
    run "$ROOT/tests/code_shape" 450 80 "$T/long.c" "$T/big.c"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ $output == *"long.c:1: 91 lines (more than 80): int f(int x,"* ]]
    [[ $output == *"big.c: 500 lines (more than 450)"* ]]
}

@test "the server's files (lessons 6+): none over 450 lines, no function over 80" {
    for d in "${SPLIT_SERVERS[@]}"; do
        # shellcheck disable=SC2046
        run "$ROOT/tests/code_shape" 450 80 $(cd "$ROOT/$d" && printf "$ROOT/$d/%s " $(server_srcs "$d") *.h)
        echo "$output"
        [ "$status" -eq 0 ]
    done
}
