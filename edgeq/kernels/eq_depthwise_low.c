/* edgeq kernels: 2- and 3-bit 3x3 DEPTHWISE_CONV_2D weights on the channel quad path.
 *
 * Included before eq_depthwise.c in the kernel units of engines that have such weights
 * (edgeq.deploy.cgen.PACKED_DEPTHWISE): their quads of channels (a channel count that is a
 * multiple of 4) then read four weights at a time from the dense stream (eq_dw_low_quad in
 * eq_depthwise_pairs.h) and take the whole-image assembly band like int8 and int4 weights.
 * Other units leave it out, so that their int8 and int4 code is exactly what it was.
 */
#ifndef EQ_DW_LOW_QUADS /* -DEQ_DW_LOW_QUADS=0: without (benchmarks/layout3.py measures both) */
#define EQ_DW_LOW_QUADS 1
#endif
