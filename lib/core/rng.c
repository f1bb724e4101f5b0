/* rng.c: xoshiro256** with splitmix64 seeding (formulas in rng.h). */
#include "rng.h"
#include "err.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t llm_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void llm_rng_seed(struct llm_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = llm_splitmix64(&x);
    /* splitmix64 never yields four zeros in a row, but be sure: the all-zero
     * state is the one fixed point of xoshiro. */
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
        r->s[0] = 1;
}

uint64_t llm_rng_u64(struct llm_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

uint32_t llm_rng_u32(struct llm_rng *r) { return (uint32_t)(llm_rng_u64(r) >> 32); }

uint64_t llm_rng_below(struct llm_rng *r, uint64_t n)
{
    LLM_ASSERT(n > 0);
    /* Rejection: drop the top partial copy of [0, n) so every value is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = llm_rng_u64(r);
    while (x >= limit);
    return x % n;
}

float llm_rng_float(struct llm_rng *r) { return (float)(llm_rng_u64(r) >> 40) * 0x1.0p-24f; }

double llm_rng_double(struct llm_rng *r) { return (double)(llm_rng_u64(r) >> 11) * 0x1.0p-53; }

double llm_rng_normal(struct llm_rng *r)
{
    /* 1 - u is in (0, 1], so the log is finite. */
    double u1 = 1.0 - llm_rng_double(r), u2 = llm_rng_double(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void llm_rng_jump(struct llm_rng *r)
{
    /* The published jump polynomial of xoshiro256 (equivalent to 2^128 calls). */
    static const uint64_t jump[] = {0x180ec6d33cfd0abaULL, 0xd5a61266f0c9392cULL,
                                    0xa9582618e03fc9aaULL, 0x39abdc4529b1661cULL};
    uint64_t t[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 64; b++) {
            if (jump[i] & (1ULL << b))
                for (int k = 0; k < 4; k++)
                    t[k] ^= r->s[k];
            llm_rng_u64(r);
        }
    memcpy(r->s, t, sizeof(t));
}

void llm_rng_to_hex(const struct llm_rng *r, char out[65])
{
    for (int i = 0; i < 4; i++)
        snprintf(out + 16 * i, 17, "%016llx", (unsigned long long)r->s[i]);
}

int llm_rng_from_hex(struct llm_rng *r, const char *hex)
{
    if (!hex || strlen(hex) != 64)
        return llm_err(LLM_EFORMAT, "rng state: expected 64 hex digits");
    struct llm_rng t;
    for (int i = 0; i < 4; i++) {
        uint64_t v = 0;
        for (int j = 0; j < 16; j++) {
            char c = hex[16 * i + j];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return llm_err(LLM_EFORMAT, "rng state: '%c' is not a lower-case hex digit", c);
            v = v << 4 | (uint64_t)d;
        }
        t.s[i] = v;
    }
    if (!(t.s[0] | t.s[1] | t.s[2] | t.s[3]))
        return llm_err(LLM_EFORMAT, "rng state: all zero");
    *r = t;
    return 0;
}
