/* edgeq kernels: a layer's packed per-channel parameters (eq_channels).
 *
 * The engine stores each weighted layer's biases, Q31 multipliers and shifts as value - base
 * at the narrowest width the layer's values need (edgeq.intmath.pack_channels writes them; the
 * layout is described there): three bit streams back to back, then a 12-byte header. The
 * engine calls eq_channels before the layer's kernel to unpack them into the small scratch its
 * parameters point to, so the kernels read plain int32/int8 arrays as before: the integers are
 * the .tflite's (identical to TFLM). One stream at a time keeps each loop in registers.
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

static uint32_t eq_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* count fields of `width` (0..32) bits from bit `pos`: base + field */
static void eq_fields32(const uint8_t *s, uint32_t pos, uint32_t width, int32_t count,
                        uint32_t base, int32_t *out)
{
    const uint32_t mask = width >= 32 ? 0xFFFFFFFFu : (1u << width) - 1;
    int32_t c;
    if (width <= 25) { /* within the 4 bytes whatever the bit offset */
        for (c = 0; c < count; ++c, pos += width) {
            out[c] = (int32_t)(base + (eq_bits(s, pos) & mask));
        }
        return;
    }
    for (c = 0; c < count; ++c, pos += width) {
        const uint32_t o = pos & 7u;
        uint32_t v = eq_bits(s, pos);
        if (width + o > 32) { /* a fifth byte */
            v |= (uint32_t)s[(pos >> 3) + 4] << (32 - o);
        }
        out[c] = (int32_t)(base + (v & mask));
    }
}

void eq_channels(const int8_t *packed, int32_t bytes, int32_t channels, int32_t *bias,
                 int32_t *multiplier, int8_t *shift)
{
    const uint8_t *s = (const uint8_t *)packed, *h = s + bytes - 12;
    const int32_t shift_base = (int8_t)h[8];
    const uint32_t wb = h[9], wm = h[10], ws = h[11] & 0x3Fu; /* ws <= 6 */
    const uint32_t mask = (1u << ws) - 1;
    uint32_t pos = (wb + wm) * (uint32_t)channels, code;
    int32_t c;
    eq_fields32(s, 0, wb, channels, eq_le32(h), bias);
    eq_fields32(s, wb * (uint32_t)channels, wm, channels, eq_le32(h + 4), multiplier);
    if (!(h[11] & 0x80u)) {
        for (c = 0; c < channels; ++c, pos += ws) {
            shift[c] = (int8_t)(shift_base + (int32_t)(eq_bits(s, pos) & mask));
        }
        return;
    }
    for (c = 0; c < channels; ++c, pos += ws) {
        code = eq_bits(s, pos) & mask;
        shift[c] = (int8_t)(shift_base + (int32_t)code);
        if (code == 0) { /* a dead channel: multiplier 0, TFLM outputs the zero point */
            multiplier[c] = 0;
            shift[c] = 0;
        }
    }
}
