/* test_config.c: the config module: defaults, every key through JSON and
 * --set, the error of each kind of bad input (exact wording, JSON path
 * named, one line), the rules across keys, round trips, and that
 * docs/config.md and configs/tiny.json agree with the code. Run from the
 * repository root (make test does). */
#include "testutil.h"

#include <math.h>

#include "config/config.h"
#include "core/err.h"
#include "core/file.h"

/* The message of the last error contains want, and is one line. */
static void expect_msg(const char *want)
{
    const char *m = llm_errmsg();
    if (!strstr(m, want))
        fail_msg("error message\n  '%s'\nlacks\n  '%s'", m, want);
    if (strchr(m, '\n'))
        fail_msg("error message is not one line: '%s'", m);
}

/* Defaults, then the JSON text on top (validated). */
static int from_text(struct llm_config *c, const char *json)
{
    int rc = llm_config_defaults(c);
    assert_int_equal(rc, 0);
    cJSON *root = cJSON_Parse(json);
    if (!root)
        fail_msg("test JSON does not parse: %s", json);
    rc = llm_config_from_json(c, root);
    cJSON_Delete(root);
    return rc;
}

static void expect_json_error(const char *json, const char *want)
{
    struct llm_config c;
    int rc = from_text(&c, json);
    llm_config_release(&c);
    if (rc != LLM_EINVAL)
        fail_msg("%s: got %d, wanted LLM_EINVAL (message '%s')", json, rc, llm_errmsg());
    expect_msg(want);
}

static void expect_set_error(const char *assignment, const char *want)
{
    struct llm_config c;
    const char *sets[] = {assignment};
    int rc = llm_config_load(&c, NULL, sets, 1);
    llm_config_release(&c);
    if (rc != LLM_EINVAL)
        fail_msg("--set %s: got %d, wanted LLM_EINVAL (message '%s')", assignment, rc, llm_errmsg());
    expect_msg(want);
}

/* Writes len bytes of text (all of it when len is 0) to dir/name. */
static char *write_tmp(const char *dir, const char *name, const char *text, size_t len)
{
    if (!len)
        len = strlen(text);
    char *p = test_path(dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return p;
}

/* The value of one key as JSON, via llm_config_to_json. Caller deletes. */
static cJSON *value_of(const struct llm_config *c, const char *path)
{
    cJSON *root = llm_config_to_json(c);
    assert_non_null(root);
    char sec[32];
    const char *dot = strchr(path, '.');
    snprintf(sec, sizeof(sec), "%.*s", (int)(dot - path), path);
    cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, sec), dot + 1);
    cJSON_Delete(root);
    assert_non_null(v);
    return v;
}

/* loading to_json's output gives the same config back */
static void assert_round_trip(const struct llm_config *c)
{
    cJSON *j = llm_config_to_json(c);
    assert_non_null(j);
    struct llm_config back;
    assert_int_equal(llm_config_defaults(&back), 0);
    int rc = llm_config_from_json(&back, j);
    if (rc)
        fail_msg("to_json output does not load: %s", llm_errmsg());
    char *a = llm_config_to_string(c), *b = llm_config_to_string(&back);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    /* and the text form parses to the same JSON */
    cJSON *t = cJSON_Parse(a);
    assert_non_null(t);
    assert_true(cJSON_Compare(t, j, 1));
    cJSON_Delete(t);
    free(a);
    free(b);
    cJSON_Delete(j);
    llm_config_release(&back);
}

static void test_defaults_valid(void **state)
{
    (void)state;
    struct llm_config c;
    assert_int_equal(llm_config_defaults(&c), 0);
    assert_int_equal(llm_config_validate(&c), 0);
    assert_int_equal(c.model.vocab_size, 4096);
    assert_int_equal(c.model.d_model, 256);
    assert_int_equal(c.model.n_heads, 4);
    assert_int_equal(llm_config_kv_heads(&c.model), 4);
    assert_int_equal(c.model.activation, LLM_ACTIVATION_GELU);
    assert_true(c.model.bias);
    assert_true(c.optim.lr == 3e-4);
    assert_true(c.optim.betas[0] == 0.9 && c.optim.betas[1] == 0.95);
    assert_int_equal(c.train.steps, 1000);
    assert_string_equal(c.data.train, "");
    assert_string_equal(c.train.out_dir, "runs/default");
    assert_int_equal(c.schedule.cooldown, LLM_COOLDOWN_1_SQRT);
    assert_round_trip(&c);
    /* a load with nothing is the defaults */
    struct llm_config d;
    assert_int_equal(llm_config_load(&d, NULL, NULL, 0), 0);
    char *a = llm_config_to_string(&c), *b = llm_config_to_string(&d);
    assert_string_equal(a, b);
    free(a);
    free(b);
    llm_config_release(&c);
    llm_config_release(&c); /* twice is safe */
    llm_config_release(&d);
}

