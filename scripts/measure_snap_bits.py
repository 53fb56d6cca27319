"""What snapping the weight scales (edgeq.intmath.SNAP_SCALE_BITS) costs a QGT model: the
Fashion-MNIST QGT + STE model at BITS weights, trained as benchmarks.packed.packed_fmnist trains
its W2 and W4 models (benchmarks.qgt's settings, FMNIST_QGT_EPOCHS epoch), exported unsnapped
and with its BITS-bit layers' scales snapped to each of SNAPS significant bits; integer top-1
(TFLM, and LiteRT beside it) on all 10,000 test images. The 8-bit first and last layers keep
their own snap width (SNAP_SCALE_BITS[8]) throughout.

    PYTHONPATH=$PWD EDGEQ_SHARED=../shared .venv/bin/python scripts/measure_snap_bits.py \
        BITS SNAP [SNAP ...]            (e.g. 3 6 7 8; 0 = unsnapped)
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.packed import FMNIST_QGT_EPOCHS  # noqa: E402
from benchmarks.qgt import CALIB, STE_LR, STE_STRENGTH, VAL_SAMPLES  # noqa: E402
from benchmarks.sections import _evaluate_tflite, trained_fmnist  # noqa: E402
from edgeq import intmath  # noqa: E402
from edgeq.learn.export import to_tflite_model  # noqa: E402
from edgeq.learn.graph import capture  # noqa: E402
from edgeq.learn.qgt.training import train_qgt  # noqa: E402
from edgeq.learn.quantize import storable  # noqa: E402
from edgeq.tflite.write import write_model  # noqa: E402


def main(bits: int, snaps: list[int]) -> None:
    model, tr, te, _, _ = trained_fmnist()
    calib = tr.x[np.random.default_rng(0).permutation(len(tr))[:CALIB]]
    t = time.perf_counter()
    result = train_qgt(capture(model), tr, te.take(VAL_SAMPLES), bits=bits,
                       epochs=FMNIST_QGT_EPOCHS, regularizer="l2grid", ste_start=0.0,
                       strength=STE_STRENGTH, learning_rate=STE_LR)
    qgraph = result.quantized_graph(calib)
    print(f"QGT W{bits}: {time.perf_counter() - t:.0f} s", flush=True)
    saved = intmath.SNAP_SCALE_BITS[bits]
    rows = []
    try:
        for snap in snaps:
            if snap:
                intmath.SNAP_SCALE_BITS[bits] = snap
            else:  # no width: snap_weight_scales leaves these layers' scales as they are
                del intmath.SNAP_SCALE_BITS[bits]
            data = write_model(to_tflite_model(storable(qgraph)))
            row = _evaluate_tflite(f"W{bits} snapped to {snap or 'unsnapped'}", data, te.x,
                                   te.y, 0.0)
            rows.append({"snap": snap, "top1_tflm": row["top1_tflm"],
                         "top1_litert": row["top1_litert"]})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        intmath.SNAP_SCALE_BITS[bits] = saved


if __name__ == "__main__":
    main(int(sys.argv[1]), [int(s) for s in sys.argv[2:]])
