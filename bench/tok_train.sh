#!/bin/sh
# tok_train.sh: BPE training, `llm tokenize train` against SentencePiece's
# `spm_train --model_type=bpe`, on the same input, at each vocabulary size:
# wall time, CPU time and peak memory (/usr/bin/time -v, "Maximum resident
# set size"), then the speed-up (spm wall / llm wall) and the memory ratio
# (llm peak RSS / spm peak RSS). Run from the repository root:
#   LLM=./llm sh bench/tok_train.sh
# Environment:
#   LLM            the binary (default ./llm)
#   CORPUS         the input (default bench/data/corpus.txt: sh bench/make_corpus.sh)
#   VOCABS         vocabulary sizes (default "8192 32768")
#   JOBS           threads for both tools (default 2)
#   SPM_PREFIX_MB  if set (e.g. 25), spm_train runs on the corpus's first
#                  SPM_PREFIX_MB MB (cut at a line end), and llm runs both on
#                  that prefix (the ratios compare the same input) and on the
#                  whole corpus; unset: both run on the whole corpus
#   SPM_TIMEOUT    seconds after which an spm_train run is stopped (default
#                  none); its time then counts as at least that, its ratio as
#                  a lower bound (">=")
#   OUT            work folder (default bench/data/train)
# Prints one "result" line per run and one "ratio" line per comparison, and
# ends with the markdown rows of bench/README.md's table.
set -eu
LLM=${LLM:-./llm}
CORPUS=${CORPUS:-bench/data/corpus.txt}
VOCABS=${VOCABS:-8192 32768}
JOBS=${JOBS:-2}
SPM_PREFIX_MB=${SPM_PREFIX_MB:-}
SPM_TIMEOUT=${SPM_TIMEOUT:-0}
OUT=${OUT:-bench/data/train}
LC_ALL=C
export LC_ALL

die() { echo "tok_train: error: $*" >&2; exit 1; }
[ -x "$LLM" ] || die "no executable $LLM (build it: make CUDA=0; or set LLM=path)"
[ -f "$CORPUS" ] || die "no corpus $CORPUS (run: sh bench/make_corpus.sh)"
if [ ! -x /usr/bin/time ]; then
    echo "tok_train: installing time" >&2
    apt-get install -y time >/dev/null || die "cannot install time (GNU time)"
fi
if ! command -v spm_train >/dev/null 2>&1; then
    echo "tok_train: installing sentencepiece" >&2
    apt-get install -y sentencepiece >/dev/null 2>&1 ||
        { apt-get update >/dev/null 2>&1 && apt-get install -y sentencepiece >/dev/null; } ||
        die "cannot install sentencepiece (apt-get install sentencepiece)"
fi
command -v python3 >/dev/null 2>&1 || die "python3 is not installed"
mkdir -p "$OUT"
ROWS=$OUT/rows.md
: >"$ROWS"

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

# timed NAME CMD...: runs CMD under /usr/bin/time -v (output in $OUT/NAME.*);
# sets WALL (s), CPU (user + sys s), RSS (MB), TIMEDOUT (0|1).
timed() {
    name=$1
    shift
    TIMEDOUT=0
    if [ "$SPM_TIMEOUT" -gt 0 ] && [ "${name#spm}" != "$name" ]; then
        set -- timeout -s INT "$SPM_TIMEOUT" "$@"
    fi
    if ! /usr/bin/time -v -o "$OUT/$name.time" "$@" >"$OUT/$name.log" 2>&1; then
        if grep -q 'Command exited with non-zero status 124' "$OUT/$name.time" ||
            grep -q 'Command terminated by signal 2' "$OUT/$name.time"; then
            TIMEDOUT=1
        else
            tail -n 20 "$OUT/$name.log" >&2
            die "$name failed: $*"
        fi
    fi
    WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.2f", s }' "$OUT/$name.time")
    CPU=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$OUT/$name.time")
    RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$OUT/$name.time")
}

# result TOOL VOCAB INPUT: prints and records one run.
result() {
    bound=
    [ "$TIMEDOUT" = 1 ] && bound='>='
    echo "result tool=$1 vocab=$2 input=$(basename "$3") input_mb=$(mb "$(wc -c <"$3")") wall_s=$bound$WALL cpu_s=$bound$CPU peak_rss_mb=$RSS${bound:+ (stopped at SPM_TIMEOUT)}"
}

