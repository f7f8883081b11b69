# helpers.bash -- what every suite loads: start programs on --port 0, wait
# with a bound, stop by PID, clean up, and fail on any sanitizer report.
#
#   start_server NAME CMD...   start CMD, wait for "listening on HOST:PORT";
#                              sets PORT and PID; output in $T/NAME.out/.err
#   start_bg NAME CMD...       start CMD in the background; sets PID
#   wait_exit PID SECONDS      wait for it; returns its status (124: still running)
#   wait_until SECONDS CMD...  retry CMD every 50 ms until it succeeds
#   wait_alive PID SECONDS CMD...  the same, but give up at once when PID exits
#   stop_pid PID               SIGTERM, then SIGKILL after 5 s
#   doc_cmd MD 'COMMAND'       run a command exactly as a lesson text prints it
#   echo_on FD TEXT, at_eof FD talk over connections opened with /dev/tcp
# Every program started here is stopped in teardown, and its output printed
# (bats shows it only when the test failed).

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
BIN_ROOT=${BIN_ROOT:-$ROOT/build/asan} # make test points this at the sanitizer build
TSAN_ROOT=${TSAN_ROOT:-$ROOT/build/tsan} # the ThreadSanitizer build (lessons with threads)

common_setup() {
    T=$BATS_TEST_TMPDIR
    mkdir -p "$T/san"
    STARTED=()
    # Sanitizer reports go to files, one per process; teardown fails the
    # test if any appear (a report from a background server would otherwise
    # go unnoticed).
    export ASAN_OPTIONS="log_path=$T/san/asan:detect_leaks=1:abort_on_error=0:exitcode=66"
    export UBSAN_OPTIONS="log_path=$T/san/ubsan:print_stacktrace=1:halt_on_error=1:exitcode=66"
    export LSAN_OPTIONS="log_path=$T/san/lsan"
}

common_teardown() {
    local pid f rc=0
    for pid in "${STARTED[@]}"; do
        stop_pid "$pid"
    done
    for f in "$T"/*.out "$T"/*.err; do
        [ -s "$f" ] || continue
        echo "----- ${f##*/} (last 40 lines)"
        tail -n 40 "$f"
    done
    for f in "$T"/san/*; do
        [ -e "$f" ] || continue
        echo "----- sanitizer report ${f##*/}"
        cat "$f"
        rc=1
    done
    return $rc
}

setup() { common_setup; }
teardown() { common_teardown; }

# bin LESSON_DIR PROGRAM: path of a program in the build under test.
bin() { echo "$BIN_ROOT/$1/$2"; }

start_bg() {
    local name=$1
    shift
    # An explicit <&0: without it bash gives background jobs /dev/null as
    # stdin. 5>&-: the program must not hold open_input's fifo open.
    "$@" <&0 5>&- >"$T/$name.out" 2>"$T/$name.err" &
    PID=$!
    STARTED+=("$PID")
}

