/* edgeq kernels: RESIZE_NEAREST_NEIGHBOR (eq_resize_nearest).
 *
 * reference_ops::ResizeNearestNeighbor: output pixel (y, x) is input pixel (rows[y],
 * cols[x]), all channels copied. TFLM computes each source index with float arithmetic
 * (GetNearestNeighbor: scale, half-pixel offset, floor or round, clamps); the generator
 * evaluates it in float32 for every output row and column (edgeq.deploy.interp_ops.
 * nearest_indices) and stores the two index tables, so the kernel only copies: one memcpy of
 * `channels` bytes per output pixel, the same on every core.
 */
#include "eq_internal.h"

/* ---- RESIZE_NEAREST_NEIGHBOR: copies from precomputed source rows and columns ----------- */

void eq_resize_nearest(const eq_resize_nearest_t *p, const int8_t *in, int8_t *out)
{
    const int32_t row_bytes = p->in_w * p->channels;
    int32_t b, y, x;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = in + b * p->in_h * row_bytes;
        for (y = 0; y < p->out_h; ++y) {
            const int8_t *row = image + p->rows[y] * row_bytes;
            for (x = 0; x < p->out_w; ++x) {
                memcpy(out, row + p->cols[x] * p->channels, (size_t)p->channels);
                out += p->channels;
            }
        }
    }
}