run_llm() { # VOCAB INPUT TAG
    timed "llm.$3.$1" "$LLM" tokenize train -q -j "$JOBS" --vocab-size "$1" -o "$OUT/llm.$3.$1.json" "$2"
    n=$(python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(len(j["model"]["vocab"]) + sum(1 for t in j["added_tokens"] if t["content"] not in j["model"]["vocab"]))' "$OUT/llm.$3.$1.json")
    [ "$n" -eq "$1" ] || echo "tok_train: warning: llm wrote $n tokens, not $1" >&2
    result llm "$1" "$2"
}

run_spm() { # VOCAB INPUT TAG
    lines=$(wc -l <"$2")
    # Every line of the input is a sentence (--input_sentence_size above the
    # line count, no sampling, no length cut); the same threads; no
    # normalization (llm has none); every character kept; no byte fallback.
    timed "spm.$3.$1" spm_train --input="$2" --model_prefix="$OUT/spm.$3.$1" --model_type=bpe \
        --vocab_size="$1" --input_sentence_size=$((lines + 1)) --shuffle_input_sentence=false \
        --max_sentence_length=1000000 --num_threads="$JOBS" --character_coverage=1.0 \
        --byte_fallback=false --normalization_rule_name=identity
    if [ "$TIMEDOUT" = 0 ]; then
        n=$(wc -l <"$OUT/spm.$3.$1.vocab")
        [ "$n" -eq "$1" ] || echo "tok_train: warning: spm wrote $n pieces, not $1" >&2
    fi
    result spm_train "$1" "$2"
}

# Keep the input in the page cache for both tools.
cat "$CORPUS" >/dev/null
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -m), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# llm: $("$LLM" --version 2>/dev/null | head -n 1); $(spm_train --version 2>&1 | head -n 1)"
echo "# corpus: $CORPUS, $(wc -c <"$CORPUS") bytes, sha256 $(sha256sum "$CORPUS" | cut -c1-16)..."

SPM_INPUT=$CORPUS
if [ -n "$SPM_PREFIX_MB" ]; then
    SPM_INPUT=$OUT/prefix${SPM_PREFIX_MB}MB.txt
    # the first SPM_PREFIX_MB*10^6 bytes, less the last (partial) line
    head -c $((SPM_PREFIX_MB * 1000000)) "$CORPUS" | sed '$d' >"$SPM_INPUT"
    echo "# prefix: $SPM_INPUT, $(wc -c <"$SPM_INPUT") bytes (spm_train and llm both run on it)"
fi

for v in $VOCABS; do
    run_llm "$v" "$CORPUS" full
    lw=$WALL lr=$RSS
    echo "| llm tokenize train -j $JOBS | $v | $(mb "$(wc -c <"$CORPUS")") | $WALL | $CPU | $RSS | | |" >>"$ROWS"
    if [ -n "$SPM_PREFIX_MB" ]; then
        run_llm "$v" "$SPM_INPUT" prefix
        lw=$WALL lr=$RSS
        echo "| llm tokenize train -j $JOBS | $v | $(mb "$(wc -c <"$SPM_INPUT")") (prefix) | $WALL | $CPU | $RSS | | |" >>"$ROWS"
    fi
    run_spm "$v" "$SPM_INPUT" "$([ -n "$SPM_PREFIX_MB" ] && echo prefix || echo full)"
    speed=$(awk -v s="$WALL" -v l="$lw" 'BEGIN { printf "%.1f", s / l }')
    mem=$(awk -v s="$RSS" -v l="$lr" 'BEGIN { printf "%.2f", l / s }')
    bound=
    [ "$TIMEDOUT" = 1 ] && bound='>='
    echo "ratio vocab=$v input_mb=$(mb "$(wc -c <"$SPM_INPUT")") speedup_wall=$bound${speed}x (target >= 15x) memory_llm_over_spm=${mem} (target <= 1)"
    echo "| spm_train --model_type=bpe (--num_threads $JOBS) | $v | $(mb "$(wc -c <"$SPM_INPUT")")$([ -n "$SPM_PREFIX_MB" ] && echo ' (prefix)') | $bound$WALL | $bound$CPU | $RSS | $bound${speed}x | ${mem} |" >>"$ROWS"
done

echo "# done $(date -u '+%H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| command | vocab | input MB | wall s | CPU s | peak RSS MB | llm speed-up (spm wall / llm wall) | memory (llm RSS / spm RSS) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
cat "$ROWS"
