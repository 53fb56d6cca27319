"""`edgeq check`: run a .tflite on real data with LiteRT and with TFLite Micro, and say how well
each classifies (or, for a regressor or an autoencoder, how far its outputs are from the
targets) and how closely they agree.

Needs numpy, a runtime (ai_edge_litert or tflite_runtime, and/or tflite_micro), Pillow for image
folders, and nothing from TensorFlow or Keras: this is what runs on a Raspberry Pi-class device.
A float model can be compared too, by handing in its outputs (an array), so TF stays out.

    result = check_model("model.tflite", x, y, float_model_predict=keras_outputs)
    result.to_dict()      # JSON-ready
    result.print()        # a rich table

LiteRT (without delegates) is close to TFLM but not defined to be identical: DESIGN.md's contract
is at most 1 LSB difference and >= 99.5% label agreement, which `fidelity_ok` reports.

Any input rank (images, sensor windows (1, 640), audio features (1, 49, 10)) and any output:
every check compares the raw outputs of each runtime with TFLM's (values that differ, the
largest difference in LSB) and gives the mean absolute error of the dequantized outputs against
the float model's outputs and the regression targets when it has them. Top-1 accuracy needs
labels; the label agreement between runtimes is for outputs that are a class vector (N x K)
and data that are not regression targets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq import __version__, intmath
from edgeq.data import (
    check_input_domain,
    check_labels,
    class_labels,
    classification,
    output_classes,
    percent,
)
from edgeq.deploy.runtimes import litert_interpreter, litert_module, tflm_module
from edgeq.errors import (
    DataError,
    EdgeqError,
    ModelLoadError,
    RuntimeMissingError,
    UnsupportedOpError,
)
from edgeq.outputs import write_file

MAX_LSB = 1  # LiteRT vs TFLM, DESIGN.md contract 1
MIN_AGREEMENT = 0.995


@dataclass(frozen=True)
class TensorSpec:
    """What a runtime says about a model's input or output tensor."""

    dtype: str
    shape: tuple[int, ...]
    scale: float | None  # None: not quantized
    zero_point: int | None

    @classmethod
    def from_details(cls, details: dict) -> TensorSpec:
        params = details.get("quantization_parameters") or {}
        scales = np.asarray(params.get("scales", []), np.float64)
        zps = np.asarray(params.get("zero_points", []), np.int64)
        quantized = scales.size > 0 and float(scales[0]) != 0.0
        return cls(np.dtype(details["dtype"]).name, tuple(int(d) for d in details["shape"]),
                   float(scales[0]) if quantized else None, int(zps[0]) if quantized else None)

    @property
    def is_integer(self) -> bool:
        return self.dtype in ("int8", "uint8", "int16")


@dataclass
class RuntimeRun:
    """One runtime's pass over the data."""

    key: str  # "litert" | "tflm" | "edgeq"
    name: str  # e.g. "TFLite INT8 via LiteRT (ai-edge-litert 2.3.0)"
    available: bool
    reason: str = ""  # why it did not run
    accuracy: float | None = None
    float_agreement: float | None = None  # label agreement with the float model
    seconds: float = 0.0
    outputs: np.ndarray | None = field(default=None, repr=False)  # raw outputs, N x ...
    labels: np.ndarray | None = field(default=None, repr=False)  # predicted label per sample
    per_class_accuracy: list | None = None  # accuracy on the samples of each class
    confusion: list | None = None  # counts, rows: true label, columns: predicted
    differing_from_tflm: int | None = None  # raw output values that differ from TFLM's
    max_lsb_from_tflm: float | None = None  # largest |this - TFLM| of the raw outputs (LSB)
    mae_target: float | None = None  # mean |dequantized output - regression target|
    mae_float: float | None = None  # mean |dequantized output - float model's output|

    def to_dict(self) -> dict:
        return {"key": self.key, "name": self.name, "available": self.available,
                "reason": self.reason, "accuracy": self.accuracy,
                "per_class_accuracy": self.per_class_accuracy, "confusion": self.confusion,
                "float_agreement": self.float_agreement,
                "differing_from_tflm": self.differing_from_tflm,
                "max_lsb_from_tflm": self.max_lsb_from_tflm, "mae_target": self.mae_target,
                "mae_float": self.mae_float, "seconds": round(self.seconds, 3)}


