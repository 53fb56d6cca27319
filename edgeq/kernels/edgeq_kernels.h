/* edgeq kernels: int8 operators that are bit-exact with TFLite Micro's reference kernels.
 *
 * Part of edgeq (Apache-2.0). Portable C99; the fast paths (SMLAD on pairs of 16-bit values,
 * im2col into int16 columns six pixels at a time, 3x3 depthwise output row by output row on
 * four channels at once from padded rows, and an exact three-instruction SMMLAR form of the
 * requantization) are selected at compile time when the compiler defines __ARM_FEATURE_DSP and
 * EDGEQ_PORTABLE is not defined.
 * Defining EDGEQ_FAST_EMULATED selects them on any host, with the DSP instructions emulated in
 * C, so that they can be tested there. Both paths give identical results.
 * Tensors are NHWC int8. Weights are int8, or int4 packed two per byte (first value in the low
 * nibble) and unpacked inside the kernel, or (CONV_2D, eq_conv2d_wide) int8 values stored as
 * int16 pairs. Requantization is TFLite's fixed-point
 * MultiplyByQuantizedMultiplier with double rounding.
 */
#ifndef EDGEQ_KERNELS_H
#define EDGEQ_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t filter_h, filter_w, filter_in_c; /* filter_in_c < in_c for grouped convolutions */
    int32_t filter_stride; /* values per stored filter row: h * w * in_c, padded with zeros */
    int32_t stride_h, stride_w, dilation_h, dilation_w, pad_h, pad_w;
    int32_t in_offset, out_offset, act_min, act_max;
    int32_t weight_bits; /* 8 or 4; 16: int8 values stored as int16, each run of four as
                          * (v0 v2) (v1 v3) (4-byte aligned; the fast path's SXTB16 done) */
    const int8_t *weights; /* [out_c][filter_stride]: [filter_h][filter_w][filter_in_c] + 0s */
    const int32_t *bias;   /* [out_c] or NULL */
    const int32_t *multiplier; /* [out_c] */
    const int8_t *shift;       /* [out_c], in [-31, 30] */
    /* 0: a filter row holds its values in natural order. n > 0 (int8, filter_in_c = in_c): the
     * first 4n values of each filter line (filter_w * in_c values, 4n < that < 4n + 4) come
     * line by line, then the lines' remaining values, line by line, then the 0s: the im2col
     * column is built from whole input words. */
    int32_t row_words;
} eq_conv_t;

typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c, depth_multiplier;
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w, dilation_h, dilation_w, pad_h, pad_w;
    int32_t in_offset, out_offset, act_min, act_max;
    int32_t weight_bits;
    const int8_t *weights; /* [1][filter_h][filter_w][out_c] */
    const int32_t *bias;
    const int32_t *multiplier; /* [out_c] */
    const int8_t *shift;       /* [out_c], in [-31, 30] */
} eq_depthwise_t;

typedef struct {
    int32_t batches, accum_depth, out_depth;
    int32_t in_offset, weight_offset, out_offset, act_min, act_max;
    int32_t weight_bits;
    int32_t per_channel; /* multiplier/shift have out_depth entries, else one */
    const int8_t *weights; /* [out_depth][accum_depth] */
    const int32_t *bias;
    const int32_t *multiplier;
    const int8_t *shift;
} eq_fully_connected_t;

typedef struct {
    int32_t out_dims[4];
    int32_t in1_strides[4], in2_strides[4]; /* 0 along broadcast dimensions */
    int32_t in1_offset, in2_offset, out_offset, left_shift;
    int32_t in1_multiplier, in1_shift, in2_multiplier, in2_shift;
    int32_t out_multiplier, out_shift, act_min, act_max;
} eq_add_t;

typedef struct {
    int32_t batches, in_h, in_w, channels, out_h, out_w;
    int32_t filter_h, filter_w, stride_h, stride_w, pad_h, pad_w;
    int32_t act_min, act_max;
} eq_pool_t;

typedef struct {
    int32_t in_dims[4];
    int32_t reduce[4]; /* 1 where the axis is reduced */
    int32_t in_zero_point, out_zero_point, multiplier, shift; /* 1/count folded in */
    int32_t count; /* elements averaged per output */
} eq_mean_t;

typedef struct {
    int32_t in_dims[4], before[4], after[4];
    int8_t value;
} eq_pad_t;

typedef struct {
    int32_t outer;       /* product of the dimensions before the axis */
    int32_t num_inputs;
    const int32_t *copy; /* per input: bytes per outer step (its axis size * inner size) */
} eq_concat_t;

typedef struct {
    int32_t outer, depth;
    int32_t input_multiplier, input_left_shift, diff_min;
} eq_softmax_t;

typedef struct {
    int32_t count, in_zero_point, out_zero_point, multiplier, shift;
} eq_requantize_t;

/* TFLite's MultiplyByQuantizedMultiplier (double rounding). */
int32_t eq_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

/* scratch: 12 * filter_stride bytes for the fast path's six int16 im2col columns, then 16 bytes
 * per output channel (its prepared output stage), 4-byte aligned; or NULL (the portable path
 * needs none). */
void eq_conv2d(const eq_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch);
/* The same for weight_bits 16 (a separate function, so that the linker drops its fast path
 * from firmware without such weights). */
void eq_conv2d_wide(const eq_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch);
/* scratch: (in_c / 4) * (12 * ((out_w - 1) * stride_w + 3) + 236) bytes (4-byte aligned) for
 * the fast 3x3 path's three padded input rows and prepared weights per channel quad, or NULL. */
void eq_depthwise_conv2d(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                         int8_t *scratch);
void eq_fully_connected(const eq_fully_connected_t *p, const int8_t *in, int8_t *out);
void eq_add(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void eq_average_pool(const eq_pool_t *p, const int8_t *in, int8_t *out);
void eq_max_pool(const eq_pool_t *p, const int8_t *in, int8_t *out);
void eq_mean(const eq_mean_t *p, const int8_t *in, int8_t *out);
void eq_pad(const eq_pad_t *p, const int8_t *in, int8_t *out);
void eq_concat(const eq_concat_t *p, const int8_t *const *ins, int8_t *out);
void eq_softmax(const eq_softmax_t *p, const int8_t *in, int8_t *out);
void eq_requantize(const eq_requantize_t *p, const int8_t *in, int8_t *out);
void eq_copy(const int8_t *in, int8_t *out, int32_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* EDGEQ_KERNELS_H */
