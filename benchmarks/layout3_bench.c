/* layout3_bench.c: benchmark-only firmware for benchmarks/layout3.py (issue #16), not part of the
 * engine. Under QEMU (mps2-an500, -icount shift=0) it times, in SysTick ticks (x 40 =
 * instructions, not cycles), expanding N 3-bit weights to int4 and reading them one at a time,
 * for three layouts of the same values (layout3_data.h, written by layout3.py):
 *   dense      the engine's stream (edgeq.intmath.pack_bits): eq_unpack_int4 and eq_weight, the
 *              engine's own code (edgeq/kernels, included below as the engine's unit does);
 *   planes     bit planes, here only: per 32 values three words, bit j of word k = bit k of
 *              value j (bp_unpack_int4 with a 1 KiB table, bp16_unpack_int4 with a 32-byte
 *              one, bp_weight below);
 *   int4       the values left in int4 nibbles (no unpack; eq_weight with 4 bits).
 * It prints one LAYOUT3 line per measurement, with a check value the Python side compares
 * against its own (the int4 bytes' FNV-1a hash, or the reads' running sum). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "eq_internal.h"
#include "eq_requantize.c"
#include "eq_copy.c"
#include "eq_channels.c"
#include "eq_conv.c"
#include "eq_unpack.c"
#include "layout3_data.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_MAX 0x00FFFFFFu

extern volatile uint32_t edgeq_systick_wraps;

static uint64_t now(void)
{
    uint32_t wraps, value;
    do {
        wraps = edgeq_systick_wraps;
        value = SYST_CVR;
    } while (wraps != edgeq_systick_wraps);
    return (uint64_t)wraps * (SYST_MAX + 1u) + (SYST_MAX - value);
}

/* bit j of a byte -> bit 4j of a word: one nibble per value */
static const uint32_t bp_spread[256] = {BP_SPREAD};

/* nibbles of the eight values in byte k of the planes: bits 0 and 1 as they are, the sign bit
 * into nibble bits 2 and 3 (x 12) */
#define BP_WORD(k)                                                                     \
    (bp_spread[(p0 >> (8 * (k))) & 255u] + (bp_spread[(p1 >> (8 * (k))) & 255u] << 1)  \
     + bp_spread[(p2 >> (8 * (k))) & 255u] * 12u)

/* count values (a multiple of 32) from bit planes to int4 nibbles, eight values a word (the
 * four words of a group written out: gcc -O2 does not unroll the loop over them) */
__attribute__((noinline)) void bp_unpack_int4(const uint32_t *planes, int32_t count,
                                              uint32_t *out)
{
    int32_t g;
    for (g = 0; g < count; g += 32, planes += 3, out += 4) {
        const uint32_t p0 = planes[0], p1 = planes[1], p2 = planes[2];
        out[0] = BP_WORD(0);
        out[1] = BP_WORD(1);
        out[2] = BP_WORD(2);
        out[3] = BP_WORD(3);
    }
}

/* the same with a table as small as the dense stream's: bit j of a nibble -> bit 4j */
static const uint16_t bp_spread16[16] = {BP_SPREAD16};
#define BP_SPREAD8(p, k)                                                               \
    ((uint32_t)bp_spread16[((p) >> (8 * (k))) & 15u]                                  \
     | (uint32_t)bp_spread16[((p) >> (8 * (k) + 4)) & 15u] << 16)
#define BP_WORD16(k)                                                                   \
    (BP_SPREAD8(p0, k) + (BP_SPREAD8(p1, k) << 1) + BP_SPREAD8(p2, k) * 12u)

__attribute__((noinline)) void bp16_unpack_int4(const uint32_t *planes, int32_t count,
                                                uint32_t *out)
{
    int32_t g;
    for (g = 0; g < count; g += 32, planes += 3, out += 4) {
        const uint32_t p0 = planes[0], p1 = planes[1], p2 = planes[2];
        out[0] = BP_WORD16(0);
        out[1] = BP_WORD16(1);
        out[2] = BP_WORD16(2);
        out[3] = BP_WORD16(3);
    }
}

/* value i of the bit planes */
static int32_t bp_weight(const uint32_t *planes, int32_t i)
{
    const uint32_t *p = planes + 3 * (i >> 5);
    const uint32_t b = (uint32_t)i & 31u;
    const uint32_t v = ((p[0] >> b) & 1u) | ((p[1] >> b) & 1u) << 1 | ((p[2] >> b) & 1u) << 2;
    return (int32_t)v - (int32_t)((v & 4u) << 1);
}

__attribute__((noinline)) void dense_unpack(const int8_t *w, int32_t bits, int32_t n, int8_t *out)
{
    eq_unpack_int4(w, bits, n, out);
}

__attribute__((noinline)) uint32_t read_each(const int8_t *w, int32_t bits, int32_t n)
{
    uint32_t acc = 0;
    int32_t i;
    for (i = 0; i < n; ++i) {
        acc = acc * 31u + (uint32_t)eq_weight(w, i, bits);
    }
    return acc;
}

__attribute__((noinline)) uint32_t read_each_plane(const uint32_t *planes, int32_t n)
{
    uint32_t acc = 0;
    int32_t i;
    for (i = 0; i < n; ++i) {
        acc = acc * 31u + (uint32_t)bp_weight(planes, i);
    }
    return acc;
}

__attribute__((noinline)) uint32_t read_loop_alone(int32_t n)
{
    uint32_t acc = 0;
    int32_t i;
    for (i = 0; i < n; ++i) {
        acc = acc * 31u + (uint32_t)(i & 7);
        __asm volatile("" : "+r"(acc)); /* keep the loop a loop */
    }
    return acc;
}

static uint32_t fnv(const uint8_t *p, int32_t n)
{
    uint32_t h = 2166136261u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

static uint32_t out4[N_VALUES / 8];
static volatile int32_t bits_at_run_time[2] = {3, 4}; /* as the engine: widths from its params */

#define MEASURE(NAME, EXPR, CHECK)                                                     \
    do {                                                                               \
        uint64_t t0, t1;                                                               \
        uint32_t check;                                                                \
        memset(out4, 0, sizeof out4);                                                  \
        t0 = now();                                                                    \
        check = (EXPR);                                                                \
        t1 = now();                                                                    \
        (void)check;                                                                   \
        printf("LAYOUT3 %s ticks=%lu check=%08lx\n", NAME, (unsigned long)(t1 - t0),   \
               (unsigned long)(CHECK));                                                \
    } while (0)

int main(void)
{
    const int32_t n = N_VALUES, b3 = bits_at_run_time[0], b4 = bits_at_run_time[1];
    SYST_RVR = SYST_MAX;
    SYST_CVR = 0;
    SYST_CSR = 7u;
    while (SYST_CVR == 0u) {
    }
    MEASURE("expand_dense", (dense_unpack(dense, b3, n, (int8_t *)out4), 0u),
            fnv((const uint8_t *)out4, n / 2));
    MEASURE("expand_planes", (bp_unpack_int4(planes, n, out4), 0u),
            fnv((const uint8_t *)out4, n / 2));
    MEASURE("expand_planes_small_table", (bp16_unpack_int4(planes, n, out4), 0u),
            fnv((const uint8_t *)out4, n / 2));
    MEASURE("read_dense", read_each(dense, b3, n), check);
    MEASURE("read_planes", read_each_plane(planes, n), check);
    MEASURE("read_int4", read_each(int4, b4, n), check);
    MEASURE("read_loop_alone", read_loop_alone(n), check);
    printf("LAYOUT3_DONE\n");
    return 0;
}
