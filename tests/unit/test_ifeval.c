/* test_ifeval.c: IFEval's instruction checks: every instruction type passes
 * and fails where the reference's rules say, loose variants rescue what only
 * a first/last line or markdown stars break, kwargs errors name the id, and
 * the fixture tests/data/eval/ifeval*.jsonl scores as computed by hand. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include "core/err.h"
#include "core/jsonl.h"
#include "eval/ifeval.h"
#include "eval/ifeval_impl.h"

/* Checks id with kwargs (JSON text or NULL) on resp: want strict / loose. */
static void expect_prompt(const char *id, const char *kwjson, const char *prompt, const char *resp, int strict,
                          int loose)
{
    cJSON *kw = NULL;
    if (kwjson) {
        kw = cJSON_Parse(kwjson);
        assert_non_null(kw);
    }
    int s = -1, l = -1;
    if (llm_ifeval_check(id, kw, prompt, resp, &s, &l))
        fail_msg("%s: unexpected error: %s", id, llm_errmsg());
    if (s != strict || l != loose)
        fail_msg("%s %s on \"%s\": strict %d loose %d, want %d %d", id, kwjson ? kwjson : "", resp, s, l, strict,
                 loose);
    cJSON_Delete(kw);
}

static void expect(const char *id, const char *kwjson, const char *resp, int strict, int loose)
{
    expect_prompt(id, kwjson, NULL, resp, strict, loose);
}

/* Followed both ways, or neither. */
#define PASS(id, kw, resp) expect(id, kw, resp, 1, 1)
#define FAIL(id, kw, resp) expect(id, kw, resp, 0, 0)
#define LOOSE_ONLY(id, kw, resp) expect(id, kw, resp, 0, 1)

static void expect_error(const char *id, const char *kwjson, const char *needle)
{
    cJSON *kw = kwjson ? cJSON_Parse(kwjson) : NULL;
    int s = 7, l = 7;
    int rc = llm_ifeval_check(id, kw, "a prompt", "a response", &s, &l);
    assert_int_equal(rc, LLM_EINVAL);
    if (id && !strstr(llm_errmsg(), id))
        fail_msg("message does not name the id: %s", llm_errmsg());
    if (!strstr(llm_errmsg(), needle))
        fail_msg("message lacks '%s': %s", needle, llm_errmsg());
    assert_int_equal(s, 0);
    assert_int_equal(l, 0);
    cJSON_Delete(kw);
}

static void test_keywords(void **state)
{
    const char *ex = "{\"keywords\": [\"apple\", \"Banana\"]}";
    PASS("keywords:existence", ex, "I like APPLE pie and banana bread.");
    PASS("keywords:existence", ex, "pineapples and bananas"); /* substrings count, as in re.search */
    FAIL("keywords:existence", ex, "Only apples here.");
    LOOSE_ONLY("keywords:existence", "{\"keywords\": [\"bold text\"]}", "Some **bold** text.");

    const char *atleast = "{\"keyword\": \"cat\", \"frequency\": 3, \"relation\": \"at least\"}";
    PASS("keywords:frequency", atleast, "Cat, cat and CAT.");
    PASS("keywords:frequency", atleast, "cat category catalogue");
    FAIL("keywords:frequency", atleast, "cat cat");
    const char *less = "{\"keyword\": \"cat\", \"frequency\": 2, \"relation\": \"less than\"}";
    PASS("keywords:frequency", less, "one cat");
    FAIL("keywords:frequency", less, "cat cat");

    const char *fw = "{\"forbidden_words\": [\"red\", \"blue\"]}";
    PASS("keywords:forbidden_words", fw, "The sky is azure; the rose is crimson.");
    PASS("keywords:forbidden_words", fw, "bluetooth and reddish tones, Fred"); /* whole words only */
    FAIL("keywords:forbidden_words", fw, "It is Red.");
    FAIL("keywords:forbidden_words", fw, "a BLUE_ish blue");
    LOOSE_ONLY("keywords:forbidden_words", fw, "Sure, here is red-free text:\nThe sky is azure.");
    PASS("keywords:forbidden_words", "{\"forbidden_words\": [\"été\"]}", "étéx et l'étés");
    FAIL("keywords:forbidden_words", "{\"forbidden_words\": [\"été\"]}", "un ÉTÉ chaud");

    const char *lf = "{\"letter\": \"Z\", \"let_frequency\": 3, \"let_relation\": \"at least\"}";
    PASS("keywords:letter_frequency", lf, "Zebras zigzag");
    FAIL("keywords:letter_frequency", lf, "A zoo");
    PASS("keywords:letter_frequency", "{\"letter\": \"e\", \"let_frequency\": 3, \"let_relation\": \"less than\"}",
         "Eel");
    FAIL("keywords:letter_frequency", "{\"letter\": \"e\", \"let_frequency\": 3, \"let_relation\": \"less than\"}",
         "Eerie");
    /* the published set also counts "#" and "!" this way */
    PASS("keywords:letter_frequency", "{\"letter\": \"#\", \"let_frequency\": 2, \"let_relation\": \"at least\"}",
         "#tea #time");
}

