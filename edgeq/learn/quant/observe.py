"""Activation ranges: min and max of every tensor of the float graph over calibration data.

This is what the TFLite converter's calibration does (plain min-max, no averaging), so that
edgeq's min-max quantization is directly comparable with TFLite's own PTQ.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from edgeq.errors import DataError
from edgeq.learn.graph import Graph, check_input, run_tf


def batches_of(x: np.ndarray, batch_size: int = 64) -> list[np.ndarray]:
    """Split an array of samples into batches."""
    return [x[i:i + batch_size] for i in range(0, len(x), batch_size)]


def observe_ranges(graph: Graph, batches: Iterable[np.ndarray] | np.ndarray,
                   batch_size: int = 64) -> dict[str, tuple[float, float]]:
    """(lo, hi) of every node's output tensor (keyed by node name), running the float graph
    batch by batch. `batches` is an iterable of arrays, or one array of samples."""
    if isinstance(batches, np.ndarray):
        batches = batches_of(batches, batch_size)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    seen = 0
    for batch in batches:
        batch = check_input(graph, batch)
        if not len(batch):
            continue
        seen += len(batch)
        for name, value in run_tf(graph, batch).items():
            v = value.numpy()
            lo[name] = min(lo.get(name, np.inf), float(v.min()))
            hi[name] = max(hi.get(name, -np.inf), float(v.max()))
    if not seen:
        raise DataError(f"no calibration samples for model {graph.name!r}",
                        "pass at least one batch of representative inputs")
    return pin_input_ranges(graph, {name: (lo[name], hi[name]) for name in lo})


def pin_input_ranges(graph: Graph, ranges: dict[str, tuple[float, float]]
                     ) -> dict[str, tuple[float, float]]:
    """`ranges` with the graph inputs set to the declared input domain, when there is one."""
    if graph.input_range is not None:
        for name in graph.inputs:
            ranges[name] = (float(graph.input_range[0]), float(graph.input_range[1]))
    return ranges
