/* edgeq kernels: int8 operators that are bit-exact with TFLite Micro's reference kernels.
 * This header is the public API: every kernel's parameters and contract.
 *
 * Part of edgeq (Apache-2.0). Portable C99; the fast paths (SMLAD on pairs of 16-bit values,
 * im2col into int16 columns six pixels at a time, 1x1 convolutions over eight channels pixel by
 * pixel from one LDM record per output channel, 3x3 depthwise two outputs at a time and 1x3
 * depthwise strips over int16 rows of one channel, ADD without
 * broadcasting, and an exact three-instruction SMMLAR form of the requantization) are selected
 * at compile time when the compiler defines __ARM_FEATURE_DSP and
 * EDGEQ_PORTABLE is not defined; EDGEQ_NO_ASM keeps them in C with the DSP intrinsics (needed
 * with -O0 or -fno-omit-frame-pointer, which takes the assembly's thirteenth register).
 * Defining EDGEQ_FAST_EMULATED selects them on any host, with the DSP instructions emulated in
 * C, so that they can be tested there. All paths give identical results.
 * Tensors are NHWC int8. Weights are int8, or int4 packed two per byte (first value in the low
 * nibble) and unpacked inside the kernel, or 2 or 3 bits (weight_bits 2, 3) in a dense bit
 * stream (value i in bits [bits * i, bits * (i + 1)), least significant first; eq_unpack.c),
 * or (CONV_2D, eq_conv2d_wide) int8 values stored as int16 pairs. Requantization is TFLite's
 * fixed-point MultiplyByQuantizedMultiplier with double rounding.
 *
 * The kernels are one file per op family (eq_conv.c, eq_depthwise.c, eq_fully_connected.c,
 * eq_pool.c, eq_add.c, eq_mul.c, eq_mean.c, eq_pad.c, eq_concat.c, eq_softmax.c,
 * eq_activation.c, eq_minmax.c, eq_resize.c, eq_transpose_conv.c, eq_requantize.c,
 * eq_copy.c, eq_unpack.c for 2- and 3-bit weights; shared helpers in eq_internal.h). A generated
 * engine copies only those its model uses and compiles them as one unit, edgeq_kernels.c.
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
    int32_t weight_bits; /* 8, 4, 3 or 2; 16: int8 values stored as int16, each run of four as
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

typedef struct {
    int32_t out_dims[4];
    int32_t in1_strides[4], in2_strides[4]; /* 0 along broadcast dimensions */
    int32_t in1_offset, in2_offset, out_offset, multiplier, shift, act_min, act_max;
} eq_mul_t;

typedef struct {
    int32_t count;
    const int8_t *table; /* [256]: the output for input value v at table[v + 128] */
} eq_lut_t;

typedef struct {
    int32_t out_dims[4];
    int32_t in1_strides[4], in2_strides[4]; /* 0 along broadcast dimensions */
} eq_minmax_t;

typedef struct {
    int32_t batches, in_h, in_w, channels, out_h, out_w;
    const int32_t *rows; /* [out_h]: the input row of each output row */
    const int32_t *cols; /* [out_w]: the input column of each output column */
} eq_resize_nearest_t;

typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c, filter_h, filter_w;
    int32_t stride_h, stride_w, pad_h, pad_w; /* pad: TFLite's, from the output size */
    int32_t in_offset, out_offset, act_min, act_max;
    const int8_t *weights; /* [out_c][filter_h][filter_w][in_c], int8 */
    const int32_t *bias;   /* [out_c] or NULL */
    const int32_t *multiplier; /* [out_c] */
    const int8_t *shift;       /* [out_c], in [-31, 30] */
} eq_transpose_conv_t;

/* ---- the kernels' contracts -----------------------------------------------------------------
 * Common to all: tensors are int8, NHWC, contiguous, batch first; `in` and `out` never overlap
 * unless said. Zero points come as offsets: in_offset = -input zero point, out_offset = output
 * zero point. multiplier/shift are TFLite's QuantizeMultiplier of the real rescale factor
 * (Q0.31 multiplier, shift in [-31, 30], positive = left), applied with
 * eq_multiply_by_quantized_multiplier. act_min/act_max are the fused activation's int8 clamp.
 * Parameter structs may live in flash (const); scratch comes from the engine's arena, 4-byte
 * aligned, and is only read after the kernel has written it. Every kernel gives the same int8
 * outputs as the TFLM reference kernel it names, on the fast paths too. */

/* MultiplyByQuantizedMultiplier (double rounding): RoundingDivideByPOT(
 * SaturatingRoundingDoublingHighMul(x * 2^max(shift, 0), multiplier), max(-shift, 0)). */
int32_t eq_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

