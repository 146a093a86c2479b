/* Quantised tensors inside the library (see quant.c): pairing a model's
 * weights with their scales when it is opened, and re-quantising merged
 * fp32 values for the writer. */
#ifndef LADLE_QUANT_H
#define LADLE_QUANT_H

#include "ladle.h"

/* Pairs every quantised weight of m with its scales (model.c calls it). */
int lad_quant_pair(lad_model *m, lad_error *err);

/* FP8: n values x of a range of whole rows (channel), one row of blocks
 * (block), or any range (tensor, with the tensor's amax), cols per row, to
 * codes in out and the range's scales (in dtype sdt) in scales. */
void lad_quant_encode_fp8(const lad_quant *q, lad_dtype codes, lad_dtype sdt, uint64_t cols,
                          size_t n, const float *x, uint8_t *out, unsigned char *scales,
                          float tensor_amax);
/* MXFP4: n values (a multiple of 32) to n / 2 packed bytes and n / 32 scales. */
void lad_quant_encode_mxfp4(size_t n, const float *x, uint8_t *out, uint8_t *scales);

#endif
