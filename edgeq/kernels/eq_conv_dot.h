/* edgeq kernels, private to eq_conv.c: the dot products of the CONV_2D fast path.
 *
 * One filter row against EQ_COLS (six) int16 columns at once: SMLAD on pairs of 16-bit values,
 * int8 weights sign-extended by SXTB16, int4 weights (eight a word) expanded to pairs of
 * values times 16 (divided out after the sum), weight_bits 16 loaded as ready pairs. Blocks of
 * at most three pixels use three-column forms. With EQ_ASM the inner loops are inline assembly
 * (13 registers), else the same in C with the DSP intrinsics. Only with EQ_FAST.
 */
#ifndef EQ_CONV_DOT_H
#define EQ_CONV_DOT_H

#include "eq_internal.h"

#if EQ_FAST
/* Eight int4 weights (one word) as pairs of 16-bit values, each value times 16 (exact; divided
 * out after the sum): the low nibbles give (v0 v4) (v2 v6), the high ones (v1 v5) (v3 v7). */
#define EQ_INT4_LO(w) (((w) << 4) & 0xF0F0F0F0u)
#define EQ_INT4_HI(w) ((w) & 0xF0F0F0F0u)

#if EQ_ASM
#define EQ_DOT8_COL                                  \
    "ldrd    %[x02], %[x13], [%[col]], #8\n\t"
/* One run's two weight pairs (w02, w13) against the six columns, the first column already
 * loaded: accumulator aK starts from I_K (aK itself, or a5 holding the bias in a block's first
 * run). */
#define EQ_SMLAD2(ACC, INIT)                                      \
    "smlad   %[" #ACC "], %[x02], %[w02], %[" #INIT "]\n\t"       \
    "smlad   %[" #ACC "], %[x13], %[w13], %[" #ACC "]\n\t"
#define EQ_SIX_COLS(I0, I1, I2, I3, I4, I5)                                     \
    EQ_SMLAD2(a0, I0) EQ_DOT8_COL EQ_SMLAD2(a1, I1) EQ_DOT8_COL               \
    EQ_SMLAD2(a2, I2) EQ_DOT8_COL EQ_SMLAD2(a3, I3) EQ_DOT8_COL               \
    EQ_SMLAD2(a4, I4) EQ_DOT8_COL EQ_SMLAD2(a5, I5)
/* int8 weights: one word, sign-extended into the pairs (w0 w2) (w1 w3); the first column's
 * load sits between, hiding the load-use delay */
#define EQ_LOAD_W8                                   \
    "ldr     %[w13], [%[w]], #4\n\t"                 \
    EQ_DOT8_COL                                      \
    "sxtb16  %[w02], %[w13]\n\t"                     \
    "sxtb16  %[w13], %[w13], ror #8\n\t"
/* weights stored as int16 pairs (weight_bits 16): one LDRD */
#define EQ_LOAD_W16 "ldrd    %[w02], %[w13], [%[w]], #8\n\t" EQ_DOT8_COL
#define EQ_DOT8_RUN EQ_LOAD_W8 EQ_SIX_COLS(a0, a1, a2, a3, a4, a5)
#define EQ_DOT8_FIRST EQ_LOAD_W8 EQ_SIX_COLS(a5, a5, a5, a5, a5, a5)
#define EQ_DOT16_RUN EQ_LOAD_W16 EQ_SIX_COLS(a0, a1, a2, a3, a4, a5)
#define EQ_DOT16_FIRST EQ_LOAD_W16 EQ_SIX_COLS(a5, a5, a5, a5, a5, a5)
/* The rest of a run against three columns (a short block's tail), once the weight pairs and
 * the first column are loaded, and the loop's branch; the operands of those asm blocks. */
#define EQ_THREE_COLS_LOOP_TAIL                                         \
    EQ_SMLAD2(a0, a0) "ldrd    %[x02], %[x13], [%[col], #8]\n\t"        \
    EQ_SMLAD2(a1, a1) "ldrd    %[x02], %[x13], [%[col], #16]\n\t"       \
    EQ_SMLAD2(a2, a2)                                                   \
    "add     %[col], %[col], #48\n\t"                                   \
    "subs    %[runs], %[runs], #1\n\t"                                  \
    "bne     1b\n\t"