static void test_table(void **state)
{
    (void)state;
    size_t nk, ns, nr;
    const struct llm_config_key *keys = llm_config_keys(&nk);
    const struct llm_config_section *secs = llm_config_sections(&ns);
    llm_config_rules(&nr);
    assert_true(nk >= 50 && ns == 10 && nr >= 5);
    for (size_t i = 0; i < nk; i++) {
        const struct llm_config_key *k = &keys[i];
        const char *dot = strchr(k->path, '.');
        assert_non_null(dot);
        int found = 0;
        for (size_t s = 0; s < ns; s++)
            found |= strlen(secs[s].name) == (size_t)(dot - k->path) &&
                     !strncmp(secs[s].name, k->path, (size_t)(dot - k->path));
        if (!found)
            fail_msg("%s: not in a section", k->path);
        assert_true(k->doc && k->doc[0] && !strchr(k->doc, '\n'));
        assert_ptr_equal(llm_config_find(k->path), k);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(keys[j].path, k->path))
                fail_msg("%s: listed twice", k->path);
        if (k->type == LLM_CONFIG_ENUM)
            assert_non_null(k->choices[1]);
    }
    assert_null(llm_config_find("model"));
    assert_null(llm_config_find("model.nope"));
    /* enum spellings follow the C enums */
    assert_string_equal(llm_config_choice_name("model.activation", LLM_ACTIVATION_RELU), "relu");
    assert_string_equal(llm_config_choice_name("model.activation", LLM_ACTIVATION_SWIGLU), "swiglu");
    assert_string_equal(llm_config_choice_name("model.activation", LLM_ACTIVATION_RELU2), "relu2");
    assert_string_equal(llm_config_choice_name("model.norm", LLM_NORM_RMSNORM), "rmsnorm");
    assert_string_equal(llm_config_choice_name("model.norm_position", LLM_NORM_POSITION_POST), "post");
    assert_string_equal(llm_config_choice_name("model.position", LLM_POSITION_ROPE), "rope");
    assert_string_equal(llm_config_choice_name("model.attention", LLM_ATTENTION_LINEAR), "linear");
    assert_string_equal(llm_config_choice_name("model.attention_kv", LLM_ATTENTION_KV_MLA), "mla");
    assert_string_equal(llm_config_choice_name("model.mlp", LLM_MLP_MOE), "moe");
    assert_string_equal(llm_config_choice_name("train.device", LLM_DEVICE_CUDA), "cuda");
    assert_string_equal(llm_config_choice_name("optim.name", LLM_OPTIM_SGD), "sgd");
    assert_string_equal(llm_config_choice_name("schedule.name", LLM_SCHEDULE_WSD), "wsd");
    assert_string_equal(llm_config_choice_name("schedule.cooldown", LLM_COOLDOWN_1_SQRT), "1-sqrt");
    assert_null(llm_config_choice_name("model.activation", 4));
    assert_null(llm_config_choice_name("model.activation", -1));
    assert_null(llm_config_choice_name("model.d_model", 0));
}

