/* test_svg.c: SVG line charts: well-formed output, one polyline per line
 * series, escaping, nice ticks, log axes and degenerate data. */
#include "testutil.h"

#include <math.h>
#include "core/err.h"
#include "core/svg.h"

/* Tags balance (a stack of names), and text holds no raw '<' or stray '&'. */
static void expect_well_formed(const char *svg)
{
    assert_true(strncmp(svg, "<svg ", 5) == 0);
    size_t n = strlen(svg);
    while (n && svg[n - 1] == '\n')
        n--;
    assert_true(n >= 6 && strncmp(svg + n - 6, "</svg>", 6) == 0);
    char stack[64][32];
    int depth = 0;
    for (const char *p = svg; *p; p++) {
        if (*p == '&') {
            static const char *const ent[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
            int ok = 0;
            for (size_t i = 0; i < 5; i++)
                ok |= strncmp(p, ent[i], strlen(ent[i])) == 0;
            if (!ok)
                fail_msg("stray '&' at byte %td", p - svg);
            continue;
        }
        if (*p != '<')
            continue;
        const char *end = strchr(p, '>');
        assert_non_null(end);
        assert_null(memchr(p + 1, '<', (size_t)(end - p - 1)));
        int closing = p[1] == '/', selfclose = end[-1] == '/';
        const char *name = p + 1 + closing;
        size_t len = strcspn(name, " />");
        assert_true(len > 0 && len < 32);
        if (closing) {
            assert_true(depth > 0);
            depth--;
            if (strlen(stack[depth]) != len || strncmp(stack[depth], name, len))
                fail_msg("</%.*s> closes <%s>", (int)len, name, stack[depth]);
        } else if (!selfclose) {
            assert_true(depth < 64);
            memcpy(stack[depth], name, len);
            stack[depth++][len] = '\0';
        }
        p = end;
    }
    assert_int_equal(depth, 0);
    assert_null(strstr(svg, "nan"));
    assert_null(strstr(svg, "inf"));
    assert_null(strstr(svg, "NaN"));
}

static size_t count(const char *s, const char *needle)
{
    size_t k = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++)
        k++;
    return k;
}

/* The number of points of each polyline, in order. */
static size_t polyline_points(const char *svg, size_t *out, size_t max)
{
    size_t k = 0;
    for (const char *p = svg; (p = strstr(p, "<polyline")) && k < max; p++) {
        const char *q = strstr(p, "points=\"") + 8, *end = strchr(q, '"');
        size_t pts = 0;
        for (const char *c = q; c < end; c++)
            pts += *c == ',';
        out[k++] = pts;
    }
    return k;
}

static void test_lines_and_markers(void **state)
{
    (void)state;
    double x[50], y[50], y2[50];
    for (int i = 0; i < 50; i++)
        x[i] = i * 10, y[i] = 5.0 / (1 + i), y2[i] = 4.0 / (1 + i);
    y2[7] = NAN;
    y2[9] = INFINITY;
    struct llm_svg_series s[3] = {
        {"train", x, y, 50, 0}, {"val <held-out>", x, y2, 50, 0}, {"fits", x, y, 10, 1},
    };
    struct llm_svg_chart c = {"loss & \"friends\" <run 1>", "step", "loss", 0, 0, 0, 0};
    char *svg = llm_svg_render(&c, s, 3);
    assert_non_null(svg);
    expect_well_formed(svg);
    size_t pts[8];
    assert_int_equal(polyline_points(svg, pts, 8), 2);
    assert_int_equal(pts[0], 50);
    assert_int_equal(pts[1], 48); /* NaN and inf skipped */
    assert_int_equal(count(svg, "r=\"3\""), 10 + 1); /* dots, plus the legend's dot */
    assert_non_null(strstr(svg, "loss &amp; &quot;friends&quot; &lt;run 1&gt;"));
    assert_non_null(strstr(svg, "val &lt;held-out&gt;"));
    assert_non_null(strstr(svg, "width=\"720\" height=\"450\""));
    /* Nice ticks: x spans 0..490, steps of 100 from 0 to 500. */
    assert_non_null(strstr(svg, ">0</text>"));
    assert_non_null(strstr(svg, ">500</text>"));
    assert_null(strstr(svg, ">250</text>"));
    /* Three distinct colors. */
    assert_non_null(strstr(svg, "#1f77b4"));
    assert_non_null(strstr(svg, "#ff7f0e"));
    assert_non_null(strstr(svg, "#2ca02c"));
    free(svg);
}

