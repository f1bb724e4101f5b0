/* rng.h: the one random number generator of llm: xoshiro256** (Blackman and
 * Vigna 2018) seeded through splitmix64. Pure integer arithmetic, so the
 * same seed gives the same stream on every platform and compiler; the state
 * is four u64 and is saved in checkpoints so a resumed run continues it.
 *
 *   seed -> s[0..3] = four successive splitmix64(seed) outputs
 *   next: r = rotl(s1 * 5, 7) * 9; t = s1 << 17; s2 ^= s0; s3 ^= s1;
 *         s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 45); return r
 *   float in [0,1): top 24 bits * 2^-24;  double: top 53 bits * 2^-53
 *   normal: Box-Muller on two doubles (uses log/cos/sin from libm, which
 *           can differ in the last bit across libm versions)
 *   jump: advances 2^128 steps, for independent per-thread streams. */
#ifndef LLM_CORE_RNG_H
#define LLM_CORE_RNG_H

#include <stdint.h>

struct llm_rng {
    uint64_t s[4];
};

/* One splitmix64 step: advances *x and returns the mixed output. */
uint64_t llm_splitmix64(uint64_t *x);

void llm_rng_seed(struct llm_rng *r, uint64_t seed);
uint64_t llm_rng_u64(struct llm_rng *r);
uint32_t llm_rng_u32(struct llm_rng *r);           /* top 32 bits of u64 */
uint64_t llm_rng_below(struct llm_rng *r, uint64_t n); /* uniform in [0, n), unbiased; n > 0 */
float llm_rng_float(struct llm_rng *r);             /* [0, 1) */
double llm_rng_double(struct llm_rng *r);           /* [0, 1) */
double llm_rng_normal(struct llm_rng *r);           /* mean 0, std 1 */
void llm_rng_jump(struct llm_rng *r);               /* 2^128 steps ahead */

/* The state as 64 hex digits (for a checkpoint header) and back. */
void llm_rng_to_hex(const struct llm_rng *r, char out[65]);
int llm_rng_from_hex(struct llm_rng *r, const char *hex);

#endif
