/* ifeval_lang.c: a small language guesser standing in for langdetect (the
 * reference's detector, a naive Bayes over character n-grams): Unicode
 * script counts decide non-Latin languages, letter marks split the shared
 * scripts (Cyrillic, Arabic, Han/kana), and stop-word profiles decide among
 * Latin-script (and Devanagari) languages. Limits: docs/ifeval.md. */
#include <string.h>
#include <utf8proc.h>

#include "eval/ifeval_impl.h"

enum script {
    SC_LATIN, SC_CYRILLIC, SC_ARABIC, SC_DEVANAGARI, SC_CJK, SC_GREEK, SC_ARMENIAN, SC_HEBREW,
    SC_BENGALI, SC_GURMUKHI, SC_GUJARATI, SC_ORIYA, SC_TAMIL, SC_TELUGU, SC_KANNADA, SC_MALAYALAM,
    SC_SINHALA, SC_THAI, SC_LAO, SC_TIBETAN, SC_MYANMAR, SC_GEORGIAN, SC_HANGUL, SC_ETHIOPIC,
    SC_KHMER, SC_N
};

/* The language of a script that (for our purposes) has one; NULL for the
 * scripts decided further below. */
static const char *const SCRIPT_LANG[SC_N] = {
    [SC_GREEK] = "el",    [SC_ARMENIAN] = "hy", [SC_HEBREW] = "he",   [SC_BENGALI] = "bn",
    [SC_GURMUKHI] = "pa", [SC_GUJARATI] = "gu", [SC_ORIYA] = "or",    [SC_TAMIL] = "ta",
    [SC_TELUGU] = "te",   [SC_KANNADA] = "kn",  [SC_MALAYALAM] = "ml", [SC_SINHALA] = "si",
    [SC_THAI] = "th",     [SC_LAO] = "lo",      [SC_TIBETAN] = "bo",  [SC_MYANMAR] = "my",
    [SC_GEORGIAN] = "ka", [SC_HANGUL] = "ko",   [SC_ETHIOPIC] = "am", [SC_KHMER] = "km",
};

/* Unicode blocks (The Unicode Standard, ch. 7-18), in code point order. */
static const struct { int32_t lo, hi; int sc; } BLOCKS[] = {
    {0x0041, 0x024F, SC_LATIN},      {0x0370, 0x03FF, SC_GREEK},     {0x0400, 0x052F, SC_CYRILLIC},
    {0x0530, 0x058F, SC_ARMENIAN},   {0x0590, 0x05FF, SC_HEBREW},    {0x0600, 0x06FF, SC_ARABIC},
    {0x0750, 0x077F, SC_ARABIC},     {0x08A0, 0x08FF, SC_ARABIC},    {0x0900, 0x097F, SC_DEVANAGARI},
    {0x0980, 0x09FF, SC_BENGALI},    {0x0A00, 0x0A7F, SC_GURMUKHI},  {0x0A80, 0x0AFF, SC_GUJARATI},
    {0x0B00, 0x0B7F, SC_ORIYA},      {0x0B80, 0x0BFF, SC_TAMIL},     {0x0C00, 0x0C7F, SC_TELUGU},
    {0x0C80, 0x0CFF, SC_KANNADA},    {0x0D00, 0x0D7F, SC_MALAYALAM}, {0x0D80, 0x0DFF, SC_SINHALA},
    {0x0E00, 0x0E7F, SC_THAI},       {0x0E80, 0x0EFF, SC_LAO},       {0x0F00, 0x0FFF, SC_TIBETAN},
    {0x1000, 0x109F, SC_MYANMAR},    {0x10A0, 0x10FF, SC_GEORGIAN},  {0x1100, 0x11FF, SC_HANGUL},
    {0x1200, 0x137F, SC_ETHIOPIC},   {0x1780, 0x17FF, SC_KHMER},     {0x1C80, 0x1C8F, SC_CYRILLIC},
    {0x1E00, 0x1EFF, SC_LATIN},      {0x1F00, 0x1FFF, SC_GREEK},     {0x2C60, 0x2C7F, SC_LATIN},
    {0x2DE0, 0x2DFF, SC_CYRILLIC},   {0x3040, 0x30FF, SC_CJK},       {0x3130, 0x318F, SC_HANGUL},
    {0x31F0, 0x31FF, SC_CJK},        {0x3400, 0x4DBF, SC_CJK},       {0x4E00, 0x9FFF, SC_CJK},
    {0xA640, 0xA69F, SC_CYRILLIC},   {0xA720, 0xA7FF, SC_LATIN},     {0xAC00, 0xD7AF, SC_HANGUL},
    {0xF900, 0xFAFF, SC_CJK},        {0xFB50, 0xFDFF, SC_ARABIC},    {0xFE70, 0xFEFF, SC_ARABIC},
    {0xFF21, 0xFF5A, SC_LATIN},      {0xFF66, 0xFF9F, SC_CJK},       {0x20000, 0x3134F, SC_CJK},
};