/* CONV_2D (reference_integer_ops::ConvPerChannel), per-channel multiplier/shift, optional
 * bias, any stride, dilation and padding, grouped when filter_in_c < in_c.
 * in [batches][in_h][in_w][in_c], out [batches][out_h][out_w][out_c]; weights as eq_conv_t
 * says (int8, int4 packed, or row_words order for im2col from whole words).
 * Fast path (DSP, not EDGEQ_PORTABLE): scratch != NULL, one group, weight_bits 8 or 4,
 * filter_stride a multiple of 4 (int8) or 8 (int4) and at most 1152: im2col of six pixels into
 * int16 columns, SMLAD dot products, exact few-instruction output stage. A 1x1 filter over
 * in_c = 8 without padding, an even out_c, a whole int8 clamp and every channel's stage a
 * right shift (EQ_RQ_FOLDED or EQ_RQ_RIGHT) goes pixel by pixel instead, one 8-word record per
 * output channel. Otherwise the reference loops (weights in stored order when row_words > 0).
 * scratch: 12 * filter_stride bytes for the six int16 im2col columns, then 16 bytes per output
 * channel (its prepared output stage), and for a 1x1 filter over 8 channels with an even out_c
 * at least 32 * out_c bytes, 4-byte aligned; or NULL (the portable path needs none). */
void eq_conv2d(const eq_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch);
/* The same for weight_bits 16 (int8 values stored as int16 pairs). Fast path: scratch != NULL,
 * one group, filter_stride a multiple of 4 and at most 1152; otherwise the reference loops. A
 * separate function, so that the linker drops its fast path from firmware without such
 * weights. */
void eq_conv2d_wide(const eq_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch);
/* CONV_2D with weight_bits 2 or 3 on the fast path: the weights expanded to int4 at the start
 * of scratch (out_c * filter_stride nibbles, rounded up to 4 bytes), then eq_conv2d on them
 * with the rest of scratch (eq_conv2d's for weight_bits 4). eq_conv2d itself takes 2- and
 * 3-bit weights on its reference loops and its 1x1 record path (no copy). */
void eq_conv2d_packed(const eq_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch);
/* One layer's packed per-channel parameters (edgeq.intmath.pack_channels, `bytes` long)
 * unpacked into bias, multiplier and shift [channels]: the engine calls it before the layer's
 * kernel. */
void eq_channels(const int8_t *packed, int32_t bytes, int32_t channels, int32_t *bias,
                 int32_t *multiplier, int8_t *shift);
/* `count` 2- or 3-bit weights (bits) from their stream to int4 nibbles (first value low). */
void eq_unpack_int4(const int8_t *packed, int32_t bits, int32_t count, int8_t *out);
/* DEPTHWISE_CONV_2D (reference_integer_ops::DepthwiseConvPerChannel): out_c = in_c *
 * depth_multiplier, output channel oc reads input channel oc / depth_multiplier; int8 or int4
 * weights [1][filter_h][filter_w][out_c], per-channel multiplier/shift, optional bias.
 * Fast path (DSP): scratch != NULL, 3x3 (stride_w 1 or 2) or 1x3, depth multiplier 1, no
 * dilation (any stride_h and padding), channel quad by channel quad:
 * - 3x3: int16 planes of a band of input rows of four channels, two outputs at a time. With
 *   even = (out_w + 1) & ~1, count = ((even - 1) * stride_w + 5) & ~1, rs = 32 if
 *   2 * count <= 32, else 64 if 2 * count <= 64, else max(124, 2 * count), and band =
 *   max(1, min(out_h, (3584 / (4 * rs) - 3) / stride_h + 1)) output rows (C division):
 *   scratch 4 * rs * ((band - 1) * stride_h + 3) bytes. In assembly for channels whose stage
 *   is the folded right shift with |bias| < 2^29 or a left shift of 0 to 7 with
 *   |bias| < 2^22, with the whole int8 clamp, rows that fit 32, 64 or 124 bytes and
 *   out_w >= 2, in C otherwise (every fast stage, any clamp); channels whose stage has no
 *   fast form take the reference loops.
 * With width = (out_w - 1) * stride_w + 3, count = (width + 2) & ~1, lead = pad_w & 1 and
 * rows = (out_h - 1) * stride_h + 3:
 * - 1x3 with 2 * (count + lead) <= 32 and rows <= 32: int16 planes of all rows;
 *   scratch rows * 128 + 128 bytes;
 * - other 1x3: a ring of three int16 rows per channel, one strip per channel and output row;
 *   scratch 12 * rs + 384 bytes, rs = 256 when 2 * (count + lead) <= 256, else that rounded up
 *   to a multiple of 4.
 * The 1x3 strips run in assembly for channels whose stage is a right shift and whose clamp is
 * the whole int8 range, in C otherwise (every stage, any clamp). Scratch 4-byte aligned, or
 * NULL (3x3 with stride_w above 2: no scratch, the reference loops).
 * 1x3 filters take their fast path through eq_depthwise_conv2d_1x3 only (the same contract; a
 * separate function so that the linker drops that code from firmware without 1x3 filters);
 * eq_depthwise_conv2d runs them with the reference loops. */
void eq_depthwise_conv2d(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                         int8_t *scratch);
void eq_depthwise_conv2d_1x3(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                             int8_t *scratch);
/* FULLY_CONNECTED (reference_integer_ops::FullyConnected / FullyConnectedPerChannel):
 * in [batches][accum_depth], out [batches][out_depth], weights [out_depth][accum_depth] int8 or
 * int4 (weight_offset = -weight zero point, 0 for symmetric weights), one multiplier/shift or
 * one per output. Fast path (DSP): int8 weights without an offset, four values a step in two
 * SMLADs. No scratch. */
