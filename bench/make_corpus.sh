#!/bin/sh
# make_corpus.sh: builds bench/data/corpus.txt, the English corpus of the
# tokenizer benchmarks (about 140 MB of documentation prose), from Debian 12
# (bookworm) packages: see bench/README.md for what is in it and why.
#   sh bench/make_corpus.sh            (from the repository root)
# Needs: apt-get (download only: no root unless the package lists are missing,
# then it runs apt-get update), dpkg-deb, tar, xz, python3 (standard library).
# Downloads go to bench/data/debs/ and are reused when present, so a rerun
# builds the same corpus; a missing package is fetched at the version Debian
# serves then. The corpus is the concatenation, in this order, of
#   linux-source-6.1     Documentation/**/*.rst|*.txt, less translations/ and devicetree/
#   python3.11-doc       the reStructuredText sources of the Python docs (_sources/)
#   sphinx-doc, debian-policy, developers-reference   their _sources/ too
#   perl-doc             the core pod pages (perlfunc, perlre, perlguts, ...)
#   vim-runtime          Vim's help files (doc/*.txt)
#   git-doc              Git's AsciiDoc manual pages and guides (*.txt)
#   postgresql-doc-15    the PostgreSQL manual (HTML -> text)
#   python-django-doc    the Django docs (HTML -> text)
#   openjdk-17-doc       the Java SE API docs: javadoc's description blocks only
#   dict-gcide           GCIDE (Webster's 1913 + WordNet), less "[source]" lines
# files of a source sorted by name (LC_ALL=C), each file's text followed by a
# blank line. Prints each source's size, the total, and the sha256.
set -eu
LC_ALL=C
export LC_ALL
BENCH=$(cd "$(dirname "$0")" && pwd)
DATA=$BENCH/data
DEBS=$DATA/debs
SRC=$DATA/src
OUT=$DATA/corpus.txt
PKGS="linux-source-6.1 python3.11-doc sphinx-doc debian-policy developers-reference perl-doc
vim-runtime git-doc postgresql-doc-15 python-django-doc openjdk-17-doc dict-gcide"

die() { echo "make_corpus: error: $*" >&2; exit 1; }
for t in apt-get dpkg-deb tar xz python3 sha256sum; do
    command -v $t >/dev/null 2>&1 || die "$t is not installed"
done
mkdir -p "$DEBS" "$SRC"

# ---------------------------------------------------------------- download
missing=
for p in $PKGS; do
    ls "$DEBS/${p}_"*.deb >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "make_corpus: downloading$missing"
    # apt-get download writes to the current folder; as root it warns that
    # _apt cannot write there (harmless: it downloads unsandboxed).
    if ! (cd "$DEBS" && apt-get download $missing) >"$DATA/download.log" 2>&1; then
        echo "make_corpus: apt-get download failed; updating the package lists and retrying" >&2
        apt-get update >>"$DATA/download.log" 2>&1 || die "apt-get update failed (see $DATA/download.log)"
        (cd "$DEBS" && apt-get download $missing) >>"$DATA/download.log" 2>&1 ||
            die "apt-get download$missing failed (see $DATA/download.log)"
    fi
fi

# ----------------------------------------------------------------- extract
for p in $PKGS; do
    n=$(ls "$DEBS/${p}_"*.deb | wc -l)
    [ "$n" -eq 1 ] || die "$DEBS holds $n .deb files of $p (keep one)"
    deb=$(ls "$DEBS/${p}_"*.deb)
    ver=$(dpkg-deb -f "$deb" Version)
    if [ "$(cat "$SRC/$p.version" 2>/dev/null)" != "$ver" ]; then
        rm -rf "${SRC:?}/$p"
        mkdir -p "$SRC/$p"
        dpkg-deb -x "$deb" "$SRC/$p" || die "dpkg-deb -x $deb failed"
        echo "$ver" >"$SRC/$p.version"
    fi
