"""The pipeline behind `edgeq build`: BuildConfig -> stages -> outputs + report.

Stages: load -> data -> (train) -> quantize -> C arrays -> fit check -> on-device checks ->
report. Everything is written into a temporary folder beside the output folder and renamed into
place at the end, so a failed or interrupted build leaves the previous output as it was.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeq import __version__
from edgeq.boards import Board, load_board
from edgeq.data import (
    check_input_domain,
    check_labels,
    class_labels,
    classification,
    fashion_mnist,
    load_dataset,
    output_classes,
)
from edgeq.errors import BoardFitError, DataError, EdgeqError
from edgeq.learn.zoo import ModelCard, load_card
from edgeq.outputs import check_output_folder, staged_folder

DEMO_MODEL = "fmnist"
INPUT_DOMAIN = (0.0, 1.0)  # every model card's preprocessing: pixels / 255
MIN_CALIBRATION = 8


@dataclass
class BuildConfig:
    board: str = "cortex-m7"
    model: str | None = None  # zoo model name
    keras_model: str | None = None  # path to .h5 / .keras / SavedModel
    weights: str | None = None
    data: str | None = None
    out: str = "out"
    epochs: int | None = None  # train a zoo model first (the demo trains briefly)
    calib_samples: int = 256
    eval_limit: int | None = 2000
    seed: int = 0
    unsafe: bool = False
    bits: int | str = 8  # weight bits of the inner layers (first and last stay at 8), or "mixed"
    method: str | None = None  # quantization method (edgeq.learn.quantize.METHODS); None: brecq < 8 bits
    budget_kb: float | None = None  # weight budget for bits="mixed"; default: the board's flash
    iters: int | None = None  # reconstruction steps per block or layer; None: the method's default
    baseline: bool = True  # also measure TensorFlow's own INT8 PTQ on the same data (contract 4)
    zero_shot: bool = False  # calibrate on Genie-D images made from the model alone (no data)
    synth_iterations: int | None = None  # Genie-D steps per batch; None: edgeq.learn.synth's default
    expansion: int = 2  # method "rex": orders K of the residual expansion
    sparsity: float = 1.0  # method "rex": fraction G of output channels that get orders >= 1
    train: bool = False  # fine-tune toward `bits` with QGT before export (needs labelled data)
    train_epochs: int = 2  # QGT epochs
    force: bool = False  # replace an --out folder edgeq did not make; ship a model that fails a check


@dataclass
class BuildResult:
    out_dir: Path
    report: dict
    tflite_path: Path
    stages: list = field(default_factory=list)


class Stages:
    """Times each stage for the report and shows it on the console."""

    def __init__(self, console=None):
        self.console = console
        self.records: list[dict] = []

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        if self.console:
            self.console.log(f"[bold]{name}[/bold] …")
        yield
        self.records.append({"name": name, "seconds": round(time.perf_counter() - start, 2)})


def preflight(cfg: BuildConfig) -> Board:
    """The checks that need no TensorFlow, before any work: the board, the zoo card and the
    output folder (contract 6), options that exclude each other. Returns the board."""
    if cfg.keras_model and cfg.model:
        raise EdgeqError("pass either --model or --keras-model, not both")
    if cfg.train and cfg.zero_shot:
        raise EdgeqError("--train and --zero-shot exclude each other: QGT trains on labelled data",
                         "drop one of them")
    if cfg.method == "rex" and cfg.bits == "mixed":
        raise EdgeqError("--method rex takes one width (--bits 8, 4, 3 or 2), not mixed",
                         "pick a width; REx's orders are its own accuracy ladder")
    board = load_board(cfg.board)
    if cfg.model:
        load_card(cfg.model)
    if cfg.eval_limit is not None and cfg.eval_limit <= 0:
        raise DataError(f"--eval-limit {cfg.eval_limit}: must be a positive number of samples",
                        "pass --eval-limit N with N >= 1 (default 2000)")
    if cfg.model and not cfg.keras_model and not cfg.weights and not cfg.epochs:
        raise EdgeqError(f"--model {cfg.model} without --weights: an untrained model classifies "
                         "at chance", f"pass --weights FILE (e.g. from `edgeq train --model "
                         f"{cfg.model}`), or --epochs N to train it on --data first")
    check_output_folder(cfg.out, cfg.force, _inputs(cfg))
    return board


def _inputs(cfg: BuildConfig) -> list:
    return [cfg.keras_model, cfg.weights, cfg.data]


def _resolve_model(cfg: BuildConfig):
    """(keras model, card or None, name). The demo (no model given) builds `fmnist`."""
    from edgeq.learn.modelio import load_keras_model, load_weights
    from edgeq.learn.zoo import build_model

    if cfg.keras_model:
        loaded = load_keras_model(cfg.keras_model, unsafe=cfg.unsafe)
        card = load_card(cfg.model) if cfg.model else None
        if cfg.weights:
            load_weights(loaded.model, cfg.weights)
        return loaded.model, card, Path(cfg.keras_model).stem
    card = load_card(cfg.model or DEMO_MODEL)
    model = build_model(card)
    if cfg.weights:
        load_weights(model, cfg.weights, card.name)
    return model, card, card.name


def _input_spec(model, card: ModelCard | None):
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if card is not None:
        if tuple(card.input_shape) != shape:
            raise DataError(f"model input {shape} does not match the {card.name} card's {card.input_shape}")
        return shape, card.preprocess.color, card.preprocess.scale, card.labels
    color = "grayscale" if shape[-1] == 1 else "rgb"
    return shape, color, 255.0, None


def load_build_data(cfg: BuildConfig, card: ModelCard | None, shape, color, scale, labels):
    """(train, calibration, evaluation) datasets. Image folders with COCO-style names are split
    by their prefix (train2017_* to calibrate, val2017_* to evaluate); otherwise a seeded split."""
    if cfg.data is None:
        if card is None or card.name != DEMO_MODEL:
            name = card.name if card else "this model"
            raise DataError(f"{name} needs data: no --data given",
                            "pass --data with an image folder (one sub-folder per class), an .npz or IDX files")
        train, test = fashion_mnist(shape)
    else:
        ds = load_dataset(cfg.data, shape, color, scale, labels)
        if ds.names and any(n.startswith("train2017_") for n in ds.names) \
                and any(n.startswith("val2017_") for n in ds.names):
            train, test = ds.by_prefix("train2017_"), ds.by_prefix("val2017_")
        elif _is_fashion_folder(cfg.data):
            train = ds
            test = load_dataset(cfg.data, shape, color, scale, labels, split="test")
        else:
            train, test = ds.split(0.5, cfg.seed)
    if len(train) < MIN_CALIBRATION:
        raise DataError(f"{cfg.data}: only {len(train)} calibration samples",
                        f"give at least {MIN_CALIBRATION} (64 or more recommended)")
    order = np.random.default_rng(cfg.seed).permutation(len(train))[:cfg.calib_samples]
    calib = train.subset(np.sort(order))
    if card is not None and cfg.data is not None:
        domain = (0.0, 255.0 / card.preprocess.scale)  # the card's preprocessing: pixels / scale
        check_input_domain(train.x, *domain, str(cfg.data),
                           f"the {card.name} card expects inputs in [{domain[0]:g}, {domain[1]:g}]: "
                           f"save the arrays divided by {card.preprocess.scale:g}")
    return train, calib, test.stratified(cfg.eval_limit, cfg.seed, "--eval-limit")


def chance_level(y, classes: int) -> dict | None:
    """What guessing reaches on labels `y`: the most common class's share, and the accuracy a
    float model must beat to be more than that (two standard errors above it). None when the
    labels hold fewer than two classes (always guessing one is then perfect)."""
    y = np.asarray(y)
    known = y[y >= 0]
    if len(np.unique(known)) < 2:
        return None
    majority = float(np.bincount(known, minlength=classes).max() / max(1, len(known)))
    spread = 2 * np.sqrt(majority * (1 - majority) / max(1, len(known)))
    return {"majority": majority, "threshold": float(min(majority + spread, 1.0 - 1e-9))}


def _is_fashion_folder(path) -> bool:
    p = Path(path)
    return p.is_dir() and any(f.name.startswith("t10k-images") for f in p.iterdir())


def fit_check(board: Board, model_bytes: int, arena_bytes: int) -> dict:
    """Flash for the model, RAM for the TFLM arena; raise BoardFitError with the shortfall."""
    fit = {"flash_bytes": model_bytes, "flash_budget": board.flash_bytes,
           "arena_bytes": arena_bytes, "arena_budget": board.arena_bytes}
    problems = []
    if model_bytes > board.flash_bytes:
        problems.append(f"the model needs {model_bytes:,} bytes of flash, {model_bytes - board.flash_bytes:,} "
                        f"more than the {board.flash_bytes:,} of {board.name}")
    if arena_bytes > board.arena_bytes:
        problems.append(f"the TFLM arena needs {arena_bytes:,} bytes of RAM, {arena_bytes - board.arena_bytes:,} "
                        f"more than the {board.arena_bytes:,} usable on {board.name}")
    if problems:
        raise BoardFitError("; ".join(problems),
                            "use a board with more memory (`edgeq boards`), a smaller model, "
                            "4-bit weights (--bits 4) or a mixed-precision plan under a budget "
                            "(--bits mixed --budget-kb N)")
    return fit


def run_build(cfg: BuildConfig, console=None, progress_factory=None) -> BuildResult:
    from edgeq.deploy.carray import write_c_arrays
    from edgeq.deploy.check import check_model
    from edgeq.deploy.tflm import measure_arena
    from edgeq.learn.export import to_tflite_model
    from edgeq.learn.graph import capture
    from edgeq.learn.quant.sim import simulate
    from edgeq.learn.tf_baseline import tflite_int8_ptq
    from edgeq.learn.train import evaluate_float, train
    from edgeq.report import write_report
    from edgeq.tflite.write import write_model

    out = Path(cfg.out)
    board = preflight(cfg)
    st = Stages(console)
    with st.stage("load model"):
        model, card, name = _resolve_model(cfg)
        shape, color, scale, labels = _input_spec(model, card)
        graph = capture(model)  # names any layer the integer pipeline cannot take, before any work
    epochs = cfg.epochs
    if epochs is None and cfg.model is None and not cfg.keras_model and not cfg.weights:
        # the demo (no model given) trains briefly
        epochs = card.train.get("demo_epochs", 3)
    classes = output_classes(int(np.prod(model.outputs[0].shape[1:])))
    train_ds = calib = test = None
    if not (cfg.zero_shot and cfg.data is None and not epochs):  # zero-shot may need no data
        with st.stage("load data"):
            train_ds, calib, test = load_build_data(cfg, card, shape, color, scale, labels)
            for ds in (train_ds, test):
                check_labels(ds.y, classes, str(cfg.data or ds.source))
    trained = None
    if epochs:
        with st.stage(f"train {epochs} epoch(s)"):
            tc = card.train if card else {}
            progress = progress_factory() if progress_factory else None
            with progress or _null():
                trained = train(model, train_ds, test, epochs, tc.get("batch_size", 128),
                                tc.get("learning_rate", 1e-3), cfg.seed, progress)
    if epochs:  # training changed the weights: capture the trained model
        graph = capture(model)
    method = cfg.method
    if cfg.zero_shot:
        calib, test = _zero_shot_data(cfg, model, test, st, progress_factory)
        method = method or "genie"
        # the model's domain, not what the synthetic images happen to cover
        graph = graph.with_input_range(INPUT_DOMAIN)
    with st.stage("float accuracy"):
        float_acc, float_out = evaluate_float(model, test)
    labelled = bool(np.all(test.y >= 0))
    chance = chance_level(test.y, classes) if labelled else None
    if chance is not None and float_acc <= chance["threshold"] and not cfg.force:
        raise EdgeqError(f"the float model is at chance on the evaluation data: "
                         f"{100 * float_acc:.2f}% top-1 on {len(test)} samples of {classes} "
                         f"classes, where always guessing the most common class gives "
                         f"{100 * chance['majority']:.2f}%",
                         "load trained weights (--weights), train longer (--epochs), check that "
                         "the data's labels match the model's classes; --force builds anyway")
    from edgeq.learn.quantize import quantize

    wname = "mixed" if cfg.bits == "mixed" else f"W{cfg.bits}"
    qgt_section = None
    if method == "rex":
        with st.stage(f"REx {wname} × {cfg.expansion} orders (G = {cfg.sparsity:g}), export"):
            qgraph, qreport, tflite, qgt_section = _rex_stage(cfg, graph, calib)
    elif cfg.train:
        with st.stage(f"QGT: train toward {wname} for {cfg.train_epochs} epoch(s), export"):
            qgraph, qreport, tflite, qgt_section = _qgt_stage(cfg, graph, train_ds, calib, test,
                                                              progress_factory)
    else:
        with st.stage(f"quantize {wname}A8 ({method or 'default method'}, edgeq writer)"):
            budget = cfg.budget_kb if cfg.budget_kb is not None else board.flash_kib
            qgraph, qreport = quantize(graph, calib.x, method, cfg.bits,
                                       budget if cfg.bits == "mixed" else None, iters=cfg.iters,
                                       seed=cfg.seed, progress=progress_factory is not None)
            tflite = write_model(to_tflite_model(qgraph))
    with st.stage("measure TFLM arena"):
        arena = measure_arena(tflite)
    fit = fit_check(board, len(tflite), arena)
    where = {"classes": test.class_names or None, "data": str(cfg.data or test.source),
             "chosen": test.chosen}
    with st.stage("on-device checks (LiteRT, TFLM, edgeq reference)"), \
            _bar(progress_factory, "LiteRT + TFLM + reference", 3 * len(test)) as advance:
        checked = check_model(tflite, test.x, test.y if labelled else None,
                              float_model_predict=float_out, advance=advance, **where)
    with st.stage("simulated quantized model (Keras side)"):
        sim_labels = class_labels(simulate(qgraph, test.x))
        tflm_labels = checked.runtime("tflm").labels
    accuracy_rows = checked.accuracy_rows(include_float=True)
    for row in accuracy_rows:  # what each model weighs: the accuracy-versus-size plot
        row["bytes"] = 4 * int(model.count_params()) if row["name"] == "float" else len(tflite)
    sim_scores = classification(test.y, sim_labels, classes) if labelled else {}
    accuracy_rows.insert(1, {"name": f"edgeq simulated {wname}A8 (Keras side)",
                             "accuracy": sim_scores.get("accuracy"),
                             "agreement": float((sim_labels == tflm_labels).mean()),
                             "agreement_with": "TFLM", "samples": len(test), "bytes": len(tflite),
                             "per_class_accuracy": sim_scores.get("per_class_accuracy"),
                             "confusion": sim_scores.get("confusion")})
    if cfg.baseline:
        with st.stage("baseline: TensorFlow converter INT8 PTQ"):
            tf_ptq = tflite_int8_ptq(model, calib.x)
            base = check_model(tf_ptq, test.x, test.y if labelled else None,
                               float_model_predict=float_out, **where)
        lite = base.runtime("litert")
        accuracy_rows.append({"name": f"baseline: TensorFlow INT8 PTQ via LiteRT ({len(tf_ptq):,} bytes)",
                              "accuracy": lite.accuracy, "agreement": lite.float_agreement,
                              "agreement_with": "float", "samples": len(test),
                              "bytes": len(tf_ptq), "per_class_accuracy": lite.per_class_accuracy,
                              "confusion": lite.confusion})

    report = {
        "edgeq_version": __version__,
        "model": {"name": name, "card": card.to_dict() if card else None, "input_shape": list(shape),
                  "params": int(model.count_params()), "tflite_bytes": len(tflite),
                  "quantization": f"{wname}A8 full-integer, {qreport.method}, written by edgeq",
                  "bits": qreport.plan,
                  "trained_epochs": epochs or 0,
                  "train_seconds": round(trained.seconds, 1) if trained else 0.0},
        "board": board.to_dict(),
        "fit": fit,
        "data": {"source": cfg.data or ("none" if cfg.zero_shot else "Fashion-MNIST (IDX)"),
                 "calibration": "Genie-D synthetic images (zero-shot)" if cfg.zero_shot
                 else "real", "calibration_samples": len(calib),
                 "evaluation": "real, labelled" if labelled
                 else "the synthetic images (no labels: agreement with float only)",
                 "evaluation_samples": len(test),
                 "evaluation_chosen": test.chosen or "all samples",
                 "classes": test.class_names or [str(c) for c in range(classes)],
                 "chance": chance,
                 "skipped_unreadable": (train_ds or test).skipped},
        "accuracy": accuracy_rows,
        "check": checked.to_dict(),
        "quantize": qreport.to_dict(),
        "stages": st.records,
        "config": asdict(cfg),
    }
    if qgt_section is not None:
        report["rex" if method == "rex" else "qgt"] = qgt_section
    stem = "model"
    with staged_folder(out, cfg.force, _inputs(cfg)) as tmp:
        (tmp / f"{stem}.tflite").write_bytes(tflite)
        write_c_arrays(tflite, tmp, name="model_data", source=f"{stem}.tflite")
        if cfg.zero_shot:
            from edgeq.learn.synth import preview_png, save_npz

            save_npz(calib.x, tmp / "synthetic.npz")
            preview_png(calib.x, tmp / "synthetic.png")
            report["zero_shot"] = {"calibration": "Genie-D images from the model's BatchNorm "
                                                  "statistics", "samples": len(calib),
                                   "images": "synthetic.npz", "preview": "synthetic.png",
                                   "method": qreport.method}
        if trained is not None:  # keep the trained float model so it can be rebuilt without training
            with warnings.catch_warnings():  # tf_keras calls .h5 "legacy"; it is what tfmot reads
                warnings.simplefilter("ignore")
                model.save(tmp / "model_float.h5")
        write_report(report, tmp)
    return BuildResult(out, report, out / f"{stem}.tflite", st.records)


def _rex_stage(cfg: BuildConfig, graph, calib):
    """--method rex: residual expansion (weights data-free; activation ranges from the
    calibration images, synthetic with --zero-shot). Returns (qgraph, QuantizeReport, tflite
    bytes, report section)."""
    from edgeq.learn.quant.rex import export_rex, rex_quantize
    from edgeq.learn.quantize import QuantizeReport

    t0 = time.perf_counter()
    qgraph, info = rex_quantize(graph, int(cfg.bits), cfg.expansion, cfg.sparsity,
                                calib_x=calib.x)
    tflite = export_rex(qgraph)
    report = QuantizeReport("rex", cfg.bits, dict(qgraph.plan), len(calib),
                            seconds=round(time.perf_counter() - t0, 1))
    return qgraph, report, tflite, info.to_dict()


def _qgt_stage(cfg: BuildConfig, graph, train_ds, calib, test, progress_factory):
    """--train: QGT toward cfg.bits (mixed: 2 bits with the bottlenecks lifted), exported by
    edgeq's writer. Returns (qgraph, QuantizeReport, tflite bytes, report section)."""
    from edgeq.learn.qgt.bottlenecks import find_bottlenecks, mixed_plan
    from edgeq.learn.qgt.training import finish, recipe, train_qgt
    from edgeq.learn.quantize import QuantizeReport

    t0 = time.perf_counter()
    bits = mixed_plan(graph, calib) if cfg.bits == "mixed" else int(cfg.bits)
    settings = recipe(bits)
    with (progress_factory() if progress_factory else _null()) as progress:
        result = train_qgt(graph, train_ds, test, bits, cfg.train_epochs, seed=cfg.seed,
                           batch_size=min(128, len(train_ds)), progress=progress, **settings)
    tflite, qgraph = finish(result, calib.x)
    ranking = find_bottlenecks(result, test, bits=result.plan)
    report = QuantizeReport("qgt", cfg.bits, dict(result.plan), len(calib),
                            seconds=round(time.perf_counter() - t0, 1))
    section = {"epochs": cfg.train_epochs, "train_samples": len(train_ds),
               "learning_rate": settings["learning_rate"],
               "straight_through": settings["ste_start"] is not None,
               "grid_distance_lsb": round(result.grid_distance(), 4),
               "history": [{k: v for k, v in row.items() if k != "layer_distance_lsb"}
                           for row in result.history],
               "bottlenecks": [{k: r[k] for k in ("rank", "name", "bits", "loss_increase",
                                                  "sqnr_db", "bottleneck", "suggested_bits")}
                               for r in ranking]}
    return qgraph, report, tflite, section


