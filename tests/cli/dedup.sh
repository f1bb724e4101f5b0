# dedup.sh: `llm dedup` end to end: the known answer of each mode (exact,
# --bloom, lines, minhash) from files and stdin, -o and --report, a shell
# pipeline, output independent of -j, and bad input: skipped with a counted
# warning, --strict errors, usage errors, no partial output files.
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1

# ids FILE: the "id" values of a JSONL file, space-separated.
ids() { sed -n 's/^{"id":"\{0,1\}\([^",]*\)"\{0,1\},.*/\1/p' "$1" | tr '\n' ' '; }
same() { # DESC GOT WANT
    if [ "$2" = "$3" ]; then ok "$1"; else nok "$1" "got:  $2" "want: $3"; fi
}
# words A B [SKIP...]: "wA w(A+1) ... wB " with the numbers in SKIP replaced.
words() {
    a=$1 b=$2; shift 2
    awk -v a="$a" -v b="$b" -v skip=" $* " 'BEGIN {
        for (i = a; i <= b; i++) printf "%s%d ", index(skip, " " i " ") ? "edit" : "w", i }'
}

P1=$(words 1 200)
P1E=$(words 1 200 60 140)        # exact Jaccard 186/206 = 0.90
P2=$(words 1001 1200)
P2F=$(words 1001 1200 $(seq 1003 5 1200))  # 40 words, one in every shingle: J ~ 0
{
    printf '{"id":"a","text":"Hello, World! This is a test."}\n'
    printf '{"id":"b","text":"hello world   this is a TEST","lang":"en"}\n'
    printf '{"id":"c","text":"%s"}\n' "$P1"
    printf '{"id":"d","text":"%s"}\n' "$(echo "$P1" | tr 'w' 'W')"
    printf '{"id":"e","text":"%s\\nCookie policy: we use cookies."}\n' "$P1E"
    printf '{"id":"f","text":"%s"}\n' "$P2"
    printf '{"id":"g","text":"%s"}\n' "$P2F"
    printf '{"id":"h","text":"Welcome.\\nCookie policy: we use cookies."}\n'
    printf '{"id":7,"text":"Caf\303\251 cr\303\250me","meta":{"k":[1,2]}}\n'
    printf '{"id":"i","text":"cafe CREME!"}\n'
} >"$T/in.jsonl"

# ---- exact ----
expect "--help" 0 "$LLM" dedup --help
has "$T/out" "--help lists --mode" "--mode"
expect "exact from stdin" 0 sh -c "\"$LLM\" dedup <\"$T/in.jsonl\""
same "exact: first of each normalized text, in order" "$(ids "$T/out")" "a c e f g h 7 "
has "$T/err" "exact: summary on stderr" "10 documents in, 7 out, 3 exact duplicates removed"
expect "exact -o --report" 0 "$LLM" dedup --mode exact "$T/in.jsonl" -o "$T/exact.jsonl" --report "$T/rep.jsonl"
same "-o: the file has the documents, stdout nothing" "$(ids "$T/exact.jsonl")|$(cat "$T/out")" "a c e f g h 7 |"
has "$T/rep.jsonl" "exact report" '^{"id":"b","duplicate_of":"a","jaccard":1}$'
has "$T/rep.jsonl" "exact report: numeric ids stay numbers" '^{"id":"i","duplicate_of":7,"jaccard":1}$'
has "$T/exact.jsonl" "kept documents pass through byte for byte" '^{"id":7,"text":"Caf.* cr.*me","meta":{"k":\[1,2\]}}$'
expect "--bloom" 0 "$LLM" dedup --bloom --expected 1000 --fp-rate 0.0001 "$T/in.jsonl"
same "--bloom: the same documents" "$(ids "$T/out")" "a c e f g h 7 "
has "$T/err" "--bloom: prints its memory" "bloom filter: .* bits (.* MiB), .* hashes"

# ---- lines ----
expect "lines" 0 "$LLM" dedup --mode lines "$T/in.jsonl" --report "$T/lrep.jsonl"
has "$T/out" "lines: the repeated line leaves every document" '^{"id":"h","text":"Welcome."}$'
if grep -q "Cookie" "$T/out"; then nok "lines: no cookie line left" "$(grep Cookie "$T/out")"; else ok "lines: no cookie line left"; fi
has "$T/lrep.jsonl" "lines: report" '^{"id":"e","lines_removed":1,"emptied":false}$'
has "$T/lrep.jsonl" "lines: report (2)" '^{"id":"h","lines_removed":1,"emptied":false}$'
has "$T/err" "lines: summary" "2 of 12 lines removed"