@dataclass
class CheckResult:
    model: str
    samples: int
    labelled: int  # samples with a label (y >= 0)
    input: TensorSpec
    output: TensorSpec
    runtimes: list[RuntimeRun]
    tflm_litert_agreement: float | None = None  # fraction of equal top-1 labels
    max_abs_diff: float | None = None  # max |TFLM - LiteRT| over raw outputs
    diff_unit: str = "LSB"  # "LSB" for integer outputs, "float" otherwise
    task: str = "classification"  # "classification" (labels), "regression" (targets), "unlabelled"
    max_lsb: int | None = None  # max |TFLM - LiteRT| of integer raw outputs, in LSB
    litert_differing: int | None = None  # raw output values where LiteRT differs from TFLM
    output_values: int = 0  # raw output values per runtime (samples x output size)
    mae_tflm_litert: float | None = None  # mean |dequantized TFLM - LiteRT|
    float_accuracy: float | None = None
    arena_bytes: int | None = None  # TFLM tensor arena actually used
    reference_equals_tflm: bool | None = None  # edgeq's numpy reference == TFLM, every output
    classes: list[str] = field(default_factory=list)  # class names, index = label
    float_per_class_accuracy: list | None = None
    float_confusion: list | None = None
    data: str = ""  # where the samples came from
    chosen: str = ""  # how they were chosen ("" = all of them)
    edgeq_version: str = __version__

    def runtime(self, key: str) -> RuntimeRun | None:
        return next((r for r in self.runtimes if r.key == key), None)

    @property
    def fidelity_ok(self) -> bool | None:
        """LiteRT vs TFLM within the contract (None when one of them did not run)."""
        if self.max_abs_diff is None:
            return None
        if self.tflm_litert_agreement is None:  # not a class vector: the LSB bound alone
            return self.max_abs_diff <= MAX_LSB
        return self.max_abs_diff <= MAX_LSB and self.tflm_litert_agreement >= MIN_AGREEMENT

    def accuracy_rows(self, include_float: bool = False) -> list[dict]:
        """Rows for report["accuracy"], one per runtime that ran (and the float model first
        with include_float). `agreement` is the label agreement with the float model when its
        outputs were given, else (for TFLM) with LiteRT; `agreement_with` names which."""
        rows = []
        if include_float and self.float_accuracy is not None:
            rows.append({"name": "float", "accuracy": self.float_accuracy, "agreement": None,
                         "agreement_with": None, "samples": self.samples,
                         "per_class_accuracy": self.float_per_class_accuracy,
                         "confusion": self.float_confusion})
        for r in self.runtimes:
            if not r.available:
                continue
            if r.float_agreement is not None:
                agreement, versus = r.float_agreement, "float"
            elif r.key == "tflm":
                agreement, versus = self.tflm_litert_agreement, "LiteRT"
            else:
                agreement, versus = None, None
            rows.append({"name": r.name, "accuracy": r.accuracy, "agreement": agreement,
                         "agreement_with": versus if agreement is not None else None,
                         "samples": self.samples, "per_class_accuracy": r.per_class_accuracy,
                         "confusion": r.confusion})
        return rows

    def to_dict(self) -> dict:
        return {
            "edgeq_version": self.edgeq_version,
            "model": self.model,
            "samples": self.samples,
            "labelled": self.labelled,
            "data": self.data,
            "chosen": self.chosen or "all samples",
            "classes": self.classes,
            "input": self.input.__dict__ | {"shape": list(self.input.shape)},
            "output": self.output.__dict__ | {"shape": list(self.output.shape)},
            "runtimes": [r.to_dict() for r in self.runtimes],
            "task": self.task,
            "tflm_litert_agreement": self.tflm_litert_agreement,
            "max_abs_diff": self.max_abs_diff,
            "diff_unit": self.diff_unit,
            "max_lsb": self.max_lsb,
            "litert_differing": self.litert_differing,
            "output_values": self.output_values,
            "mae_tflm_litert": self.mae_tflm_litert,
            "fidelity_ok": self.fidelity_ok,
            "float_accuracy": self.float_accuracy,
            "float_per_class_accuracy": self.float_per_class_accuracy,
            "float_confusion": self.float_confusion,
            "arena_bytes": self.arena_bytes,
            "reference_equals_tflm": self.reference_equals_tflm,
        }

    def table(self):
        """A rich Table of the result (rich is imported only here): top-1 columns when the
        data have labels, MAE columns when there are targets or float outputs, and for each
        runtime how its raw outputs compare with TFLM's."""
        from rich.table import Table

        where = f" of {self.data}" if self.data else ""
        known = {"classification": f"{self.labelled} labelled", "regression": "regression targets",
                 "unlabelled": "no labels"}[self.task]
        table = Table(title=f"edgeq check: {Path(self.model).name} ({self.samples} samples{where}, "
                            f"{self.chosen or 'all samples'}; {known})")
        ran = [r for r in self.runtimes if r.available]
        columns = [("top-1 accuracy", self.task == "classification",
                    lambda r: percent(r.accuracy)),
                   ("per class", self.task == "classification",
                    lambda r: self._per_class(r.per_class_accuracy)),
                   ("MAE vs target", any(r.mae_target is not None for r in ran),
                    lambda r: _mae(r.mae_target)),
                   ("MAE vs float", any(r.mae_float is not None for r in ran),
                    lambda r: _mae(r.mae_float)),
                   ("agreement", any(r.float_agreement is not None for r in ran)
                    or self.tflm_litert_agreement is not None, self._agreement),
                   ("raw outputs vs TFLM", any(r.differing_from_tflm is not None for r in ran),
                    self._versus_tflm)]
        shown = [(name, cell) for name, show, cell in columns if show]
        table.add_column("runtime")
        for name, _ in shown:
            table.add_column(name, justify="right")
        table.add_column("time", justify="right")
        if self.float_accuracy is not None:
            values = {"top-1 accuracy": percent(self.float_accuracy),
                      "per class": self._per_class(self.float_per_class_accuracy)}
            table.add_row("float model", *[values.get(name, "") for name, _ in shown], "")
        for r in self.runtimes:
            if not r.available:  # "unavailable" and why, in the first columns there are
                cells = ["[yellow]unavailable[/]", r.reason, *[""] * len(shown)][:len(shown) + 1]
                if len(cells) == 1:
                    cells = [f"[yellow]unavailable[/]: {r.reason}"]
                table.add_row(r.name, *cells)
                continue
            table.add_row(r.name, *[cell(r) for _, cell in shown], f"{r.seconds:.2f} s")
        if self.max_abs_diff is not None:
            ok = self.fidelity_ok
            verdict = "[green]within contract[/]" if ok else "[red]outside contract[/]"
            diff = (f"{self.max_abs_diff:g} {self.diff_unit}" if self.diff_unit == "LSB"
                    else f"{self.max_abs_diff:.3g}")
            differ = "" if self.litert_differing is None else \
                f"; {self.litert_differing:,} of {self.output_values:,} values differ"
            mae = "" if self.task == "classification" else \
                f", MAE of the dequantized outputs {_mae(self.mae_tflm_litert)}"
            if self.tflm_litert_agreement is not None:
                table.caption = (f"TFLM vs LiteRT: labels agree on "
                                 f"{percent(self.tflm_litert_agreement)}, max |Δ| of raw outputs "
                                 f"{diff}{differ}{mae} ({verdict}: ≤ {MAX_LSB} LSB, "
                                 f"≥ {MIN_AGREEMENT:.1%})")
            else:
                table.caption = (f"TFLM vs LiteRT: max |Δ| of raw outputs {diff}{differ}{mae} "
                                 f"({verdict}: ≤ {MAX_LSB} LSB)")
        if self.reference_equals_tflm is not None:
            same = ("[green]identical[/]" if self.reference_equals_tflm
                    else "[red]DIFFERENT (contract 1 broken: please report)[/]")
            table.caption = (table.caption or "") + f"\nedgeq reference vs TFLM raw outputs: {same}"
        if self.arena_bytes is not None:
            table.caption = (table.caption or "") + f"\nTFLM arena used: {self.arena_bytes:,} bytes"
        confusion = next((r.confusion for r in self.runtimes if r.key == "tflm" and r.confusion),
                         None) or next((r.confusion for r in self.runtimes if r.confusion), None)
        if confusion is not None:
            table.caption = (table.caption or "") + "\nconfusion (rows true, columns predicted): " \
                + "; ".join(f"{self._class_name(c)}: {' '.join(map(str, row))}"
                            for c, row in enumerate(confusion))
        return table

    def _agreement(self, r: RuntimeRun) -> str:
        if r.float_agreement is not None:
            return f"{percent(r.float_agreement)} vs float"
        if r.key == "tflm" and self.tflm_litert_agreement is not None:
            return f"{percent(self.tflm_litert_agreement)} vs LiteRT"
        return ""

    def _versus_tflm(self, r: RuntimeRun) -> str:
        if r.key == "tflm":
            return "(TFLM)"
        if r.differing_from_tflm is None:
            return ""
        if r.differing_from_tflm == 0:
            return "identical"
        unit = " LSB" if self.diff_unit == "LSB" else ""
        return (f"{r.differing_from_tflm:,} of {self.output_values:,} differ, "
                f"max {r.max_lsb_from_tflm:g}{unit}")

    def _class_name(self, label: int) -> str:
        return self.classes[label] if label < len(self.classes) else str(label)

    def _per_class(self, values) -> str:
        if not values:
            return ""
        return ", ".join(f"{self._class_name(c)} {percent(v)}" for c, v in enumerate(values))

    def print(self, console=None) -> None:
        from rich.console import Console

        (console or Console()).print(self.table())