def _zero_shot_data(cfg: BuildConfig, model, test, st: Stages, progress_factory):
    """(calibration, evaluation) for --zero-shot: cfg.calib_samples Genie-D images from the
    model's BatchNorm statistics; without real data they are also what the checks run on
    (labels unknown, -1: agreement with the float model only)."""
    from edgeq.data import Dataset
    from edgeq.learn.synth import synthesize

    n = cfg.calib_samples
    with st.stage(f"synthesize {n} calibration images (Genie-D, zero-shot)"), \
            _bar(progress_factory, "Genie-D synthesis", 1) as advance:
        def tick(done, total):
            if advance is not None and done == total:
                advance()

        iterations = {"iterations": cfg.synth_iterations} if cfg.synth_iterations else {}
        x = synthesize(model, n=n, batch_size=min(n, 128), seed=cfg.seed, progress=tick,
                       **iterations)
    calib = Dataset(x, np.full(len(x), -1, np.int64), [], "Genie-D (zero-shot)")
    if test is None:
        test = calib.take(cfg.eval_limit)
    return calib, test


@contextmanager
def _null():
    yield None


@contextmanager
def _bar(progress_factory, description: str, total: int):
    """A rich progress bar when the caller gave a factory; yields the advance callable."""
    if progress_factory is None:
        yield None
        return
    with progress_factory() as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)
