/* test_html.c: HTML to text (structure, dropped elements, entities, charsets,
 * malformed markup, garbage), the charset decoders, WARC records (plain, gzip,
 * chunked and gzip-coded HTTP bodies, truncation) and the extract pipeline. */
#include "testutil.h"

#include <zlib.h>

#include "core/err.h"
#include "core/str.h"
#include "data/charset.h"
#include "data/extract.h"
#include "data/html.h"
#include "data/warc.h"

static struct llm_html *conv;

static int setup(void **state)
{
    (void)state;
    return llm_html_new(&conv);
}

static int teardown(void **state)
{
    (void)state;
    llm_html_free(conv);
    return 0;
}

/* The text of html (n bytes; strlen when 0) with options o (NULL = defaults). */
static const char *text_of(const char *html, size_t n, const struct llm_html_opts *o)
{
    const char *t;
    size_t len;
    assert_int_equal(llm_html_to_text(conv, html, n ? n : strlen(html), o, &t, &len, NULL), 0);
    assert_int_equal(strlen(t), len);
    assert_true(llm_utf8_valid(t, len, NULL));
    return t;
}

#define EXPECT_TEXT(html, want) assert_string_equal(text_of(html, 0, NULL), want)

static void test_structure(void **state)
{
    (void)state;
    EXPECT_TEXT("<p>One</p><p>Two</p>", "One\n\nTwo");
    EXPECT_TEXT("<div>a</div><div>b</div>c", "a\nb\nc");
    EXPECT_TEXT("x<br>y<br><br>z", "x\ny\n\nz");
    EXPECT_TEXT("<h1>Title</h1>Body text", "Title\n\nBody text");
    EXPECT_TEXT("<ul><li>one</li><li>two<li>three</ul>after", "- one\n- two\n- three\nafter");
    EXPECT_TEXT("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>",
                "a\tb\nc\td");
    EXPECT_TEXT("  lots \n\t of   <b>white</b>\n space  ", "lots of white space");
    EXPECT_TEXT("<pre>  keep\n    this</pre>next", "  keep\n    this\n\nnext");
    EXPECT_TEXT("text<pre>\ncode\n</pre>", "text\n\ncode"); /* the newline after <pre> is not content */
    EXPECT_TEXT("inline <a href='x'>link</a> and <span>span</span>.", "inline link and span.");
    EXPECT_TEXT("", "");
}

static void test_dropped(void **state)
{
    (void)state;
    EXPECT_TEXT("<html><head><title>T</title><style>p{color:red}</style>"
                "<script>var a = '<p>no</p>';</script></head><body>Hello</body></html>", "Hello");
    EXPECT_TEXT("a<script type=x>if (a < b) { document.write('</div>') }</script>b", "ab");
    EXPECT_TEXT("<nav><ul><li>Home<li>About</ul></nav><p>Content</p><footer>(c) us</footer>",
                "Content");
    EXPECT_TEXT("<aside>ad</aside>text<noscript>enable js</noscript>", "text");
    EXPECT_TEXT("<div style=\"display: none\">hidden</div>shown<span hidden>no</span>",
                "shown");
    EXPECT_TEXT("<div role=\"navigation\"><div>menu</div></div>main", "main");
    EXPECT_TEXT("<form>Name: <input name=n><select><option>A<option>B</select>"
                "<button>Send</button></form>", "Name:");
    /* nested same-name elements inside a dropped one */
    EXPECT_TEXT("<nav><nav>x</nav>still nav</nav>out", "out");
    /* an unclosed <head> ends at the first body element */
    EXPECT_TEXT("<head><title>t</title><p>body text", "body text");
    /* an unclosed boilerplate element ends with the page's body */
    EXPECT_TEXT("<body>a<footer>f</body>", "a");
    struct llm_html_opts keep = {.keep_boilerplate = 1};
    assert_string_equal(text_of("<nav>menu</nav><p>x</p>", 0, &keep), "menu\n\nx");
}