start_server() {
    local name=$1 line
    start_bg "$@"
    for _ in $(seq 200); do # 10 s
        line=$(grep -m1 '^listening on ' "$T/$name.out" 2>/dev/null) || true
        if [ -n "$line" ]; then
            PORT=${line##*:}
            return 0
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "$name did not print 'listening on' within 10 s" >&2
    cat "$T/$name.out" "$T/$name.err" >&2
    return 1
}

# open_input NAME: make the fifo $T/NAME.in and hold it open on fd 5, so a
# program started with `start_bg ... <"$T/NAME.in"` reads what the test
# writes to fd 5 and sees end of input when the test runs `exec 5>&-`.
open_input() {
    mkfifo "$T/$1.in"
    exec 5<>"$T/$1.in" # read-write: does not block waiting for a reader
}

wait_exit() {
    local pid=$1 ticks=$(($2 * 20))
    for _ in $(seq "$ticks"); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            return
        fi
        sleep 0.05
    done
    return 124
}

wait_until() {
    local ticks=$(($1 * 20))
    shift
    for _ in $(seq "$ticks"); do
        "$@" && return 0
        sleep 0.05
    done
    return 1
}

# wait_alive PID SECONDS CMD...: wait_until, for what only PID can bring
# about: when PID has exited, CMD gets one last try and the wait ends.
wait_alive() {
    local pid=$1 ticks=$(($2 * 20))
    shift 2
    for _ in $(seq "$ticks"); do
        "$@" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            "$@" && return 0
            echo "process $pid exited; gave up waiting for: $*" >&2
            return 1
        fi
        sleep 0.05
    done
    return 1
}

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    wait_exit "$pid" 5 >/dev/null 2>&1 && return 0
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# echo_on FD TEXT: send a line on a connection the test opened with
# exec {fd}<>/dev/tcp/127.0.0.1/$PORT and check the echo (2 s bound).
echo_on() {
    local got
    printf '%s\n' "$2" >&"$1"
    read -r -t 2 -u "$1" got
    [ "$got" = "$2" ]
}

# at_eof FD: the server closed this connection: read sees end of file
# within 2 s (not a timeout, not data).
at_eof() {
    local got rc=0
    read -r -t 2 -u "$1" got || rc=$?
    [ "$rc" -eq 1 ] && [ -z "$got" ]
}

# cpu_ms PID: user + system CPU time the process has used so far, in ms.
cpu_ms() {
    awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"
}

# doc_cmd LESSON_MD 'COMMAND': the command must appear in lessons/LESSON_MD
# as a "$ COMMAND" line; run it from the repository root, against the build
# under test, with a 60 s bound. Sets $status and $output like `run`.
# A make command runs in a fresh copy; for "make ... && REST", DOC_SECONDS is
# how long REST (the demo, without the build) took, in whole seconds rounded up.
doc_cmd() {
    local md cmd=$2 lesson
    md=$(doc_path "$1")
    if ! printed_in "$1" "$cmd"; then
        echo "'$cmd' is not printed in $md" >&2
        return 1
    fi
    lesson=$(basename "$md" .md)
    if [[ $cmd == make* ]]; then
        # make commands change the checkout (.current-lesson, binaries):
        # run them where a student would, in a fresh copy of the repository
        # (made now unless the test made one already).
        [ -d "$T/fresh" ] || fresh_copy
        local timed=$cmd mark='doc_cmd: seconds after the build:'
        [[ $cmd == *" && "* ]] && timed="${cmd%% && *} && time ${cmd#* && }"
        # A student types it in a shell, not inside make: without the outer
        # make's variables (under `make test`, MAKELEVEL would make the
        # lesson's make print "Entering directory" lines the text has not).
        run env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS TIMEFORMAT="$mark %R" \
            timeout 120 bash -c "cd '$T/fresh' && $timed"
        DOC_SECONDS=$(sed -n "s/^$mark \([0-9.]*\)$/\1/p" <<<"$output" | awk '{ s = int($1); if (s < $1) s++; print s }')
        output=$(grep -v "^$mark " <<<"$output" || true)
        lines=()
        [ -z "$output" ] || mapfile -t lines <<<"$output"
        return
    fi
    run env LESSON="$lesson" BIN_DIR="$BIN_ROOT/$lesson" TOOLS_BIN_DIR="$BIN_ROOT/tools" \
        timeout 60 bash -c "cd '$ROOT' && $cmd"
}

# doc_cmd_std_fds MD 'COMMAND': doc_cmd for a command that does not build,
# run as a student's shell runs it: with only fds 0 to 2 open (bats holds
# more, which the programs would inherit, and the fd numbers they print
# would differ from the text's).
doc_cmd_std_fds() {
    local lesson
    if ! printed_in "$1" "$2"; then
        echo "'$2' is not printed in $(doc_path "$1")" >&2
        return 1
    fi
    lesson=$(basename "$(doc_path "$1")" .md)
    run env LESSON="$lesson" BIN_DIR="$BIN_ROOT/$lesson" TOOLS_BIN_DIR="$BIN_ROOT/tools" timeout 60 bash -c \
        'for f in /proc/self/fd/*; do n=${f##*/}; [ "$n" -le 2 ] || eval "exec $n>&-"; done; cd "$0" && eval "$1"' \
        "$ROOT" "$2"
}

# doc_cmd_shared MD 'COMMAND': doc_cmd_std_fds, run once per suite file: the
# first test that asks runs it, the others check the same run's status and
# output (for a demo whose one output several tests read, each for its own
# claim). Only for commands that depend on nothing a test sets up.
doc_cmd_shared() {
    local saved
    saved=$BATS_FILE_TMPDIR/doc_cmd.$(printf '%s\n%s' "$1" "$2" | cksum | tr ' ' _)
    if [ ! -f "$saved.status" ]; then
        doc_cmd_std_fds "$1" "$2" || return 1
        printf '%s' "$output" >"$saved.output"
        echo "$status" >"$saved.status"
    fi
    status=$(cat "$saved.status")
    output=$(cat "$saved.output")
    lines=()
    [ -z "$output" ] || mapfile -t lines <<<"$output"
}

# build_transcript_is MD 'COMMAND': the build lines a text prints under
# "$ COMMAND", up to its "lesson N (...) is built" line, are exactly the
# first lines of $output (from doc_cmd of that command), trailing blanks
# aside. A "[...]" line in the text stands for one or more lines left out.
build_transcript_is() {
    local shown real
    shown=$(DOC_BLOCK_CMD="\$ $2" awk '
        found { sub(/ +$/, ""); print }
        found && /^lesson [0-9]+ \(.*\) is built/ { exit }
        $0 == ENVIRON["DOC_BLOCK_CMD"] { found = 1 }' "$(doc_path "$1")")
    real=$(sed 's/ *$//' <<<"$output" | awk '{ print } /^lesson [0-9]+ \(.*\) is built/ { exit }')
    if ! lines_match_with_gaps "$shown" "$real"; then
        diff <(echo "$shown") <(echo "$real") || true
        return 1
    fi
}

# demo_streams_are MD 'COMMAND' LABEL...: the transcript a text prints under
# "$ COMMAND" (up to the closing ```) and $output (from doc_cmd of that
# command) agree stream by stream: within each "== " section of the demo,
# the lines each LABEL printed ("  [LABEL] ...", or "-" for the demo's own
# unlabelled lines: titles and notes) are the same lines in the same order.
# Streams are compared apart, not interleaved: the demo follows each
# program's output every 50 ms, so their lines may interleave differently
# from run to run (the texts say so). Ports, times in ms, blank lines,
# trailing blanks and the titles' bold escapes are normalised away (tests
# of their own check the times that matter).
demo_streams_are() {
    local md=$1 cmd=$2 label shown rc=0
    shift 2
    shown=$(DOC_BLOCK_CMD="\$ $cmd" awk 'found && /^```/ { exit } found { print }
        $0 == ENVIRON["DOC_BLOCK_CMD"] { found = 1 }' "$(doc_path "$md")")
    for label in "$@"; do
        if [ "$(demo_stream "$label" <<<"$shown")" != "$(demo_stream "$label" <<<"$output")" ]; then
            echo "stream [$label] differs (< the text, > the run):"
            diff <(demo_stream "$label" <<<"$shown") <(demo_stream "$label" <<<"$output") || true
            rc=1
        fi
    done
    return $rc
}

# demo_stream LABEL: (for demo_streams_are) the lines of a demo transcript
# on stdin that LABEL printed, each prefixed with its section number.
demo_stream() {
    sed -E 's/\x1b\[[0-9;]*m//g; s/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g; s/[0-9]+(\.[0-9]+)? ms/T ms/g; s/ +$//' |
        DEMO_LABEL=$1 awk '/^== / { section++ }
            /^$/ { next }
            {
                label = "-"
                if (match($0, /^  \[[^]]+\] /)) label = substr($0, 4, RLENGTH - 5)
                if (label == ENVIRON["DEMO_LABEL"]) print section "\t" $0
            }'
}

# lines_match_with_gaps SHOWN REAL: the lines of REAL are those of SHOWN,
# where each "[...]" line of SHOWN stands for one or more lines of REAL.
lines_match_with_gaps() {
    local -a want have
    local i=0 at=0 seg_start j k gap=0
    mapfile -t want <<<"$1"
    mapfile -t have <<<"$2"
    while [ "$i" -lt "${#want[@]}" ]; do
        if [ "${want[$i]}" = '[...]' ]; then
            gap=1
            i=$((i + 1))
            continue
        fi
        # the segment of SHOWN up to the next gap: want[i .. k-1]
        k=$i
        while [ "$k" -lt "${#want[@]}" ] && [ "${want[$k]}" != '[...]' ]; do k=$((k + 1)); done
        # after a gap, the first place (at least one line on) where it fits;
        # the last segment must end where REAL ends
        seg_start=$((at + gap))
        while :; do
            if [ "$k" -eq "${#want[@]}" ] && [ "$gap" -eq 1 ]; then
                seg_start=$((${#have[@]} - (k - i)))
                [ "$seg_start" -ge $((at + 1)) ] || return 1
            fi
            for ((j = 0; j < k - i; j++)); do
                [ "${have[$((seg_start + j))]-}" = "${want[$((i + j))]}" ] || break
            done
            [ "$j" -eq $((k - i)) ] && break
            [ "$gap" -eq 1 ] && [ "$k" -lt "${#want[@]}" ] || return 1
            seg_start=$((seg_start + 1))
            [ "$seg_start" -lt "${#have[@]}" ] || return 1
        done
        at=$((seg_start + k - i))
        i=$k
        gap=0
    done
    # a gap at the end stands for at least one line; without one, REAL ends here
    if [ "$gap" -eq 1 ]; then
        [ "$at" -lt "${#have[@]}" ]
    else
        [ "$at" -eq "${#have[@]}" ]
    fi
}

# fresh_copy: the repository's files (tracked, plus new files not ignored),
# without build products, in $T/fresh.
fresh_copy() {
    rm -rf "$T/fresh" && mkdir -p "$T/fresh" || return 1
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
        xargs -0 cp --parents -t "$T/fresh/" -- 2>/dev/null)
    [ -f "$T/fresh/Makefile" ]
}

# fresh_copy_built [tools]: fresh_copy, then this checkout's compiled
# programs (the make all that make test ran first, from these same files)
# put in, newer than the sources: for a test about what a make target runs
# rather than how it builds (make bench), so that its make finds nothing to
# compile. With "tools", only the tools' programs: a lesson's build
# transcript then shows its own cc lines, without the tools' before them.
fresh_copy_built() {
    local f where=("$ROOT"/[0-9][0-9]_*/* "$ROOT"/tools/*)
    [ "${1:-}" != tools ] || where=("$ROOT"/tools/*)
    fresh_copy || return 1
    for f in "${where[@]}"; do
        if [ -f "$f" ] && [ -x "$f" ] && head -c 4 "$f" | grep -q ELF; then
            cp "$f" "$T/fresh/${f#"$ROOT"/}"
        fi
    done
}

# printed_in NAME.md 'COMMAND': the text prints "$ COMMAND". For commands that
# run until stopped (servers, the proxy): a test starts them in the background
# instead of through doc_cmd, and checks with this that the text shows them.
printed_in() {
    grep -qxF -- "\$ $2" "$(doc_path "$1")"
}

# doc_path NAME.md: lessons/NAME.md, or NAME.md at the top (README.md).
doc_path() {
    if [ "$1" != README.md ] && [ -f "$ROOT/lessons/$1" ]; then echo "$ROOT/lessons/$1"; else echo "$ROOT/$1"; fi
}

# doc_commands NAME.md: every "$ command" line of a text.
doc_commands() {
    sed -n 's/^\$ //p' "$(doc_path "$1")"
}

# Assert that every command a lesson text prints is run by some test
# (appears as the argument of a doc_cmd call in a suite).
every_doc_cmd_is_tested() {
    local missing=0 cmd
    while IFS= read -r cmd; do
        if ! grep -qF -e "doc_cmd $1 '$cmd'" -e "doc_cmd_std_fds $1 '$cmd'" -e "doc_cmd_shared $1 '$cmd'" \
            "$ROOT"/tests/*.bats; then
            echo "not run by any test: \$ $cmd"
            missing=1
        fi
    done < <(doc_commands "$1")
    [ "$missing" -eq 0 ]
}

# ---- checks and small readers shared by the suites ----

# fin_and_line_waiting: (for wait_until) lesson 3's Ctrl-Z experiment, the
# server's side seen by ss on $PORT: one peer's FIN has arrived (CLOSE-WAIT)
# and another's 5 bytes wait unread (Recv-Q 5).
fin_and_line_waiting() {
    ss -tnH "( sport = :$PORT )" |
        awk '$1 == "CLOSE-WAIT" { fin = 1 } $1 == "ESTAB" && $2 == 5 { line = 1 }
             END { exit !(fin && line) }'
}

# refute CMD...: fail if CMD succeeds. Use it (or `run ! CMD`) instead of a
# bare `! CMD`, which checks nothing mid-test: bash's errexit ignores a
# negated command. Unlike `run`, it leaves $output and $status alone.
refute() {
    if "$@"; then
        echo "expected to fail, but succeeded: $*" >&2
        return 1
    fi
}

# clients_vanish N CLIENT: in the background, N clients of CLIENT (a lesson
# client) start pipelining to $PORT and are killed (SIGKILL) 10*i ms in,
# mid-stream, while the test's other clients run: their resets must harm no one.
clients_vanish() {
    local n=$1 client=$2 i
    for i in $(seq "$n"); do
        (
            "$client" --port "$PORT" --repeat 5000 --quiet "vanishing $i" >/dev/null 2>&1 &
            v=$!
            sleep "0.0$i"
            kill -KILL "$v"
            wait "$v"
        ) 2>/dev/null &
    done
}

# client ARGS...: the lesson's client ($L), bounded to 120 s.
client() { timeout 120 "$(bin "$L" client)" "$@"; }

# open_fds PID: how many descriptors the process holds.
open_fds() { ls "/proc/$1/fd" | wc -l; }

# fds_back_to PID N: the process holds N descriptors (for wait_until).
fds_back_to() { [ "$(open_fds "$1")" -eq "$2" ]; }

# rss_kb PID: the process's resident memory in KiB.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# stats PID [NAME]: ask a lesson-7 server for its counters (SIGUSR1) and
# print the new "stats on SIGUSR1" line it writes to $T/NAME.out (NAME:
# server). Fails if no new line comes within 10 s, or at once if PID has exited.
stats() {
    local out="$T/${2:-server}.out" before
    before=$(grep -c '^stats on SIGUSR1' "$out") || true # grep -c: status 1 on 0
    kill -USR1 "$1"
    if ! wait_alive "$1" 10 bash -c "[ \$(grep -c '^stats on SIGUSR1' '$out') -gt $before ]"; then
        echo "no stats line from $1 after SIGUSR1" >&2
        return 1
    fi
    grep '^stats on SIGUSR1' "$out" | tail -n 1
}

# counter NAME LINE: one counter of a server's stats line (fails if absent).
counter() {
    local re="(^| )$1=([0-9]+)( |$)"
    [[ $2 =~ $re ]] || return 1
    echo "${BASH_REMATCH[2]}"
}

# field NAME [TEXT]: one value of the "result key=value ..." line a tool
# printed (loadgen, sink) in TEXT (default: $output); fails if absent.
field() {
    local line re="(^| )$1=([^ ]+)( |$)"
    line=$(grep -m1 '^result ' <<<"${2-$output}") || return 1
    [[ $line =~ $re ]] || return 1
    echo "${BASH_REMATCH[2]}"
}

# fds_at_most PID N: the process holds N descriptors or fewer (for wait_until).
fds_at_most() { [ "$(open_fds "$1")" -le "$2" ]; }

# server_read_all PORT N: N connections are established to PORT on the
# loopback, and the server has read everything they sent (Recv-Q 0 on its side).
server_read_all() {
    local rows
    rows=$(ss -tnH state established "( sport = :$1 )" | awk '{ n++; q += $1 } END { print n + 0, q + 0 }')
    [ "$rows" = "$2 0" ]
}

# start_traced NAME STRACE_OPTION... -- CMD...: start_server NAME with CMD
# started by strace (not attached to: ptrace may be restricted). Sets PORT,
# PID (strace's) and TRACED_PID (CMD's own, written by the shell in between
# before it becomes CMD). strace holds SIGTERM while it traces, so teardown
# stops CMD first; stopping only strace would leave CMD running.
# LeakSanitizer cannot run under ptrace: the test runs without leak checks.
start_traced() {
    local name=$1 opts=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    shift
    export ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}"
    start_server "$name" strace "${opts[@]}" bash -c 'echo $$ >"$0" && exec "$@"' "$T/$name.pid" "$@" ||
        return 1
    TRACED_PID=$(cat "$T/$name.pid")
    STARTED=("$TRACED_PID" "${STARTED[@]}")
}

# counter_is NAME N: the lesson-7 server $SERVER's counter NAME is exactly N
# now (asked with SIGUSR1; for wait_until).
counter_is() {
    local v
    v=$(counter "$1" "$(stats "$SERVER")") && [ "$v" -eq "$2" ]
}

# counter_ge NAME N: the server $SERVER's counter NAME is at least N now.
counter_ge() {
    local v
    v=$(counter "$1" "$(stats "$SERVER")") && [ "$v" -ge "$2" ]
}

# stop_while_paused REPEAT BODY_BYTES: the graceful stop's central promise.
# A lesson-7 server ($L, 4 KiB send buffer, high-water 100 kB) and a client
# that pipelines REPEAT requests and reads nothing for 3 s: reading pauses
# with whole frames in the input buffer, then SIGTERM. Every whole request
# the server read must be answered. Sets REPLIES and LINE (stats at exit).
stop_while_paused() {
    local repeat=$1 body=$2 rc=0 re
    start_server server "$(bin $L server)" --port 0 --sndbuf 4096 --high-water 100000 \
        --low-water 20000 --stale-ms 30000 --stop-timeout-ms 30000
    local server=$PID
    start_bg client "$(bin $L client)" --port "$PORT" --quiet --repeat "$repeat" \
        --body-bytes "$body" --pause-ms 3000
    local client=$PID
    wait_until 10 grep -q 'reading paused' "$T/server.err"
    kill -TERM "$server"
    wait_exit "$client" 60 || rc=$?
    [ "$rc" -eq 1 ] # fewer replies than requests: the stop read no more of them
    re="^client: server closed the connection after ([0-9]+) of $repeat replies\$"
    [[ $(tail -n 1 "$T/client.err") =~ $re ]]
    REPLIES=${BASH_REMATCH[1]}
    wait_exit "$server" 10
    LINE=$(grep '^stats at exit' "$T/server.out")
    echo "$LINE"
    [ "$(counter msgs_unanswered "$LINE")" -eq 0 ] # no whole request thrown away
    [ "$(counter msgs_in "$LINE")" -eq "$REPLIES" ]
    [ "$(counter msgs_sent "$LINE")" -eq "$REPLIES" ]
    # every byte received was a request that got its reply, or is counted as
    # unanswered (the unfinished tail, and what the lingering connection discarded)
    [ $((REPLIES * (body + 25) + $(counter bytes_unanswered "$LINE"))) -eq "$(counter bytes_in "$LINE")" ]
}

# counters_exact LINE CONNS MESSAGES BODY_BYTES: a lesson-7 server's stats
# LINE after CONNS clients sent MESSAGES protocol messages (BODY_BYTES of
# bodies in all), got every reply and closed: nothing dropped, pending or
# unanswered, and every byte counted (one 25-byte header per message, each way).
counters_exact() {
    local line=$1 conns=$2 msgs=$3 bytes=$4
    [ "$(counter accepted "$line")" -eq "$conns" ]
    [ "$(counter closed_peer "$line")" -eq "$conns" ]
    [ "$(counter msgs_in "$line")" -eq "$msgs" ]
    [ "$(counter msgs_queued "$line")" -eq "$msgs" ]
    [ "$(counter msgs_sent "$line")" -eq "$msgs" ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
    [ "$(counter msgs_pending "$line")" -eq 0 ]
    [ "$(counter msgs_unanswered "$line")" -eq 0 ]
    [ "$(counter bytes_in "$line")" -eq $((bytes + msgs * 25)) ]
    [ "$(counter bytes_out "$line")" -eq $((bytes + msgs * 25)) ]
}

# valgrind_clean LOG: valgrind's memcheck LOG reports no error and no leak
# (all heap blocks freed, or nothing lost of any kind).
valgrind_clean() {
    grep -q 'ERROR SUMMARY: 0 errors' "$1"
    grep -q 'All heap blocks were freed' "$1" ||
        { grep -q 'definitely lost: 0 bytes' "$1" &&
            grep -q 'indirectly lost: 0 bytes' "$1" &&
            grep -q 'possibly lost: 0 bytes' "$1"; }
}

# loadgen_ok MESSAGES: the loadgen just `run` exited 0 after MESSAGES
# messages, every reply checked: no error, no mismatch.
loadgen_ok() {
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(field messages "$output")" -eq "$1" ]
    [ "$(field errors "$output")" -eq 0 ]
    [ "$(field mismatches "$output")" -eq 0 ]
}

# refused_after_sending LESSON OPTION: (lessons 3 and 4; OPTION picks the
# loop) a client whose bytes are already in the server's receive buffer
# when the server refuses it (accepts and closes) gets a reset, not the end
# of the stream. The server is stopped while the
# client connects and sends, so its bytes are surely there before accept.
refused_after_sending() {
    start_server server "$(bin "$1" server)" "$2" --port 0 --max-conns 1
    local server=$PID
    exec {first}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$first" "the one kept"
    kill -STOP "$server"
    wait_until 5 grep -qE '^State:[[:space:]]+T' "/proc/$server/status"
    start_bg late timeout 20 "$(bin "$1" client)" --port "$PORT" <<<"hello"
    local late=$PID
    # the client's 6 bytes wait, unread, in the queued connection (its FIN
    # too, once its input ended: Recv-Q 6 or 7)
    wait_until 10 bash -c "ss -tnH '( sport = :$PORT )' | awk '\$2 >= 6 { f = 1 } END { exit !f }'"
    kill -CONT "$server"
    local rc=0
    wait_exit "$late" 10 || rc=$?
    [ "$rc" -eq 1 ]
    grep -qx 'client: recv: Connection reset by peer' "$T/late.err"
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: refused: --max-conns reached$' "$T/server.err"
    echo_on "$first" "still served"
}

# need_strace: skip the test, saying why, unless strace can trace here.
need_strace() {
    if ! strace -o /dev/null true 2>/dev/null; then
        skip "strace is not installed or cannot trace here"
    fi
}

# accept_error_injected LESSON MODE ERRNO [ARGS...]: strace makes the
# server's first accept4 fail with ERRNO while a client waits in the queue
# (no connection is consumed: the injected call does not run). The client
# must be served: it sends "served anyway\n" and reads it back, so servers
# that frame messages get ARGS (e.g. 14-byte fixed records).
accept_error_injected() {
    need_strace
    local l=$1 mode=$2 err=$3
    shift 3
    start_traced server -qq -o "$T/strace.log" -e trace=accept4,epoll_ctl -e "inject=accept4:error=$err:when=1" \
        -- "$(bin "$l" server)" --mode "$mode" "$@" --port 0
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    # the only client: with et, nothing else would ever make another edge
    echo_on "$a" "served anyway"
    exec {a}>&-
    cat "$T/strace.log"
}

# stop_race_closed LESSON SERVER_ARGS...: (lessons 3 and 4) the stop signals are blocked outside the
# wait, and every wait call unblocks them (the mask it carries is empty):
# a signal that lands between the loop's check and the wait is delivered
# when the wait starts, which returns EINTR at once.
stop_race_closed() {
    need_strace
    local l=$1
    shift
    start_traced server -qq -o "$T/strace.log" -e trace=rt_sigprocmask,poll,ppoll,select,pselect6,epoll_wait,epoll_pwait \
        -- "$(bin "$l" server)" "$@" --port 0
    exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$a" hello
    exec {a}>&-
    kill -TERM "$TRACED_PID"
    wait_exit "$PID" 10
    grep -q 'server: stopping' "$T/server.err"
    cat "$T/strace.log"
    grep -qE '^rt_sigprocmask\(SIG_BLOCK, \[INT TERM\], ' "$T/strace.log"
    # waits: only the kinds that take a mask, each with the mask [] (nothing
    # blocked; strace prints it for the calls that returned normally), and
    # the last one interrupted by the signal
    refute grep -qE '^(poll|select|epoll_wait)\(' "$T/strace.log"
    waits=$(grep -E '^(ppoll|pselect6|epoll_pwait)\(' "$T/strace.log" | grep -cvE 'EINTR|ERESTART')
    [ "$waits" -ge 3 ]
    [ "$(grep -cE '^(ppoll|pselect6|epoll_pwait)\(.*(, \[\], 8\)|sigmask=\[\],).* = [0-9]+' "$T/strace.log")" -eq "$waits" ]
    grep -E '^(ppoll|pselect6|epoll_pwait)\(' "$T/strace.log" | tail -n 1 | grep -qE '= (-1 EINTR|\? ERESTARTNOHAND)'

}

# connect_so_error_fails LESSON: (lessons 2 to 9) strace makes the client's
# getsockopt(SO_ERROR), its question after the non-blocking connect became
# writable, fail with ENOBUFS. The connect itself succeeded (the lesson's
# server listens), but the client cannot know: one line naming the failure,
# exit status 1, no crash.
connect_so_error_fails() {
    need_strace
    local l=$1
    shift
    start_server server "$(bin "$l" server)" "$@" --port 0
    export ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}" # LeakSanitizer cannot run under ptrace
    run timeout 60 strace -qq -o "$T/strace.log" -e trace=getsockopt -e inject=getsockopt:error=ENOBUFS:when=1 \
        "$(bin "$l" client)" --port "$PORT" --timeout 5000 --connect-only
    cat "$T/strace.log"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ $output =~ ^client:\ failed\ to\ connect\ to\ 127\.0\.0\.1:$PORT\ after\ [0-9]+\.[0-9]\ ms:\ No\ buffer\ space\ available$ ]]
    grep -qE '^getsockopt\([0-9]+, SOL_SOCKET, SO_ERROR, .* = -1 ENOBUFS .*\(INJECTED\)$' "$T/strace.log"
}

# so_error_query_fails LESSON SERVER_ARGS...: (lessons 4 to 9) strace makes
# the server's first getsockopt, its SO_ERROR question after an EPOLLERR,
# fail with ENOBUFS. The EPOLLERR comes from an RST: a client closes with the
# echo of its line still unread. That connection alone is closed, with one
# line naming the failure, and the server serves a new client. Every line is
# 14 bytes, for servers that frame fixed records (--record-bytes 14).
so_error_query_fails() {
    need_strace
    local l=$1 fds
    shift
    start_traced server -qq -o "$T/strace.log" -e trace=getsockopt -e inject=getsockopt:error=ENOBUFS:when=1 \
        -- "$(bin "$l" server)" "$@" --port 0
    fds=$(open_fds "$TRACED_PID")
    exec {b}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$b" "reset me soon"
    printf 'never read it\n' >&"$b"
    # the echo waits unread in our receive buffer: closing now sends an RST
    wait_until 10 bash -c "ss -tnH '( dport = :$PORT )' | awk '\$1 >= 14 { f = 1 } END { exit !f }'"
    exec {b}>&-
    wait_until 10 grep -qE '^server: 127\.0\.0\.1:[0-9]+: No buffer space available$' "$T/server.err"
    wait_until 10 fds_back_to "$TRACED_PID" "$fds"
    cat "$T/strace.log"
    grep -qE '^getsockopt\([0-9]+, SOL_SOCKET, SO_ERROR, .* = -1 ENOBUFS .*\(INJECTED\)$' "$T/strace.log"
    exec {c}<>"/dev/tcp/127.0.0.1/$PORT"
    echo_on "$c" "served anyway"
    exec {c}>&-
}

# ---- lesson 4's and 7's mechanisms, carried into later lessons: one body
# ---- each, called by every suite whose lesson has the mechanism ($L)

# accept_one_connection_error_skipped [ARGS...]: (et) accept failing for
# one connection (EPROTO) does not end the accept loop and pauses nothing:
# the client queued behind it is served in the same turn.
accept_one_connection_error_skipped() {
    accept_error_injected "$L" et EPROTO "$@"
    grep -q 'accept4(.*= -1 EPROTO' "$T/strace.log"
    refute grep -q pausing "$T/server.err"
}

# accept_paused_listener_readded [ARGS...]: (et) an accept error not about
# one connection (ENOBUFS) pauses accepting: one line, the listener DEL'd
# from the interest list, then ADDed again (which reports the client queued
# meanwhile), and that client served.
accept_paused_listener_readded() {
    local listener
    accept_error_injected "$L" et ENOBUFS "$@"
    grep -qE '^server: accept: No buffer space available, pausing accept for 100 ms$' "$T/server.err"
    listener=$(grep -oE '^epoll_ctl\([0-9]+, EPOLL_CTL_ADD, [0-9]+, \{events=EPOLLIN\|EPOLLET,' "$T/strace.log" |
        head -n 1 | grep -oE 'ADD, [0-9]+' | grep -oE '[0-9]+$')
    grep -qE "^epoll_ctl\([0-9]+, EPOLL_CTL_DEL, $listener, " "$T/strace.log"
    [ "$(grep -cE "^epoll_ctl\([0-9]+, EPOLL_CTL_ADD, $listener, \{events=EPOLLIN\|EPOLLET," "$T/strace.log")" -eq 2 ]
}

# et_accepts_whole_burst [ARGS...]: 300 clients connect while the et server
# is stopped (SIGSTOP): the kernel queues them, and on SIGCONT the listener
# reports ONE edge for all of them. Each must be served (a 2-byte line:
# servers that frame fixed records get ARGS --record-bytes 2).
et_accepts_whole_burst() {
    local fds=() fd i
    start_server server "$(bin "$L" server)" --mode et "$@" --port 0
    kill -STOP "$PID"
    for i in $(seq 300); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        fds+=("$fd")
    done
    kill -CONT "$PID"
    for fd in "${fds[@]}"; do echo_on "$fd" x || { echo "fd $fd not served"; false; }; done
    for fd in "${fds[@]}"; do exec {fd}>&-; done
}

# echo_flood_bounded [EXTRA_KB]: (lessons 6 to 10) a client sends 200 MiB
# and reads nothing for 3 s: reading pauses at the high-water mark, the
# server's RSS (optimised build) stays within the watermark bound (plus
# EXTRA_KB the lesson may hold on top), and nothing is lost.
echo_flood_bounded() {
    local server pid base flood peak i now extra_kb=${1:-0}
    # The optimised build: its memory is what we measure. Bound: the send
    # queue stops growing just past the high-water mark (1 MiB) plus one
    # read's worth of replies (< 1 MiB), and the input buffer holds at most
    # one frame plus a read (< 256 KiB here): 4 MiB over the baseline is generous.
    start_server server "$ROOT/$L/server" --port 0
    server=$PID
    base=$(rss_kb "$server")
    start_bg flood "$ROOT/$L/client" --port "$PORT" --pause-ms 3000 --body-bytes 65536 --repeat 3200 --quiet
    flood=$PID
    peak=$base
    for i in $(seq 25); do # sample while the client is not reading
        sleep 0.1
        now=$(rss_kb "$server")
        [ "$now" -gt "$peak" ] && peak=$now
    done
    echo "server VmRSS: baseline $base kB, peak while flooded $peak kB"
    [ $((peak - base)) -lt $((4096 + extra_kb)) ]
    grep -q 'reading paused' "$T/server.err"
    wait_exit "$flood" 60
    grep -q 'client: 3200 messages sent, 3200 replies, all intact' "$T/flood.out"
}

# broadcast_caps_never_reader: (lessons 6 to 10) --service broadcast: a member
# that never reads is closed by the output cap; three members that read get
# all 10000 messages, in order.
broadcast_caps_never_reader() {
    local m pad msgs i pid_a pid_b pid_c
    start_server server "$(bin $L server)" --service broadcast --port 0
    start_bg lazy "$(bin tools slowreader)" --port "$PORT" --never-read --read-for 20
    for m in a b c; do
        start_bg "member-$m" "$(bin $L client)" --port "$PORT" --expect 10000
        eval "pid_$m=\$PID"
    done
    wait_until 10 bash -c "[ \$(ss -tnH state established '( sport = :$PORT )' | wc -l) -ge 4 ]"
    # 1000 numbered messages of ~1 KiB, sent 10 times: 10 MB, far past the
    # lazy member's kernel buffers and its 2 MiB cap
    pad=$(head -c 1000 /dev/zero | tr '\0' x)
    msgs=()
    for i in $(seq 1000); do msgs+=("m$i $pad"); done
    # the sender is the optimised build: the members give up after 2 s of
    # silence, and the sanitizer build takes over a second on a loaded
    # machine to encode its 10 MB before the first byte leaves
    run timeout 120 "$ROOT/$L/client" --port "$PORT" --expect 0 --quiet --repeat 10 "${msgs[@]}"
    [ "$status" -eq 0 ]
    for m in a b c; do
        eval "wait_exit \$pid_$m 60"
        grep -q "client: 0 messages sent, 10000 received" "$T/member-$m.out"
        # in order: message #i is "m<((i-1) mod 1000) + 1> ..."
        sed -n 's/^message #\([0-9]*\): [0-9]* bytes: "m\([0-9]*\) .*/\1 \2/p' "$T/member-$m.out" |
            awk '($1 - 1) % 1000 + 1 != $2 { bad++ } END { exit (NR != 10000 || bad > 0) }'
    done
    grep -qE '^server: 127\.0\.0\.1:[0-9]+: closed: output cap \([0-9]+ bytes queued, [0-9]+ more\)$' "$T/server.err"
}

# need_uring: (lesson 10) skip, with the server's own line as the reason,
# where lesson 10's server cannot have its rings; asked once per suite file.
need_uring() {
    local f=$BATS_FILE_TMPDIR/uring_refused
    [ -f "$f" ] || uring_refused "$(bin 10_io_uring server)" >"$f"
    if [ -s "$f" ]; then
        skip "$(cat "$f")"
    fi
}

# uring_refused SERVER: (lesson 10) start SERVER --port 0 and print its one
# line if it exits 3 saying io_uring is not available here; print nothing
# if it listens (it is stopped at once) or fails in any other way (the
# tests then fail instead of skipping).
uring_refused() {
    local f pid rc=0
    f=$(mktemp)
    "$1" --port 0 >"$f.out" 2>"$f" </dev/null &
    pid=$!
    for _ in $(seq 200); do
        grep -q '^listening on ' "$f.out" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" || rc=$?
    if [ "$rc" -eq 3 ] && grep -q '^server: io_uring is not available here: ' "$f"; then
        head -n 1 "$f"
    fi
    rm -f "$f" "$f.out"
}

# enough_fds N: raise this test's soft descriptor limit to N (its programs
# inherit it), or skip if the hard limit says no.
enough_fds() {
    [ "$(ulimit -Sn)" = unlimited ] || [ "$(ulimit -Sn)" -ge "$1" ] || ulimit -Sn "$1" 2>/dev/null ||
        skip "needs $1 file descriptors per process; the hard limit here is $(ulimit -Hn)"
}

# pipelining_through_proxy_exact: (lessons 9 and 10) 1000 connections each send
# 10 messages without waiting, through a proxy that cuts the stream at random:
# every reply byte-exact, the server's counters exact.
pipelining_through_proxy_exact() {
    local bytes line
    enough_fds 4096
    start_server server "$(bin $L server)" --port 0
    SERVER=$PID
    # oneway: each connection sends its 10 messages without waiting, so one
    # read holds several frames and the tail of one read begins the next frame
    run timeout 120 "$(bin tools loadgen)" --port "$PORT" --mode oneway --conns 1000 --size 1-6000 \
        --messages 10 --via-proxy 'random:1-3000' --seed 9 --timeout 100
    loadgen_ok 10000
    bytes=$(field bytes "$output")
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "$line"
    counters_exact "$line" 1000 10000 "$bytes"
}

# bad_peers_beside_pipelined_load: (lessons 9 and 10) while 10 connections
# pipeline load, 7 protocol errors, 300 abandoned connections, an RST and a
# half-close mid-frame: each closes only its own connection, the load is untouched.
bad_peers_beside_pipelined_load() {
    local load scenario rc load_out line
    enough_fds 4096
    start_server server "$(bin $L server)" --port 0
    SERVER=$PID
    start_bg load "$(bin tools loadgen)" --port "$PORT" --mode oneway --conns 10 --size 1-20000 \
        --duration 4 --seed 7 --timeout 60
    load=$PID
    wait_until 10 counter_ge msgs_in 100 # all 10 connected and busy
    for scenario in bad-flags origin-zero origin-too-big compress-zero compress-too-big bad-lz4 lz4-wrong-size; do
        run timeout 20 "$(bin tools badpeer)" --port "$PORT" "$scenario"
        echo "$output"
        [ "$status" -eq 0 ]
        [[ $output =~ ^badpeer:\ $scenario:\ server\ closed\ the\ connection\ after\ [0-9]+\ ms\ \((EOF|reset)\)$ ]]
    done
    run timeout 30 "$(bin tools badpeer)" --port "$PORT" abandon --count 300 --wait-ms 20000
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "badpeer: abandon: opened and abandoned 300 connections" ]
    run timeout 20 "$(bin tools badpeer)" --port "$PORT" rst-mid-frame
    [ "$status" -eq 0 ]
    run timeout 20 "$(bin tools badpeer)" --port "$PORT" half-close-mid-frame
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output =~ ^badpeer:\ half-close-mid-frame:\ server\ closed\ the\ connection\ after\ [0-9]+\ ms\ \(EOF\)$ ]]
    kill -0 "$load" # the load ran throughout
    rc=0
    wait_exit "$load" 60 || rc=$?
    cat "$T/load.out"
    [ "$rc" -eq 0 ]
    load_out=$(cat "$T/load.out")
    [ "$(field errors "$load_out")" -eq 0 ]
    [ "$(field mismatches "$load_out")" -eq 0 ]
    [ "$(field closed_by_server "$load_out")" -eq 0 ]
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "$line"
    # 10 loadgen + 7 protocol + 300 abandoned + rst + half-close
    [ "$(counter accepted "$line")" -eq 319 ]
    [ "$(counter closed_protocol "$line")" -eq 7 ]
    [ "$(counter closed_error "$line")" -eq 1 ] # the RST
    [ "$(counter closed_peer "$line")" -eq 311 ]
    [ "$(grep -c 'protocol error' "$T/server.err")" -eq 7 ]
    # every message decoded was answered: loadgen's, and the valid one each protocol badpeer sends first
    [ "$(counter msgs_in "$line")" -eq $(($(field messages "$load_out") + 7)) ]
    [ "$(counter msgs_sent "$line")" -eq "$(counter msgs_in "$line")" ]
    [ "$(counter msgs_queued "$line")" -eq "$(counter msgs_in "$line")" ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
}

# lz4_pipelined_checked: (lessons 9 and 10) 200 pipelined LZ4 requests are
# answered compressed, each reply checked.
lz4_pipelined_checked() {
    local line
    start_server server "$(bin $L server)" --port 0
    SERVER=$PID
    # 3000-byte compressible bodies: their LZ4 replies are small, so collected
    run timeout 20 "$(bin $L client)" --port "$PORT" --compress --one-write --repeat 100 hello \
        --body-bytes 3000 --pattern repeat
    [ "$status" -eq 0 ]
    [[ $output == *"client: 200 messages sent, 200 replies, all intact"* ]]
    [ "$(grep -c '(LZ4)' <<<"$output")" -eq 200 ]
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "$line"
    [ "$(counter msgs_sent "$line")" -eq 200 ]
    [ "$(counter bytes_out "$line")" -lt $((100 * 3000)) ] # less than the bodies alone, raw
}

# threads_pipelined_checked: (lessons 9 and 10) --threads 2: pipelined small,
# LZ4 and 200 kB requests answered in order, each checked.
threads_pipelined_checked() {
    local line
    start_server server "$(bin $L server)" --port 0 --threads 2
    SERVER=$PID
    run timeout 30 "$(bin $L client)" --port "$PORT" --quiet --one-write --repeat 50 ping pong \
        --body-bytes 200000 --pattern random
    [ "$status" -eq 0 ]
    [[ $output == *"client: 150 messages sent, 150 replies, all intact"* ]]
    run timeout 30 "$(bin $L client)" --port "$PORT" --quiet --compress --one-write --repeat 50 ping \
        --body-bytes 20000 --pattern repeat
    [ "$status" -eq 0 ]
    [[ $output == *"client: 100 messages sent, 100 replies, all intact"* ]]
    wait_until 10 counter_is open 0
    line=$(stats "$SERVER")
    echo "$line"
    [ "$(counter msgs_sent "$line")" -eq 250 ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
}

# stop_during_pipelined_flood: (lessons 9 and 10) SIGTERM while three
# loadgens pipeline: every message the server decoded is answered, and
# loadgen verifies each; exit 0.
stop_during_pipelined_flood() {
    local floods=() i rc verified out line
    start_server server "$(bin $L server)" --port 0 --stop-timeout-ms 30000 --linger-ms 30000
    SERVER=$PID
    floods=()
    for i in 1 2 3; do
        start_bg "flood$i" "$(bin tools loadgen)" --port "$PORT" --mode oneway --conns 2 \
            --size 1-30000 --duration 60 --until-closed --seed "$i" --timeout 90
        floods+=("$PID")
    done
    wait_until 20 counter_ge msgs_in 1000
    kill -TERM "$SERVER"
    rc=0
    wait_exit "$SERVER" 60 || rc=$?
    [ "$rc" -eq 0 ]
    verified=0
    for i in 1 2 3; do
        rc=0
        wait_exit "${floods[$((i - 1))]}" 60 || rc=$?
        cat "$T/flood$i.out"
        [ "$rc" -eq 0 ]
        out=$(cat "$T/flood$i.out")
        [ "$(field errors "$out")" -eq 0 ]
        [ "$(field mismatches "$out")" -eq 0 ]
        [ "$(field closed_by_server "$out")" -eq 2 ]
        verified=$((verified + $(field messages "$out")))
    done
    line=$(grep '^stats at exit' "$T/server.out")
    echo "$line"
    echo "loadgen verified $verified replies"
    [ "$(counter msgs_sent "$line")" -eq "$verified" ]
    [ "$(counter msgs_in "$line")" -eq "$verified" ]
    [ "$(counter msgs_dropped "$line")" -eq 0 ]
    [ "$(counter closed_stop "$line")" -eq 6 ]
}

# max_conns_refused: (lessons 7 and 9) --max-conns 2: a third connection is
# refused at once (end of stream) and counted; the two stay open.
max_conns_refused() {
    local line
    start_server server "$(bin "$L" server)" --port 0 --max-conns 2
    exec 7<>"/dev/tcp/127.0.0.1/$PORT"
    exec 8<>"/dev/tcp/127.0.0.1/$PORT"
    exec 9<>"/dev/tcp/127.0.0.1/$PORT"
    at_eof 9
    grep -qE 'refused: --max-conns reached$' "$T/server.err"
    line=$(stats "$PID")
    [ "$(counter refused "$line")" -eq 1 ]
    [ "$(counter open "$line")" -eq 2 ]
    exec 7<&- 8<&- 9<&-
}

# out_of_fds_refused: (lessons 7 and 9) under ulimit -n 32, 40 clients: the
# extra ones are refused with one line each; once they leave, a new client
# is served.
out_of_fds_refused() {
    local fds=() fd
    start_server server bash -c "ulimit -n 32 && exec '$(bin "$L" server)' --port 0"
    for _ in $(seq 40); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" && fds+=("$fd")
    done
    wait_until 5 grep -q 'refused: out of file descriptors' "$T/server.err"
    for fd in "${fds[@]}"; do exec {fd}<&-; done
    run timeout 10 "$(bin "$L" client)" --port "$PORT" --retry 5 hello
    [ "$status" -eq 0 ]
    [[ $output == *'reply #1: 5 bytes: "hello"'* ]]
}

# sigterm_stops_gracefully: (lessons 7 and 9, signals read from a signalfd)
# SIGTERM: idle connections get a FIN, new connections are refused (no
# listener), the server lingers for the peers' FINs, then exits 0 with its
# counters.
sigterm_stops_gracefully() {
    local server lingering line
    start_server server "$(bin "$L" server)" --port 0 --linger-ms 5000
    server=$PID
    exec 7<>"/dev/tcp/127.0.0.1/$PORT"
    exec 8<>"/dev/tcp/127.0.0.1/$PORT"
    wait_until 5 bash -c "[ \$(ss -tnH state established '( sport = :$PORT )' | wc -l) -eq 2 ]"
    kill -TERM "$server"
    at_eof 7 # our end of stream: the server's FIN
    at_eof 8
    # it lingers for our FINs, and accepts nobody meanwhile; it still answers
    # SIGUSR1 with both connections open (kill -0 would not do: a child that
    # exited stays a zombie until waited for)
    lingering=$(stats "$server")
    echo "$lingering"
    [ "$(counter open "$lingering")" -eq 2 ]
    run bash -c "exec 5<>/dev/tcp/127.0.0.1/$PORT" 2>&1
    [ "$status" -ne 0 ]
    [[ $output == *"Connection refused"* ]] # ECONNREFUSED: no listener any more
    exec 7<&- 8<&- # our FINs: now it can finish
    wait_exit "$server" 5
    grep -q 'server: Terminated: stopping gracefully' "$T/server.err"
    line=$(grep '^stats at exit' "$T/server.out")
    [ "$(counter closed_stop "$line")" -eq 2 ]
    [ "$(counter open "$line")" -eq 0 ]
}

# sigint_stops_gracefully: (lessons 7 and 9) SIGINT stops like SIGTERM, exit 0.
sigint_stops_gracefully() {
    start_server server "$(bin "$L" server)" --port 0
    run timeout 10 "$(bin "$L" client)" --port "$PORT" hello
    [ "$status" -eq 0 ]
    kill -INT "$PID"
    wait_exit "$PID" 5
    grep -q 'server: Interrupt: stopping gracefully' "$T/server.err"
    grep -q '^stats at exit: accepted=1 open=0 ' "$T/server.out"
}

# stop_with_accept_queue: (lessons 7 and 9) the stop race, closed by the
# signalfd: SIGTERM arrives while the server is stopped and three clients
# wait in its accept queue. On SIGCONT the signalfd is ready before the
# listener; each queued client is accepted and gets a FIN, never a reset,
# and the closed listener is never accepted on.
stop_with_accept_queue() {
    local server pids=() pid rc i line
    start_server server "$(bin "$L" server)" --port 0
    server=$PID
    kill -STOP "$server"
    kill -TERM "$server" # pending: the signalfd becomes ready before the listener
    for i in 1 2 3; do
        start_bg "client$i" "$(bin "$L" client)" --port "$PORT" ping
        pids+=("$PID")
    done
    # the kernel completes the handshakes while the server is stopped: 3 in its queue
    wait_until 10 bash -c "[ \$(ss -tnH '( sport = :$PORT )' | wc -l) -eq 3 ]"
    kill -CONT "$server"
    for pid in "${pids[@]}"; do
        rc=0
        wait_exit "$pid" 10 || rc=$?
        [ "$rc" -eq 1 ] # no reply: the stop began before the connection was accepted
    done
    for i in 1 2 3; do
        grep -qx 'client: server closed the connection after 0 of 1 replies' "$T/client$i.err"
    done
    wait_exit "$server" 10
    refute grep -q 'accept:' "$T/server.err" # the listener's event came after it was closed
    line=$(grep '^stats at exit' "$T/server.out")
    echo "$line"
    [ "$(counter accepted "$line")" -eq 3 ]
    [ "$(counter closed_stop "$line")" -eq 3 ]
    [ "$(counter closed_error "$line")" -eq 0 ]
}

# high_fd CMD...: run CMD with descriptors 3 to 1030 already open, so that the
# socket it creates next is fd 1031, above FD_SETSIZE (1024).
high_fd() {
    bash -c '[ "$(ulimit -n)" -ge 1100 ] || ulimit -n 1100 || exit
        for fd in $(seq 3 1030); do eval "exec $fd</dev/null"; done
        exec "$@"' high_fd "$@"
}

# connect_poll_above_fd_setsize: (lessons 2 to 9) the client's --wait poll
# connects a socket whose fd (1031) is above FD_SETSIZE. ($output: the
# client's, with -v.)
connect_poll_above_fd_setsize() {
    start_server server "$(bin "$L" server)" --port 0
    run high_fd timeout 120 "$(bin "$L" client)" --port "$PORT" --timeout 1000 --connect-only --wait poll -v
    [ "$status" -eq 0 ]
    [[ ${lines[0]} =~ ^client:\ connected\ to\ 127\.0\.0\.1:$PORT\ in\ [0-9]+\.[0-9]\ ms$ ]]
}

# connect_select_fd_too_high: (lessons 2 to 9) the client's --wait select
# refuses a socket fd above FD_SETSIZE with one line naming it, exit 1
# (CONNECT_FD_TOO_HIGH), instead of FD_SET past the end of the set.
connect_select_fd_too_high() {
    start_server server "$(bin "$L" server)" --port 0
    run high_fd timeout 120 "$(bin "$L" client)" --port "$PORT" --timeout 1000 --connect-only --wait select
    [ "$status" -eq 1 ]
    [ "$output" = "client: cannot wait for the connect to 127.0.0.1:$PORT with select(): the socket's fd is not below FD_SETSIZE (1024); --wait poll has no such limit" ]
}

