/* cpu_q8a8_kern.h: the block kernel of cpu_q8a8.c, included there once per
 * instruction set: Q8A8_TARGET (the target attribute), Q8A8_DOT (the int32
 * dot of 32 byte pairs: dot_avx2 or dot_vnni, the same lanes and sums),
 * Q8A8_PASS, Q8A8_BLOCK and Q8A8_BLOCKS (the names of the functions defined). Not
 * a header of its own module: only cpu_q8a8.c includes it. */

/* Rows n0 .. n0+R-1 (R a constant, 1 or 2) by the 4 outputs of w / sw
 * (the lane math in cpu_q8a8.c); O of them stored (a partial block repeats
 * its last row). Q4 (a constant): w holds 4-bit codes (G = 32, two per
 * byte) and j->qx the activations in the codes' order (cpu_q8a8.c). Per
 * group and output: the unsigned operand once (|wq|, or the 32 nibbles),
 * then per row one dot per 32 columns (int8: of x with wq's signs; Q4: of
 * x itself, minus 8 times x's lane sums, the codes' offset). */
__attribute__((target(Q8A8_TARGET), always_inline)) static inline void
Q8A8_PASS(int R, int G, int Q4, const struct q8a8_job *j, const uint8_t *const *w,
          const float *const *sw, int n0, int o0, int O)
{
    int C = j->C, NG = C / G;
    __m256 t[2][OBLK];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int k = 0; k < OBLK; k++)
            t[r][k] = _mm256_setzero_ps();
    for (int g = 0; g < NG; g++) {
        size_t c0 = (size_t)g * G, b0 = Q4 ? c0 / 2 : c0; /* the group's first weight byte */
        if (j->pf && (b0 & 63) == 0) /* one prefetch per 64-byte line of each weight row */
#pragma GCC unroll 4
            for (int k = 0; k < OBLK; k++)
                _mm_prefetch((const char *)(w[k] + b0 + PF_DIST), _MM_HINT_T0);
        __m256i off8[2]; /* Q4: 8 x the lane sums of each row's x */
        if (Q4)
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(j->qx + (size_t)(n0 + r) * C + c0));
                off8[r] = _mm256_slli_epi32(Q8A8_DOT(_mm256_setzero_si256(), _mm256_set1_epi8(1), xv), 3);
            }
#pragma GCC unroll 4
        for (int k = 0; k < OBLK; k++) {
            __m256i wv[2], wa[2];
            if (Q4) {
                __m128i b = _mm_loadu_si128((const __m128i *)(w[k] + b0)), m = _mm_set1_epi8(0x0f);
                wa[0] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
            } else {
#pragma GCC unroll 2
                for (int h = 0; h < G / 32; h++) {
                    wv[h] = _mm256_loadu_si256((const __m256i *)(w[k] + c0 + 32 * h));
                    wa[h] = _mm256_abs_epi8(wv[h]);
                }
            }
            float swk = sw[k][g];
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                const int8_t *xr = j->qx + (size_t)(n0 + r) * C + c0;
                __m256i d = _mm256_setzero_si256();
                if (Q4) {
                    __m256i xv = _mm256_loadu_si256((const __m256i *)xr);
                    d = _mm256_sub_epi32(Q8A8_DOT(d, wa[0], xv), off8[r]);
                } else {
#pragma GCC unroll 2
                    for (int h = 0; h < G / 32; h++) {
                        __m256i xv = _mm256_loadu_si256((const __m256i *)(xr + 32 * h));
                        d = Q8A8_DOT(d, wa[h], _mm256_sign_epi8(xv, wv[h]));
                    }
                }
                __m256 s = _mm256_set1_ps(j->sx[(size_t)(n0 + r) * NG + g] * swk);
                t[r][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), s, t[r][k]);
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        float *op = j->out + (size_t)(n0 + r) * j->OC + o0;
#pragma GCC unroll 4
        for (int k = 0; k < OBLK; k++)
            if (k < O) {
                float v = cpu_hsum8(t[r][k]);
                op[k] = j->bias ? v + j->bias[o0 + k] : v;
            }
    }
}

/* The outputs o0 .. o0+O-1 (O <= 4) for all rows, two rows at a time. */
__attribute__((target(Q8A8_TARGET), always_inline)) static inline void
Q8A8_BLOCK(int G, int Q4, const struct q8a8_job *j, int o0, int O)
{
    const uint8_t *w[OBLK];
    const float *sw[OBLK];
    size_t row = Q4 ? (size_t)j->C / 2 : (size_t)j->C; /* weight bytes per output */
    for (int k = 0; k < OBLK; k++) {
        int o = o0 + (k < O ? k : O - 1);
        w[k] = j->wq + (size_t)o * row;
        sw[k] = j->scales + (size_t)o * (j->C / G);
    }
    int n = 0;
    for (; n + 2 <= j->N; n += 2)
        Q8A8_PASS(2, G, Q4, j, w, sw, n, o0, O);
    if (n < j->N)
        Q8A8_PASS(1, G, Q4, j, w, sw, n, o0, O);
}

/* Output blocks [b0, b1) of a q8a8_job (cpu_parfor_steal's callback). */
__attribute__((target(Q8A8_TARGET))) static void Q8A8_BLOCKS(void *arg, int b0, int b1)
{
    const struct q8a8_job *j = arg;
    for (int b = b0; b < b1; b++) {
        int o0 = b * OBLK, O = j->OC - o0 < OBLK ? j->OC - o0 : OBLK;
        if (j->q4)
            Q8A8_BLOCK(32, 1, j, o0, O);
        else if (j->G == 32)
            Q8A8_BLOCK(32, 0, j, o0, O);
        else
            Q8A8_BLOCK(64, 0, j, o0, O);
    }
}
