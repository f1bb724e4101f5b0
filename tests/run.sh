#!/bin/sh
# run.sh BUILD_DIR: runs the unit tests (cmocka, TAP output) and the CLI tests
# (tests/cli/*.sh, TAP output) and ends with "N passed, N failed, N skipped".
# Exits non-zero if any test failed or a suite crashed.
build=${1:?usage: tests/run.sh BUILD_DIR}
LLM=$(cd "$build" && pwd)/llm
export LLM
export CMOCKA_MESSAGE_OUTPUT=TAP
# Sanitizer builds run 3-10x slower: long CLI checks shorten what they can
# (each says so in a TAP comment) and keep every assertion.
case $build in *-asan*) LLM_TEST_SANITIZED=1 ;; *) LLM_TEST_SANITIZED=0 ;; esac
export LLM_TEST_SANITIZED
# Under ASan, an absurd allocation must fail (NULL) as it does in a normal build.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0 skip=0 broken=0

run_suite() { # name, command...
    name=$1; shift
    "$@" >"$tmp/out" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$tmp/out")
    s=$(grep -c '^\(not \)\{0,1\}ok [0-9]* *# *SKIP' "$tmp/out")
    f=$(grep '^not ok ' "$tmp/out" | grep -vc '# *SKIP')
    p=$((p - $(grep -c '^ok [0-9]* *# *SKIP' "$tmp/out")))
    pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
    status="$p passed, $f failed, $s skipped"
    if [ "$f" -gt 0 ] || { [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; } || [ $((p + f + s)) -eq 0 ]; then
        if [ "$f" -eq 0 ]; then
            broken=$((broken + 1)) fail=$((fail + 1))
            status="$status; suite exited $rc without a failing test"
        fi
        echo "FAIL $name ($status)"
        sed 's/^/    /' "$tmp/out"
    else
        echo "ok   $name ($status)"
        grep -i 'SKIP' "$tmp/out" | sed 's/^/    /'
    fi
}

for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    run_suite "unit/$(basename "$t")" "$t"
done
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    case $t in */lib.sh) continue ;; esac
    run_suite "cli/$(basename "$t" .sh)" sh "$t"
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
