"""report.json and report.html from a build-like dict."""

from __future__ import annotations

import base64
import html.parser
import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgeq.boards import load_board
from edgeq.errors import OutputError
from edgeq.report import generic_section, render_html, to_jsonable, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def build_like_report(arena: int = 103_680) -> dict:
    board = load_board("stm32h743")
    return {
        "edgeq_version": "0.1.0",
        "model": {"name": "person_detect", "input_shape": (96, 96, 3), "params": np.int64(221_794),
                  "tflite_bytes": 333_288, "quantization": "INT8 full-integer"},
        "board": board.to_dict(),
        "fit": {"flash_bytes": 333_288, "flash_budget": board.flash_bytes,
                "arena_bytes": np.int64(arena), "arena_budget": board.arena_bytes},
        "accuracy": [
            {"name": "float (Keras)", "accuracy": np.float32(0.859375), "samples": 128,
             "bytes": 887_176, "per_class_accuracy": [0.875, 0.84375],
             "confusion": [[56, 8], [10, 54]]},
            {"name": "TFLite INT8 via LiteRT", "accuracy": 0.8671875, "agreement": 0.984375,
             "agreement_with": "float", "samples": 128, "bytes": 333_288,
             "per_class_accuracy": [0.890625, 0.84375], "confusion": [[57, 7], [10, 54]]},
            {"name": "TFLM (tflite-micro 0.dev)", "accuracy": 0.8671875, "agreement": 1.0,
             "agreement_with": "LiteRT", "samples": 128, "bytes": 333_288,
             "per_class_accuracy": [0.890625, 0.84375], "confusion": [[57, 7], [10, 54]]},
            {"name": "baseline: TensorFlow INT8 PTQ", "accuracy": 0.8515625, "samples": 128,
             "bytes": 340_000, "agreement": 0.96875, "agreement_with": "float"},
        ],
        "quantize": {"method": "brecq", "bits": "mixed", "layers": [
            {"name": "conv_1", "kind": "conv2d", "params": 864, "bits": 8, "stored_bits": 8,
             "sqnr_minmax_db": 38.25, "sqnr_db": 38.25},
            {"name": "pw_5", "kind": "conv2d", "params": 32_768, "bits": 2, "stored_bits": 4,
             "sqnr_minmax_db": 3.5, "sqnr_db": 9.75},
            {"name": "dense", "kind": "dense", "params": 513, "bits": 4, "stored_bits": 4,
             "sqnr_minmax_db": 20.0, "sqnr_db": 24.5}],
            "mixed": {"budget_bytes": 81 * 1024, "sensitivity": {
                "conv_1": {"8": 1e-4}, "pw_5": {"2": 0.25, "4": 0.0125, "8": 0.001},
                "dense": {"4": 0.5, "8": 0.02}}}},
        "check": {"samples": 128, "tflm_litert_agreement": 1.0, "max_abs_diff": 0.0,
                  "diff_unit": "LSB", "fidelity_ok": True, "arena_bytes": arena,
                  "runtimes": [{"key": "tflm", "name": "TFLM", "available": False,
                                "reason": "pip install tflite-micro"}]},
        "stages": [{"name": "load model", "seconds": 1.25}, {"name": "quantize", "seconds": 9.5}],
        "data": {"source": Path("/data/photos"), "evaluation_samples": 128,
                 "evaluation_chosen": "128 of 256, stratified by class, seed 0",
                 "classes": ["no_person", "person"], "chance": {"majority": 0.5, "threshold": 0.59},
                 "skipped_unreadable": ["person/broken.jpg"]},
        "qemu": [{"test": "person", "cycles": np.int32(123), "ok": True}],
        "notes": "free <text> & more",
        "config": {"seed": 0, "bad": float("nan"), "kinds": {"b", "a"}},
    }


class _Collector(html.parser.HTMLParser):
    """Headings, table cells and image sources of an HTML page (also proves it parses)."""

    def __init__(self):
        super().__init__()
        self.headings, self.cells, self.images, self._tag = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        if self._tag == "h2" and data.strip():
            self.headings.append(data.strip())
        elif self._tag in ("td", "th", "span") and data.strip():
            self.cells.append(data.strip())

    def handle_endtag(self, tag):
        self._tag = None


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "nested" / "out"
    json_path, html_path = write_report(build_like_report(), out)
    return json_path, html_path


def test_json_holds_the_dict_with_plain_types(written):
    data = json.loads(written[0].read_text())
    assert data["model"]["params"] == 221_794 and data["model"]["input_shape"] == [96, 96, 3]
    assert data["fit"]["arena_bytes"] == 103_680
    assert data["accuracy"][0]["accuracy"] == pytest.approx(0.859375)
    assert data["data"]["source"] == "/data/photos"
    assert data["config"] == {"seed": 0, "bad": None, "kinds": ["a", "b"]}
    assert data["qemu"][0]["cycles"] == 123