void eq_fully_connected(const eq_fully_connected_t *p, const int8_t *in, int8_t *out);
/* ADD (reference_integer_ops::Add / BroadcastAdd4DSlow): out has out_dims (4-D), each input
 * is read through its strides (0 where it broadcasts); both rescaled to a common scale after
 * left_shift, summed, then the output stage. Fast path (DSP): no broadcasting (axes of length
 * 1 may have any stride), left_shift 20, normalized multipliers with right shifts of 0..30:
 * the exact SMMLAR form of each rescaling (an input whose multiplier is exactly 1/2 as one
 * shift, in assembly with a whole int8 clamp). No scratch. */
void eq_add(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
/* AVERAGE_POOL_2D / MAX_POOL_2D (reference_integer_ops::AveragePool / MaxPool): in and out
 * share their scale and zero point (nothing is rescaled); windows clipped to the image, the
 * average rounded half away from zero, then the act_min/act_max clamp. Fast path (DSP):
 * average windows of at most 256 taps with the whole int8 clamp, four channels a word (int16
 * sums). No scratch. */
void eq_average_pool(const eq_pool_t *p, const int8_t *in, int8_t *out);
void eq_max_pool(const eq_pool_t *p, const int8_t *in, int8_t *out);
/* MEAN (reference_ops::QuantizedMeanOrSum) over the axes marked in `reduce` of a 4-D input;
 * out holds the kept axes in order; multiplier/shift already include 1 / count. */
void eq_mean(const eq_mean_t *p, const int8_t *in, int8_t *out);
/* PAD (reference_ops::Pad) of a 4-D input by before/after on each axis with `value` (the
 * output zero point). */
void eq_pad(const eq_pad_t *p, const int8_t *in, int8_t *out);
/* CONCATENATION of num_inputs int8 tensors along one axis, all with the output's scale and
 * zero point (TFLM's requirement): for each of `outer` steps, copy[k] bytes of input k. */
void eq_concat(const eq_concat_t *p, const int8_t *const *ins, int8_t *out);
/* SOFTMAX (reference_ops::Softmax, int8 -> int8) over the last axis: `outer` rows of `depth`;
 * input_multiplier, input_left_shift and diff_min as TFLM's PreprocessSoftmaxScaling gives
 * them for beta * input scale; output scale 1/256, zero point -128. */
void eq_softmax(const eq_softmax_t *p, const int8_t *in, int8_t *out);
/* QUANTIZE int8 -> int8 (reference_ops::Requantize) of `count` values. */
void eq_requantize(const eq_requantize_t *p, const int8_t *in, int8_t *out);
/* MUL (reference_integer_ops::Mul / BroadcastMul4DSlow): out has out_dims (4-D), each input
 * read through its strides (0 where it broadcasts, e.g. a [1, 1, 1, c] channel scale);
 * (x1 + in1_offset) * (x2 + in2_offset) times multiplier/shift (s1 * s2 / s_out), plus
 * out_offset, clamped to act_min/act_max. No fast path. */
void eq_mul(const eq_mul_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
/* LEAKY_RELU, LOGISTIC, TANH, HARD_SWISH: out[i] = table[in[i] + 128] for `count` values,
 * the table computed by the generator with the TFLM reference kernel's integer arithmetic
 * (edgeq.intmath.leaky_relu_table, logistic_table, tanh_table, hard_swish_table). `in` and
 * `out` may be the same buffer. */
void eq_lut(const eq_lut_t *p, const int8_t *in, int8_t *out);
/* SUB (TFLM's int8 Sub / BroadcastSubSlow): eq_add's parameters and arithmetic with the second
 * rescaled input subtracted. No fast path. */
void eq_sub(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
/* MAXIMUM / MINIMUM (reference_ops::MaximumMinimumBroadcastSlow): the larger / smaller stored
 * value; inputs and output share one scale and zero point. Broadcasting as eq_mul. */
void eq_maximum(const eq_minmax_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void eq_minimum(const eq_minmax_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
/* RESIZE_NEAREST_NEIGHBOR (reference_ops::ResizeNearestNeighbor): output (y, x) is input
 * (rows[y], cols[x]), the generator's float32 evaluation of TFLM's GetNearestNeighbor. */
void eq_resize_nearest(const eq_resize_nearest_t *p, const int8_t *in, int8_t *out);
/* TRANSPOSE_CONV (reference_integer_ops::TransposeConv): the same int32 sums gathered per
 * output instead of scattered into a scratch, then the per-channel output stage. No scratch,
 * no fast path. */
void eq_transpose_conv(const eq_transpose_conv_t *p, const int8_t *in, int8_t *out);
/* `bytes` bytes from in to out (memmove; nothing when they are the same). */
void eq_copy(const int8_t *in, int8_t *out, int32_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* EDGEQ_KERNELS_H */
