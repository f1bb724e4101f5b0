# lib.sh: sourced by the CLI tests. Each check prints one TAP line
# ("ok N - what" / "not ok N - what" / "ok N # SKIP why"); $LLM is the binary.
: "${LLM:?LLM must point at the llm binary}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0

ok()   { n=$((n + 1)); echo "ok $n - $1"; }
nok()  { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
skip_test() { n=$((n + 1)); echo "ok $n # SKIP $1"; }

# run CMD...: runs it, keeping stdout in $T/out, stderr in $T/err, status in $rc.
run() { "$@" >"$T/out" 2>"$T/err"; rc=$?; }

# expect DESC CODE CMD...: runs CMD and checks its exit code.
expect() {
    desc=$1 want=$2; shift 2
    run "$@"
    if [ "$rc" -eq "$want" ]; then ok "$desc"; else
        nok "$desc" "exit $rc, wanted $want: $*" "stderr: $(head -c 600 "$T/err")"; fi
}

# has FILE DESC PATTERN: checks that FILE matches the grep pattern.
has() {
    if grep -q -- "$3" "$1"; then ok "$2"; else
        nok "$2" "no '$3' in $(basename "$1"):" "$(head -c 600 "$1")"; fi
}

# one_line DESC: stderr of the last run is exactly one line starting "llm".
one_line() {
    lines=$(wc -l <"$T/err")
    if [ "$lines" -eq 1 ] && grep -q '^llm' "$T/err"; then ok "$1"; else
        nok "$1" "stderr has $lines lines:" "$(head -c 600 "$T/err")"; fi
}

# fails DESC CODE PATTERN CMD...: exit CODE and one stderr line matching
# PATTERN (scripts that check more redefine it).
fails() {
    desc=$1 want=$2 pat=$3; shift 3
    run "$@"
    if [ "$rc" -eq "$want" ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "$pat" "$T/err"; then ok "$desc"
    else nok "$desc" "exit $rc (wanted $want): $*" "stderr: $(head -c 600 "$T/err")"; fi
}

# num FILE KEY: the first number after "KEY": in a JSON file.
num() { sed -n "s/.*\"$2\":[[:space:]]*\([-0-9][-0-9.eE+]*\).*/\1/p" "$1" | head -n 1; }
