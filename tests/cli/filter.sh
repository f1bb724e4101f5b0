# filter.sh: `llm filter` end to end: the rules on generated prose and on
# planted bad documents, the summary and --report, PII masking, the
# extract | filter pipeline, classifier training with held-out accuracy and
# scoring, thread-count independence, and bad input.
. "$(dirname "$0")/lib.sh"

# gen N SEED VOCAB: N JSONL documents of random sentences (8-14 words from
# VOCAB, a space-separated list, with English stop words mixed in), ids SEED-i.
gen() {
    awk -v n="$1" -v seed="$2" -v vocab="$3" 'BEGIN {
        nv = split(vocab, v, " "); ns = split("the of and to with that have be", s, " ");
        x = seed;
        for (d = 0; d < n; d++) {
            text = "";
            for (k = 0; k < 9; k++) {
                x = (x * 16807) % 2147483647; len = 8 + x % 7; sent = "";
                for (w = 0; w < len; w++) {
                    x = (x * 16807) % 2147483647;
                    word = (x % 4 == 0) ? s[1 + int(x / 4) % ns] : v[1 + int(x / 4) % nv];
                    sent = sent (w ? " " : "") word;
                }
                text = text toupper(substr(sent, 1, 1)) substr(sent, 2) ".";
                text = text (k % 3 == 2 ? "\\n\\n" : " ");
            }
            printf "{\"id\":\"%s-%d\",\"text\":\"%s\"}\n", seed, d, text;
        }
    }'
}
PROSE="river town morning fishermen carried nets water baker opened shop smell fresh bread children ran along narrow streets led old stone bridge market square full people farmers hills sold apples cheese honey musician played quiet song near fountain nobody seemed hurry evening lamps were lit families gathered long tables share dinner neighbours conversation turned harvest coming autumn"
gen 40 7 "$PROSE" >"$T/good.jsonl"
{
    cat "$T/good.jsonl"
    # printf, not echo: dash's echo would turn the \n escapes into newlines
    printf '%s\n' '{"id":"short","text":"Too short to be a document."}'
    printf '{"id":"numbers","text":"%s"}\n' "$(awk 'BEGIN { for (i = 0; i < 80; i++) printf "%d ", i * 7919 }')"
    printf '{"id":"repeat","text":"%s"}\n' "$(awk 'BEGIN { for (i = 0; i < 30; i++) printf "Buy the best shoes with the lowest prices today.\\n" }')"
    gen 1 8 "$PROSE" | sed 's/"8-0"/"lorem"/; s/\\n\\n"}$/\\nLorem ipsum dolor sit amet, consectetur adipiscing elit."}/'
    printf '%s\n' 'this line is not JSON'
} >"$T/mixed.jsonl"

expect "filter with the default rules" 0 "$LLM" filter --report "$T/report.jsonl" -o "$T/kept.jsonl" "$T/mixed.jsonl"
if [ "$(wc -l <"$T/kept.jsonl")" -eq 40 ] && ! grep -q '"id":"\(short\|numbers\|repeat\|lorem\)"' "$T/kept.jsonl"; then
    ok "the 40 prose documents are kept, the 4 planted ones removed"; else nok "the 40 prose documents are kept, the 4 planted ones removed" "$(cut -c1-60 "$T/kept.jsonl" | head)"; fi
if cmp -s "$T/kept.jsonl" "$T/good.jsonl"; then ok "kept documents pass through byte for byte"; else nok "kept documents pass through byte for byte"; fi
has "$T/err" "the summary counts documents in and out" "44 documents in, 40 out"
has "$T/err" "the summary names each rule's removals" "removed by gopher_word_count *1"
has "$T/err" "the bad line is a counted warning" "mixed.jsonl:45: invalid JSON"
if [ "$(wc -l <"$T/report.jsonl")" -eq 44 ]; then ok "--report has one verdict per document"; else nok "--report has one verdict per document" "$(wc -l <"$T/report.jsonl") lines"; fi
has "$T/report.jsonl" "the report says why" '{"id":"lorem","kept":false,"reason":"c4_lorem_ipsum"'
has "$T/report.jsonl" "the repetition rule caught the repeated lines" '{"id":"repeat","kept":false,"reason":"gopher_dup_line_frac","value":0.9667,"threshold":0.3}'

expect "rules can be chosen" 0 "$LLM" filter --rules c4 "$T/mixed.jsonl"
if [ "$(wc -l <"$T/out")" -eq 41 ] && grep -q '"id":"repeat"' "$T/out"; then ok "c4 alone does not catch the repeated lines"; else nok "c4 alone does not catch the repeated lines" "$(wc -l <"$T/out") documents"; fi
expect "thresholds can be changed" 0 "$LLM" filter --rules gopher --min-words 3 --min-stop-words 0 --min-alpha-words 0 "$T/mixed.jsonl"
has "$T/out" "a lower --min-words keeps the short document" '"id":"short"'
expect "one thread" 0 "$LLM" filter -j 1 -o "$T/kept1.jsonl" "$T/mixed.jsonl"
if cmp -s "$T/kept.jsonl" "$T/kept1.jsonl"; then ok "the same output with 1 and 2 threads"; else nok "the same output with 1 and 2 threads"; fi

