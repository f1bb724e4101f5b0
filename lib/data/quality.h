/* quality.h: the quality classifier of the data pipeline ("filtering via
 * classifiers", as GPT-3 and DCLM filter web text against a reference corpus):
 * a fastText-style linear model (Joulin et al. 2017, "Bag of Tricks for
 * Efficient Text Classification": hashed word n-grams, a bag, one linear
 * layer, SGD with a linearly decaying rate) over word unigrams and bigrams.
 *
 *   features  lowercased words (maximal runs of letters and digits, ASCII
 *             case folded, other bytes kept) and adjacent word pairs, each
 *             hashed into one of 2^bits buckets;
 *   score     p = sigmoid(b + (1/sqrt|F|) sum_{f in F} w[f]): logistic
 *             regression on the bag of n-grams scaled to unit length. (fastText
 *             averages, 1/|F|, then multiplies by an output matrix; with a
 *             single output unit and no such matrix the average would make
 *             every SGD step move a long document's score by lr*g/|F|, far
 *             too slowly; 1/sqrt|F| moves it by lr*g whatever the length.)
 *   training  SGD on the log loss, one document at a time in a seeded
 *             shuffled order, learning rate decaying linearly to 0 over all
 *             epochs (as fastText does): g = p - y; b -= lr g;
 *             w[f] -= lr g / sqrt|F| for each occurrence of f.
 *
 * File format (little-endian), written atomically:
 *   "LLMQUAL1" (8 bytes) | u32 version (1) | u32 bits (8..28) | u32 max_words |
 *   u32 flags (0) | f32 bias | f32 w[2^bits] | u32 CRC-32 (zlib) of all bytes
 *   before it. A wrong magic, version, size or checksum is refused. */
#ifndef LLM_DATA_QUALITY_H
#define LLM_DATA_QUALITY_H

#include <stddef.h>
#include <stdint.h>

struct llm_quality {
    uint32_t bits;  /* 2^bits buckets */
    uint32_t max_words; /* words of a document that are read (training and scoring alike) */
    float bias;
    float *w;       /* [2^bits] (owned) */
};

struct llm_quality_train_opts {
    uint32_t bits;        /* default 20 */
    int epochs;           /* default 5 */
    double lr;            /* initial learning rate, default 0.5 */
    uint64_t seed;        /* shuffling order */
    size_t max_words;     /* words of a document used (0 = 4096) */
    int threads;          /* featurization threads (0 = all); SGD is sequential, so
                           * the model does not depend on the thread count */
};

/* Hashed features of a text: unigrams then bigrams, at most 2 * max_words,
 * appended to *f (grown with realloc; caller frees). Returns the count. */
long llm_quality_features(const char *text, size_t n, uint32_t bits, size_t max_words,
                          uint32_t **f, size_t *cap);

/* Trains on docs[0..n) with labels y[i] in {0, 1}; *out is initialized (release
 * with llm_quality_release). progress(ctx, epoch, loss) after each epoch may be NULL. */
int llm_quality_train(const char *const *docs, const size_t *lens, const unsigned char *y,
                      size_t n, const struct llm_quality_train_opts *o, struct llm_quality *out,
                      void (*progress)(void *ctx, int epoch, double loss), void *ctx);

/* The probability that text is of the positive class. Thread-safe (read-only);
 * scratch holds features between calls (grown; the caller frees *f). */
double llm_quality_score(const struct llm_quality *q, const char *text, size_t n,
                         uint32_t **f, size_t *cap);

int llm_quality_save(const struct llm_quality *q, const char *path);
int llm_quality_load(struct llm_quality *q, const char *path);
void llm_quality_release(struct llm_quality *q);

#endif