/* A valid value of k other than its current one in c (rules kept). */
static cJSON *other_value(const struct llm_config *c, const struct llm_config_key *k)
{
    cJSON *cur = value_of(c, k->path), *v = NULL;
    double d;
    switch (k->type) {
    case LLM_CONFIG_INT:
    case LLM_CONFIG_I64:
        d = cur->valuedouble;
        v = cJSON_CreateNumber(d > 0 ? d * 2 : (double)k->ilo + 1);
        if (!strcmp(k->path, "train.batch_tokens")) /* a rule: a multiple of the micro-batch */
            v->valuedouble = 2.0 * c->train.batch_size * c->model.context_length;
        break;
    case LLM_CONFIG_NUM:
        d = cur->valuedouble;
        if (d == 0)
            d = 0.5;
        else
            d = d * 2 <= k->hi && !(k->hi_open && d * 2 == k->hi) ? d * 2 : d / 2;
        v = cJSON_CreateNumber(d);
        break;
    case LLM_CONFIG_BOOL:
        v = cJSON_CreateBool(!cJSON_IsTrue(cur));
        break;
    case LLM_CONFIG_STR:
        v = cJSON_CreateString("dir/a \"quoted\" \\ name\t\xc3\xa9.bin");
        break;
    case LLM_CONFIG_ENUM: {
        const char *pick = NULL; /* the last other one: exercises high values */
        for (int i = 0; k->choices[i]; i++)
            if (strcmp(k->choices[i], cur->valuestring))
                pick = k->choices[i];
        v = cJSON_CreateString(pick);
        break;
    }
    case LLM_CONFIG_NUMS: {
        double a[LLM_CONFIG_MAX_NUMS];
        for (int i = 0; i < k->len; i++)
            a[i] = cJSON_GetArrayItem(cur, i)->valuedouble / 2;
        v = cJSON_CreateDoubleArray(a, k->len);
        break;
    }
    }
    assert_non_null(v);
    if (cJSON_Compare(v, cur, 1))
        fail_msg("%s: no other value found", k->path);
    cJSON_Delete(cur);
    return v;
}

/* A base where switching any one key keeps the rules: sliding and mla have
 * their sizes set. */
static void base_config(struct llm_config *c)
{
    const char *sets[] = {"model.window=64", "model.kv_lora_rank=32"};
    assert_int_equal(llm_config_load(c, NULL, sets, 2), 0);
}

static void test_every_key(void **state)
{
    (void)state;
    size_t nk;
    const struct llm_config_key *keys = llm_config_keys(&nk);
    for (size_t i = 0; i < nk; i++) {
        const struct llm_config_key *k = &keys[i];
        struct llm_config base, c;
        base_config(&base);
        cJSON *want = other_value(&base, k);

        /* through a JSON file's object */
        char sec[32];
        snprintf(sec, sizeof(sec), "%.*s", (int)(strchr(k->path, '.') - k->path), k->path);
        cJSON *root = cJSON_CreateObject();
        cJSON_AddItemToObject(cJSON_AddObjectToObject(root, sec), strchr(k->path, '.') + 1,
                              cJSON_Duplicate(want, 1));
        assert_int_equal(llm_config_copy(&c, &base), 0);
        if (llm_config_from_json(&c, root))
            fail_msg("%s from JSON: %s", k->path, llm_errmsg());
        cJSON *got = value_of(&c, k->path);
        if (!cJSON_Compare(got, want, 1))
            fail_msg("%s: JSON value not stored", k->path);
        cJSON_Delete(got);
        assert_round_trip(&c);
        llm_config_release(&c);
        cJSON_Delete(root);

        /* through --set with the JSON text */
        char *text = cJSON_PrintUnformatted(want), set[512];
        snprintf(set, sizeof(set), "%s=%s", k->path, text);
        assert_int_equal(llm_config_copy(&c, &base), 0);
        if (llm_config_set(&c, set) || llm_config_validate(&c))
            fail_msg("--set %s: %s", set, llm_errmsg());
        got = value_of(&c, k->path);
        if (!cJSON_Compare(got, want, 1))
            fail_msg("--set %s: value not stored", set);
        cJSON_Delete(got);
        llm_config_release(&c);

        /* string keys also take the bare text */
        if (cJSON_IsString(want)) {
            snprintf(set, sizeof(set), "%s=%s", k->path, want->valuestring);
            assert_int_equal(llm_config_copy(&c, &base), 0);
            if (llm_config_set(&c, set))
                fail_msg("--set %s: %s", set, llm_errmsg());
            got = value_of(&c, k->path);
            assert_true(cJSON_Compare(got, want, 1));
            cJSON_Delete(got);
            llm_config_release(&c);
        }
        free(text);
        cJSON_Delete(want);
        llm_config_release(&base);
    }
}

