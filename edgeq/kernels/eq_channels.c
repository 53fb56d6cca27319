/* edgeq kernels: a layer's packed per-channel parameters (eq_channels).
 *
 * The engine stores each weighted layer's biases, Q31 multipliers and shifts as value - base
 * at the narrowest width the layer's values need (edgeq.intmath.pack_channels writes them; the
 * layout is described there): a stream of (bias, shift) pairs, a stream of (multiplier code,
 * residual) pairs, then an 18-byte header:
 *   bytes 0-3   int32 bias base          bytes 4-7  uint32 multiplier base
 *   bytes 8-13  uint48 K: 0, or the mantissa of input scale / output scale (31 bits or more)
 *   byte 14     int8 shift base          byte 15 bias width      byte 16 multiplier code width
 *   byte 17     shift width (bits 0-2), residual width (bits 3-6), dead channels (bit 7)
 * With K 0 a multiplier is base + code; otherwise eq_predict(base + code, K) + residual (the
 * code is the weight scale's mantissa, the residual almost always 0).
 * The engine calls eq_channels before the layer's kernel to unpack them into
 * the small scratch its parameters point to, so the kernels read plain int32/int8 arrays as
 * before: the integers are the .tflite's (identical to TFLM). A pair of up to 25 bits is one
 * read, and one stream at a time keeps each loop in registers.
 */
#include <string.h>

#include "eq_internal.h"

/* the 4 bytes from bit `pos` on, shifted to it (a field of up to 25 bits): one unaligned LDR
 * on Cortex-M7 (the stream is little endian), which the header after the streams keeps inside
 * the array */
static uint32_t eq_bits(const uint8_t *stream, uint32_t pos)
{
    uint32_t v;
    memcpy(&v, stream + (pos >> 3), 4);
    return v >> (pos & 7u);
}

/* up to 32 bits at bit `pos`, not masked: the four bytes and the fifth (no branch: its bits
 * shifted past bit 31 when the field does not reach it; the header keeps it in the array) */
static uint32_t eq_wide_bits(const uint8_t *stream, uint32_t pos)
{
    const uint8_t *p = stream + (pos >> 3);
    const uint32_t o = pos & 7u;
    uint32_t v;
    memcpy(&v, p, 4);
    return v >> o | ((uint32_t)p[4] << 1) << (31 - o);
}

static uint32_t eq_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t eq_mask(uint32_t width)
{
    return width >= 32 ? 0xFFFFFFFFu : (1u << width) - 1;
}

/* a * k normalized to [2^30, 2^31), rounded half up, the 2^31 carry halved
 * (edgeq.intmath.predict_multiplier); k >= 2^30, a >= 1: the product has at least 31 bits
 * (and fewer than 63: the packer keeps a * k < 2^62) */
static uint32_t eq_predict(uint32_t a, uint64_t k)
{
    const uint64_t p = a * k;
    const uint32_t drop = 33u - (uint32_t)__builtin_clzll(p); /* bit length - 31 */
    const uint64_t m = drop ? (p + (1ull << (drop - 1))) >> drop : p;
    return m == 1ull << 31 ? 1u << 30 : (uint32_t)m;
}

/* a residual of `width` bits (two's complement) */
static int32_t eq_residual(uint32_t code, uint32_t width)
{
    const uint32_t half = (1u << width) >> 1;
    return (int32_t)(code ^ half) - (int32_t)half;
}

void eq_channels(const int8_t *packed, int32_t bytes, int32_t channels, int32_t *bias,
                 int32_t *multiplier, int8_t *shift)
{
    const uint8_t *s = (const uint8_t *)packed, *h = s + bytes - 18;
    const uint32_t bias_base = eq_le32(h), mult_base = eq_le32(h + 4);
    const uint64_t k = eq_le32(h + 8) | (uint64_t)(h[12] | (uint32_t)h[13] << 8) << 32;
    const int32_t shift_base = (int8_t)h[14];
    const uint32_t wb = h[15], wm = h[16], ws = h[17] & 7u, wr = (h[17] >> 3) & 15u;
    const uint32_t mb = eq_mask(wb), mm = eq_mask(wm), ms = (1u << ws) - 1, pair = wb + ws;
    const uint32_t mr = (1u << wr) - 1, code = wm + wr;
    uint32_t pos = 0, v;
    int32_t c;
    if (pair <= 25) { /* each pair one read */
        for (c = 0; c < channels; ++c, pos += pair) {
            v = eq_bits(s, pos);
            bias[c] = (int32_t)(bias_base + (v & mb));
            shift[c] = (int8_t)(shift_base + (int32_t)((v >> wb) & ms));
        }
    } else {
        for (c = 0; c < channels; ++c, pos += pair) {
            bias[c] = (int32_t)(bias_base + (eq_wide_bits(s, pos) & mb));
            shift[c] = (int8_t)(shift_base + (int32_t)(eq_bits(s, pos + wb) & ms));
        }
    }
    if (!k) { /* multipliers as they are (wr 0) */
        for (c = 0; c < channels; ++c, pos += wm) {
            multiplier[c] = (int32_t)(mult_base + ((wm <= 25 ? eq_bits(s, pos)
                                                              : eq_wide_bits(s, pos)) & mm));
        }
    } else if (code <= 25) { /* code and residual one read */
        for (c = 0; c < channels; ++c, pos += code) {
            v = eq_bits(s, pos);
            multiplier[c] = (int32_t)eq_predict(mult_base + (v & mm), k)
                            + eq_residual((v >> wm) & mr, wr);
        }
    } else {
        for (c = 0; c < channels; ++c, pos += code) {
            multiplier[c] = (int32_t)eq_predict(mult_base + (eq_wide_bits(s, pos) & mm), k)
                            + eq_residual(eq_bits(s, pos + wm) & mr, wr);
        }
    }
    if (h[17] & 0x80u) { /* dead channels: shift code 0, multiplier 0 (TFLM outputs the zero
                          * point whatever the bias and shift) */
        for (c = 0; c < channels; ++c) {
            if (shift[c] == shift_base) {
                multiplier[c] = 0;
                shift[c] = 0;
            }
        }
    }
}
