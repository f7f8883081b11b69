#!/usr/bin/env bats
# The classroom labs (tests/make_lab, tests/labs/): every lab's workspace
# builds, its grade fails naming every exercise, and with the reference code
# put back it passes; no file of a workspace shows an answer; a workspace
# works away from the repository; make labs, make grade LAB=, and the errors.

load helpers

export BATS_INSTALL_DIR=${BATS_INSTALL_DIR:-$ROOT/.bats} # where run_suites put bats, if it had to

# lab_dir N: tests/labs/NN.
lab_dir() { printf '%s/tests/labs/%02d' "$ROOT" "$1"; }

# exercises N: "ID TITLE" of each exercise of lab N, in order.
exercises() { "$ROOT/tests/make_lab" --list | sed -n "/^lab $1:/,/^lab /{s/^  \\($1\\.[0-9]*\\) \\(.*\\) -- graded by: .*/\\1 \\2/p}"; }

# norm: each line without the blanks and comment marks (/* * // */) around it.
norm() { sed 's/^[[:space:]]*//; s/[[:space:]]*\*\/[[:space:]]*$//; s/^\(\/\*\|\*\|\/\/\)[[:space:]]*//; s/[[:space:]]*$//'; }

# lesson_of N: the lesson directory of lab N.
lesson_of() { sed -n 's/^lesson: //p' "$(lab_dir "$1")/lab"; }

