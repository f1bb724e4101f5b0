#!/bin/sh
# data_bench.sh: throughput of the data pipeline on 2 cores, each stage on at
# least 200 MB: `llm extract` (MB/s of HTML in), `llm filter` (MB/s of text
# in), and `llm dedup` (its part below). Run from the repository root:
#   LLM=./llm sh bench/data_bench.sh
# Environment:
#   LLM     the binary (default ./llm)
#   JOBS    threads (default 2)
#   MB      the least input per stage in MB (default 200)
#   OUT     work folder (default bench/data/pipeline)
#   RUNS    timed runs per measurement, the best is kept (default 3)
# Input, with nothing downloaded: the HTML pages under bench/data/src when
# bench/make_corpus.sh has unpacked its Debian packages there (PostgreSQL,
# Django, Python and Java SE documentation: real-world generated HTML), else
# the repository's own Markdown files (docs/, bench/, README) wrapped into
# pages with the usual boilerplate (head, scripts, styles, nav, footer). The
# pages are written as one uncompressed WARC (HTTP responses) and repeated
# until it holds MB of HTML. Filter reads the extracted JSONL, repeated until
# it holds MB of text. Ends with the markdown rows of bench/README.md's table.
set -eu
LLM=${LLM:-./llm}
JOBS=${JOBS:-2}
MB=${MB:-200}
OUT=${OUT:-bench/data/pipeline}
RUNS=${RUNS:-3}
LC_ALL=C
export LC_ALL

die() { echo "data_bench: error: $*" >&2; exit 1; }
[ -x "$LLM" ] || die "no executable $LLM (build it: make CUDA=0; or set LLM=path)"
command -v python3 >/dev/null 2>&1 || die "python3 is not installed"
mkdir -p "$OUT"
ROWS=$OUT/rows.md
: >"$ROWS"
echo "data_bench: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), -j $JOBS"

# ---------------------------------------------------------------- input
WARC=$OUT/pages.warc
if [ ! -s "$WARC" ] || [ "$(cat "$OUT/pages.mb" 2>/dev/null)" != "$MB" ]; then
    python3 - "$WARC" "$MB" <<'EOF'
import glob, html, os, re, sys
out_path, mb = sys.argv[1], float(sys.argv[2])
pages = []  # (name, html bytes)
src = sorted(p for p in glob.glob('bench/data/src/**/*.html', recursive=True) if os.path.isfile(p))
if src:
    for p in src:
        with open(p, 'rb') as f:
            pages.append((p, f.read()))
    kind = 'bench/data/src HTML (%d pages)' % len(pages)
else:
    md = sorted(glob.glob('docs/*.md') + glob.glob('bench/*.md') + glob.glob('README.md') +
                glob.glob('tests/tok/*.md'))
    for p in md:
        text = open(p, encoding='utf-8', errors='replace').read()
        body, code = [], False
        for block in re.split(r'\n\s*\n', text):
            b = block.strip()
            if not b:
                continue
            if b.startswith('```'):
                body.append('<pre><code>%s</code></pre>' % html.escape(b.strip('`')))
            elif b.startswith('#'):
                lvl = min(len(b) - len(b.lstrip('#')), 6)
                body.append('<h%d>%s</h%d>' % (lvl, html.escape(b.lstrip('# ')), lvl))
            elif b.startswith(('- ', '* ', '1. ')):
                items = re.split(r'\n(?:- |\* |\d+\. )', '\n' + b)[1:]
                body.append('<ul>%s</ul>' % ''.join('<li>%s</li>' % html.escape(i) for i in items))
            elif b.startswith('|'):
                rows = [r.strip('|').split('|') for r in b.splitlines() if not set(r) <= set('|-: ')]
                body.append('<table>%s</table>' % ''.join(
                    '<tr>%s</tr>' % ''.join('<td>%s</td>' % html.escape(c.strip()) for c in r) for r in rows))
            else:
                body.append('<p>%s</p>' % html.escape(b).replace('\n', ' '))
        page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>%s</title>'
                '<link rel="stylesheet" href="/s.css"><style>body{font:16px sans-serif}'
                '.nav a{margin:0 1em}</style><script>window.dataLayer=[];function g(){'
                'dataLayer.push(arguments)}</script></head><body><header><nav class="nav">'
                '<a href="/">Home</a><a href="/docs">Docs</a><a href="/bench">Benchmarks</a>'
                '</nav></header><main><article>%s</article></main><aside>Related: '
                '<a href="/a">a</a></aside><footer>&copy; 2024 llm &middot; '
                '<a href="/privacy">Privacy</a></footer><script src="/app.js"></script>'
                '</body></html>\n') % (html.escape(p), '\n'.join(body))
        pages.append((p, page.encode('utf-8')))
    kind = 'repository Markdown wrapped into %d pages' % len(pages)
total, rep = 0, 0
with open(out_path, 'wb') as out:
    while total < mb * 1e6:
        for name, body in pages:
            http = (b'HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n'
                    % len(body)) + body
            hdr = ('WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://bench.example/%d/%s\r\n'
                   'Content-Type: application/http; msgtype=response\r\nContent-Length: %d\r\n\r\n'
                   % (rep, name, len(http))).encode()
            out.write(hdr + http + b'\r\n\r\n')
            total += len(body)
            if total >= mb * 1e6:
                break
        rep += 1
