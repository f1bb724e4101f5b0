#!/bin/sh
# dedup_bench.sh: `llm dedup` throughput in MB/s of text (the "text" fields),
# each mode on JOBS threads, on >= 210 MB of JSONL documents: the text of
# bench/data/corpus.txt (sh bench/make_corpus.sh; else, with a warning, the
# repository's Markdown) cut into ~4 KB documents at blank lines, then random
# documents again with 3% of their words replaced (near duplicates at Jaccard
# ~0.75-0.85) until the text reaches 210 MB. Run from the repository root:
#   LLM=./llm sh bench/dedup_bench.sh
# Environment: LLM (default ./llm), JOBS (threads, default 2), RUNS (timed runs
# per mode, the best is kept; default 3), OUT (default bench/data/dedup), ROWS
# (a file to append bench/data_bench.sh's table rows to). Needs python3.
set -eu
LLM=${LLM:-./llm}
JOBS=${JOBS:-2}
RUNS=${RUNS:-3}
OUT=${OUT:-bench/data/dedup}
DOCS=$OUT/docs.jsonl
die() { echo "dedup_bench: error: $*" >&2; exit 1; }
[ -x "$LLM" ] || die "no llm binary at $LLM (make CUDA=0, or LLM=path)"
command -v python3 >/dev/null 2>&1 || die "python3 is not installed"
mkdir -p "$OUT"
if [ ! -s "$DOCS" ]; then
    python3 - "$DOCS" <<'EOF'
import glob, json, os, random, sys
random.seed(1)
if os.path.isfile("bench/data/corpus.txt"):
    src = open("bench/data/corpus.txt", encoding="utf-8").read()
else:
    print("dedup_bench: warning: no bench/data/corpus.txt (sh bench/make_corpus.sh): using the repository's "
          "Markdown, so most documents will be near duplicates of each other", file=sys.stderr)
    src = "\n\n".join(open(p, encoding="utf-8", errors="replace").read()
                      for p in sorted(glob.glob("docs/*.md") + glob.glob("bench/*.md") + ["README.md"]))
docs, cur, n = [], [], 0
for p in src.split("\n\n"):
    cur.append(p); n += len(p)
    if n > 4000:
        docs.append("\n\n".join(cur)); cur, n = [], 0
if cur:
    docs.append("\n\n".join(cur))
pool = src[:200000].split()
total, k, words = 0, 0, 0
with open(sys.argv[1], "w", encoding="utf-8") as out:
    def put(t):
        global total, k
        out.write(json.dumps({"id": "d%d" % k, "text": t}, ensure_ascii=False) + "\n")
        total += len(t.encode("utf-8")); k += 1
    for d in docs:
        put(d)
    while total < 210_000_000:
        w = random.choice(docs).split(" ")
        put(" ".join(random.choice(pool) if random.random() < 0.03 else x for x in w))
print("dedup_bench: %d documents, %.1f MB of text" % (k, total / 1e6), file=sys.stderr)
EOF
fi
echo "dedup_bench: $(wc -c <"$DOCS") bytes of JSONL in $DOCS; $(nproc) cores, -j $JOBS, best of $RUNS; load $(cut -d' ' -f1-3 /proc/loadavg)"
# words (= 5-word shingles, but for 4 per document) counted as llm does: runs of letters and digits
WORDS=$(python3 -c "
import json, re, sys
print(sum(len(re.findall(r'[^\W_]+', json.loads(l)['text'])) for l in open(sys.argv[1], encoding='utf-8')))" "$DOCS")

table=""
run() { # NAME ARGS...: RUNS runs; keeps the fastest (seconds as llm dedup reports them)
    name=$1; shift
    best="" i=0
    while [ $i -lt "$RUNS" ]; do
        /usr/bin/time -f "maxrss %M" "$LLM" dedup -j "$JOBS" "$@" "$DOCS" >/dev/null 2>"$OUT/run.err" ||
            { cat "$OUT/run.err" >&2; die "$name failed"; }
        sec=$(sed -n 's/.*MB of text in \([0-9.]*\) s .*/\1/p' "$OUT/run.err")
        if [ -z "$best" ] || awk -v a="$sec" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=$sec
            cp "$OUT/run.err" "$OUT/best.err"
        fi
        i=$((i + 1))
    done
    mb=$(sed -n 's/.*; \([0-9.]*\) MB of text in .*/\1/p' "$OUT/best.err")
    mem=$(sed -n 's/^dedup: \([0-9.]*\) MiB of .*/\1/p' "$OUT/best.err")
    rss=$(($(sed -n 's/^maxrss \([0-9]*\)/\1/p' "$OUT/best.err") / 1024))
    what=$(sed -n 's/^dedup: \([0-9]* documents in.*\)/\1/p' "$OUT/best.err")
    rate=$(awk -v m="$mb" -v s="$best" 'BEGIN { printf "%.1f", m / s }')
    echo "result: dedup $name: $mb MB of text in $best s = $rate MB/s; $what; $mem MiB held, max RSS $rss MiB"
    table="$table| $name | $mb | $best | **$rate** | $mem | $rss | $what |
"
    if [ -n "${ROWS:-}" ]; then
        printf '| llm dedup %s | JSONL documents (corpus + near duplicates) | %.0f MB | %s s | **%.0f MB/s** | -j %s; MB/s of text; %s; max RSS %s MiB |\n' \
            "$name" "$mb" "$best" "$rate" "$JOBS" "$what" "$rss" >>"$ROWS"
    fi
    eval "sec_$(echo "$name" | sed 's/[^a-z0-9]/_/g')=$best"
}
run "--mode exact" --mode exact
run "--mode exact --bloom" --mode exact --bloom --expected 100000 --fp-rate 0.001
run "--mode lines" --mode lines
run "--mode minhash" --mode minhash
echo "dedup_bench: load after $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| llm dedup (-j $JOBS) | MB of text | s | MB/s | MiB held | max RSS MiB | result |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
printf '%s' "$table"
echo
awk -v w="$WORDS" -v s="$sec___mode_minhash" -v j="$JOBS" 'BEGIN {
    printf "minhash: %d words (about as many 5-word shingles) in %.2f s = %.2fM shingles/s on -j %s,\n", w, s, w / s / 1e6, j
    printf "%.0fx the ~10^5 shingles/s (128 permutations) of pure-Python datasketch.\n", w / s / 1e5 }'