# prebuilt WS N stub|lesson: give workspace WS this checkout's builds of
# what it has unchanged, so that grading it compiles only what differs
# (make test built them from the same files with the same flags; building
# them again would take minutes and prove nothing new).
#   stub:   the tools, the probes, and the lesson's normal and TSan builds
#           made from the reference code: only the ASan build, the one the
#           tests run, is compiled from the stubs; a test that fails then
#           fails because of a stub. (Every build of a stubbed workspace is
#           compiled by the README test, for lab 8, and by make grade.)
#   lesson: after make_lab --restore, when the lesson's files are byte for
#           byte this checkout's: every build, and this checkout's file
#           times, so make sees nothing to rebuild.
prebuilt() {
    local ws=$1 lesson f
    lesson=$(lesson_of "$2")
    mkdir -p "$ws/build/asan/tools" "$ws/build/asan/tests" "$ws/build/tsan/$lesson"
    for f in "$ws"/tools/*.c; do
        f=$(basename "$f" .c)
        if [ -x "$ROOT/tools/$f" ]; then cp -p "$ROOT/tools/$f" "$ws/tools/$f"; fi
        if [ -x "$BIN_ROOT/tools/$f" ]; then cp -p "$BIN_ROOT/tools/$f" "$ws/build/asan/tools/$f"; fi
    done
    if [ -d "$BIN_ROOT/tests" ]; then cp -p "$BIN_ROOT"/tests/* "$ws/build/asan/tests/"; fi
    if [ "$3" = lesson ]; then
        for f in $(git -C "$ROOT" ls-files "$lesson"); do
            cmp -s "$ROOT/$f" "$ws/$f" || return 1
            touch -r "$ROOT/$f" "$ws/$f"
        done
        cp -pr "$BIN_ROOT/$lesson" "$ws/build/asan/"
    fi
    # normal and TSan builds: copied now, so newer than the sources (stub)
    for f in "$ROOT/$lesson"/*; do
        if [ -f "$f" ] && head -c 4 "$f" | grep -q ELF; then cp "$f" "$ws/$lesson/"; fi
    done
    if [ -d "$TSAN_ROOT/$lesson" ]; then cp "$TSAN_ROOT/$lesson"/* "$ws/build/tsan/$lesson/"; fi
    return 0
}

# grade_names_each WS N failed|passed: grade WS with the first test of each
# exercise (tests/grade --first); every exercise of lab N gets that word, and
# the status fits. (With the answers back, the exercises' other tests are the
# same files run on the same builds as the lesson's own suites, which make
# test runs; the README test runs a whole exercise in a workspace.)
grade_names_each() {
    local ws=$1 n=$2 want=$3 id title summary
    if [ "$want" = passed ]; then
        run make --no-print-directory -C "$ws" grade FIRST=1
    else
        # the stubs' "sanitizer" build without the sanitizers and without
        # optimisation: it compiles in a third of the time, and these tests
        # only have to fail (the README test grades a stubbed lab with them)
        run env SAN_FLAGS=-O0 "$ws/tests/grade" --first
    fi
    echo "$output" | grep -E '^(exercise |    |[0-9]+ of |[0-9]+ passed)'
    # the last line of grade's output (make adds its own when grade failed)
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' <<<"$output" | tail -n 1)
    if [ "$want" = passed ]; then
        [ "$status" -eq 0 ]
        [[ $summary =~ ^[1-9][0-9]*\ passed,\ 0\ failed$ ]]
        [ "${lines[-1]}" = "$summary" ]
    else
        [ "$status" -ne 0 ]
        [[ $summary =~ ^[0-9]+\ passed,\ [1-9][0-9]*\ failed$ ]]
        [ "${lines[-1]}" = "$summary" ]
    fi
    while read -r id title; do
        if [ "$want" = passed ]; then
            grep -qxE "exercise $id $(sed 's/[][\.*^$()|+?{}]/\\&/g' <<<"$title"): passed \(1 tests\)" <<<"$output"
        else
            grep -qxE "exercise $id $(sed 's/[][\.*^$()|+?{}]/\\&/g' <<<"$title"): failed \(1 of 1 tests\)" <<<"$output"
        fi
    done < <(exercises "$n")
}

# Every lab's workspace, written once for the suite (check_lab copies one).
setup_file() {
    "$ROOT/tests/make_lab" --all "$BATS_FILE_TMPDIR/labs" >/dev/null
}

# check_lab N: the whole round for lab N.
check_lab() {
    local n=$1 ws=$T/lab$1 count
    cp -a "$BATS_FILE_TMPDIR/labs/lab$n" "$ws"
    count=$(exercises "$n" | wc -l)
    [ "$count" -ge 2 ]
    [ "$count" -le 4 ]
    prebuilt "$ws" "$n" stub
    grade_names_each "$ws" "$n" failed
    grep -qx "$count of $count exercises failed" <<<"$output"
    "$ROOT/tests/make_lab" --restore "$ws"
    prebuilt "$ws" "$n" lesson
    grade_names_each "$ws" "$n" passed
}

@test "lab 1: the workspace builds, grade names every exercise failed; with the reference code back it passes" {
    check_lab 1
}

@test "lab 2: the workspace builds, grade names every exercise failed; with the reference code back it passes" {
    check_lab 2
}

@test "lab 3: the workspace builds, grade names every exercise failed; with the reference code back it passes" {
    check_lab 3
}

@test "lab 4: the workspace builds, grade names every exercise failed; with the reference code back it passes" {
    check_lab 4
}

@test "lab 5: the workspace builds, grade names every exercise failed; with the reference code back it passes" {
    check_lab 5
}

@test "lab 6: the workspace builds, grade names every exercise failed; with the reference code back it passes" {
    check_lab 6
}

@test "lab 7: the workspace builds, grade names every exercise failed; with the reference code back it passes" {
    check_lab 7
}

@test "lab 8: the workspace builds, grade names every exercise failed; with the reference code back it passes" {
    check_lab 8
}

@test "every exercise names its file, title, tests, hint, task and man pages, and its tests exist" {
    local n f suites re names
    for n in $("$ROOT/tests/make_lab" --list | sed -n 's/^lab \([0-9]*\):.*/\1/p'); do
        suites=$(sed -n 's/^suites: //p' "$(lab_dir "$n")/lab")
        names=$(for s in $suites; do sed -n 's/^@test "\(.*\)" {$/\1/p' "$ROOT/tests/$s"; done)
        for f in "$(lab_dir "$n")"/[0-9]*_*; do
            [[ $f == *.[0-9] ]] && continue
            for key in title file tests hint task man; do
                grep -q "^$key: ." "$f" || { echo "$f: no $key:"; return 1; }
            done
            re=$(sed -n 's/^tests: //p' "$f")
            grep -qE -- "$re" <<<"$names" || { echo "$f: no test of $suites matches $re"; return 1; }
        done
    done
}

