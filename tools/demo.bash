# demo.bash -- shared helpers for the lessons' ./run demos (sourced, not run)
#
# A demo starts programs in the background, labels every line they print
# with who printed it, waits for servers to say "listening on HOST:PORT",
# and on exit kills exactly the processes it started, by PID.

DEMO_TMP=""                   # made on first use: `./run server` execs and never cleans up
DEMO_PIDS=()                  # programs we started
declare -A DEMO_PRINTER       # program pid -> pid of the tail|label printing its output
DEMO_SEQ=0

demo_cleanup() {
    local pid
    for pid in "${DEMO_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${DEMO_PIDS[@]}"; do
        # give each one second to leave, then insist
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        { wait "$pid"; } 2>/dev/null
        [ -n "${DEMO_PRINTER[$pid]:-}" ] && { wait "${DEMO_PRINTER[$pid]}"; } 2>/dev/null
    done
    DEMO_PIDS=()
    if [ -n "$DEMO_TMP" ]; then rm -rf "$DEMO_TMP"; fi
}
trap demo_cleanup EXIT
trap 'exit 130' INT TERM

# The narrator's lines stand out from the programs' lines.
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }

# Prefix every line read from stdin with "[label] ".
label() { sed -u "s/^/  [$1] /"; }

# demo_check_built BIN_DIR PROGRAM...: say how to build if a program is missing.
demo_check_built() {
    local dir=$1 lesson
    shift
    lesson=$(basename "$(dirname "$0")")
    for p in "$@"; do
        if [ ! -x "$dir/$p" ]; then
            echo "run: $dir/$p is missing: build the lesson first (make lesson-${lesson:0:2})" >&2
            echo "     (or: make -C $lesson)" >&2
            exit 2
        fi
    done
}

# demo_dir: the demo's scratch directory, DEMO_TMP, made on first use
# (demo_cleanup removes it).
demo_dir() {
    [ -n "$DEMO_TMP" ] || DEMO_TMP=$(mktemp -d "${TMPDIR:-/tmp}/demo.XXXXXX")
}

# demo_bg NAME CMD...: start CMD in the background; its output goes to the
# file $LAST_OUT and, labelled NAME, to the terminal. Sets LAST_PID.
demo_bg() {
    local name=$1
    shift
    DEMO_SEQ=$((DEMO_SEQ + 1))
    demo_dir
    LAST_OUT=$DEMO_TMP/$DEMO_SEQ.$name.out
    : >"$LAST_OUT" # exists before tail looks for it
    "$@" >"$LAST_OUT" 2>&1 &
    LAST_PID=$!
    DEMO_PIDS+=("$LAST_PID")
    # tail --pid stops once the program is gone and everything is printed
    tail -n +1 -s 0.05 -f --pid="$LAST_PID" "$LAST_OUT" | label "$name" &
    DEMO_PRINTER[$LAST_PID]=$!
}

# demo_port_of OUT PID: wait (at most 5 s) for the "listening on HOST:PORT"
# line that program PID writes to the file OUT. Sets PORT; 1 if it never came.
demo_port_of() {
    local line
    for _ in $(seq 50); do
        line=$(grep -m1 '^listening on ' "$1" 2>/dev/null)
        if [ -n "$line" ]; then
            PORT=${line##*:}
            return 0
        fi
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

# demo_server NAME CMD...: demo_bg, then demo_port_of. Sets PORT and LAST_PID.
demo_server() {
    local name=$1
    demo_bg "$@"
    demo_port_of "$LAST_OUT" "$LAST_PID" && return 0
    echo "run: $name did not print 'listening on' within 5 s" >&2
    exit 1
}

# demo_stop PID: stop one program we started (SIGTERM, then SIGKILL after 1 s).
demo_stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null
    demo_wait_exit "$pid" 1 || { kill -KILL "$pid" 2>/dev/null; demo_wait_exit "$pid" 1; }
    return 0
}

# demo_wait_exit PID SECONDS: wait for a background program to finish and
# for its output to be printed. Returns its exit status, or 124 if it is
# still running after SECONDS.
demo_wait_exit() {
    local pid=$1 tenths=$(($2 * 10)) status
    for _ in $(seq "$tenths"); do
        if ! kill -0 "$pid" 2>/dev/null; then
            { wait "$pid"; } 2>/dev/null
            status=$?
            [ -n "${DEMO_PRINTER[$pid]:-}" ] && wait "${DEMO_PRINTER[$pid]}"
            return $status
        fi
        sleep 0.1
    done
    return 124
}

# queues PORT: the Recv-Q and Send-Q of every established connection to or
# from PORT, one "local peer recvq sendq" line each (from ss -tn).
queues() {
    ss -tnH state established "( sport = :$1 or dport = :$1 )" 2>/dev/null |
        awk '{ print $3, $4, $1, $2 }' | sort
}