# PII masking, from stdin.
printf '{"id":1,"text":"Write to jane.doe@example.org or call (555) 123-4567 from 10.1.2.3 today."}\n' >"$T/pii.jsonl"
expect "--mask-pii" 0 sh -c "\"$LLM\" filter --rules none --mask-pii <\"$T/pii.jsonl\""
has "$T/out" "emails, phone numbers and IPv4 addresses are masked" 'Write to |||EMAIL_ADDRESS||| or call |||PHONE_NUMBER||| from |||IP_ADDRESS||| today.'
has "$T/err" "the masks are counted" "1 email addresses, 1 phone numbers, 1 IP addresses"

# The classifier: train on two vocabularies, check held-out accuracy, score.
SPAM="click free winner cheap buy now deal casino bonus offer subscribe prize discount hot sale limited cash loans win unsubscribe"
gen 150 11 "$PROSE" >"$T/pos.jsonl"
gen 150 12 "$SPAM" >"$T/neg.jsonl"
{ gen 30 21 "$PROSE" | sed 's/}$/,"label":1}/'; gen 30 22 "$SPAM" | sed 's/}$/,"label":0}/'; } >"$T/valid.jsonl"
expect "filter train" 0 "$LLM" filter train --positive "$T/pos.jsonl" --negative "$T/neg.jsonl" --valid "$T/valid.jsonl" --bits 16 -o "$T/q.bin"
acc=$(sed -n 's/.*held-out accuracy \([0-9.]*\).*/\1/p' "$T/err")
if [ -n "$acc" ] && awk -v a="$acc" 'BEGIN { exit !(a >= 0.95) }'; then ok "held-out accuracy is reported and high ($acc)"; else nok "held-out accuracy is reported and high" "$(cat "$T/err")"; fi
expect "filter with the classifier" 0 "$LLM" filter --rules none --classifier "$T/q.bin" --threshold 0.5 "$T/valid.jsonl"
if [ "$(wc -l <"$T/out")" -ge 28 ] && [ "$(grep -c '"label":0' "$T/out")" -le 2 ]; then ok "the classifier keeps the good documents"; else nok "the classifier keeps the good documents" "$(wc -l <"$T/out") kept"; fi
if grep -q '"label":1,"quality":0\.[5-9][0-9]*}$' "$T/out"; then ok "the score is written as \"quality\""; else nok "the score is written as \"quality\"" "$(head -c 300 "$T/out")"; fi
expect "train again with the same seed" 0 "$LLM" filter train --positive "$T/pos.jsonl" --negative "$T/neg.jsonl" --bits 16 -j 1 -o "$T/q2.bin"
if cmp -s "$T/q.bin" "$T/q2.bin"; then ok "training is deterministic (any thread count)"; else nok "training is deterministic (any thread count)"; fi

# extract | filter.
printf '<html><body><nav>Home</nav><article><p>%s</p></article></body></html>' \
    "$(sed -n 1p "$T/good.jsonl" | sed 's/.*"text":"\(.*\)"}$/\1/; s/\\n\\n/<\/p><p>/g')" >"$T/page.html"
expect "extract | filter" 0 sh -c "\"$LLM\" extract \"$T/page.html\" | \"$LLM\" filter --rules gopher,c4"
if [ "$(wc -l <"$T/out")" -eq 1 ]; then ok "the extracted page passes the filter"; else nok "the extracted page passes the filter" "$(cat "$T/err")"; fi

# Bad input.
expect "an unknown rule is a usage error" 2 "$LLM" filter --rules gopher,c5 "$T/mixed.jsonl"
has "$T/err" "it names the rule" "unknown rule 'c5'"
expect "a threshold out of range is a usage error" 2 "$LLM" filter --max-dup-line-frac 1.5 "$T/mixed.jsonl"
expect "--threshold without a classifier is a usage error" 2 "$LLM" filter --threshold 0.3 "$T/mixed.jsonl"
printf 'garbage, not a model' >"$T/bad.bin"
expect "a corrupt classifier exits 1" 1 "$LLM" filter --classifier "$T/bad.bin" -o "$T/x.jsonl" "$T/mixed.jsonl"
one_line "the corrupt classifier: one line"
if [ ! -e "$T/x.jsonl" ]; then ok "no output file after an error"; else nok "no output file after an error"; fi
expect "--strict makes a bad line an error" 1 "$LLM" filter --strict -o "$T/y.jsonl" "$T/mixed.jsonl"
has "$T/err" "the error names file and line" "mixed.jsonl:45: invalid JSON near column 1"
if [ ! -e "$T/y.jsonl" ]; then ok "no partial output with --strict"; else nok "no partial output with --strict"; fi
expect "a missing input exits 1" 1 "$LLM" filter "$T/nope.jsonl"
one_line "the missing input: one line"
expect "train without classes is a usage error" 2 "$LLM" filter train --positive "$T/pos.jsonl" -o "$T/q3.bin"
expect "filter --help" 0 "$LLM" filter --help
has "$T/out" "help lists the thresholds" "max-dup-10gram"
echo "1..$n"