# no_answer_in DIR N: no file under DIR (lab N's workspace) has a line that
# only lab N's reference regions have, each line compared without the blanks
# and comment marks around it (the same rule as make_lab's own check).
no_answer_in() {
    local dir=$1 n=$2 f answers=$T/answers$2
    for f in "$(lab_dir "$n")"/[0-9]*_*; do
        awk '/^--- [a-z]+$/ { on = ($0 == "--- original"); next } on' "$f"
    done | norm | grep -v '^$' | sort -u >"$answers.all"
    find "$dir/$(lesson_of "$n")" "$dir/tools" -type f -exec cat {} + |
        norm | sort -u | comm -23 "$answers.all" - >"$answers"
    [ -s "$answers" ]
    run bash -c "find '$dir' -type f ! -path '*/build/*' -exec grep -Ih '' {} + | $(declare -f norm); norm | grep -xFf '$answers'"
    [ "$status" -eq 1 ]
}

@test "a hint that would show a line of the answer is refused" {
    # a task line that is a line of the region
    mkdir -p "$T/specs"
    cp -r "$(lab_dir 8)" "$T/specs/08"
    sed -i 's/^task: Return the round trip.*/task: return (t4_ns - r->t1_ns) - (r->t3_ns - r->t2_ns);/' "$T/specs/08/2_formulas"
    run env LAB_SPECS="$T/specs" "$ROOT/tests/make_lab" 8 "$T/leaky"
    [ "$status" -eq 2 ]
    [[ $output == *"08_udp_roundtrip/probe.c has a line of a reference region: "* ]]
    [ "${lines[-1]}" = "make_lab: lab 8: the workspace would give answers away (see above)" ]
}