static void test_unknown_and_structure(void **state)
{
    (void)state;
    expect_json_error("{\"model\": {\"d_modle\": 1}}", "model.d_modle: unknown key (did you mean 'd_model'?)");
    expect_json_error("{\"modle\": {}}", "modle: unknown key (did you mean 'model'?)");
    expect_json_error("{\"train\": {\"lr\": 0.1}}", "train.lr: unknown key (did you mean 'optim.lr'?)");
    expect_json_error("{\"lr\": 0.1}", "lr: unknown key (did you mean 'optim.lr'?)");
    expect_json_error("{\"model\": {\"zzzzzzzzzz\": 1}}",
                      "model.zzzzzzzzzz: unknown key (the keys are listed in docs/config.md)");
    expect_json_error("{\"model\": {\"D_model\": 1}}", "model.D_model: unknown key (did you mean 'd_model'?)");
    expect_json_error("[1, 2]", "expected an object at the top level, got [1,2]");
    expect_json_error("3", "expected an object at the top level, got 3");
    expect_json_error("{\"model\": 3}", "model: expected an object, got 3");
    expect_json_error("{\"model\": [1]}", "model: expected an object, got [1]");
    expect_json_error("{\"model\": {\"d_model\": 128, \"d_model\": 256}}", "model.d_model: duplicate key");
    expect_json_error("{\"model\": {}, \"model\": {}}", "model: duplicate key");
    /* names from the file are made one line and short */
    expect_json_error("{\"model\": {\"a\\nb\": 1}}", "model.a?b: unknown key");
    char big[400] = "{\"model\": {\"";
    memset(big + strlen(big), 'x', 300);
    strcpy(big + strlen(big), "\": 1}}");
    expect_json_error(big, "...: unknown key");
    assert_true(strlen(llm_errmsg()) < 250);
    /* the empty object is the defaults */
    struct llm_config c;
    assert_int_equal(from_text(&c, "{}"), 0);
    llm_config_release(&c);
    assert_int_equal(from_text(&c, "{\"model\": {}}"), 0);
    llm_config_release(&c);
}

static void test_types_and_ranges(void **state)
{
    (void)state;
    expect_json_error("{\"optim\": {\"lr\": \"abc\"}}", "optim.lr: expected a number > 0, got \"abc\"");
    expect_json_error("{\"optim\": {\"lr\": 0}}", "optim.lr: expected a number > 0, got 0");
    expect_json_error("{\"optim\": {\"lr\": -3e-4}}", "optim.lr: expected a number > 0, got -0.0003");
    expect_json_error("{\"optim\": {\"lr\": 1e400}}", "optim.lr: expected a number > 0, got inf");
    expect_json_error("{\"optim\": {\"lr\": null}}", "optim.lr: expected a number > 0, got null");
    expect_json_error("{\"model\": {\"dropout\": 1}}", "model.dropout: expected a number in [0, 1), got 1");
    expect_json_error("{\"train\": {\"clip_grad\": -1}}", "train.clip_grad: expected a number >= 0, got -1");
    expect_json_error("{\"schedule\": {\"min_lr_ratio\": 1.5}}",
                      "schedule.min_lr_ratio: expected a number in [0, 1], got 1.5");
    /* integers: whole, in range, never truncated or saturated */
    expect_json_error("{\"model\": {\"d_model\": 3.5}}", "model.d_model: expected an integer >= 1, got 3.5");
    expect_json_error("{\"model\": {\"d_model\": 0}}", "model.d_model: expected an integer >= 1, got 0");
    expect_json_error("{\"model\": {\"d_model\": -4}}", "model.d_model: expected an integer >= 1, got -4");
    expect_json_error("{\"model\": {\"d_model\": 1e30}}",
                      "model.d_model: expected an integer in [1, 2147483647], got 1e+30");
    expect_json_error("{\"model\": {\"d_model\": 2147483648}}",
                      "model.d_model: expected an integer in [1, 2147483647], got 2147483648");
    expect_json_error("{\"model\": {\"d_model\": \"256\"}}", "model.d_model: expected an integer >= 1, got \"256\"");
    expect_json_error("{\"model\": {\"d_model\": true}}", "model.d_model: expected an integer >= 1, got true");
    expect_json_error("{\"train\": {\"steps\": 1e16}}",
                      "train.steps: expected an integer in [0, 9007199254740991], got 1e+16");
    expect_json_error("{\"train\": {\"steps\": 10.25}}", "train.steps: expected an integer >= 0, got 10.25");
    /* booleans, strings, enums */
    expect_json_error("{\"model\": {\"bias\": 1}}", "model.bias: expected true or false, got 1");
    expect_json_error("{\"model\": {\"bias\": \"true\"}}", "model.bias: expected true or false, got \"true\"");
    expect_json_error("{\"data\": {\"train\": 3}}", "data.train: expected a string, got 3");
    expect_json_error("{\"train\": {\"out_dir\": \"\"}}", "train.out_dir: expected a non-empty string, got \"\"");
    expect_json_error("{\"model\": {\"activation\": \"tanh\"}}",
                      "model.activation: expected one of relu, gelu, swiglu, relu2, got \"tanh\"");
    expect_json_error("{\"model\": {\"activation\": \"GELU\"}}",
                      "model.activation: expected one of relu, gelu, swiglu, relu2, got \"GELU\"");
    expect_json_error("{\"model\": {\"activation\": 1}}",
                      "model.activation: expected one of relu, gelu, swiglu, relu2, got 1");
    expect_json_error("{\"schedule\": {\"cooldown\": \"sqrt\"}}",
                      "schedule.cooldown: expected one of linear, 1-sqrt, got \"sqrt\"");
    /* arrays */
    expect_json_error("{\"optim\": {\"betas\": [0.9]}}",
                      "optim.betas: expected an array of 2 numbers in [0, 1), got [0.9]");
    expect_json_error("{\"optim\": {\"betas\": [0.9, 1]}}",
                      "optim.betas: expected an array of 2 numbers in [0, 1), got [0.9,1]");
    expect_json_error("{\"optim\": {\"betas\": [0.9, 0.95, 0.99]}}",
                      "optim.betas: expected an array of 2 numbers in [0, 1), got [0.9,0.95,0.99]");
    expect_json_error("{\"optim\": {\"betas\": [0.9, \"x\"]}}",
                      "optim.betas: expected an array of 2 numbers in [0, 1), got [0.9,\"x\"]");
    expect_json_error("{\"optim\": {\"betas\": 0.9}}",
                      "optim.betas: expected an array of 2 numbers in [0, 1), got 0.9");
    /* long values are cut in the message */
    expect_json_error("{\"data\": {\"train\": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25]}}",
                      "data.train: expected a string, got [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23...");

    /* accepted edges */
    struct llm_config c;
    assert_int_equal(from_text(&c, "{\"model\": {\"d_model\": 256.0, \"dropout\": 0}, \"optim\": {\"betas\": [0, 0.999]},"
                                   " \"train\": {\"seed\": 9007199254740991, \"steps\": 1e3}}"),
                     0);
    assert_int_equal(c.model.d_model, 256);
    assert_int_equal(c.train.seed, INT64_C(9007199254740991));
    assert_int_equal(c.train.steps, 1000);
    assert_true(c.optim.betas[1] == 0.999);
    assert_round_trip(&c);
    llm_config_release(&c);
}