#define EQ_THREE_COLS_OPERANDS                                                              \
    [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [col] "+r"(col), [w] "+r"(w),               \
        [runs] "+r"(runs), [x02] "=&r"(x02), [x13] "=&r"(x13), [w02] "=&r"(w02),             \
        [w13] "=&r"(w13)
/* half a run of 8 int4 weights against the six columns: word pair OFF of each column's run */
#define EQ_DOT4_HALF(OFF)                                                  \
    "ldrd    %[x0], %[x1], [%[col], #" #OFF "]\n\t"                        \
    "smlad   %[a0], %[x0], %[pa], %[a0]\n\t"                               \
    "smlad   %[a0], %[x1], %[pb], %[a0]\n\t"                               \
    "ldrd    %[x0], %[x1], [%[col], #16+" #OFF "]\n\t"                     \
    "smlad   %[a1], %[x0], %[pa], %[a1]\n\t"                               \
    "smlad   %[a1], %[x1], %[pb], %[a1]\n\t"                               \
    "ldrd    %[x0], %[x1], [%[col], #32+" #OFF "]\n\t"                     \
    "smlad   %[a2], %[x0], %[pa], %[a2]\n\t"                               \
    "smlad   %[a2], %[x1], %[pb], %[a2]\n\t"                               \
    "ldrd    %[x0], %[x1], [%[col], #48+" #OFF "]\n\t"                     \
    "smlad   %[a3], %[x0], %[pa], %[a3]\n\t"                               \
    "smlad   %[a3], %[x1], %[pb], %[a3]\n\t"                               \
    "ldrd    %[x0], %[x1], [%[col], #64+" #OFF "]\n\t"                     \
    "smlad   %[a4], %[x0], %[pa], %[a4]\n\t"                               \
    "smlad   %[a4], %[x1], %[pb], %[a4]\n\t"                               \
    "ldrd    %[x0], %[x1], [%[col], #80+" #OFF "]\n\t"                     \
    "smlad   %[a5], %[x0], %[pa], %[a5]\n\t"                               \
    "smlad   %[a5], %[x1], %[pb], %[a5]\n\t"
#endif

/* Six output pixels of one int8 filter row: a[j] += sum_k w[k] * column j[k] over `runs` runs
 * of 4 values. One weight word, extended once, feeds twelve SMLADs; four runs per loop turn. */
EQ_INLINE void eq_dot6_int8(const int16_t *col, const int8_t *w, int32_t runs, int32_t a[6])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5];
#if EQ_ASM
    uint32_t x02, x13, w02, w13;
    __asm volatile(
        "tst     %[runs], #1\n\t"
        "beq     2f\n\t"
        EQ_DOT8_RUN
        "2:\n\t"
        "tst     %[runs], #2\n\t"
        "beq     4f\n\t"
        EQ_DOT8_RUN
        EQ_DOT8_RUN
        "4:\n\t"
        "lsrs    %[runs], %[runs], #2\n\t"
        "beq     3f\n\t"
        "1:\n\t"
        EQ_DOT8_RUN
        EQ_DOT8_RUN
        EQ_DOT8_RUN
        EQ_DOT8_RUN
        "subs    %[runs], %[runs], #1\n\t"
        "bne     1b\n\t"
        "3:\n\t"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4),
          [a5] "+r"(a5), [col] "+r"(col), [w] "+r"(w), [runs] "+r"(runs), [x02] "=&r"(x02),
          [x13] "=&r"(x13), [w02] "=&r"(w02), [w13] "=&r"(w13)
        :
        : "cc", "memory");
#else
    for (; runs > 0; --runs, w += 4, col += 4 * EQ_COLS) {
        const uint32_t wv = eq_load32(w);
        const uint32_t w02 = EQ_SXTB16(wv), w13 = EQ_SXTB16_ROR8(wv);
        a0 = EQ_SMLAD(eq_load32(col + 2), w13, EQ_SMLAD(eq_load32(col), w02, a0));
        a1 = EQ_SMLAD(eq_load32(col + 6), w13, EQ_SMLAD(eq_load32(col + 4), w02, a1));
        a2 = EQ_SMLAD(eq_load32(col + 10), w13, EQ_SMLAD(eq_load32(col + 8), w02, a2));
        a3 = EQ_SMLAD(eq_load32(col + 14), w13, EQ_SMLAD(eq_load32(col + 12), w02, a3));
        a4 = EQ_SMLAD(eq_load32(col + 18), w13, EQ_SMLAD(eq_load32(col + 16), w02, a4));
        a5 = EQ_SMLAD(eq_load32(col + 22), w13, EQ_SMLAD(eq_load32(col + 20), w02, a5));
    }