static int is_letter_or_mark(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME; /* Lu Ll Lt Lm Lo Mn Mc Me */
}

static int script_of(int32_t c)
{
    size_t lo = 0, hi = sizeof(BLOCKS) / sizeof(*BLOCKS);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < BLOCKS[mid].lo)
            hi = mid;
        else if (c > BLOCKS[mid].hi)
            lo = mid + 1;
        else
            return BLOCKS[mid].sc;
    }
    return -1;
}

static int is_kana(int32_t c)
{
    return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) || (c >= 0xFF66 && c <= 0xFF9F);
}

/* ---- stop-word profiles: a few dozen of each language's most frequent
 * words (lower case, space separated), plus letters only it uses. A word
 * hit scores 2, a letter 1. ---- */
struct profile {
    const char *lang;
    const char *words;
    const char *letters;
};

static const struct profile LATIN[] = {
    {"en", "the of and to a in is it that for you was with on as are be this have from or by not but "
           "what all were we when your can there an which their if will has would been they he she his "
           "her my our do so at about more no these some other than also i me them its who how into just", ""},
    {"de", "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an "
           "werden aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war "
           "haben nur oder aber vor zur bis mehr durch man ich wir ihr", "ß"},
    {"fr", "le la les de des et à un une du en est que qui dans pour pas sur au ce il elle ne se plus par "
           "avec son sa ses sont nous vous ils aux leur cette été être ont mais ou comme tout très aussi "
           "fait je on y", "œ"},
    {"es", "el la los las de del y en que un una es por con para no se su sus al lo como más pero le ya o "
           "este esta son entre cuando muy sin sobre también me hay donde todo ser fue ha está desde yo", "ñ¿¡"},
    {"it", "il lo la i gli le di del della dei delle e è un una che in per con non si da al alla come più "
           "ma sono anche questo questa ha nel nella ci suo sua loro essere stato tutto molto o se io", ""},
    {"pt", "o a os as de do da dos das e é um uma que em no na nos nas para com não se por mais como mas "
           "ao seu sua foi são pelo pela também ele ela isso esta este muito já tem eu", "ãõ"},
    {"nl", "de het een en van in is dat op te zijn met voor niet aan er ook als bij door maar om dan "
           "wordt of naar uit zij hij deze dit nog wel worden kan werd hebben geen tot al was zo ik", ""},
    {"sw", "na ya wa za kwa ni katika la cha vya kuwa hii hiyo huo kama lakini pia au sana yake wake "
           "ambao ambayo ambapo watu mtu mimi wewe yeye sisi nyinyi wao si hapa kila baada kabla juu "
           "ndani tu hata bado", ""},
    {"fi", "ja on ei se että oli hän ovat ole mutta kun tai myös sen ne niin kuin jo sitä joka mitä tämä "
           "siitä vain olla ollut hänen sekä minä sinä me te he jos nyt vielä kanssa koska mukaan", ""},
    {"pl", "i w na z się nie do to że jest o jak po co ale od za tak dla są jego jej przez czy już tylko "
           "być może który która które ich mnie ten ta także bardzo było", "ąęłśźżń"},
    {"vi", "và của là có các những trong cho được một không với người này đã để khi cũng như đến từ về "
           "nhiều rằng thì sẽ đó ra lại theo tôi bạn chúng họ nhưng nếu vì rất", "ơưđ"},
    {"tr", "ve bir bu da de için ile çok olarak daha gibi en o ne var olan ama kadar sonra her ben sen "
           "biz siz onlar şey değil mi mı ki veya yok ise çünkü göre", "ğı"},
    {"id", "yang dan di ini itu dengan untuk dari dalam tidak ke akan pada juga ada saya kami kita mereka "
           "anda adalah atau karena oleh sudah bisa lebih seperti telah hanya bahwa dapat", ""},
    {"sv", "och i att det som en på är av för med till den har de inte om ett han hon men var sig så "
           "från vi jag du kan eller när också efter ska detta", "å"},
    {"da", "og i at det som en på er af for med til den har de ikke om et han hun men var sig så fra vi "
           "jeg du kan eller når også efter skal dette", "æøå"},
    {"ro", "și şi în de la a cu pe care este un o nu sunt din pentru mai ce se că sau au fost ca dar al "
           "lui ei el ea acest această foarte", "ășț"},
    {"cs", "a v se na je že to s z do o k i jsem by ale jak pro jako jeho byl být není jsou tak také "
           "které který jen už po od", "řěů"},
    {"hu", "a az és hogy nem is egy van meg el de ez csak még már mint volt ki be fel le kell lesz vagy "
           "azt ezt nagyon minden", "őű"},
};