static void test_entities(void **state)
{
    (void)state;
    EXPECT_TEXT("&amp; &lt;p&gt; &quot;q&quot; &apos;", "& <p> \"q\" '");
    EXPECT_TEXT("&eacute;&Eacute;&euro;&hellip;&mdash;&copy;", "éÉ€…—©");
    EXPECT_TEXT("&#65;&#x42;&#X43;&#9731;&#x1F600;", "ABC☃😀");
    EXPECT_TEXT("&#150;&#0;&#xD800;&#x110000;", "–\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    /* legacy names without ';' and the longest-prefix rule */
    EXPECT_TEXT("&copy 2024 &notit; &amp", "© 2024 ¬it; &");
    /* not references: kept as text */
    EXPECT_TEXT("AT&T &unknown; & &# &#x;", "AT&T &unknown; & &# &#x;");
    /* no-break spaces collapse like spaces; two-code-point references */
    EXPECT_TEXT("a&nbsp;&nbsp;b &NotEqualTilde;", "a b \xe2\x89\x82\xcc\xb8");
    /* decoded '<' is text, not markup */
    EXPECT_TEXT("&lt;script&gt;x&lt;/script&gt;", "<script>x</script>");
}

static void test_charsets(void **state)
{
    (void)state;
    /* declared windows-1252 (and ISO-8859-1, which browsers read as it) */
    EXPECT_TEXT("<meta charset=\"windows-1252\"><p>caf\xe9 \x93q\x94 \x80</p>",
                "café “q” €");
    EXPECT_TEXT("<meta http-equiv=\"Content-Type\" content=\"text/html; charset=ISO-8859-1\">"
                "na\xefve", "naïve");
    /* undeclared and not UTF-8: windows-1252 */
    EXPECT_TEXT("r\xe9sum\xe9", "résumé");
    /* declared UTF-8 but invalid: U+FFFD per maximal subpart, no crash */
    EXPECT_TEXT("<meta charset=utf-8>a\xe9z \xe2\x82 \xf0\x9f\x98", "a\xef\xbf\xbdz \xef\xbf\xbd \xef\xbf\xbd");
    /* a UTF-8 BOM is dropped */
    EXPECT_TEXT("\xef\xbb\xbf<p>x</p>", "x");
    /* the transport's charset wins over <meta> */
    struct llm_html_opts o = {.charset = LLM_CHARSET_CP1252};
    assert_string_equal(text_of("<meta charset=utf-8>\xc3\xa9", 0, &o), "Ã©");
    assert_int_equal(llm_charset_from_label(" \"Latin1\" ", 10), LLM_CHARSET_CP1252);
    assert_int_equal(llm_charset_from_label("UTF8", 4), LLM_CHARSET_UTF8);
    assert_int_equal(llm_charset_from_label("koi8-r", 6), LLM_CHARSET_UNSUPPORTED);
    const char *ct = "text/html; charset = \"windows-1252\"";
    assert_int_equal(llm_charset_from_content_type(ct, strlen(ct)), LLM_CHARSET_CP1252);
    assert_int_equal(llm_html_declared_charset("<html>", 6), LLM_CHARSET_AUTO);
    /* control characters (C0 and C1) never reach the text */
    EXPECT_TEXT("a\x01\x02\x1b" "b\xc2\x85" "c\x7f", "abc");
}

static void test_malformed(void **state)
{
    (void)state;
    EXPECT_TEXT("1 < 2 and 3 <4", "1 < 2 and 3 <4");
    EXPECT_TEXT("a <!-- comment <p>x</p> --> b", "a b");
    EXPECT_TEXT("a <!--> b <!---> c", "a b c");
    EXPECT_TEXT("text <!-- never closed <p>lost", "text");
    EXPECT_TEXT("<!DOCTYPE html><?xml x?>t<![CDATA[c]]>", "t");
    EXPECT_TEXT("<p>unclosed<div>tags<b>bold", "unclosed\ntagsbold");
    EXPECT_TEXT("end <div class=\"x", "end");
    EXPECT_TEXT("</>a</ 3>b", "ab");
    EXPECT_TEXT("<p title='a>b'>q</p>", "q");
    EXPECT_TEXT("<script>never closed", "");
    /* random bytes: never a crash, always valid UTF-8 out */
    srand(7);
    char buf[4096];
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(rand() % (int)sizeof(buf));
        for (size_t i = 0; i < n; i++) {
            static const char alphabet[] = "<>&#;!-/ \n=\"'abcpdivscript";
            buf[i] = rand() % 4 ? alphabet[rand() % (sizeof(alphabet) - 1)] : (char)(rand() & 0xff);
        }
        const char *t = text_of(buf, n ? n : 1, NULL);
        assert_null(strchr(t, '\r'));
    }
}