#endif
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
    a[4] = a4;
    a[5] = a5;
}

/* The same for int4 weights: runs of 8 (one packed word); a[j] += 16 * the sum. The weight
 * word is read twice, low nibbles then high ones, so that six accumulators fit in registers. */
EQ_INLINE void eq_dot6_int4(const int16_t *col, const int8_t *w, int32_t runs, int32_t a[6])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5];
#if EQ_ASM
    if (runs > 0) {
        uint32_t x0, x1, pa, pb;
        __asm volatile(
            "1:\n\t"
            "ldr     %[pa], [%[w]]\n\t"
            "lsl     %[pa], %[pa], #4\n\t"
            "and     %[pa], %[pa], #0xF0F0F0F0\n\t"
            "sxtb16  %[pb], %[pa], ror #8\n\t"
            "sxtb16  %[pa], %[pa]\n\t"
            EQ_DOT4_HALF(0)
            "ldr     %[pa], [%[w]], #4\n\t"
            "and     %[pa], %[pa], #0xF0F0F0F0\n\t"
            "sxtb16  %[pb], %[pa], ror #8\n\t"
            "sxtb16  %[pa], %[pa]\n\t"
            EQ_DOT4_HALF(8)
            "add     %[col], %[col], #96\n\t"
            "subs    %[runs], %[runs], #1\n\t"
            "bne     1b\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4),
              [a5] "+r"(a5), [col] "+r"(col), [w] "+r"(w), [runs] "+r"(runs), [x0] "=&r"(x0),
              [x1] "=&r"(x1), [pa] "=&r"(pa), [pb] "=&r"(pb)
            :
            : "cc", "memory");
    }
#else
    for (; runs > 0; --runs, w += 4, col += 8 * EQ_COLS) {
        const uint32_t wv = eq_load32(w);
        const uint32_t p04 = EQ_SXTB16(EQ_INT4_LO(wv)), p26 = EQ_SXTB16_ROR8(EQ_INT4_LO(wv));
        const uint32_t p15 = EQ_SXTB16(EQ_INT4_HI(wv)), p37 = EQ_SXTB16_ROR8(EQ_INT4_HI(wv));
        int32_t *acc[6];
        int32_t j;
        acc[0] = &a0;
        acc[1] = &a1;
        acc[2] = &a2;
        acc[3] = &a3;
        acc[4] = &a4;
        acc[5] = &a5;
        for (j = 0; j < 6; ++j) {
            const int16_t *c = col + 8 * j;
            *acc[j] = EQ_SMLAD(eq_load32(c), p04, *acc[j]);
            *acc[j] = EQ_SMLAD(eq_load32(c + 2), p26, *acc[j]);
            *acc[j] = EQ_SMLAD(eq_load32(c + 4), p15, *acc[j]);
            *acc[j] = EQ_SMLAD(eq_load32(c + 6), p37, *acc[j]);
        }
    }
#endif
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
    a[4] = a4;
    a[5] = a5;
}

/* Three output pixels (columns 0-2 of the block), for blocks of at most three pixels. */
EQ_INLINE void eq_dot3_int8(const int16_t *col, const int8_t *w, int32_t runs, int32_t a[3])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2];
#if EQ_ASM
    if (runs > 0) {
        uint32_t x02, x13, w02, w13;
        __asm volatile(
            "1:\n\t"
            "ldr     %[w13], [%[w]], #4\n\t"
            "ldrd    %[x02], %[x13], [%[col]]\n\t"
            "sxtb16  %[w02], %[w13]\n\t"
            "sxtb16  %[w13], %[w13], ror #8\n\t"
            EQ_THREE_COLS_LOOP_TAIL
            : EQ_THREE_COLS_OPERANDS
            :
            : "cc", "memory");
    }