static void test_language(void **state)
{
    static const struct { const char *text, *lang; } cases[] = {
        {"The weather is nice today and we are going to the park with our friends.", "en"},
        {"Das Wetter ist heute schön und wir gehen mit unseren Freunden in den Park.", "de"},
        {"Il fait beau aujourd'hui et nous allons au parc avec nos amis.", "fr"},
        {"Hoy hace buen tiempo y vamos al parque con nuestros amigos.", "es"},
        {"Oggi il tempo è bello e andiamo al parco con i nostri amici.", "it"},
        {"Hoje o tempo está bom e nós vamos ao parque com os nossos amigos.", "pt"},
        {"Het weer is vandaag mooi en we gaan met onze vrienden naar het park.", "nl"},
        {"Hali ya hewa ni nzuri leo na tunakwenda kwenye bustani pamoja na marafiki wetu.", "sw"},
        {"Tänään on kaunis sää ja me menemme puistoon ystävien kanssa.", "fi"},
        {"Dzisiaj jest ładna pogoda i idziemy do parku z naszymi przyjaciółmi.", "pl"},
        {"Hôm nay thời tiết đẹp và chúng tôi đi công viên với những người bạn.", "vi"},
        {"Сегодня хорошая погода, и мы идём в парк с нашими друзьями.", "ru"},
        {"Сьогодні гарна погода, і ми йдемо в парк з нашими друзями.", "uk"},
        {"Днес времето е хубаво и отиваме в парка с нашите приятели.", "bg"},
        {"आज मौसम अच्छा है और हम अपने दोस्तों के साथ पार्क जा रहे हैं।", "hi"},
        {"आज हवामान छान आहे आणि आम्ही मित्रांसोबत उद्यानात जात आहोत.", "mr"},
        {"आज मौसम राम्रो छ र हामी साथीहरूसँग पार्क जाँदैछौं।", "ne"},
        {"الطقس جميل اليوم ونحن ذاهبون إلى الحديقة مع أصدقائنا.", "ar"},
        {"امروز هوا خوب است و ما با دوستانمان به پارک می‌رویم.", "fa"},
        {"آج موسم اچھا ہے اور ہم اپنے دوستوں کے ساتھ پارک جا رہے ہیں۔", "ur"},
        {"今天天气很好，我们和朋友一起去公园。", "zh"},
        {"今日は天気が良いので、友達と公園に行きます。", "ja"},
        {"오늘은 날씨가 좋아서 친구들과 공원에 갑니다.", "ko"},
        {"วันนี้อากาศดีและเราจะไปสวนสาธารณะกับเพื่อน", "th"},
        {"আজ আবহাওয়া ভালো এবং আমরা বন্ধুদের সাথে পার্কে যাচ্ছি।", "bn"},
        {"இன்று வானிலை நன்றாக உள்ளது.", "ta"},
        {"ఈ రోజు వాతావరణం బాగుంది.", "te"},
        {"ಇಂದು ಹವಾಮಾನ ಚೆನ್ನಾಗಿದೆ.", "kn"},
        {"ഇന്ന് കാലാവസ്ഥ നല്ലതാണ്.", "ml"},
        {"ਅੱਜ ਮੌਸਮ ਵਧੀਆ ਹੈ।", "pa"},
        {"આજે હવામાન સારું છે.", "gu"},
        {"היום מזג האוויר יפה ואנחנו הולכים לפארק.", "he"},
        {"Σήμερα ο καιρός είναι ωραίος.", "el"},
        {"THIS IS ALL WRITTEN IN CAPITAL LETTERS FOR THE TEST.", "en"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        const char *got = ifeval_language(cases[i].text, strlen(cases[i].text));
        if (!got || strcmp(got, cases[i].lang))
            fail_msg("language of \"%s\": %s, want %s", cases[i].text, got ? got : "(none)", cases[i].lang);
    }
    assert_null(ifeval_language("12345 !!! ...", 13));
    assert_null(ifeval_language("Xq zzkv brrt", 12)); /* Latin letters, no profile word */

    PASS("language:response_language", "{\"language\": \"de\"}", "Ich bin müde und ich gehe jetzt nach Hause.");
    FAIL("language:response_language", "{\"language\": \"de\"}", "I am tired and I am going home now.");
    PASS("language:response_language", "{\"language\": \"zh-cn\"}", "我们和朋友一起去公园。");
    PASS("language:response_language", "{\"language\": \"ja\"}", "友達と公園に行きます。");
    FAIL("language:response_language", "{\"language\": \"ja\"}", "我们和朋友一起去公园。");
    PASS("language:response_language", "{\"language\": \"ru\"}", "12345 !!!"); /* undetectable: followed */
}

static void test_counts(void **state)
{
    static const struct { const char *text; size_t words, sentences; } cases[] = {
        {"", 0, 0},
        {"Hello world", 2, 1},
        {"One. Two. Three.", 3, 3},
        {"Is it? Yes! Fine.", 4, 3},
        {"Dr. Smith met Mr. Jones at 5 p.m. yesterday.", 10, 1},
        {"It costs 3.50 dollars. Pay now.", 7, 2},
        {"Wait... what happened? Nothing... Really.", 5, 3},
        {"He said \"stop.\" Then he left.", 6, 2},
        {"(This is it.) And more.", 5, 2},
        {"- item one\n- item two\n- item three", 6, 1},
        {"1. First point\n2. Second point", 6, 3}, /* "1." alone, as Punkt does */
        {"Acme Inc. The company grew.", 5, 2},
        {"J. R. R. Tolkien wrote books.", 6, 1},
        {"don't stop_now 42", 4, 1}, /* \w+: "don", "t", "stop_now", "42" */
        {"naïve café", 2, 1},
        {"हिन्दी", 3, 1}, /* Python's \w has no combining marks: ह न द */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        const char *t = cases[i].text;
        size_t w = ifeval_count_words(t, strlen(t)), s = ifeval_count_sentences(t, strlen(t));
        if (w != cases[i].words || s != cases[i].sentences)
            fail_msg("\"%s\": %zu words %zu sentences, want %zu %zu", t, w, s, cases[i].words, cases[i].sentences);
    }
    static const struct { const char *text; size_t caps; } caps[] = {
        {"The NASA and ESA teams WON.", 3},
        {"I DON'T KNOW", 4},         /* I, DO, N'T, KNOW */
        {"A WELL-KNOWN U.S.A fact", 3}, /* A, WELL-KNOWN, U.S.A */
        {"IT'S Nasa's e-MAIL AT&T 2024", 4}, /* IT, 'S, AT, T */
        {"CANNOT", 2},
        {"ÉTÉ été", 1},
    };
    for (size_t i = 0; i < sizeof(caps) / sizeof(*caps); i++) {
        size_t c = ifeval_count_capital_words(caps[i].text, strlen(caps[i].text));
        if (c != caps[i].caps)
            fail_msg("\"%s\": %zu capital words, want %zu", caps[i].text, c, caps[i].caps);
    }
    assert_true(ifeval_str_isupper("HELLO, WORLD 42!", 16));
    assert_false(ifeval_str_isupper("HELLO, World", 12));
    assert_false(ifeval_str_isupper("123 !!", 6)); /* no cased character */
    assert_true(ifeval_str_islower("ß and ünïcode", strlen("ß and ünïcode")));
    assert_false(ifeval_str_islower("ǅ", strlen("ǅ"))); /* titlecase */
    size_t b, e;
    ifeval_strip("\xC2\xA0 x y\xE3\x80\x80\n", strlen("\xC2\xA0 x y\xE3\x80\x80\n"), &b, &e);
    assert_int_equal(b, 3);
    assert_int_equal(e, 6);
}

static void test_length(void **state)
{
    const char *lt = "{\"num_sentences\": 3, \"relation\": \"less than\"}";
    PASS("length_constraints:number_sentences", lt, "One. Two.");
    FAIL("length_constraints:number_sentences", lt, "One. Two. Three.");
    LOOSE_ONLY("length_constraints:number_sentences", lt, "Sure. Here it is.\nOne. Two.");
    PASS("length_constraints:number_sentences", "{\"num_sentences\": 2, \"relation\": \"at least\"}",
         "Dr. Smith went home. He slept.");

    const char *np = "{\"num_paragraphs\": 3}";
    PASS("length_constraints:number_paragraphs", np, "A\n***\nB\n***\nC");
    PASS("length_constraints:number_paragraphs", np, "***\nA\n***\nB\n***\nC\n***");
    FAIL("length_constraints:number_paragraphs", np, "A\n***\nB");
    FAIL("length_constraints:number_paragraphs", np, "A\n***\n\n***\nB\n***\nC"); /* an empty middle one */
    LOOSE_ONLY("length_constraints:number_paragraphs", np, "A\n***\nB\n***\nC\n***\nP.S. D");

    const char *nw = "{\"num_words\": 5, \"relation\": \"at least\"}";
    PASS("length_constraints:number_words", nw, "one two three four five");
    FAIL("length_constraints:number_words", nw, "one two");
    PASS("length_constraints:number_words", "{\"num_words\": 3, \"relation\": \"less than\"}", "one, two!");
    FAIL("length_constraints:number_words", "{\"num_words\": 3, \"relation\": \"less than\"}", "it's a cat");
    LOOSE_ONLY("length_constraints:number_words", "{\"num_words\": 4, \"relation\": \"less than\"}",
               "Here is my short answer:\nYes indeed.");

    const char *fw = "{\"num_paragraphs\": 2, \"nth_paragraph\": 2, \"first_word\": \"Second\"}";
    PASS("length_constraints:nth_paragraph_first_word", fw, "First para.\n\n\"Second, para.\"");
    PASS("length_constraints:nth_paragraph_first_word", fw, "First.\n\nsecond'd word");
    FAIL("length_constraints:nth_paragraph_first_word", fw, "First para.\n\nThird para.");
    /* three paragraphs; loose: without the last line there are two */
    expect("length_constraints:nth_paragraph_first_word", fw, "A.\n\nSecond.\n\nC.", 0, 1);
    FAIL("length_constraints:nth_paragraph_first_word", fw, "Only one paragraph here.");
    /* a blank raw piece at index 2 counts as not starting with the word */
    FAIL("length_constraints:nth_paragraph_first_word", fw, "A.\n\n\n\nSecond.");
}

static void test_content(void **state)
{
    const char *ph = "{\"num_placeholders\": 2}";
    PASS("detectable_content:number_placeholders", ph, "Dear [name], see you at [address].");
    PASS("detectable_content:number_placeholders", ph, "[a[b] and []");
    FAIL("detectable_content:number_placeholders", ph, "Dear [name], see you.");
    FAIL("detectable_content:number_placeholders", ph, "[a\nb] and [c]"); /* not across lines */

    const char *ps = "{\"postscript_marker\": \"P.S.\"}";
    PASS("detectable_content:postscript", ps, "Hi there.\n\nP.S. See you soon.");
    PASS("detectable_content:postscript", ps, "Bye. p. s. later");
    FAIL("detectable_content:postscript", ps, "Bye.\nPS later");
    const char *pps = "{\"postscript_marker\": \"P.P.S\"}";
    PASS("detectable_content:postscript", pps, "Bye.\nP.P.S later");
    FAIL("detectable_content:postscript", pps, "Bye.\nP.S. later");
    PASS("detectable_content:postscript", "{\"postscript_marker\": \" Note: \"}", "x\nNOTE: (y)");
    FAIL("detectable_content:postscript", "{\"postscript_marker\": \"Note:\"}", "x\nNote y");
}

static void test_format(void **state)
{
    const char *bl = "{\"num_bullets\": 3}";
    PASS("detectable_format:number_bullet_lists", bl, "* a\n* b\n- c");
    PASS("detectable_format:number_bullet_lists", bl, "Intro:\n  * a\n  * b\n  * c\n**Bold** line");
    FAIL("detectable_format:number_bullet_lists", bl, "* a\n* b");
    expect("detectable_format:number_bullet_lists", bl, "* a\n* b\n* c\n* d", 0, 1); /* loose: less a line */
    FAIL("detectable_format:number_bullet_lists", bl, "* a\n* b\n* c\n* d\n* e\n* f");
    LOOSE_ONLY("detectable_format:number_bullet_lists", bl, "* a\n* b\n* c\n- the end");

    PASS("detectable_format:constrained_response", NULL, "My answer is yes.");
    PASS("detectable_format:constrained_response", "{}", "Well... My answer is maybe. Hard to say.");
    FAIL("detectable_format:constrained_response", NULL, "Yes.");
    FAIL("detectable_format:constrained_response", NULL, "my answer is yes.");

    const char *hl = "{\"num_highlights\": 2}";
    PASS("detectable_format:number_highlighted_sections", hl, "*one* and **two**");
    PASS("detectable_format:number_highlighted_sections", hl, "*a* *b*");
    FAIL("detectable_format:number_highlighted_sections", hl, "*one* only");
    FAIL("detectable_format:number_highlighted_sections", hl, "* * and *\nx*");

    const char *ms = "{\"section_spliter\": \"Section\", \"num_sections\": 2}";
    PASS("detectable_format:multiple_sections", ms, "Section 1\nfoo\nSection 2\nbar");
    PASS("detectable_format:multiple_sections", ms, "Section 1: foo. Section 2: bar.");
    FAIL("detectable_format:multiple_sections", ms, "Section 1 only");
    FAIL("detectable_format:multiple_sections", ms, "SECTION 1\nfoo\nSECTION 2\nbar"); /* case matters */
    FAIL("detectable_format:multiple_sections", ms, "Section one\nSection two");

    PASS("detectable_format:json_format", NULL, "```json\n{\"a\": [1, 2.5, true, null]}\n```");
    PASS("detectable_format:json_format", NULL, "  [\"x\", {\"y\": \"z\"}]  ");
    PASS("detectable_format:json_format", NULL, "```JSON\n{}\n```");
    FAIL("detectable_format:json_format", NULL, "{\"a\": 1} trailing");
    FAIL("detectable_format:json_format", NULL, "{'a': 1}");
    LOOSE_ONLY("detectable_format:json_format", NULL, "Here you go:\n{\"a\": 1}");

    PASS("detectable_format:title", NULL, "<<My Title>>\nText");
    PASS("detectable_format:title", NULL, "x <<<A>>> y");
    FAIL("detectable_format:title", NULL, "<< >> text");
    FAIL("detectable_format:title", NULL, "<<>>");
    PASS("detectable_format:title", NULL, "<< >> and <<>>"); /* greedy: \">> and <<\" is the title */
    FAIL("detectable_format:title", NULL, "<<a\nb>>");
    FAIL("detectable_format:title", NULL, "<My Title>");
}

static void test_combination(void **state)
{
    PASS("combination:two_responses", NULL, "Answer one.\n******\nAnswer two.");
    PASS("combination:two_responses", NULL, "******\na\n******\nb\n******");
    FAIL("combination:two_responses", NULL, "Same\n******\n Same ");
    FAIL("combination:two_responses", NULL, "a\n******\n\n******\nb");
    expect("combination:two_responses", NULL, "a\n******\nb\n******\nc", 0, 1); /* loose: without "a" */
    FAIL("combination:two_responses", NULL, "just one");

    const char *rp = "{\"prompt_to_repeat\": \"Write a haiku about cats.\"}";
    PASS("combination:repeat_prompt", rp, "  write a HAIKU about cats. Soft paws on the rug.");
    FAIL("combination:repeat_prompt", rp, "Write a haiku about dogs.");
    LOOSE_ONLY("combination:repeat_prompt", rp, "Sure!\nWrite a haiku about cats.\nSoft paws.");
    /* without the kwarg, the prompt itself is what is repeated */
    expect_prompt("combination:repeat_prompt", "{}", "Name a color.", "Name a color. Blue.", 1, 1);
    expect_prompt("combination:repeat_prompt", "{\"prompt_to_repeat\": null}", "Name a color.", "Blue.", 0, 0);

    const char *ec = "{\"end_phrase\": \"Any other questions?\"}";
    PASS("startend:end_checker", ec, "Blah. ANY other questions?\"  ");
    FAIL("startend:end_checker", ec, "Any other questions? Yes.");
    LOOSE_ONLY("startend:end_checker", ec, "Blah. Any other questions?\n---");

    PASS("startend:quotation", NULL, " \"Wrapped.\" ");
    FAIL("startend:quotation", NULL, "Not wrapped.");
    FAIL("startend:quotation", NULL, "\"");
    LOOSE_ONLY("startend:quotation", NULL, "Here:\n\"Wrapped text\"");
}

static void test_case_punct(void **state)
{
    const char *cw = "{\"capital_frequency\": 3, \"capital_relation\": \"at least\"}";
    PASS("change_case:capital_word_frequency", cw, "The NASA and ESA teams WON.");
    FAIL("change_case:capital_word_frequency", cw, "Nasa won");
    PASS("change_case:capital_word_frequency", "{\"capital_frequency\": 2, \"capital_relation\": \"less than\"}",
         "Only ONE here.");
    FAIL("change_case:capital_word_frequency", "{\"capital_frequency\": 2, \"capital_relation\": \"less than\"}",
         "I DON'T");

    PASS("change_case:english_capital", NULL, "THIS IS ALL IN CAPITAL LETTERS.");
    FAIL("change_case:english_capital", NULL, "This is not.");
    FAIL("change_case:english_capital", NULL, "ESTO ES TODO EN MAYÚSCULAS Y NO ES INGLÉS PARA LA PRUEBA.");
    LOOSE_ONLY("change_case:english_capital", NULL, "Sure, here:\nTHIS IS THE ANSWER.");

    PASS("change_case:english_lowercase", NULL, "this is all lowercase english text.");
    FAIL("change_case:english_lowercase", NULL, "This is not.");
    FAIL("change_case:english_lowercase", NULL, "ceci est un texte en français et il est en minuscules.");
    LOOSE_ONLY("change_case:english_lowercase", NULL, "Answer:\nthe cat is on the mat.");

    PASS("punctuation:no_comma", NULL, "No commas here.");
    PASS("punctuation:no_comma", NULL, "Ideographic ones、are fine");
    FAIL("punctuation:no_comma", NULL, "Yes, a comma.");
    LOOSE_ONLY("punctuation:no_comma", NULL, "Sure, here it is:\nNo commas here.");
}

static void test_blank_and_bytes(void **state)
{
    FAIL("punctuation:no_comma", NULL, "");
    FAIL("punctuation:no_comma", NULL, " \n\t ");
    FAIL("detectable_format:constrained_response", NULL, "\n\n");
    /* ill-formed UTF-8 is read as U+FFFD, never rejected or overrun */
    PASS("punctuation:no_comma", NULL, "abc\xff\xfe def\xe2\x82");
    FAIL("length_constraints:number_words", "{\"num_words\": 3, \"relation\": \"at least\"}", "\xc3\x28 x");
    /* loose: only the first line removed leaves nothing; no newline at all */
    FAIL("startend:quotation", NULL, "\"unclosed");
}

static void test_errors(void **state)
{
    expect_error("foo:bar", NULL, "unknown");
    expect_error("length_constraints:number_words", "{}", "num_words");
    expect_error("length_constraints:number_words", NULL, "num_words");
    expect_error("length_constraints:number_words", "{\"num_words\": 5}", "relation");
    expect_error("length_constraints:number_words", "{\"num_words\": 5, \"relation\": \"more than\"}",
                 "relation");
    expect_error("length_constraints:number_words", "{\"num_words\": \"5\", \"relation\": \"at least\"}",
                 "num_words");
    expect_error("length_constraints:number_words", "{\"num_words\": -1, \"relation\": \"at least\"}",
                 "non-negative");
    expect_error("length_constraints:number_words", "{\"num_words\": 2.5, \"relation\": \"at least\"}",
                 "integer");
    expect_error("length_constraints:number_words", "{\"num_words\": null, \"relation\": \"at least\"}",
                 "missing");
    expect_error("keywords:existence", "{\"keywords\": \"apple\"}", "keywords");
    expect_error("keywords:existence", "{\"keywords\": []}", "keywords");
    expect_error("keywords:existence", "{\"keywords\": [\"a\", 3]}", "string");
    expect_error("keywords:forbidden_words", "{\"forbidden_words\": [\"  \"]}", "empty");
    expect_error("keywords:letter_frequency", "{\"letter\": \"ab\", \"let_frequency\": 1, \"let_relation\": "
                 "\"at least\"}", "single character");
    expect_error("length_constraints:nth_paragraph_first_word",
                 "{\"num_paragraphs\": 2, \"nth_paragraph\": 3, \"first_word\": \"x\"}", "nth_paragraph");
    expect_error("startend:end_checker", "{\"end_phrase\": 5}", "end_phrase");
    expect_error("language:response_language", "[1]", "object");
    expect_error(NULL, NULL, "unknown");
    /* null keys and keys an instruction does not read are fine */
    PASS("length_constraints:number_words",
         "{\"num_words\": 1, \"relation\": \"at least\", \"keyword\": null, \"language\": \"en\"}", "word");
    int s, l;
    cJSON *empty = cJSON_CreateObject();
    assert_int_equal(llm_ifeval_check("combination:repeat_prompt", empty, NULL, "x", &s, &l), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "prompt_to_repeat"));
    cJSON_Delete(empty);
    assert_int_equal(llm_ifeval_supported("punctuation:no_comma"), 1);
    assert_int_equal(llm_ifeval_supported("punctuation:no_commas"), 0);
    assert_int_equal(llm_ifeval_supported(NULL), 0);
}