def _mae(value) -> str:
    return "–" if value is None else f"{value:.4g}"


def is_class_vector(spec: TensorSpec) -> bool:
    """An output that can be a class vector: one axis of values after the batch axis."""
    return len(spec.shape) <= 2


def compare_outputs(outputs: np.ndarray, reference: np.ndarray) -> tuple[int, float]:
    """(values that differ, largest |outputs - reference|) of two raw output arrays."""
    a, b = np.asarray(outputs, np.float64), np.asarray(reference, np.float64)
    return int(np.count_nonzero(a != b)), float(np.abs(a - b).max(initial=0.0))


def mean_abs_error(outputs: np.ndarray, spec: TensorSpec, reference) -> float:
    """Mean |dequantized raw outputs - reference| (real values, same number per sample)."""
    real = dequantize(outputs, spec).astype(np.float64).reshape(len(outputs), -1)
    return float(np.mean(np.abs(real - np.asarray(reference, np.float64).reshape(real.shape))))


def top1(outputs: np.ndarray, spec: TensorSpec | None = None) -> np.ndarray:
    """Predicted label per sample from raw outputs (of tensor `spec`; None: real values): the
    arg max, or for one sigmoid unit label 1 above 0.5 of the dequantized value."""
    return class_labels(outputs if spec is None else dequantize(outputs, spec))