/* ---- WARC ---- */

static void append(char **buf, size_t *n, const void *p, size_t k)
{
    *buf = realloc(*buf, *n + k + 1);
    memcpy(*buf + *n, p, k);
    *n += k;
}

static void warc_record(char **buf, size_t *n, const char *type, const char *uri,
                        const char *ctype, const char *block, size_t blen)
{
    char hdr[512];
    int k = snprintf(hdr, sizeof(hdr), "WARC/1.0\r\nWARC-Type: %s\r\nWARC-Target-URI: %s\r\n"
                     "WARC-Record-ID: <urn:uuid:%zu>\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n\r\n", type, uri, *n, ctype, blen);
    append(buf, n, hdr, (size_t)k);
    append(buf, n, block, blen);
    append(buf, n, "\r\n\r\n", 4);
}

static size_t gzip_bytes(const char *in, size_t n, char *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (unsigned char *)in, zs.avail_in = (uInt)n;
    zs.next_out = (unsigned char *)out, zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t k = zs.total_out;
    deflateEnd(&zs);
    return k;
}

/* A small archive: an HTML response, a request, a PNG response, a chunked
 * gzip-coded response in windows-1252, a 404 and an HTML resource record. */
static char *make_warc(size_t *n)
{
    char *w = NULL;
    *n = 0;
    const char *http = "application/http; msgtype=response";
    const char *r1 = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
                     "<html><body><p>First page.</p></body></html>";
    warc_record(&w, n, "warcinfo", "", "application/warc-fields", "software: test\r\n", 16);
    warc_record(&w, n, "response", "http://a.example/1", http, r1, strlen(r1));
    warc_record(&w, n, "request", "http://a.example/1", "application/http; msgtype=request",
                "GET /1 HTTP/1.1\r\n\r\n", 19);
    const char *png = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n";
    warc_record(&w, n, "response", "http://a.example/i.png", http, png, strlen(png));
    /* body: gzip of windows-1252 HTML, then chunked in two pieces */
    const char *page = "<p>Caf\xe9 cr\xe8me</p>";
    char gz[256], block[1024];
    size_t gl = gzip_bytes(page, strlen(page), gz, sizeof(gz));
    size_t half = gl / 2;
    int k = snprintf(block, sizeof(block), "HTTP/1.1 200 OK\r\nContent-Type: text/html; "
                     "charset=ISO-8859-1\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip"
                     "\r\n\r\n%zx\r\n", half);
    memcpy(block + k, gz, half), k += (int)half;
    k += snprintf(block + k, sizeof(block) - (size_t)k, "\r\n%zx;ext=1\r\n", gl - half);
    memcpy(block + k, gz + half, gl - half), k += (int)(gl - half);
    k += snprintf(block + k, sizeof(block) - (size_t)k, "\r\n0\r\n\r\n");
    warc_record(&w, n, "response", "http://a.example/2", http, block, (size_t)k);
    const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n<p>missing</p>";
    warc_record(&w, n, "response", "http://a.example/404", http, nf, strlen(nf));
    const char *res = "<html><p>A resource.</p></html>";
    warc_record(&w, n, "resource", "file:///r.html", "text/html", res, strlen(res));
    return w;
}

static char *write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char *path = test_path(dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
    return path;
}

/* Runs extract on paths into a string (caller frees). */
static char *extract(const char *const *paths, int n, const struct llm_extract_opts *o,
                     struct llm_extract_stats *st, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    *rc = llm_extract_run(paths, n, o, f, "mem", NULL, st);
    fclose(f);
    return buf;
}

