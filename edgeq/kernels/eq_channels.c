/* edgeq kernels: a layer's packed per-channel parameters (eq_channels).
 *
 * The engine stores each weighted layer's bias, Q31 multiplier and shift per output channel
 * as value - base at the narrowest width the layer's values need (edgeq.intmath.pack_channels
 * writes them; the layout is described there). eq_channels unpacks one layer into the small
 * scratch its kernel's parameters point to, once per layer call, so the kernels read plain
 * int32/int8 arrays as before: the integers are the .tflite's (identical to TFLM).
 */
#include "eq_internal.h"

static uint32_t eq_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void eq_channels(const int8_t *packed, int32_t channels, int32_t *bias, int32_t *multiplier,
                 int8_t *shift)
{
    const uint8_t *h = (const uint8_t *)packed;
    const uint32_t bias_base = eq_le32(h), mult_base = eq_le32(h + 4);
    const int32_t shift_base = (int8_t)h[8];
    const uint32_t wb = h[9], wm = h[10], ws = h[11] & 0x3Fu, dead = h[11] >> 7;
    /* widths are at most 32: (1 << w) - 1 in 64 bits */
    const uint32_t mb = (uint32_t)((1ull << wb) - 1), mm = (uint32_t)((1ull << wm) - 1);
    const uint32_t ms = (1u << ws) - 1;
    const uint8_t *s = h + 12;
    uint64_t acc = 0;
    uint32_t have = 0, b, m, sh;
    int32_t c;
    for (c = 0; c < channels; ++c) {
        /* the stream ends exactly after the last field: refill only the bytes a field needs */
        while (have < wb) {
            acc |= (uint64_t)*s++ << have;
            have += 8;
        }
        b = (uint32_t)acc & mb;
        acc >>= wb;
        have -= wb;
        while (have < wm) {
            acc |= (uint64_t)*s++ << have;
            have += 8;
        }
        m = (uint32_t)acc & mm;
        acc >>= wm;
        have -= wm;
        while (have < ws) {
            acc |= (uint64_t)*s++ << have;
            have += 8;
        }
        sh = (uint32_t)acc & ms;
        acc >>= ws;
        have -= ws;
        bias[c] = (int32_t)(bias_base + b);
        if (dead && sh == 0) { /* multiplier 0: TFLM outputs the zero point */
            multiplier[c] = 0;
            shift[c] = 0;
        } else {
            multiplier[c] = (int32_t)(mult_base + m);
            shift[c] = (int8_t)(shift_base + (int32_t)sh);
        }
    }
}