#else
    for (; runs > 0; --runs, w += 4, col += 4 * EQ_COLS) {
        const uint32_t wv = eq_load32(w);
        const uint32_t w02 = EQ_SXTB16(wv), w13 = EQ_SXTB16_ROR8(wv);
        a0 = EQ_SMLAD(eq_load32(col + 2), w13, EQ_SMLAD(eq_load32(col), w02, a0));
        a1 = EQ_SMLAD(eq_load32(col + 6), w13, EQ_SMLAD(eq_load32(col + 4), w02, a1));
        a2 = EQ_SMLAD(eq_load32(col + 10), w13, EQ_SMLAD(eq_load32(col + 8), w02, a2));
    }
#endif
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
}

/* The same for int4 weights (a[j] += 16 * the sum). */
EQ_INLINE void eq_dot3_int4(const int16_t *col, const int8_t *w, int32_t runs, int32_t a[3])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2];
    for (; runs > 0; --runs, w += 4, col += 8 * EQ_COLS) {
        const uint32_t wv = eq_load32(w);
        const uint32_t p04 = EQ_SXTB16(EQ_INT4_LO(wv)), p26 = EQ_SXTB16_ROR8(EQ_INT4_LO(wv));
        const uint32_t p15 = EQ_SXTB16(EQ_INT4_HI(wv)), p37 = EQ_SXTB16_ROR8(EQ_INT4_HI(wv));
        a0 = EQ_SMLAD(eq_load32(col + 2), p26, EQ_SMLAD(eq_load32(col), p04, a0));
        a0 = EQ_SMLAD(eq_load32(col + 6), p37, EQ_SMLAD(eq_load32(col + 4), p15, a0));
        a1 = EQ_SMLAD(eq_load32(col + 10), p26, EQ_SMLAD(eq_load32(col + 8), p04, a1));
        a1 = EQ_SMLAD(eq_load32(col + 14), p37, EQ_SMLAD(eq_load32(col + 12), p15, a1));
        a2 = EQ_SMLAD(eq_load32(col + 18), p26, EQ_SMLAD(eq_load32(col + 16), p04, a2));
        a2 = EQ_SMLAD(eq_load32(col + 22), p37, EQ_SMLAD(eq_load32(col + 20), p15, a2));
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
}

/* a[j] += the int16-pair weights (weight_bits 16) times column j of the block, j < 3 for
 * blocks of at most three pixels, else all six (missing pixels repeat the last one). */
static void eq_dot_wide(const int16_t *col, const int8_t *w, int32_t runs, int32_t *a, int32_t n)
{
    int32_t j;
#if EQ_ASM
    if (n <= 3 && runs > 0) {
        int32_t a0 = a[0], a1 = a[1], a2 = a[2];
        uint32_t x02, x13, w02, w13;
        __asm volatile(
            "1:\n\t"
            "ldrd    %[w02], %[w13], [%[w]], #8\n\t"
            "ldrd    %[x02], %[x13], [%[col]]\n\t"
            EQ_THREE_COLS_LOOP_TAIL
            : EQ_THREE_COLS_OPERANDS
            :
            : "cc", "memory");
        a[0] = a0;
        a[1] = a1;
        a[2] = a2;
        return;
    }
    if (runs > 0) {
        int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5];
        uint32_t x02, x13, w02, w13;
        __asm volatile(
            "1:\n\t"
            EQ_DOT16_RUN
            "subs    %[runs], %[runs], #1\n\t"
            "bne     1b\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4),
              [a5] "+r"(a5), [col] "+r"(col), [w] "+r"(w), [runs] "+r"(runs), [x02] "=&r"(x02),
              [x13] "=&r"(x13), [w02] "=&r"(w02), [w13] "=&r"(w13)
            :
            : "cc", "memory");
        a[0] = a0;
        a[1] = a1;
        a[2] = a2;
        a[3] = a3;
        a[4] = a4;
        a[5] = a5;
        return;
    }
#endif
    for (; runs > 0; --runs, w += 8, col += 4 * EQ_COLS) {
        const uint32_t w02 = eq_load32(w), w13 = eq_load32(w + 4);
        for (j = 0; j < (n <= 3 ? 3 : EQ_COLS); ++j) {
            a[j] = EQ_SMLAD(eq_load32(col + 4 * j + 2), w13,
                            EQ_SMLAD(eq_load32(col + 4 * j), w02, a[j]));
        }
    }
}

#endif /* EQ_FAST */

#endif /* EQ_CONV_DOT_H */