def accuracy(labels: np.ndarray, y: np.ndarray | None) -> float | None:
    if y is None:
        return None
    known = y >= 0
    return float(np.mean(labels[known] == y[known])) if known.any() else None


def quantize_inputs(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float inputs (the model's input domain) -> what the input tensor holds; integer arrays of
    the tensor's own type pass through unchanged."""
    x = np.asarray(x)
    if x.dtype == np.dtype(spec.dtype):
        return x
    if np.issubdtype(x.dtype, np.integer):
        raise DataError(f"inputs are {x.dtype} but the model's input tensor is {spec.dtype}",
                        "pass float inputs in the model's input domain, or arrays of the input type")
    if not spec.is_integer:
        return x.astype(spec.dtype)
    if spec.scale is None:
        raise DataError(f"the model's {spec.dtype} input tensor has no quantization parameters",
                        "pass already-quantized inputs")
    info = np.iinfo(spec.dtype)
    # As TFLite's QUANTIZE (and the simulated model) do: a float32 quotient rounded half away
    # from zero. np.round's half-to-even gave 1 LSB less on every exact half step, which inputs
    # in [-1, 1] (pixels / 127.5 - 1) hit on a quarter of their values.
    quotient = x.astype(np.float32) / np.float32(spec.scale)
    q = intmath.round_half_away(quotient) + spec.zero_point
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.scale is None:
        return np.asarray(q, np.float32)
    return ((np.asarray(q, np.float64) - spec.zero_point) * spec.scale).astype(np.float32)


def check_input_range(x: np.ndarray, spec: TensorSpec, source: str) -> None:
    """Float inputs must mostly fit the int8 input tensor's range (else most of them saturate:
    0-255 pixels into a model quantized for [0, 1])."""
    if not spec.is_integer or spec.scale is None or not np.issubdtype(x.dtype, np.floating):
        return
    info = np.iinfo(spec.dtype)
    lo, hi = (info.min - spec.zero_point) * spec.scale, (info.max - spec.zero_point) * spec.scale
    check_input_domain(x, lo, hi, source,
                       f"the input tensor covers [{lo:.3g}, {hi:.3g}]: scale the data to it "
                       "(0-255 pixels: divide by 255)")


def _dims(shape) -> str:
    return f"(N, {', '.join(str(d) for d in shape[1:])})"


def _check_shape(x: np.ndarray, spec: TensorSpec) -> None:
    if tuple(x.shape[1:]) != tuple(spec.shape[1:]):
        raise DataError(f"inputs have shape {tuple(x.shape[1:])} per sample, the model's input "
                        f"tensor is {spec.shape}",
                        f"resize the data to the model's input shape: x of shape {_dims(spec.shape)}")
    if len(x) == 0:
        raise DataError("no samples to check", "pass at least one input")


# Runners: each takes a prepared interpreter and a batch, returns stacked raw outputs.
def _run_litert(interpreter, q: np.ndarray, advance=None) -> np.ndarray:
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for sample in q:
        interpreter.set_tensor(input_index, sample[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_index)[0].copy())
        if advance:
            advance()
    return np.stack(outputs)


def litert_outputs(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """LiteRT's raw outputs (builtin kernels) for inputs `x` (floats in the model's input
    domain, or already of the input tensor's integer type), one row per input."""
    interpreter, _, spec_in, _ = _open_litert(model_bytes)
    return _run_litert(interpreter, quantize_inputs(x, spec_in))


def _run_tflm(interpreter, q: np.ndarray, advance=None) -> np.ndarray:
    outputs = []
    for sample in q:
        interpreter.set_input(sample[None], 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0)[0].copy())
        if advance:
            advance()
    return np.stack(outputs)


def _open_litert(model_bytes: bytes):
    """(interpreter, name, input spec, output spec)."""
    _, version = litert_module()
    interpreter = litert_interpreter(model_bytes)
    spec_in = TensorSpec.from_details(interpreter.get_input_details()[0])
    spec_out = TensorSpec.from_details(interpreter.get_output_details()[0])
    kind = f"{spec_in.dtype.upper()} " if spec_in.is_integer else ""
    return interpreter, f"TFLite {kind}via LiteRT ({version})", spec_in, spec_out


def _open_tflm(model_bytes: bytes):
    """(interpreter, name, input spec, output spec, arena bytes used)."""
    from edgeq.deploy.tflm import fit_arena  # keeps `import edgeq.deploy.check` light

    _, version = tflm_module()
    interpreter, arena = fit_arena(model_bytes)
    spec_in = TensorSpec.from_details(interpreter.get_input_details(0))
    spec_out = TensorSpec.from_details(interpreter.get_output_details(0))
    return interpreter, f"TFLM ({version})", spec_in, spec_out, arena


def _run_reference(interpreter, q: np.ndarray, advance=None) -> np.ndarray:
    outputs = []
    for sample in q:
        outputs.append(interpreter.invoke(sample[None])[0][0].copy())
        if advance:
            advance()
    return np.stack(outputs)


def spec_of_tensor(tensor) -> TensorSpec:
    """The TensorSpec of an edgeq.tflite.model.Tensor (the reader's, no runtime needed)."""
    quantized = tensor.scale is not None and float(tensor.scale[0]) != 0.0
    return TensorSpec(tensor.dtype, tuple(tensor.shape), float(tensor.scale[0]) if quantized else None,
                      int(tensor.zero_point[0]) if quantized else None)


def _open_reference(model_bytes: bytes):
    """edgeq's numpy reference interpreter (bit-exact with TFLM's reference kernels): needs
    nothing but numpy and the flatbuffer schema."""
    from edgeq.deploy.interp import Interpreter
    from edgeq.tflite.read import read_model

    model = read_model(model_bytes)
    if len(model.outputs) != 1:
        raise UnsupportedOpError("the reference check handles models with one output")
    return (Interpreter(model), f"edgeq reference (numpy, edgeq {__version__})",
            spec_of_tensor(model.input_tensors[0]), spec_of_tensor(model.output_tensors[0]))


def _read_model(model) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "the .tflite in memory"
    path = Path(model)
    try:
        return path.read_bytes(), str(path)
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read the model ({e.strerror or e})",
                             "pass the path of a .tflite file") from None


def _open_runtimes(model_bytes: bytes) -> dict:
    """Open every runtime that can be opened; record why the others cannot."""
    opened: dict = {}
    for key, opener in (("litert", _open_litert), ("tflm", _open_tflm), ("edgeq", _open_reference)):
        try:
            opened[key] = opener(model_bytes)
        except EdgeqError as e:
            opened[key] = e
    if all(isinstance(opened[k], EdgeqError) for k in ("litert", "tflm")):
        errors = [opened["litert"], opened["tflm"]]
        if all(isinstance(e, RuntimeMissingError) for e in errors):
            raise RuntimeMissingError("no TFLite runtime is installed: neither LiteRT nor TFLM",
                                      "pip install ai-edge-litert tflite-micro")
        raise next(e for e in errors if not isinstance(e, RuntimeMissingError))
    return opened


def model_specs(model) -> tuple[TensorSpec, TensorSpec]:
    """The input and output tensors of a .tflite (path or bytes), as LiteRT reads them, else
    TFLM."""
    model_bytes, _ = _read_model(model)
    try:
        return _open_litert(model_bytes)[2:4]
    except EdgeqError:
        pass  # LiteRT missing or unable: ask TFLM, and fail with both runtimes' reasons
    opened = _open_runtimes(model_bytes)
    return next(v for v in opened.values() if not isinstance(v, EdgeqError))[2:4]


def model_input_spec(model) -> TensorSpec:
    """The input tensor of a .tflite (path or bytes), as LiteRT reads it, else TFLM."""
    return model_specs(model)[0]


def check_targets(targets, n: int, spec_out: TensorSpec, source: str) -> np.ndarray:
    """Regression targets: one per sample, as many real values as the output tensor holds."""
    targets = np.asarray(targets, np.float32)
    per_sample = int(np.prod(spec_out.shape[1:]))
    if len(targets) != n or targets.size != n * per_sample:
        raise DataError(f"{source}: {n} inputs and targets of shape {targets.shape}, but the "
                        f"model's output tensor is {spec_out.shape}",
                        f"pass one target per input, of shape {_dims(spec_out.shape)}")
    return targets.reshape(n, per_sample)


def check_model(model, x: np.ndarray, y: np.ndarray | None = None,
                float_model_predict: np.ndarray | Callable | None = None, *,
                float_outputs: np.ndarray | None = None, targets: np.ndarray | None = None,
                advance: Callable[[], None] | None = None, classes: list[str] | None = None,
                data: str = "", chosen: str = "") -> CheckResult:
    """Run every sample of `x` through LiteRT and TFLM and compare.

    model: a .tflite path or its bytes. x: N samples of any shape the input tensor has, float
    in the model's input domain (they are quantized with the input tensor's scale and zero
    point) or already of the input tensor's integer type. y: int labels (-1 = unknown) or None.
    targets: regression targets instead of labels, N x the output's shape (real values).
    float_model_predict: the float model's outputs for x (N x outputs array), or a function
    x_float -> that array; `float_outputs` is the same as an array. advance: called after each
    sample of each runtime (progress bars). classes: class names (index = label); data, chosen:
    where the samples came from and how they were chosen, for the report. A single-unit output
    is a binary (sigmoid) classifier when there are labels.
    """
    if float_model_predict is not None and float_outputs is not None:
        raise ValueError("pass either float_model_predict or float_outputs, not both")
    if y is not None and targets is not None:
        raise ValueError("pass either labels y or regression targets, not both")
    float_model_predict = float_outputs if float_outputs is not None else float_model_predict
    model_bytes, name = _read_model(model)
    opened = _open_runtimes(model_bytes)
    first = next(v for v in opened.values() if not isinstance(v, EdgeqError))
    spec_in, spec_out = first[2], first[3]
    x = np.asarray(x)
    _check_shape(x, spec_in)
    source = data or "the data"
    check_input_range(x, spec_in, source)
    q = quantize_inputs(x, spec_in)
    y = None if y is None else np.asarray(y, np.int64).reshape(-1)
    if y is not None and len(y) != len(x):
        raise DataError(f"{len(x)} inputs but {len(y)} labels")
    if targets is not None:
        targets = check_targets(targets, len(x), spec_out, source)
    labelled = y is not None and bool((y >= 0).any())
    task = "classification" if labelled else "regression" if targets is not None else "unlabelled"
    # Labels and their agreement only where the output can be a class vector.
    class_output = labelled or (task == "unlabelled" and is_class_vector(spec_out))
    n_classes = output_classes(int(np.prod(spec_out.shape[1:])))
    if y is not None:
        check_labels(y, n_classes, source)

    float_out = _float_outputs(float_model_predict, x, q, spec_in)
    float_labels = class_labels(float_out) if float_out is not None and class_output else None
    float_comparable = float_out is not None and float_out[0].size == int(np.prod(spec_out.shape[1:]))
    runners = {"litert": _run_litert, "tflm": _run_tflm, "edgeq": _run_reference}
    runs: list[RuntimeRun] = []
    arena = None
    for key, value in opened.items():
        if isinstance(value, EdgeqError):
            default = {"litert": "TFLite via LiteRT", "tflm": "TFLM", "edgeq": "edgeq reference"}[key]
            runs.append(RuntimeRun(key, default, False, reason=_one_line(value)))
            continue
        if key == "tflm":
            arena = value[4]
        start = time.perf_counter()
        outputs = runners[key](value[0], q, advance)
        run = RuntimeRun(key, value[1], True, seconds=time.perf_counter() - start, outputs=outputs,
                         labels=top1(outputs, spec_out))  # used only for class outputs
        if labelled:
            scores = classification(y, run.labels, n_classes)
            run.accuracy = scores["accuracy"]
            run.per_class_accuracy, run.confusion = scores["per_class_accuracy"], scores["confusion"]
        if float_labels is not None:
            run.float_agreement = float(np.mean(run.labels == float_labels))
        if targets is not None:
            run.mae_target = mean_abs_error(outputs, spec_out, targets)
        if float_comparable:
            run.mae_float = mean_abs_error(outputs, spec_out, float_out)
        runs.append(run)

    result = CheckResult(name, len(x), int((y >= 0).sum()) if y is not None else 0,
                         spec_in, spec_out, runs, arena_bytes=arena, data=data, chosen=chosen,
                         task=task, output_values=len(x) * int(np.prod(spec_out.shape[1:])),
                         classes=(list(classes) if classes else [str(c) for c in range(n_classes)])
                         if class_output else [])
    if float_labels is not None and labelled:
        scores = classification(y, float_labels, n_classes)
        result.float_accuracy = scores["accuracy"]
        result.float_per_class_accuracy = scores["per_class_accuracy"]
        result.float_confusion = scores["confusion"]
    litert, tflm, reference = result.runtime("litert"), result.runtime("tflm"), result.runtime("edgeq")
    if tflm.available:
        for other in (litert, reference):
            if other.available:
                other.differing_from_tflm, other.max_lsb_from_tflm = compare_outputs(
                    other.outputs, tflm.outputs)
    if reference.available and tflm.available:
        result.reference_equals_tflm = bool(np.array_equal(reference.outputs, tflm.outputs))
    if litert.available and tflm.available:
        if class_output:
            result.tflm_litert_agreement = float(np.mean(litert.labels == tflm.labels))
        result.litert_differing, result.max_abs_diff = litert.differing_from_tflm, litert.max_lsb_from_tflm
        result.diff_unit = "LSB" if spec_out.is_integer else "float"
        if spec_out.is_integer:
            result.max_lsb = int(result.max_abs_diff)
        result.mae_tflm_litert = mean_abs_error(litert.outputs, spec_out,
                                                dequantize(tflm.outputs, spec_out))
    return result


def _float_outputs(predict, x, q, spec_in) -> np.ndarray | None:
    if predict is None:
        return None
    if callable(predict):
        x_float = x if np.issubdtype(x.dtype, np.floating) else dequantize(q, spec_in)
        predict = predict(x_float)
    outputs = np.asarray(predict)
    if len(outputs) != len(x):
        raise DataError(f"the float model gave {len(outputs)} outputs for {len(x)} inputs",
                        "pass the float model's outputs for exactly the checked samples")
    return outputs


def _one_line(error: EdgeqError) -> str:
    text = error.message + (f" ({error.hint})" if error.hint else "")
    return " ".join(text.split())


def check_command(model_path, data_path, limit: int | None = None, json_path=None,
                  scale: float = 255.0, seed: int = 0) -> CheckResult:
    """What `edgeq check MODEL.tflite --data PATH [--limit N] [--json FILE]` does.

    The data's shape and colour follow the model's input tensor (1 channel = grayscale,
    3 = RGB); images are divided by `scale`. A model whose input is not an image (sensor
    windows, audio features) takes an .npz (edgeq.data.load_npz: labels, regression targets or
    neither). `limit` takes a seeded subset stratified by class (image folders list one class
    after the other, so the first N would be one class only).
    """
    data, _, _ = load_check_data(model_path, data_path, limit, scale, seed)
    result = check_model(model_path, data.x, None if data.targets is not None else data.y,
                         targets=data.targets, classes=data.class_names or None,
                         data=str(data_path), chosen=data.chosen)
    if json_path is not None:
        write_json(result.to_dict(), json_path)
    return result


def load_check_data(model_path, data_path, limit: int | None = None, scale: float = 255.0,
                    seed: int = 0):
    """(Dataset, input spec, output spec) for `edgeq check` on the host and under QEMU: images
    (folders, IDX, .npz) for an image input, an .npz for any other input; --limit applied."""
    from edgeq.data import load_dataset  # numpy and Pillow only

    spec, spec_out = model_specs(model_path)
    shape = spec.shape[1:]
    npz = str(data_path).endswith(".npz")
    if len(shape) != 3 and not npz:
        raise DataError(f"{data_path}: the input tensor of {model_path} is {spec.shape}, not an "
                        "image (N, H, W, C), so the data cannot be an image folder or IDX files",
                        f"pass an .npz with x of shape {_dims(spec.shape)} (np.savez)")
    if len(shape) == 3 and shape[2] not in (1, 3) and not npz:
        raise DataError(f"{model_path}: input has {shape[2]} channels; images can fill 1 or 3",
                        f"pass an .npz with x of shape {_dims(spec.shape)}")
    color = "grayscale" if len(shape) == 3 and shape[2] == 1 else "rgb"
    data = load_dataset(data_path, shape, color=color, scale=scale, output_shape=spec_out.shape[1:])
    return data.stratified(limit, seed, "--limit"), spec, spec_out


def write_json(payload: dict, path) -> None:
    """Write JSON atomically (edgeq.outputs): a half-written file never replaces a good one."""
    write_file(path, json.dumps(payload, indent=2) + "\n")