static void test_rules(void **state)
{
    (void)state;
    expect_json_error("{\"model\": {\"d_model\": 250}}", "model.n_heads: expected a divisor of model.d_model (250), got 4");
    expect_json_error("{\"model\": {\"n_kv_heads\": 3}}",
                      "model.n_kv_heads: expected 0 or a divisor of model.n_heads (4), got 3");
    expect_json_error("{\"model\": {\"d_model\": 12, \"position\": \"rope\"}}",
                      "model.position: rope needs an even head size, got model.d_model / model.n_heads = 12 / 4 = 3");
    expect_json_error("{\"model\": {\"mlp\": \"moe\", \"n_experts\": 4, \"top_k\": 5}}",
                      "model.top_k: expected at most model.n_experts (4) with mlp \"moe\", got 5");
    expect_json_error("{\"model\": {\"attention\": \"sliding\"}}",
                      "model.window: expected an integer >= 1 with attention \"sliding\", got 0");
    expect_json_error("{\"model\": {\"attention_kv\": \"mla\"}}",
                      "model.kv_lora_rank: expected an integer >= 1 with attention_kv \"mla\", got 0");
    expect_json_error("{\"schedule\": {\"warmup\": 2000}}", "schedule.warmup: expected at most train.steps (1000), got 2000");

    struct llm_config c;
    /* the same keys are fine where the rule does not apply */
    assert_int_equal(from_text(&c, "{\"model\": {\"d_model\": 12, \"n_kv_heads\": 2, \"top_k\": 9}}"), 0);
    assert_int_equal(llm_config_kv_heads(&c.model), 2);
    llm_config_release(&c);
    assert_int_equal(from_text(&c, "{\"model\": {\"d_model\": 16, \"position\": \"rope\", \"attention\": \"sliding\","
                                   " \"window\": 32, \"attention_kv\": \"mla\", \"kv_lora_rank\": 8, \"mlp\": \"moe\","
                                   " \"n_experts\": 2, \"top_k\": 2}, \"schedule\": {\"warmup\": 1000}}"),
                     0);
    llm_config_release(&c);

    /* validate also checks values put in the struct by C code */
    assert_int_equal(llm_config_defaults(&c), 0);
    c.model.d_model = 0;
    assert_int_equal(llm_config_validate(&c), LLM_EINVAL);
    expect_msg("model.d_model: expected an integer >= 1, got 0");
    c.model.d_model = 256;
    c.model.activation = (enum llm_activation)9;
    assert_int_equal(llm_config_validate(&c), LLM_EINVAL);
    expect_msg("model.activation: expected one of relu, gelu, swiglu, relu2, got 9");
    c.model.activation = LLM_ACTIVATION_RELU;
    c.optim.lr = NAN;
    assert_int_equal(llm_config_validate(&c), LLM_EINVAL);
    expect_msg("optim.lr: expected a number > 0, got ");
    c.optim.lr = 1e-3;
    free(c.data.val);
    c.data.val = NULL;
    assert_int_equal(llm_config_validate(&c), LLM_EINVAL);
    expect_msg("data.val: expected a string, got null");
    llm_config_release(&c);
}