static void test_log_axes(void **state)
{
    (void)state;
    /* A scaling law: loss = 3 * N^-0.1 over N = 1e5 .. 1e9, plus points a
     * log axis cannot show (0 and negatives). */
    double n[7] = {1e5, 1e6, 1e7, 1e8, 1e9, 0, -5}, l[7];
    for (int i = 0; i < 7; i++)
        l[i] = n[i] > 0 ? 3 * pow(n[i], -0.1) : 1;
    struct llm_svg_series s = {"fit", n, l, 7, 0};
    struct llm_svg_chart c = {.title = "scaling", .xlabel = "params", .ylabel = "loss", .logx = 1, .logy = 1,
                              .width = 800, .height = 500};
    char *svg = llm_svg_render(&c, &s, 1);
    assert_non_null(svg);
    expect_well_formed(svg);
    size_t pts[2];
    assert_int_equal(polyline_points(svg, pts, 2), 1);
    assert_int_equal(pts[0], 5);
    assert_non_null(strstr(svg, ">1e5</text>")); /* x: past 1e4, so all in e-notation */
    assert_non_null(strstr(svg, ">1e9</text>"));
    assert_null(strstr(svg, ">2e5</text>"));    /* four decades: decades only */
    assert_non_null(strstr(svg, ">1</text>"));   /* y: 0.38 .. 0.95 -> the decade 0.1 .. 1, */
    assert_non_null(strstr(svg, ">0.1</text>"));
    assert_non_null(strstr(svg, ">0.2</text>")); /* with 2 and 5 ticks */
    assert_non_null(strstr(svg, ">0.5</text>"));
    assert_non_null(strstr(svg, "width=\"800\" height=\"500\""));
    free(svg);
}

static void test_degenerate(void **state)
{
    (void)state;
    /* No series, no title. */
    char *svg = llm_svg_render(NULL, NULL, 0);
    assert_non_null(svg);
    expect_well_formed(svg);
    free(svg);
    /* Empty series and all-NaN series on log axes. */
    double nan2[2] = {NAN, NAN}, x2[2] = {1, 2};
    struct llm_svg_series s[3] = {{"empty", NULL, NULL, 0, 0}, {NULL, x2, nan2, 2, 0}, {"dots", nan2, x2, 2, 1}};
    struct llm_svg_chart c = {.title = "", .logx = 1, .logy = 1};
    svg = llm_svg_render(&c, s, 3);
    assert_non_null(svg);
    expect_well_formed(svg);
    assert_non_null(strstr(svg, "series 1")); /* the unnamed one */
    free(svg);
    /* All values equal: a padded range, no division by zero. */
    double same[4] = {2, 2, 2, 2}, zero[4] = {0, 0, 0, 0};
    struct llm_svg_series eq[2] = {{"a", same, same, 4, 0}, {"b", zero, zero, 4, 1}};
    for (int logs = 0; logs < 2; logs++) {
        c.logx = c.logy = logs;
        svg = llm_svg_render(&c, eq, 2);
        assert_non_null(svg);
        expect_well_formed(svg);
        free(svg);
    }
    /* One point; extreme magnitudes; a tiny canvas; many series. */
    double one = 1e-300, big[2] = {-1e308, 1e308};
    struct llm_svg_series ex[2] = {{"one", &one, &one, 1, 1}, {"big", big, big, 2, 0}};
    struct llm_svg_chart tiny = {.width = 5, .height = 5};
    for (int i = 0; i < 2; i++) {
        svg = llm_svg_render(i ? &tiny : NULL, ex + i, 1);
        assert_non_null(svg);
        expect_well_formed(svg);
        free(svg);
    }
    struct llm_svg_series many[12];
    for (int i = 0; i < 12; i++)
        many[i] = (struct llm_svg_series){"s", x2, x2, 2, 0};
    svg = llm_svg_render(NULL, many, 12);
    expect_well_formed(svg);
    assert_int_equal(count(svg, "stroke-dasharray"), 4); /* past 10 colors: lines and legend dashed */
    free(svg);
    /* A series with points but no data is a caller error, not a crash. */
    struct llm_svg_series bad = {"bad", NULL, x2, 2, 0};
    assert_null(llm_svg_render(NULL, &bad, 1));
    assert_non_null(strstr(llm_errmsg(), "series 0"));
}

static void test_write(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *p = test_path(dir, "loss.svg");
    double x[3] = {1, 2, 3}, y[3] = {3, 2, 1};
    struct llm_svg_series s = {"loss", x, y, 3, 0};
    struct llm_svg_chart c = {.title = "t"};
    assert_int_equal(llm_svg_write(p, &c, &s, 1), 0);
    char *want = llm_svg_render(&c, &s, 1);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_string_equal(buf, want);
    free(want);
    free(p);
    p = test_path(dir, "no/such/dir/x.svg");
    assert_int_equal(llm_svg_write(p, &c, &s, 1), LLM_EIO);
    free(p);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_and_markers),
        cmocka_unit_test(test_log_axes),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
