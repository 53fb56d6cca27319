"""Is AVERAGE_POOL_2D over the whole map (+ RESHAPE) the same op as MEAN over H and W?

Both written with the input's qparams (AVERAGE_POOL_2D cannot rescale), 16 channels, 200
random int8 inputs per case; run in TFLM, LiteRT (builtin kernels) and edgeq's interpreter.
Prints, per map size and zero point, where a runtime differs from TFLM, where MEAN and
AVERAGE_POOL_2D differ in TFLM, and how each differs from the centred mean rounded half away
from zero (Keras's mean on the same int8 grid).

    PYTHONPATH=$PWD .venv/bin/python scripts/mean_vs_avgpool.py [--keep-dims]
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from opmodels import _Builder  # noqa: E402

from edgeq.deploy.interp import Interpreter  # noqa: E402
from edgeq.tflite.write import write_model  # noqa: E402

KEEP = "--keep-dims" in sys.argv
C, N = 16, 200


def models(rng, h, w, zp):
    out = {}
    for kind in ("mean", "avg_pool"):
        b = _Builder(rng)
        x = b.activation("input", (1, h, w, C), scale=0.05, zero_point=zp)
        y = b.like("output", (1, 1, 1, C) if KEEP else (1, C), x)
        if kind == "mean":
            b.op("MEAN", [x, b.const_int32("axes", [1, 2])], y, keep_dims=KEEP)
        else:
            p = b.like("pooled", (1, 1, 1, C), x)
            b.op("AVERAGE_POOL_2D", [x], p, padding="VALID", stride_w=w, stride_h=h,
                 filter_width=w, filter_height=h, fused_activation_function="NONE")
            b.op("RESHAPE", [p, b.const_int32("shape", [1, 1, 1, C] if KEEP else [1, C])], y)
        out[kind] = b.model([x], [y], kind)
    return out


def run(model, xs):
    from ai_edge_litert.interpreter import Interpreter as LiteRT
    from ai_edge_litert.interpreter import OpResolverType
    from tflite_micro.python.tflite_micro import runtime

    data = write_model(model)
    micro = runtime.Interpreter.from_bytes(data, arena_size=1 << 20)
    lite = LiteRT(model_content=data, experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    lite.allocate_tensors()
    ours = Interpreter(model)
    got = {"tflm": [], "litert": [], "edgeq": []}
    for x in xs:
        micro.set_input(x, 0)
        micro.invoke()
        got["tflm"].append(micro.get_output(0).reshape(-1).copy())
        lite.set_tensor(lite.get_input_details()[0]["index"], x)
        lite.invoke()
        got["litert"].append(lite.get_tensor(lite.get_output_details()[0]["index"]).reshape(-1))
        got["edgeq"].append(ours.invoke(x)[0].reshape(-1))
    return {k: np.stack(v).astype(np.int64) for k, v in got.items()}


def main():
    rng = np.random.default_rng(0)
    for h, w in [(2, 2), (3, 3), (4, 4), (5, 3), (6, 6), (7, 7), (12, 12)]:
        for zp in (-128, -5, 0, 30):
            xs = rng.integers(-128, 128, size=(N, 1, h, w, C)).astype(np.int8)
            res = {k: run(m, xs) for k, m in models(rng, h, w, zp).items()}
            centred = (xs.astype(np.int64) - zp).reshape(N, h * w, C).sum(1) / (h * w)
            keras = np.clip(np.sign(centred) * np.floor(np.abs(centred) + 0.5) + zp, -128, 127)
            line = [f"{h}x{w} zp {zp:4d}:"]
            for kind, r in res.items():
                for rt in ("litert", "edgeq"):
                    line.append(f"{kind} {rt}!=tflm {int((r[rt] != r['tflm']).sum())}")
                line.append(f"{kind}!=keras {int((r['tflm'] != keras).sum())}")
            line.append(f"mean!=avg_pool {int((res['mean']['tflm'] != res['avg_pool']['tflm']).sum())}"
                        f"/{N * C}")
            print(", ".join(line), flush=True)


if __name__ == "__main__":
    main()