static void test_set(void **state)
{
    (void)state;
    struct llm_config c;
    const char *sets[] = {
        "optim.lr=3e-3", "model.bias=false", "optim.betas=[0.8, 0.9]", "data.train=foo.bin",
        "data.val=\"quoted.bin\"", "data.tokenizer=123", "model.activation=swiglu", "schedule.cooldown=linear",
        "train.out_dir=runs/x=y", "model.d_model=512", "model.d_model=128", "schedule.name=\"wsd\"",
        "train.seed=  7 ",
    };
    int n = (int)(sizeof(sets) / sizeof(sets[0]));
    if (llm_config_load(&c, NULL, sets, n))
        fail_msg("%s", llm_errmsg());
    assert_true(c.optim.lr == 3e-3);
    assert_false(c.model.bias);
    assert_true(c.optim.betas[0] == 0.8 && c.optim.betas[1] == 0.9);
    assert_string_equal(c.data.train, "foo.bin");
    assert_string_equal(c.data.val, "quoted.bin");
    assert_string_equal(c.data.tokenizer, "123");
    assert_int_equal(c.model.activation, LLM_ACTIVATION_SWIGLU);
    assert_int_equal(c.schedule.cooldown, LLM_COOLDOWN_LINEAR);
    assert_string_equal(c.train.out_dir, "runs/x=y");
    assert_int_equal(c.model.d_model, 128); /* the last one wins */
    assert_int_equal(c.schedule.name, LLM_SCHEDULE_WSD);
    assert_int_equal(c.train.seed, 7);
    llm_config_release(&c);

    expect_set_error("optim.lr=abc", "--set optim.lr: expected a number > 0, got \"abc\"");
    expect_set_error("optim.lr=", "--set optim.lr: expected a number > 0, got \"\"");
    expect_set_error("model.d_model=3.5", "--set model.d_model: expected an integer >= 1, got 3.5");
    expect_set_error("model.bias=yes", "--set model.bias: expected true or false, got \"yes\"");
    expect_set_error("optim.betas=0.9,0.95", "--set optim.betas: expected an array of 2 numbers in [0, 1), got \"0.9,0.95\"");
    expect_set_error("model.activation=tanh", "--set model.activation: expected one of relu, gelu, swiglu, relu2, got \"tanh\"");
    expect_set_error("optim.lrr=1", "--set optim.lrr: unknown key (did you mean 'optim.lr'?)");
    expect_set_error("lr=1", "--set lr: unknown key (did you mean 'optim.lr'?)");
    expect_set_error("nothing.at.all=1", "--set nothing.at.all: unknown key (the keys are listed in docs/config.md)");
    expect_set_error("optim.lr", "--set optim.lr: expected PATH=VALUE, e.g. --set optim.lr=3e-4");
    expect_set_error("=3", "--set =3: expected PATH=VALUE");
    expect_set_error("model=1", "--set model: expected one key, e.g. --set model.vocab_size=VALUE");
    /* rules see the overrides; their errors name the key */
    expect_set_error("schedule.warmup=5000", "schedule.warmup: expected at most train.steps (1000), got 5000");
}