static const struct profile DEVANAGARI[] = {
    {"hi", "है हैं के की का में और को से पर यह एक नहीं भी था थी थे हो कि लिए तो ही गया कर किया जो इस वह "
           "अपने हम आप मैं", ""},
    {"mr", "आहे आहेत आणि या हे ते ला मध्ये नाही होते केले त्या हा तर पण मी आम्ही तुम्ही करून असे म्हणून साठी "
           "होता झाले तो ती आपण त्याने त्याला मला आता काही सर्व खूप असते असतो", ""},
    {"ne", "छ छन् र मा पनि गर्न भएको यो त्यो भने लागि गरेको हुन्छ थियो गरी म हामी तपाईं सबै रूपमा नै थिए "
           "एउटा यस उनी ऊ हरेक गर्छ हुने भन्ने तथा पर्छ सक्छ छैन गरेर जुन उहाँ मेरो तिमी कुरा", ""},
};

/* Cyrillic: Ukrainian, Serbian and Macedonian have letters of their own;
 * Russian and Bulgarian differ by words (and ы э ё vs ъ). */
static const struct profile CYRILLIC[] = {
    {"ru", "и в не на что он с как это по но из у за то все она так его же от бы только мне было вот меня "
           "еще нет о уже для мы когда вы если или был ее они", "ыэё"},
    {"uk", "і в на що не з до як це та але й він вона для по є від ми ви ще вже так були його які", "іїєґ"},
    {"bg", "и в на е да не за се от са че с по как това който той но ще бъде което като със при те тя "
           "или ни във през след беше", "ъ"},
    {"sr", "је и у да се на за не су од са то из као али што ће био", "ћђјљњџ"},
    {"mk", "е и на се да во за не од со што ќе тоа тој беше", "ѓќѕјљњџ"},
};

#define MAX_PROFILES 24
_Static_assert(sizeof(LATIN) / sizeof(*LATIN) <= MAX_PROFILES, "raise MAX_PROFILES");

static int in_words(const char *list, const char *w, size_t n)
{
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, " ");
        if (k == n && memcmp(p, w, n) == 0)
            return 1;
        p += k;
        while (*p == ' ')
            p++;
    }
    return 0;
}

static int in_letters(const char *letters, int32_t c)
{
    size_t len, n = strlen(letters);
    for (size_t i = 0; i < n; i += len)
        if (ifeval_cp(letters, n, i, &len) == c)
            return 1;
    return 0;
}