def test_html_has_the_tables(written):
    page = _Collector()
    page.feed(written[1].read_text())
    assert page.headings[:6] == ["Board fit", "Accuracy", "Confusion counts", "Label agreement",
                                 "LiteRT and TFLM on the same inputs", "Per layer"]
    # flash 333,288 B of 2 MiB and arena 103,680 B of 512 KiB, both fit
    assert "333,288 B (325.5 KiB)" in page.cells and "103,680 B (101.2 KiB)" in page.cells
    assert "15.89%" in page.cells and "19.78%" in page.cells
    assert page.cells.count("fits") == 2
    assert "86.72%" in page.cells and "98.44% vs float" in page.cells
    assert "100.00% vs LiteRT" in page.cells
    assert "no_person 89.06%, person 84.38%" in page.cells  # per class beside top-1
    assert "unavailable: pip install tflite-micro" in page.cells
    assert "yes" in page.cells  # within the LiteRT/TFLM contract
    # unknown sections rendered generically
    assert {"data", "qemu", "notes", "config"} <= set(page.headings)
    assert "cycles" in page.cells and "/data/photos" in page.cells


def test_html_embeds_real_png_plots(written):
    page = _Collector()
    page.feed(written[1].read_text())
    titles = re.findall(r'<img alt="([^"]+)"', written[1].read_text())
    assert titles == ["Flash and RAM against the board", "Accuracy versus size",
                      "Confusion counts", "Per-layer bits, stored bytes and SQNR", "Stages"]
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png.startswith(PNG_MAGIC) and len(png) > 2000


def test_html_escapes_user_text(written):
    text = written[1].read_text()
    assert "free &lt;text&gt; &amp; more" in text and "<text>" not in text


def test_over_budget_is_marked():
    page = render_html(build_like_report(arena=600 * 1024))
    assert re.search(r'class="bad">does not fit', page)
    assert page.count('class="ok">fits') == 1


def test_minimal_dict_renders():
    page = render_html({"model": {"name": "m"}})
    assert "edgeq report: m" in page and "<img" not in page


def test_generic_section_forms():
    assert generic_section({"a": 1.23456, "b": None})["rows"] == [("a", "1.235"), ("b", "–")]
    table = generic_section([{"x": 1}, {"x": 2, "y": "z"}])
    assert table["columns"] == ["x", "y"] and table["rows"] == [["1", "–"], ["2", "z"]]
    assert generic_section("plain") == {"kind": "text", "text": "plain"}


def test_to_jsonable_numpy_arrays():
    assert to_jsonable({"a": np.arange(3, dtype=np.int8), 1: np.float64(np.inf)}) == \
        {"a": [0, 1, 2], "1": None}


def test_unwritable_output_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write the report"):
        write_report({"model": {"name": "m"}}, blocker / "sub")


def _table_after(page_html: str, heading: str) -> list[list[str]]:
    """The rows (cell texts) of the first table after <h2>heading</h2>."""
    part = page_html.split(f"<h2>{heading}</h2>", 1)[1]
    table = part[:part.index("</table>")]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]


def test_per_layer_table_bits_stored_bytes_sqnr_and_sensitivity(written):
    rows = _table_after(written[1].read_text(), "Per layer")
    header, body = rows[0], {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert header[:9] == ["layer", "kind", "parameters", "bits", "stored as", "weights stored",
                          "SQNR min-max", "SQNR after", "change"]
    pw = body["pw_5"]
    # 2-bit weights stored in INT4 tensors: 32,768 parameters in 16,384 bytes
    assert pw["bits"] == "2" and pw["stored as"] == "INT4" and pw["weights stored"] == "16,384 B"
    assert pw["SQNR min-max"] == "3.5 dB" and pw["SQNR after"] == "9.8 dB" and pw["change"] == "+6.2 dB"
    assert body["dense"]["weights stored"] == "257 B"  # 513 INT4 values round up to whole bytes
    assert pw["sensitivity at its bits"] == "0.25"
    assert body["dense"]["sensitivity at its bits"] == "0.5"


def test_confusion_and_agreement_tables(written):
    text = written[1].read_text()
    confusion = _table_after(text, "Confusion counts")
    assert confusion == [["true \\ predicted", "no_person", "person", "accuracy"],
                         ["no_person", "57", "7", "89.06%"], ["person", "10", "54", "84.38%"]]
    assert "TFLM (tflite-micro 0.dev): one row per true label" in text  # TFLM's, not float's
    agreement = _table_after(text, "Label agreement")
    assert ["TFLite INT8 via LiteRT", "float", "98.44%"] in agreement
    assert ["TFLM (tflite-micro 0.dev)", "LiteRT", "100.00%"] in agreement


def test_what_was_measured_and_no_json_in_cells(written):
    text = written[1].read_text()
    assert ("Measured on 128 samples of /data/photos (128 of 256, stratified by class, seed 0"
            in text)
    assert "1 unreadable file(s) skipped" in text
    page = _Collector()
    page.feed(text)
    assert not [c for c in page.cells if c.startswith(("{", "["))]  # tables, not JSON blobs
    memory = text.split("<th>memory</th>", 1)[1]
    assert memory.lstrip().startswith("<td>\n<table>")  # the memory map as a table of regions
    assert "<th>origin</th>" in memory[:400]
    # fractions in percent, the report's one number style: the chance level, not 0.5 / 0.59
    assert re.search(r"<th>majority</th><td>50.00%</td>", text)
    assert re.search(r"<th>threshold</th><td>59.00%</td>", text)


def test_accuracy_versus_size_plots_every_measured_model():
    from edgeq.report import _pyplot, plot_accuracy_size

    plt = _pyplot()
    rows = build_like_report()["accuracy"]
    assert plot_accuracy_size(rows, plt) is not None
    assert plot_accuracy_size([{"name": "x", "accuracy": 0.5}], plt) is None  # no size, no point