static void test_files(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    struct llm_config c;
    const char *good = "{\n  \"model\": {\"d_model\": 128, \"n_heads\": 2},\n  \"optim\": {\"lr\": 0.001}\n}\n";
    char *p = write_tmp(dir, "good.json", good, 0);
    const char *sets[] = {"optim.lr=0.002"};
    assert_int_equal(llm_config_load(&c, p, sets, 1), 0);
    assert_int_equal(c.model.d_model, 128);
    assert_int_equal(c.model.n_layers, 4); /* default kept */
    assert_true(c.optim.lr == 0.002);      /* --set over the file */
    llm_config_release(&c);
    free(p);

    /* errors about the file start with its name */
    char want[600];
    const char *bad = "{\n  \"optim\": {\"lr\": \"abc\"}\n}\n";
    p = write_tmp(dir, "bad.json", bad, 0);
    assert_int_equal(llm_config_load(&c, p, NULL, 0), LLM_EINVAL);
    snprintf(want, sizeof(want), "%s: optim.lr: expected a number > 0, got \"abc\"", p);
    assert_string_equal(llm_errmsg(), want);
    llm_config_release(&c);
    free(p);

    const char *comma = "{\n  \"model\": {\n    \"d_model\": 256\n    \"n_heads\": 4\n  }\n}\n";
    p = write_tmp(dir, "comma.json", comma, 0);
    assert_int_equal(llm_config_load(&c, p, NULL, 0), LLM_EINVAL);
    snprintf(want, sizeof(want), "%s: invalid JSON at line 4, column 5", p);
    assert_string_equal(llm_errmsg(), want);
    llm_config_release(&c);
    free(p);

    p = write_tmp(dir, "trailing.json", "{} {}", 0);
    assert_int_equal(llm_config_load(&c, p, NULL, 0), LLM_EINVAL);
    expect_msg("trailing.json: invalid JSON at line 1, column 4");
    llm_config_release(&c);
    free(p);

    p = write_tmp(dir, "empty.json", " \n", 0);
    assert_int_equal(llm_config_load(&c, p, NULL, 0), LLM_EINVAL);
    expect_msg("empty.json: empty file, expected a JSON object");
    llm_config_release(&c);
    free(p);

    p = write_tmp(dir, "nul.json", "{}\0{\"model\": 3}", 15);
    assert_int_equal(llm_config_load(&c, p, NULL, 0), LLM_EINVAL);
    expect_msg("nul.json: not JSON text (a NUL byte at offset 2)");
    llm_config_release(&c);
    free(p);

    p = write_tmp(dir, "dup.json", "{\"train\": {\"steps\": 5, \"steps\": 6}}", 0);
    assert_int_equal(llm_config_load(&c, p, NULL, 0), LLM_EINVAL);
    expect_msg("dup.json: train.steps: duplicate key");
    llm_config_release(&c);
    free(p);

    /* a rule broken by the file alone names the file; with --set, the key */
    p = write_tmp(dir, "rule.json", "{\"schedule\": {\"warmup\": 5000}}", 0);
    assert_int_equal(llm_config_load(&c, p, NULL, 0), LLM_EINVAL);
    expect_msg("rule.json: schedule.warmup: expected at most train.steps (1000), got 5000");
    llm_config_release(&c);
    const char *fix[] = {"train.steps=10000"}, *other[] = {"optim.lr=1"};
    assert_int_equal(llm_config_load(&c, p, fix, 1), 0);
    llm_config_release(&c);
    assert_int_equal(llm_config_load(&c, p, other, 1), LLM_EINVAL);
    assert_string_equal(llm_errmsg(), "schedule.warmup: expected at most train.steps (1000), got 5000");
    llm_config_release(&c);
    /* a --set error is about --set, not the file */
    const char *badset[] = {"optim.lr=-1"};
    assert_int_equal(llm_config_load(&c, p, badset, 1), LLM_EINVAL);
    assert_string_equal(llm_errmsg(), "--set optim.lr: expected a number > 0, got -1");
    llm_config_release(&c);
    free(p);

    p = test_path(dir, "missing.json");
    assert_int_equal(llm_config_load(&c, p, NULL, 0), LLM_EIO);
    expect_msg("missing.json");
    llm_config_release(&c);
    free(p);

    assert_int_equal(llm_config_load(&c, dir, NULL, 0), LLM_EIO);
    expect_msg("is a directory");
    llm_config_release(&c);

    /* too big: refused before parsing */
    size_t n = LLM_CONFIG_MAX_FILE + 16;
    char *huge = malloc(n);
    assert_non_null(huge);
    memset(huge, ' ', n);
    huge[0] = '{';
    huge[n - 1] = '}';
    p = write_tmp(dir, "huge.json", huge, n);
    free(huge);
    assert_int_equal(llm_config_load(&c, p, NULL, 0), LLM_EINVAL);
    expect_msg("larger than");
    llm_config_release(&c);
    free(p);
    test_rmdir(dir);
}

