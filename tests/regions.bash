# regions.bash -- read and apply the region files of tests/mutants and
# tests/labs: header lines "NAME: value", then sections that start with a
# line "--- NAME" (original, mutant, stub). Sourced by tests/run_mutants and
# tests/make_lab.

# fields NAME FILE [first]: the values of every "NAME: value" header line,
# one a line; with "first", only the first. (In bash alone: make_lab reads
# hundreds of them.)
fields() {
    local line re="^$1: *(.*)\$"
    while IFS= read -r line || [ -n "$line" ]; do
        [[ $line == "--- "* ]] && return 0
        if [[ $line =~ $re ]]; then
            printf '%s\n' "${BASH_REMATCH[1]}"
            [ -z "${3:-}" ] || return 0
        fi
    done <"$2"
}

# field NAME FILE: the value of the first "NAME: value" header line.
field() { fields "$1" "$2" first; }

# block NAME FILE: the lines of the "--- NAME" section.
block() {
    awk -v want="--- $1" '/^--- [a-z]+$/ { on = ($0 == want); next } on' "$2"
}

# replace_once SOURCE ORIGINAL REPLACEMENT OUT: write SOURCE to OUT with the
# one occurrence of ORIGINAL's lines (whole lines, in a row) replaced by
# REPLACEMENT's. Prints how many occurrences there were; OUT is written only
# when there was exactly one.
replace_once() {
    awk -v orig="$2" -v repl="$3" -v out="$4" '
        BEGIN {
            n = 0; while ((getline l < orig) > 0) o[++n] = l
            m = 0; while ((getline l < repl) > 0) r[++m] = l
        }
        { line[NR] = $0 }
        END {
            found = 0
            for (i = 1; i + n - 1 <= NR; i++) {
                same = 1
                for (j = 1; j <= n; j++) if (line[i + j - 1] != o[j]) { same = 0; break }
                if (same) { found++; at = i }
            }
            print found
            if (found != 1 || n == 0) exit
            for (i = 1; i < at; i++) print line[i] > out
            for (j = 1; j <= m; j++) print r[j] > out
            for (i = at + n; i <= NR; i++) print line[i] > out
        }' "$1"
}