done
K=$SRC/linux-source-6.1
if [ ! -d "$K/Documentation" ]; then
    tar -xJf "$K"/usr/src/linux-source-6.1.tar.xz -C "$K" --strip-components=1 \
        linux-source-6.1/Documentation || die "cannot extract Documentation/ from linux-source-6.1.tar.xz"
fi

# ---------------------------------------------------------------- assemble
TMP=$OUT.tmp
: >"$TMP"
: >"$DATA/corpus.sources"
# part NAME MODE DIR FIND-ARGS...: the files under DIR that FIND-ARGS select,
# sorted, converted by totext.py MODE, appended to the corpus.
part() {
    name=$1 mode=$2 dir=$3
    shift 3
    [ -d "$dir" ] || die "$name: no folder $dir"
    before=$(wc -c <"$TMP")
    nfiles=$(cd "$dir" && find . -type f "$@" | wc -l)
    [ "$nfiles" -gt 0 ] || die "$name: no files in $dir"
    (cd "$dir" && find . -type f "$@" -print0 | sort -z |
        xargs -0 python3 "$BENCH/totext.py" --"$mode") >>"$TMP" || die "$name: totext.py failed"
    after=$(wc -c <"$TMP")
    line=$(printf '%-22s %-32s %6d files %10d bytes' "$name" "$(cat "$SRC/$name.version")" \
        "$nfiles" $((after - before)))
    echo "$line"
    echo "$line" >>"$DATA/corpus.sources"
}
part linux-source-6.1 text "$K/Documentation" \( -name '*.rst' -o -name '*.txt' \) \
    -not -path './translations/*' -not -path './devicetree/*'
part python3.11-doc text "$SRC/python3.11-doc/usr/share/doc/python3.11/html/_sources" -name '*.txt'
part sphinx-doc text "$SRC/sphinx-doc/usr/share/doc/sphinx-doc/html/_sources" -name '*.txt'
part debian-policy text "$SRC/debian-policy/usr/share/doc/debian-policy/policy.html/_sources" -name '*.txt'
part developers-reference text "$SRC/developers-reference/usr/share/developers-reference/_sources" -name '*.txt'
part perl-doc text "$SRC/perl-doc/usr/share/perl/5.36.0/pod" -name '*.pod'
part vim-runtime text "$SRC/vim-runtime/usr/share/vim/vim90/doc" -name '*.txt'
part git-doc text "$SRC/git-doc/usr/share/doc/git-doc" -name '*.txt'
part postgresql-doc-15 html "$SRC/postgresql-doc-15/usr/share/doc/postgresql-doc-15/html" -name '*.html'
part python-django-doc html "$SRC/python-django-doc/usr/share/doc/python-django-doc/html" -name '*.html' \
    -not -path './_modules/*' -not -name 'genindex*' -not -name 'py-modindex.html' -not -name 'search.html'
part openjdk-17-doc javadoc "$SRC/openjdk-17-doc/usr/share/doc/openjdk-17-jre-headless/api" -name '*.html'
part dict-gcide gcide "$SRC/dict-gcide/usr/share/dictd" -name 'gcide.dict.dz'

# ------------------------------------------------------------------- check
python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$TMP" ||
    die "the corpus is not valid UTF-8"
if grep -q '<|endoftext|>' "$TMP"; then
    die "the corpus contains the text <|endoftext|> (the encode benchmark wants none)"
fi
mv "$TMP" "$OUT"
size=$(wc -c <"$OUT")
[ "$size" -ge 100000000 ] || die "the corpus has $size bytes, fewer than 100 MB"
sum=$(sha256sum "$OUT" | cut -d' ' -f1)
echo "corpus: $OUT: $size bytes ($(awk "BEGIN{printf \"%.1f\", $size/1e6}") MB), $(wc -l <"$OUT") lines"
echo "sha256: $sum"
echo "$sum  corpus.txt" >"$DATA/corpus.sha256"