static void test_warc_records(void **state)
{
    (void)state;
    size_t n;
    char *w = make_warc(&n);
    char *dir = test_mkdtemp();
    char *plain = write_file(dir, "a.warc", w, n);
    char *gz = malloc(n + 1024);
    size_t gl = gzip_bytes(w, n, gz, n + 1024);
    char *gzp = write_file(dir, "a.warc.gz", gz, gl);
    const char *expect = "{\"id\":\"http://a.example/1\",\"text\":\"First page.\"}\n"
                         "{\"id\":\"http://a.example/2\",\"text\":\"Café crème\"}\n"
                         "{\"id\":\"file:///r.html\",\"text\":\"A resource.\"}\n";
    struct llm_extract_opts o = {.min_chars = 1, .threads = 2};
    struct llm_extract_stats st;
    int rc;
    for (int k = 0; k < 2; k++) {
        const char *p = k ? gzp : plain;
        char *out = extract(&p, 1, &o, &st, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(out, expect);
        assert_int_equal(st.pages, 3);
        assert_int_equal(st.written, 3);
        assert_int_equal(st.not_html, 4); /* warcinfo, request, png, 404 */
        assert_int_equal(st.bad, 0);
        free(out);
    }
    /* 1000 copies, one gzip member each (as crawlers write .warc.gz): more than
     * one buffer of decoded bytes, read across member boundaries */
    char *multi = NULL;
    size_t mn = 0;
    for (int k = 0; k < 1000; k++) {
        char part[4096];
        size_t pl = gzip_bytes(w, n, part, sizeof(part));
        append(&multi, &mn, part, pl);
    }
    char *mp = write_file(dir, "multi.warc.gz", multi, mn);
    const char *mpp = mp;
    char *mout = extract(&mpp, 1, &o, &st, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(st.written, 3000);
    assert_int_equal(strlen(mout), 1000 * strlen(expect));
    free(mout), free(mp), free(multi);
    /* truncated .gz: the records before the cut come out, then a counted skip */
    char *cut = write_file(dir, "cut.warc.gz", gz, gl * 2 / 3);
    const char *cp = cut;
    char *out = extract(&cp, 1, &o, &st, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(st.bad, 1);
    assert_true(st.written < 3);
    free(out);
    o.strict = 1;
    free(extract(&cp, 1, &o, &st, &rc));
    assert_int_equal(rc, LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "truncated gzip"));
    free(cut);
    free(plain), free(gzp), free(gz), free(w);
    test_rmdir(dir);
}

static void test_extract_inputs(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    const char *page = "<html><body><nav>menu</nav><p>Hello &amp; bye</p></body></html>";
    char *html = write_file(dir, "page.html", page, strlen(page));
    const char *jl = "{\"id\":7,\"html\":\"<p>x &lt; y</p>\",\"lang\":\"en\"}\n"
                     "not json\n"
                     "{\"id\":8,\"html\":\"<script>only</script>\"}\n"
                     "{\"id\":9}\n";
    char *jsonl = write_file(dir, "pages.jsonl", jl, strlen(jl));
    char *bin = write_file(dir, "garbage.bin", "\x00\xff\xfe<\x01\x80zz", 8);
    const char *paths[3] = {html, jsonl, bin};
    struct llm_extract_opts o = {.min_chars = 1};
    struct llm_extract_stats st;
    int rc;
    char *out = extract(paths, 3, &o, &st, &rc);
    assert_int_equal(rc, 0);
    char want[1024];
    snprintf(want, sizeof(want), "{\"id\":\"%s\",\"text\":\"Hello & bye\"}\n"
             "{\"id\":7,\"lang\":\"en\",\"text\":\"x < y\"}\n"
             "{\"id\":\"%s\",\"text\":\"\xc3\xbf\xc3\xbe<\xe2\x82\xaczz\"}\n", html, bin);
    assert_string_equal(out, want);
    assert_int_equal(st.empty, 1); /* the script-only page */
    assert_int_equal(st.bad, 2);   /* not JSON, no "html" */
    free(out);
    o.strict = 1;
    free(extract(paths, 3, &o, &st, &rc));
    assert_int_equal(rc, LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "pages.jsonl:2: invalid JSON"));
    const char *missing = "/nonexistent/x.html";
    o.strict = 0;
    free(extract(&missing, 1, &o, &st, &rc));
    assert_int_equal(rc, LLM_EIO);
    free(html), free(jsonl), free(bin);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_dropped),
        cmocka_unit_test(test_entities),
        cmocka_unit_test(test_charsets),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_warc_records),
        cmocka_unit_test(test_extract_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