/* Scores the fixture: per-record strict/loose bits and the four accuracies
 * of tests/data/eval/README.md, computed by hand. */
static void test_fixture(void **state)
{
    static const char *const want_strict[] = {"11", "11", "0", "0", "0", "11", "0", "1", "11",
                                              "0",  "10", "1", "0", "11", "11", "10", "0", "1"};
    static const char *const want_loose[] = {"11", "11", "0", "0", "1", "11", "1", "1", "11",
                                             "0",  "11", "1", "1", "11", "11", "10", "1", "1"};
    struct llm_jsonl_reader in, out;
    if (access("tests/data/eval/ifeval.jsonl", R_OK) != 0)
        SKIP_BECAUSE("tests/data/eval/ifeval.jsonl not found: run from the repository root");
    assert_int_equal(llm_jsonl_open(&in, "tests/data/eval/ifeval.jsonl", 0), 0);
    assert_int_equal(llm_jsonl_open(&out, "tests/data/eval/ifeval_responses.jsonl", 0), 0);
    int rec = 0, ps = 0, pl = 0, is = 0, il = 0, total = 0;
    cJSON *q, *r;
    while (llm_jsonl_next(&in, &q) == 1) {
        assert_int_equal(llm_jsonl_next(&out, &r), 1);
        const char *prompt = cJSON_GetObjectItem(q, "prompt")->valuestring;
        assert_string_equal(prompt, cJSON_GetObjectItem(r, "prompt")->valuestring);
        const char *resp = cJSON_GetObjectItem(r, "response")->valuestring;
        const cJSON *ids = cJSON_GetObjectItem(q, "instruction_id_list"), *kws = cJSON_GetObjectItem(q, "kwargs");
        char bs[8] = {0}, bl[8] = {0};
        int k = 0, all_s = 1, all_l = 1;
        const cJSON *id;
        cJSON_ArrayForEach(id, ids) {
            int s, l;
            if (llm_ifeval_check(id->valuestring, cJSON_GetArrayItem(kws, k), prompt, resp, &s, &l))
                fail_msg("record %d: %s", rec + 1, llm_errmsg());
            bs[k] = (char)('0' + s), bl[k] = (char)('0' + l);
            all_s &= s, all_l &= l, is += s, il += l, total++, k++;
        }
        assert_true(rec < 18);
        if (strcmp(bs, want_strict[rec]) || strcmp(bl, want_loose[rec]))
            fail_msg("record %d: strict %s loose %s, want %s %s", rec + 1, bs, bl, want_strict[rec],
                     want_loose[rec]);
        ps += all_s, pl += all_l, rec++;
        cJSON_Delete(q);
        cJSON_Delete(r);
    }
    llm_jsonl_close(&in);
    llm_jsonl_close(&out);
    assert_int_equal(rec, 18);
    assert_int_equal(total, 26);
    assert_int_equal(ps, 9);  /* prompt-level strict 9/18 = 0.5 */
    assert_int_equal(is, 17); /* instruction-level strict 17/26 */
    assert_int_equal(pl, 14); /* prompt-level loose 14/18 */
    assert_int_equal(il, 22); /* instruction-level loose 22/26 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keywords),   cmocka_unit_test(test_language),  cmocka_unit_test(test_counts),
        cmocka_unit_test(test_length),     cmocka_unit_test(test_content),   cmocka_unit_test(test_format),
        cmocka_unit_test(test_combination), cmocka_unit_test(test_case_punct), cmocka_unit_test(test_blank_and_bytes),
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