# ---- minhash ----
expect "minhash" 0 "$LLM" dedup --mode minhash "$T/in.jsonl" --report "$T/mrep.jsonl"
same "minhash: near duplicates go, the far edit stays" "$(ids "$T/out")" "a c f g h 7 "
has "$T/mrep.jsonl" "minhash report: the edit, with its estimated Jaccard" '^{"id":"e","duplicate_of":"c","jaccard":0\.[89][0-9]*}$'
has "$T/mrep.jsonl" "minhash report: the copy" '^{"id":"d","duplicate_of":"c","jaccard":1}$'
has "$T/err" "minhash: the banding" "14 bands x 9 rows"
expect "minhash --threshold 0.99" 0 "$LLM" dedup --mode minhash -t 0.99 "$T/in.jsonl"
same "a stricter threshold keeps the edit" "$(ids "$T/out")" "a c e f g h 7 "
expect "minhash --bands --rows" 0 "$LLM" dedup --mode minhash --bands 20 --rows 5 --num-perm 100 "$T/in.jsonl"
has "$T/err" "--bands --rows are used" "20 bands x 5 rows"
awk 'BEGIN { for (i = 0; i < 300; i++) { # 40 groups of overlapping 30-word runs
    printf "{\"id\":%d,\"text\":\"", i
    for (w = i % 40; w <= i % 40 + 30; w++) printf "w%d ", w
    printf "%d\"}\n", i % 3 } }' >"$T/many.jsonl"
"$LLM" dedup --mode minhash -j 1 -q "$T/many.jsonl" >"$T/j1" 2>/dev/null
"$LLM" dedup --mode minhash -j 2 -q "$T/many.jsonl" >"$T/j2" 2>/dev/null
if [ -s "$T/j1" ] && cmp -s "$T/j1" "$T/j2"; then ok "-j 1 and -j 2 give the same output"
else nok "-j 1 and -j 2 give the same output" "$(wc -l <"$T/j1") vs $(wc -l <"$T/j2") lines"; fi
if "$LLM" dedup -q --mode lines "$T/in.jsonl" | "$LLM" dedup -q --mode minhash - | "$LLM" dedup -q - >"$T/pipe"; then
    same "a pipeline of modes" "$(ids "$T/pipe")" "a c f g h 7 "
else nok "a pipeline of modes" "exit status non-zero"; fi

# ---- bad input ----
{
    printf '{"id":"x","text":"ok"}\n'
    printf 'not json\n'
    printf '{"id":"y","body":"no text"}\n'
    printf '{"id":"z","text":"bad \377 utf8"}\n'
    printf '\001\002\003 binary \200\201\n'
    printf '{"id":"x2","text":"OK!"}\n'
    printf '{"id":"t","text":"trunc'
} >"$T/bad.jsonl"
for m in exact lines minhash; do
    expect "$m: bad lines skipped" 0 "$LLM" dedup --mode $m "$T/bad.jsonl"
    has "$T/err" "$m: the skips are counted" "skipped 5 bad documents of 7"
done
expect "--strict: a bad line is an error" 1 "$LLM" dedup --strict "$T/bad.jsonl" -o "$T/strict.jsonl"
one_line "--strict: one error line"
has "$T/err" "--strict: the error names file and line" "bad.jsonl:2: invalid JSON"
if [ -e "$T/strict.jsonl" ]; then nok "--strict: no partial output file"; else ok "--strict: no partial output file"; fi
head -c 4000 /dev/zero | tr '\0' '\377' >"$T/garbage.bin"
expect "binary garbage: no crash" 0 "$LLM" dedup --mode minhash "$T/garbage.bin"
expect "a missing file" 1 "$LLM" dedup "$T/nope.jsonl"
one_line "a missing file: one error line"
expect "an unwritable report" 1 "$LLM" dedup "$T/in.jsonl" --report "$T/no/such/dir/r.jsonl" -o "$T/o2.jsonl"
if [ -e "$T/o2.jsonl" ]; then nok "an unwritable report: no output file"; else ok "an unwritable report: no output file"; fi
expect "--mode foo" 2 "$LLM" dedup --mode foo "$T/in.jsonl"
one_line "--mode foo: one error line"
expect "--bloom with minhash" 2 "$LLM" dedup --mode minhash --bloom "$T/in.jsonl"
expect "--threshold 1.5" 2 "$LLM" dedup --mode minhash --threshold 1.5 "$T/in.jsonl"
expect "--bands without --rows" 2 "$LLM" dedup --mode minhash --bands 4 "$T/in.jsonl"
expect "--bands x --rows > --num-perm" 2 "$LLM" dedup --mode minhash --bands 20 --rows 10 "$T/in.jsonl"
expect "--num-perm 0" 2 "$LLM" dedup --mode minhash --num-perm 0 "$T/in.jsonl"
expect "--fp-rate 2" 2 "$LLM" dedup --bloom --fp-rate 2 "$T/in.jsonl"
expect "--expected 10^20 bits: refused" 1 "$LLM" dedup --bloom --expected 9000000000000000000 --fp-rate 1e-9 "$T/in.jsonl"
one_line "an absurd Bloom filter: one error line"
expect "an unknown flag" 2 "$LLM" dedup --treshold 0.5 "$T/in.jsonl"
has "$T/err" "an unknown flag: a hint" "threshold"
echo "1..$n"
