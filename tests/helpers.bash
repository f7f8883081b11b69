# helpers.bash -- what every suite loads: start programs on --port 0, wait
# with a bound, stop by PID, clean up, and fail on any sanitizer report.
#
#   start_server NAME CMD...   start CMD, wait for "listening on HOST:PORT";
#                              sets PORT and PID; output in $T/NAME.out/.err
#   start_bg NAME CMD...       start CMD in the background; sets PID
#   wait_exit PID SECONDS      wait for it; returns its status (124: still running)
#   wait_until SECONDS CMD...  retry CMD every 50 ms until it succeeds
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
        xargs -0 -I{} cp --parents -- {} "$T/fresh/" 2>/dev/null)
    [ -f "$T/fresh/Makefile" ]
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
        if ! grep -qF -- "doc_cmd $1 '$cmd'" "$ROOT"/tests/*.bats; then
            echo "not run by any test: \$ $cmd"
            missing=1
        fi
    done < <(doc_commands "$1")
    [ "$missing" -eq 0 ]
}

# ---- checks and small readers shared by the suites ----

# refute CMD...: fail if CMD succeeds. Use it (or `run ! CMD`) instead of a
# bare `! CMD`, which checks nothing mid-test: bash's errexit ignores a
# negated command. Unlike `run`, it leaves $output and $status alone.
refute() {
    if "$@"; then
        echo "expected to fail, but succeeded: $*" >&2
        return 1
    fi
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
# server). Fails if no new line comes within 10 s.
stats() {
    local out="$T/${2:-server}.out" before
    before=$(grep -c '^stats on SIGUSR1' "$out") || true # grep -c: status 1 on 0
    kill -USR1 "$1"
    if ! wait_until 10 bash -c "[ \$(grep -c '^stats on SIGUSR1' '$out') -gt $before ]"; then
        echo "no stats line within 10 s of SIGUSR1" >&2
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

# accept_error_injected LESSON MODE ERRNO [ARGS...]: strace makes the
# server's first accept4 fail with ERRNO while a client waits in the queue
# (no connection is consumed: the injected call does not run). The client
# must be served: it sends "served anyway\n" and reads it back, so servers
# that frame messages get ARGS (e.g. 14-byte fixed records).
accept_error_injected() {
    if ! strace -o /dev/null true 2>/dev/null; then
        skip "strace is not installed or cannot trace here"
    fi
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
    if ! strace -o /dev/null true 2>/dev/null; then
        skip "strace is not installed or cannot trace here"
    fi
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
