/* quant_io.h: quantized model checkpoints (`llm quantize`): a model
 * checkpoint (model_io.h) whose header adds "quantization": {"method": "q8",
 * "group": G} and in which every weight llm_model_quantize_q8 quantizes is
 * stored as its int8 codes (dtype i8, the weight's shape) followed by
 * "<name>.q8_scales" (f32, (rows, cols / G)); every other tensor is f32 as
 * usual. About 1.1 bytes per quantized weight instead of 4. Readers of fp32
 * checkpoints (export, info, training) refuse it with a clear message. */
#ifndef LLM_INFER_QUANT_IO_H
#define LLM_INFER_QUANT_IO_H

#include <cjson/cJSON.h>

#include "infer/quant.h"
#include "model/model.h"

/* Writes m with its Q8 weights q (llm_model_quantize_q8 of m) to path,
 * atomically. extra_header as llm_model_save's (a "tokenizer", ...). */
int llm_q8_save(const struct llm_model *m, const struct llm_q8 *q, const char *path, const cJSON *extra_header);

/* 1 if the checkpoint header says it is quantized. */
int llm_q8_is_quantized(const cJSON *header);

/* Builds m (uninitialized) on be from a quantized checkpoint: the fp32
 * parameters are the dequantized weights (exactly those the codes stand for)
 * and *q holds the codes and scales in backend memory, ready for
 * llm_infer_use_q8. *header_out (optional) is a copy of the header. On error
 * everything is released. */
int llm_q8_load(struct llm_model *m, struct llm_q8 *q, const char *path, struct llm_backend *be,
                cJSON **header_out);

#endif
