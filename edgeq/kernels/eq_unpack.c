/* edgeq kernels: 2- and 3-bit weights (eq_unpack_int4, eq_conv2d_packed).
 *
 * The engine stores a layer's 2- or 3-bit weights as a dense bit stream (eq_weight reads one
 * value; edgeq.intmath.pack_bits writes them). The kernels whose weights pass through eq_weight
 * (reference loops, depthwise, fully connected, the 1x1 record path) read the stream directly.
 * The CONV_2D im2col fast path reads its weights eight nibbles a word, so eq_conv2d_packed
 * first expands the stream to int4 in the scratch (a table lookup per output byte) and runs
 * eq_conv2d on that (eq_conv.c is included before this file: the 1x1 record path, which reads
 * the stream, is tried first): the results are eq_conv2d's, that is TFLM's, on the INT4-container file.
 */
#include "eq_internal.h"

/* two 2-bit values (4 bits) -> two int4 nibbles; two 3-bit values (6 bits) -> two nibbles */
static const uint8_t eq_unpack2[16] = {
    0x00, 0x01, 0x0E, 0x0F, 0x10, 0x11, 0x1E, 0x1F, 0xE0, 0xE1, 0xEE, 0xEF,
    0xF0, 0xF1, 0xFE, 0xFF,
};
static const uint8_t eq_unpack3[64] = {
    0x00, 0x01, 0x02, 0x03, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13,
    0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x2C, 0x2D, 0x2E, 0x2F,
    0x30, 0x31, 0x32, 0x33, 0x3C, 0x3D, 0x3E, 0x3F, 0xC0, 0xC1, 0xC2, 0xC3,
    0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2, 0xD3, 0xDC, 0xDD, 0xDE, 0xDF,
    0xE0, 0xE1, 0xE2, 0xE3, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF2, 0xF3,
    0xFC, 0xFD, 0xFE, 0xFF,
};

void eq_unpack_int4(const int8_t *packed, int32_t bits, int32_t count, int8_t *out)
{
    const uint8_t *src = (const uint8_t *)packed;
    uint8_t *dst = (uint8_t *)out;
    int32_t i = 0;
    if (bits == 2) {
        for (; i + 4 <= count; i += 4, ++src, dst += 2) { /* one byte: four values */
            dst[0] = eq_unpack2[*src & 15u];
            dst[1] = eq_unpack2[*src >> 4];
        }
    } else {
        for (; i + 8 <= count; i += 8, src += 3, dst += 4) { /* three bytes: eight values */
            const uint32_t u = (uint32_t)src[0] | (uint32_t)src[1] << 8 | (uint32_t)src[2] << 16;
            dst[0] = eq_unpack3[u & 63u];
            dst[1] = eq_unpack3[(u >> 6) & 63u];
            dst[2] = eq_unpack3[(u >> 12) & 63u];
            dst[3] = eq_unpack3[u >> 18];
        }
    }
    for (; i < count; ++i) { /* the last values, one nibble at a time */
        const uint32_t nibble = (uint32_t)eq_weight(packed, i, bits) & 15u;
        out[i >> 1] = (i & 1) ? (int8_t)((uint8_t)out[i >> 1] | nibble << 4) : (int8_t)nibble;
    }
}

void eq_conv2d_packed(const eq_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch)
{
    const int32_t count = p->out_c * p->filter_stride;
    const int32_t words = (count + 7) / 8; /* the int4 copy, 4-byte aligned */
    eq_conv_t q = *p;
#if EQ_FAST
    /* the 1x1 record path reads the stream itself (eq_weight): no copy */
    if (eq_conv1x1_in8_applies(p)
        && eq_conv1x1_in8(p, in, out, (uint32_t *)(void *)(scratch + 2 * words))) {
        return;
    }
#endif
    eq_unpack_int4(p->weights, p->weight_bits, count, (int8_t *)(void *)scratch);
    q.weights = (const int8_t *)(const void *)scratch;
    q.weight_bits = 4;
    eq_conv2d(&q, in, out, scratch + 2 * words);
}