static void test_round_trip_extremes(void **state)
{
    (void)state;
    struct llm_config c, d;
    const char *sets[] = {
        "optim.lr=1e-300", "train.seed=9007199254740991", "optim.eps=0.1", "model.norm_eps=3.0000000000000004e-7",
        "model.rope_theta=500000", "data.train=\"line\\nbreak \\\"q\\\" \\u00e9 \\u0001\"",
        "optim.betas=[0.1, 0.30000000000000004]",
    };
    assert_int_equal(llm_config_load(&c, NULL, sets, (int)(sizeof(sets) / sizeof(sets[0]))), 0);
    assert_string_equal(c.data.train, "line\nbreak \"q\" \xc3\xa9 \x01");
    assert_round_trip(&c);
    /* a deep copy owns its own strings */
    assert_int_equal(llm_config_copy(&d, &c), 0);
    assert_ptr_not_equal(d.data.train, c.data.train);
    assert_string_equal(d.data.train, c.data.train);
    llm_config_release(&c);
    assert_string_equal(d.data.val, "");
    assert_round_trip(&d);
    /* the text form is one JSON object, loadable as a file would be */
    char *s = llm_config_to_string(&d);
    assert_non_null(s);
    assert_true(s[strlen(s) - 1] == '\n');
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    assert_int_equal(llm_config_defaults(&c), 0);
    assert_int_equal(llm_config_from_json(&c, j), 0);
    assert_true(c.optim.lr == 1e-300 && c.optim.betas[1] == 0.30000000000000004);
    assert_true(c.model.norm_eps == 3.0000000000000004e-7);
    assert_int_equal(c.train.seed, INT64_C(9007199254740991));
    cJSON_Delete(j);
    free(s);
    llm_config_release(&c);
    llm_config_release(&d);
}

static void test_docs_match(void **state)
{
    (void)state;
    char *gen = NULL, *file = NULL;
    size_t glen = 0, flen = 0;
    FILE *f = open_memstream(&gen, &glen);
    assert_non_null(f);
    assert_int_equal(llm_config_write_docs(f), 0);
    assert_int_equal(fclose(f), 0);
    /* every key and rule is in it */
    size_t nk;
    const struct llm_config_key *keys = llm_config_keys(&nk);
    char row[96];
    for (size_t i = 0; i < nk; i++) {
        snprintf(row, sizeof(row), "| `%s` |", keys[i].path);
        if (!strstr(gen, row))
            fail_msg("docs lack %s", keys[i].path);
    }
    assert_non_null(strstr(gen, "| `model.activation` | string | `\"gelu\"` | relu, gelu, swiglu, relu2 |"));
    assert_non_null(strstr(gen, "| `optim.betas` | array | `[0.9, 0.95]` | 2 numbers, each [0, 1) |"));
    if (llm_read_file("docs/config.md", 1 << 20, &file, &flen))
        fail_msg("cannot read docs/config.md (%s): tests run from the repository root; "
                 "create it with `./llm config --docs > docs/config.md`", llm_errmsg());
    if (flen != glen || memcmp(file, gen, glen))
        fail_msg("docs/config.md differs from the key table in lib/config/schema.c: "
                 "run `./llm config --docs > docs/config.md` and commit it");
    free(file);
    free(gen);
}

static void test_tiny_config(void **state)
{
    (void)state;
    struct llm_config c;
    if (llm_config_load(&c, "configs/tiny.json", NULL, 0))
        fail_msg("configs/tiny.json: %s", llm_errmsg());
    assert_int_equal(c.model.d_model, 128);
    assert_string_equal(c.data.train, "data/tiny/train.bin");
    assert_round_trip(&c);
    llm_config_release(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_valid),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_unknown_and_structure),
        cmocka_unit_test(test_types_and_ranges),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_round_trip_extremes),
        cmocka_unit_test(test_docs_match),
        cmocka_unit_test(test_tiny_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