/* Scores s against k profiles; returns the best (first on ties) or NULL
 * when nothing matched at all. */
static const char *best_profile(const char *s, size_t n, const struct profile *pr, size_t k)
{
    long score[MAX_PROFILES] = {0};
    char word[64];
    size_t i = 0, len;
    while (i < n) {
        int32_t c = utf8proc_tolower(ifeval_cp(s, n, i, &len));
        i += len;
        for (size_t p = 0; p < k; p++) /* letters only one language uses */
            score[p] += in_letters(pr[p].letters, c) ||
                        (!strcmp(pr[p].lang, "vi") && c >= 0x1EA0 && c <= 0x1EF9);
        if (!is_letter_or_mark(c))
            continue;
        /* a word: a run of letters and marks, lower-cased */
        size_t w = (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)word);
        while (i < n) {
            int32_t d = ifeval_cp(s, n, i, &len);
            if (!is_letter_or_mark(d))
                break;
            i += len;
            if (w + 4 < sizeof(word))
                w += (size_t)utf8proc_encode_char(utf8proc_tolower(d), (utf8proc_uint8_t *)word + w);
            else
                w = sizeof(word); /* too long to be a stop word */
        }
        if (w >= sizeof(word))
            continue;
        for (size_t p = 0; p < k; p++)
            score[p] += 2 * in_words(pr[p].words, word, w);
    }
    size_t best = 0;
    for (size_t p = 1; p < k; p++)
        if (score[p] > score[best])
            best = p;
    return score[best] > 0 ? pr[best].lang : NULL;
}

/* Arabic script: Urdu's and Persian's extra letters. */
static const char *arabic_lang(const char *s, size_t n, long total)
{
    long ur = 0, fa = 0;
    size_t len;
    for (size_t i = 0; i < n; i += len) {
        int32_t c = ifeval_cp(s, n, i, &len);
        ur += c == 0x679 || c == 0x688 || c == 0x691 || c == 0x6BA || c == 0x6D2 || c == 0x6C1 || c == 0x6BE;
        fa += c == 0x67E || c == 0x686 || c == 0x698 || c == 0x6AF || c == 0x6CC || c == 0x6A9;
    }
    long floor = total / 50 > 1 ? total / 50 : 1; /* 2% of the letters */
    if (ur >= floor)
        return "ur";
    if (fa >= floor)
        return "fa";
    return "ar";
}

const char *ifeval_language(const char *s, size_t n)
{
    long count[SC_N] = {0}, kana = 0, total = 0;
    size_t len;
    for (size_t i = 0; i < n; i += len) {
        int32_t c = ifeval_cp(s, n, i, &len);
        if (c < 0x41 || !is_letter_or_mark(c))
            continue;
        int sc = script_of(c);
        if (sc < 0)
            continue;
        count[sc]++;
        kana += is_kana(c);
        total++;
    }
    if (total == 0)
        return NULL;
    int best = 0;
    for (int k = 1; k < SC_N; k++)
        if (count[k] > count[best])
            best = k;
    switch (best) {
    case SC_LATIN:
        return best_profile(s, n, LATIN, sizeof(LATIN) / sizeof(*LATIN));
    case SC_CYRILLIC: {
        const char *l = best_profile(s, n, CYRILLIC, sizeof(CYRILLIC) / sizeof(*CYRILLIC));
        return l ? l : "ru";
    }
    case SC_ARABIC:
        return arabic_lang(s, n, count[SC_ARABIC]);
    case SC_DEVANAGARI: {
        const char *l = best_profile(s, n, DEVANAGARI, sizeof(DEVANAGARI) / sizeof(*DEVANAGARI));
        return l ? l : "hi";
    }
    case SC_CJK: /* Japanese mixes kana into its kanji; Chinese has none */
        return kana * 10 > count[SC_CJK] ? "ja" : "zh";
    default:
        return SCRIPT_LANG[best];
    }
}
