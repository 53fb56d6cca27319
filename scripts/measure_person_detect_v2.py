"""person_detect_v2 W8 (min-max) under QEMU: ops, arena, flash and instructions of edgeq's
engine on the 128 val2017_* photos, for the files of one trained model (benchmarks.mobilenet_v2's
cache in bench_out/mobilenet_v2), with LiteRT and TFLM compared on every output:

    no_fold     fold_zero_padding off (a PAD per stride-2 ZeroPadding2D), tie-safe storage
    tiesafe     the default export
    no_tiesafe  to_tflite_model(..., _tie_safe=False): no restore ADDs (LiteRT then differs)
    tf_ptq      TensorFlow's converter, full-integer INT8 PTQ on the same 128 photos

    PYTHONPATH=$PWD EDGEQ_SHARED=../shared .venv/bin/python scripts/measure_person_detect_v2.py \
        [VARIANT ...]
"""

import collections
import json
import sys
from pathlib import Path

from benchmarks.mobilenet_v2 import CACHE, _data, trained
from edgeq.deploy.check import model_input_spec, quantize_inputs
from edgeq.deploy.qemu import check_on_qemu
from edgeq.learn import graph as graph_module
from edgeq.learn.export import quantize_minmax, to_tflite_model
from edgeq.learn.tf_baseline import tflite_int8_ptq
from edgeq.tflite.read import read_model
from edgeq.tflite.write import write_model


def main():
    shared = Path("../shared").resolve()
    model, _ = trained(shared)
    tr, val = _data(shared)

    def edgeq_file(fold=True, tie_safe=True):
        passes = graph_module.PASSES
        if not fold:
            graph_module.PASSES = tuple(p for p in passes
                                        if p is not graph_module.fold_zero_padding)
        try:
            graph = graph_module.capture(model)
        finally:
            graph_module.PASSES = passes
        return write_model(to_tflite_model(quantize_minmax(graph, tr.x, 8), _tie_safe=tie_safe))

    make = {"no_fold": lambda: edgeq_file(fold=False), "tiesafe": edgeq_file,
            "no_tiesafe": lambda: edgeq_file(tie_safe=False),
            "tf_ptq": lambda: tflite_int8_ptq(model, tr.x)}
    for name in sys.argv[1:] or list(make):
        path = CACHE / f"measure_{name}.tflite"
        path.write_bytes(make[name]())
        ops = read_model(path.read_bytes()).ops
        q = quantize_inputs(val.x, model_input_spec(path))
        fw = check_on_qemu(path, q, CACHE / f"measure_fw_{name}", timeout=1800, labels=val.y,
                           force=True, litert=True)
        print(name, json.dumps({
            "ops": len(ops), "kinds": dict(collections.Counter(op.kind for op in ops)),
            "file_bytes": path.stat().st_size, "firmware_vs_tflm_mismatches": fw.mismatches,
            "litert_vs_firmware_mismatches": fw.litert_mismatches,
            "litert_max_lsb": fw.litert_max_difference, "arena": fw.sizes["arena"],
            "flash": fw.sizes["flash"], "instructions": fw.instructions_per_inference,
            "instructions_per_mac": round(fw.instructions_per_mac, 3), "samples": len(q)}),
            flush=True)


if __name__ == "__main__":
    main()