@test "the lesson text in a workspace has its code blocks that show an answer replaced by a pointer" {
    mkdir -p "$T/specs/08"
    cp "$(lab_dir 8)"/* "$T/specs/08/"
    # plant the answer in a code block of the text, as a lesson would show it
    mkdir "$T/repo" # a copy without git: make_lab takes every file but the compiled programs
    cp -r "$ROOT"/{tests,lessons,tools,08_udp_roundtrip,run} "$T/repo/"
    printf '\n```c\n    return (t4_ns - r->t1_ns) - (r->t3_ns - r->t2_ns);\n```\n' >>"$T/repo/lessons/08_udp_roundtrip.md"
    run env LAB_SPECS="$T/specs" "$T/repo/tests/make_lab" 8 "$T/ws"
    [ "$status" -eq 0 ]
    run tail -n 3 "$T/ws/lessons/08_udp_roundtrip.md"
    [ "${lines[0]}" = '```c' ]
    [ "${lines[1]}" = "(This code is part of lab 8's exercises: you write it. Build and grade it with make grade.)" ]
    [ "${lines[2]}" = '```' ]
}

@test "a workspace that does not build: grade says so, every exercise failed, 0 passed, 1 failed" {
    "$ROOT/tests/make_lab" 8 "$T/ws"
    echo 'this is not C' >>"$T/ws/08_udp_roundtrip/probe.c"
    run make --no-print-directory -C "$T/ws" grade
    [ "$status" -ne 0 ]
    grep -qx 'The workspace does not build: the compiler.s messages are above. Every exercise counts as failed.' <<<"$output"
    grep -qx 'exercise 8.1 receive one datagram and its real size: failed (does not build)' <<<"$output"
    grep -qx 'exercise 8.3 take only the reply to the current probe: failed (does not build)' <<<"$output"
    [ "${lines[-2]}" = "0 passed, 1 failed" ]
    [[ ${lines[-1]} =~ ^make(\[[0-9]+\])?:\ \*\*\*\ \[Makefile:[0-9]+:\ grade\]\ Error\ 1$ ]]
}

@test "make lab-N says where the lab is; make lab-N, make labs and make grade refuse what they cannot do in one line, with status 2" {
    run make --no-print-directory -C "$ROOT" lab-8 DEST="$T/ok"
    [ "$status" -eq 0 ]
    [ "${lines[-1]}" = "lab 8 is in $T/ok: cd $T/ok && make && make grade" ]
    run make --no-print-directory -C "$ROOT" lab-1
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "make_lab: usage: make lab-N DEST=DIR" ]
    run make --no-print-directory -C "$ROOT" lab-42 DEST="$T/x"
    [ "$status" -eq 2 ]
    [[ ${lines[0]} =~ ^make_lab:\ no\ lab\ 42\ \(labs:\ 1\ [0-9\ ]*8\)$ ]]
    [ ! -e "$T/x" ]
    mkdir "$T/full"
    touch "$T/full/notes.txt"
    run make --no-print-directory -C "$ROOT" lab-1 DEST="$T/full"
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "make_lab: $T/full is not empty: give a new directory (DEST=...)" ]
    run make --no-print-directory -C "$ROOT" grade LAB="$T/full"
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "make_lab: $T/full is not a lab workspace (no .lab file): make grade LAB=DIR wants one made by make lab-N" ]
    run make --no-print-directory -C "$ROOT" labs
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "make_lab: usage: make labs DEST=DIR" ]
}

# shown_block MD 'COMMAND': the lines a text prints under "$ COMMAND", up to the end of its block.
shown_block() {
    DOC_BLOCK_CMD="\$ $2" awk 'found && /^```/ { exit } found { print } $0 == ENVIRON["DOC_BLOCK_CMD"] { found = 1 }' \
        "$(doc_path "$1")"
}

@test "lessons/README.md's lab commands work as printed; no workspace has an answer or a path of the repository; make grade LAB= ignores the student's tests; one moved away still grades" {
    local md=lessons/README.md n
    doc_cmd lessons/README.md 'make labs DEST=../labs'
    [ "$status" -eq 0 ]
    for n in 1 2 3 4 5 6 7 8; do
        [ "$(cat "$T/labs/lab$n/.lab")" = "$n" ]
        no_answer_in "$T/labs/lab$n" "$n"
    done
    run grep -rlF -e "$T/fresh" -e "$ROOT" "$T/labs"
    [ "$status" -eq 1 ]
    # built from nothing, outside the repository (../labs of the fresh copy)
    doc_cmd lessons/README.md 'make -C ../labs/lab8 grade EX=8.1'
    [ "$status" -ne 0 ]
    lines_match_with_gaps "$(shown_block $md 'make -C ../labs/lab8 grade EX=8.1')" "$output"
    [ -x "$T/labs/lab8/08_udp_roundtrip/server" ]
    # The student replaces the suite by one that passes, its tests named to
    # match the exercises (one skips: a skipped test checks nothing, so it
    # grades nothing): the workspace's own grade passes what it can...
    cat >"$T/labs/lab8/tests/08_udp_roundtrip.bats" <<'EOF'
AT_TEST "a 32-byte datagram without the magic is ignored, and so is an oversized one, by its real size" { skip "planted"; }
AT_TEST "every round trip is positive" { true; }
AT_TEST "a reply that comes after its probe timed out is recognised as late, not taken" { true; }
EOF
    sed -i 's/^AT_TEST /@test /' "$T/labs/lab8/tests/08_udp_roundtrip.bats"
    run make --no-print-directory -C "$T/labs/lab8" grade QUICK=1
    [ "$status" -ne 0 ]
    grep -qxF 'exercise 8.1 receive one datagram and its real size: failed (none of its tests ran; 1 skipped here, see above: "oversized one, by its real size|wrong-size datagram is logged")' <<<"$output"
    grep -qx 'exercise 8.2 round trip and clock offset from T1, T2, T3, T4: passed (1 tests)' <<<"$output"
    grep -qx 'exercise 8.3 take only the reply to the current probe: passed (1 tests)' <<<"$output"
    # ...and make grade LAB= takes only its .c and .h files, with the repository's tests
    doc_cmd lessons/README.md 'make grade LAB=../labs/lab8 EX=8.1'
    [ "$status" -ne 0 ]
    lines_match_with_gaps "$(shown_block $md 'make grade LAB=../labs/lab8 EX=8.1')" "$output"
    [ "${lines[0]}" = "grading ../labs/lab8/08_udp_roundtrip (its .c and .h files) with this repository's lab 8 tests" ]
    # moved elsewhere, its suite and the reference code put back: it grades, and passes
    cp "$ROOT/tests/08_udp_roundtrip.bats" "$T/labs/lab8/tests/"
    mkdir "$T/elsewhere"
    mv "$T/labs/lab8" "$T/elsewhere/student"
    "$ROOT/tests/make_lab" --restore "$T/elsewhere/student"
    run make --no-print-directory -C "$T/elsewhere/student" grade EX=8.1
    [ "$status" -eq 0 ]
    grep -qx 'exercise 8.1 receive one datagram and its real size: passed (2 tests)' <<<"$output"
    [ "${lines[-1]}" = "2 passed, 0 failed" ]
    doc_cmd lessons/README.md 'tests/make_lab --list'
    [ "$status" -eq 0 ]
    [ "$output" = "$(shown_block $md 'tests/make_lab --list')" ]
    every_doc_cmd_is_tested $md
}