print('data_bench: input: %s, %d pass(es), %.1f MB of HTML' % (kind, rep, total / 1e6))
EOF
    echo "$MB" >"$OUT/pages.mb"
fi

# best_of CMD...: runs CMD RUNS times; sets BEST (s, the fastest wall time).
best_of() {
    BEST=
    i=0
    while [ $i -lt "$RUNS" ]; do
        t0=$(date +%s.%N)
        "$@"
        t1=$(date +%s.%N)
        BEST=$(awk -v a="$t0" -v b="$t1" -v best="$BEST" 'BEGIN { t = b - a; if (best == "" || t < best) best = t; printf "%.3f", best }')
        i=$((i + 1))
    done
}
rate() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / 1e6 / t }'; }
row() { # stage, input, MB, seconds, notes
    r=$(rate "$3" "$4")
    echo "result: $1: $(awk -v b="$3" 'BEGIN { printf "%.1f", b / 1e6 }') MB in $4 s = $r MB/s ($5)"
    printf '| %s | %s | %.0f MB | %s s | **%s MB/s** | %s |\n' "$1" "$2" "$(awk -v b="$3" 'BEGIN { print b / 1e6 }')" "$4" "$r" "$5" >>"$ROWS"
}

# ---------------------------------------------------------------- extract
html_bytes=$(python3 -c "
import sys
n = 0
with open('$WARC', 'rb') as f:
    data = f.read()
i = 0
while True:
    j = data.find(b'\r\n\r\nHTTP/1.1 200 OK', i)
    if j < 0: break
    k = data.find(b'\r\n\r\n', j + 4)
    l = data.find(b'Content-Length: ', j + 4, k)
    n += int(data[l + 16:k].split(b'\r\n')[0])
    i = k
print(n)")
best_of "$LLM" extract -q -j "$JOBS" -o "$OUT/text.jsonl" "$WARC"
row "llm extract" "WARC of HTML pages" "$html_bytes" "$BEST" "-j $JOBS; MB/s of HTML in; $(wc -c <"$OUT/text.jsonl" | awk '{ printf "%.0f", $1 / 1e6 }') MB of JSONL out"

# ---------------------------------------------------------------- filter
FIN=$OUT/filter_in.jsonl
if [ ! -s "$FIN" ] || [ "$FIN" -ot "$OUT/text.jsonl" ]; then
    : >"$FIN"
    while [ "$(wc -c <"$FIN")" -lt $((MB * 1000000 + MB * 100000)) ]; do
        cat "$OUT/text.jsonl" >>"$FIN"
    done
fi
text_bytes=$("$LLM" filter -j "$JOBS" --rules none "$FIN" 2>&1 >/dev/null | sed -n 's/.*; \([0-9.]*\) MB -> .*/\1/p' | awk '{ printf "%.0f", $1 * 1e6 }')
best_of "$LLM" filter -q -j "$JOBS" -o "$OUT/kept.jsonl" "$FIN"
kept=$(wc -l <"$OUT/kept.jsonl")
row "llm filter (gopher, gopher-rep, c4)" "extracted JSONL" "$text_bytes" "$BEST" "-j $JOBS; MB/s of text in; $kept of $(wc -l <"$FIN") documents kept"
best_of "$LLM" filter -q -j "$JOBS" --mask-pii -o "$OUT/kept_pii.jsonl" "$FIN"
row "llm filter --mask-pii" "extracted JSONL" "$text_bytes" "$BEST" "-j $JOBS; all rules plus PII masking"
# the classifier, trained to tell documents the rules keep from those they remove
"$LLM" filter -q -j "$JOBS" --report "$OUT/report.jsonl" "$OUT/text.jsonl" >/dev/null
paste -d '\t' "$OUT/report.jsonl" "$OUT/text.jsonl" | awk -F '\t' '$1 ~ /"kept":true/ { print $2 }' | head -n 5000 >"$OUT/pos.jsonl"
paste -d '\t' "$OUT/report.jsonl" "$OUT/text.jsonl" | awk -F '\t' '$1 ~ /"kept":false/ { print $2 }' | head -n 5000 >"$OUT/neg.jsonl"
if [ -s "$OUT/pos.jsonl" ] && [ -s "$OUT/neg.jsonl" ]; then
    "$LLM" filter train -q --positive "$OUT/pos.jsonl" --negative "$OUT/neg.jsonl" -o "$OUT/q.bin"
    best_of "$LLM" filter -q -j "$JOBS" --rules none --classifier "$OUT/q.bin" -o "$OUT/scored.jsonl" "$FIN"
    row "llm filter --classifier" "extracted JSONL" "$text_bytes" "$BEST" "-j $JOBS; classifier alone (2^20 buckets), score written to every kept document"
fi

# ---------------------------------------------------------------- dedup
# bench/dedup_bench.sh builds its own documents (bench/data/corpus.txt cut
# into ~4 KB documents plus near-duplicate copies: 210 MB of text) and times
# every mode, best of $RUNS; its rows are appended to $ROWS.
LLM=$LLM JOBS=$JOBS RUNS=$RUNS ROWS=$ROWS sh bench/dedup_bench.sh

echo "data_bench: load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| stage | input | size | best of $RUNS | rate | notes |"
echo "|---|---|---|---|---|---|"
cat "$ROWS"
