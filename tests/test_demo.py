"""The demo: data, training, the evaluation loop, the table, the plot, bad
output folders, and the whole demo end to end in ``--quick`` mode."""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from pathlib import Path
from typing import Optional

import pytest
import torch
from torch import nn

from fxanalog import demo
from fxanalog.cli import main


# --------------------------------------------------------------------------
# Data and training


def test_digits_split():
    d = demo.load_digits_data(seed=0)
    # sklearn's digits: 1797 images of 8x8 with values 0..16
    assert d.x_train.shape == (1347, 1, 8, 8) and d.x_test.shape == (450, 1, 8, 8)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert float(d.x_train.min()) == 0.0 and float(d.x_train.max()) == 1.0
    # stratified: each class is a quarter of its images in the test set (to one image)
    from sklearn.datasets import load_digits

    per_class = torch.bincount(torch.as_tensor(load_digits().target), minlength=10).double()
    counts = torch.bincount(d.y_test, minlength=10).double()
    assert torch.all((counts - 0.25 * per_class).abs() <= 1.0), (counts, per_class)
    # the same seed gives the same split, another seed another one
    again = demo.load_digits_data(seed=0)
    assert torch.equal(again.y_test, d.y_test) and torch.equal(again.x_test, d.x_test)
    other = demo.load_digits_data(seed=1)
    assert not torch.equal(other.x_test, d.x_test)
    # train and test do not share an image index: the union is the whole set
    assert len(d.y_train) + len(d.y_test) == 1797


def test_accuracy_against_a_constant_classifier():
    class Always(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, x):
            out = torch.zeros(x.shape[0], 10)
            out[:, self.k] = 1.0
            return out

    y = torch.tensor([3, 3, 1, 0, 3, 9, 3, 2])
    x = torch.zeros(8, 1, 8, 8)
    assert demo.accuracy(Always(3), x, y) == 4 / 8
    assert demo.accuracy(Always(9), x, y) == 1 / 8
    assert demo.accuracy(Always(3), x, y, batch_size=3) == 4 / 8  # batches add up


def test_digital_training_learns_the_digits():
    torch.manual_seed(0)
    d = demo.load_digits_data(seed=0)
    model = demo.DigitsCNN()
    chance = demo.accuracy(model, d.x_test, d.y_test)
    loss = demo.train(model, d.x_train, d.y_train, epochs=5, lr=1e-2, seed=0)
    acc = demo.accuracy(model, d.x_test, d.y_test)
    assert chance < 0.3
    assert acc > 0.9, acc
    assert loss < 0.5
    assert not model.training


def _clamped_by_hand(w: torch.Tensor, sigma: float) -> torch.Tensor:
    """``w`` clamped to +-sigma population standard deviations of all of ``w``
    (one tile), the standard deviation summed in float64."""
    flat = [float(v) for v in w.reshape(-1).tolist()]
    mean = sum(flat) / len(flat)
    bound = sigma * math.sqrt(sum((v - mean) ** 2 for v in flat) / len(flat))
    return w.clamp(-bound, bound)


def _layer_weights(model: nn.Module) -> dict:
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def test_hardware_aware_finetune_clips_the_start_weights_by_hand():
    # no epoch: only the clip of the start weights, each layer one tile (all fit in 512 inputs)
    from fxanalog.presets import get_preset

    torch.manual_seed(0)
    d = demo.load_digits_data(seed=0)
    model = demo.DigitsCNN()
    before = _layer_weights(model)
    demo.hardware_aware_finetune(model, d.x_train[:8], d.y_train[:8], get_preset("pcm-hwa"), epochs=0,
                                 example_inputs=(d.x_test[:1],))
    after = _layer_weights(model)
    assert after.keys() == before.keys() and len(after) == 4
    for name, w in before.items():
        assert torch.allclose(after[name], _clamped_by_hand(w, 2.0), atol=1e-6), name
    assert any(not torch.equal(after[n], before[n]) for n in before)  # something was clipped


def test_hardware_aware_finetune_trains_clipped_and_removes_its_hook():
    from fxanalog.config import WeightRemapType
    from fxanalog.presets import get_preset

    torch.manual_seed(1)
    d = demo.load_digits_data(seed=0)
    model = demo.DigitsCNN()
    demo.train(model, d.x_train[:512], d.y_train[:512], epochs=2, lr=1e-2, seed=0)
    digital = _layer_weights(model)
    ratios = {n: (w.abs().max() / w.std(correction=0)).item() for n, w in digital.items()}
    cfg = get_preset("pcm-hwa")
    loss = demo.hardware_aware_finetune(model, d.x_train[:256], d.y_train[:256], cfg, epochs=1, seed=1,
                                        example_inputs=(d.x_test[:1],))
    assert math.isfinite(loss)
    tuned = _layer_weights(model)
    clipped = set()
    for name, w in tuned.items():
        assert not torch.equal(w, digital[name]), name  # trained
        # after the last step's clip, max|w| / std(w) is at most 2 (nothing clipped) or max|w|
        # is the bound, 2 std of the weights before the clip (a little more than 2 std of the
        # clipped ones), taken by several weights (ties only the clip makes)
        top = w.abs().max()
        ratio = (top / w.std(correction=0)).item()
        if ratio > 2.0 + 1e-5:
            assert int((w.abs() == top).sum()) >= 2 and ratio < 2.4, (name, ratio)
            clipped.add(name)
    # the layers whose digital weights have long tails (max|w| over 2.4 std) were clipped
    assert {n for n, r in ratios.items() if r > 2.4} <= clipped and clipped, (ratios, clipped)
    # the clipping hook is gone: a later step of any optimizer leaves the weights as they are
    params = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    opt = torch.optim.SGD(params, lr=0.0)
    opt.step()
    assert all(torch.equal(w, tuned[n]) for n, w in _layer_weights(model).items())
    # remapping would leave the model without its effective weights: refused, naming the field
    cfg.remap.type = WeightRemapType.LAYERWISE_SYMMETRIC
    with pytest.raises(ValueError, match=r"rpu_config\.remap\.type = LAYERWISE_SYMMETRIC"):
        demo.hardware_aware_finetune(model, d.x_train[:8], d.y_train[:8], cfg, epochs=1)
    assert all(torch.equal(w, tuned[n]) for n, w in _layer_weights(model).items())


# --------------------------------------------------------------------------
# Evaluation loop with a stand-in for programming and drift


class _Decaying(nn.Module):
    """Classifies correctly the first ``n(t)`` samples, ``n`` shrinking with
    time from a per-draw programmed quality; the rest go to a wrong class."""

    def __init__(self, y):
        super().__init__()
        self.y = y
        self.quality = None
        self.t = None

    def forward(self, x):
        n = len(self.y)
        good = int(n * self.quality * (1.0 - 0.1 * math.log10(self.t)))
        pred = (self.y + 1) % 10
        pred[:good] = self.y[:good]
        return nn.functional.one_hot(pred, 10).float()


def test_accuracy_over_time_programs_once_per_draw_and_drifts_from_it():
    y = torch.arange(100) % 10
    x = torch.zeros(100, 1, 8, 8)
    model = _Decaying(y)
    calls = []

    def program(m):
        # a seeded draw: the quality depends on the generator state
        m.quality = 0.5 + 0.5 * float(torch.rand(()))
        calls.append(("program", m.quality))

    def drift(m, t):
        m.t = t
        calls.append(("drift", t))

    times = (1.0, 10.0, 100.0)
    acc = demo.accuracy_over_time(model, x, y, times, draws=3, seed=7, program=program, drift=drift)
    assert acc.shape == (3, 3)
    assert [c[0] for c in calls] == ["program", "drift", "drift", "drift"] * 3
    qualities = [c[1] for c in calls if c[0] == "program"]
    # draw d is seeded with seed + d
    for d, q in enumerate(qualities):
        torch.manual_seed(7 + d)
        assert q == 0.5 + 0.5 * float(torch.rand(()))
        for j, t in enumerate(times):
            expected = int(100 * q * (1.0 - 0.1 * math.log10(t))) / 100
            assert acc[d, j].item() == pytest.approx(expected)


# --------------------------------------------------------------------------
# Report: the table and the plot, read back as numbers

CELL = re.compile(r"(\d+(?:\.\d+)?)\s*±\s*(\d+(?:\.\d+)?)")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_table(text: str, names) -> tuple[list, dict, Optional[float]]:
    """Read a ``format_table`` text back: the column labels (each ending
    where its column's cells end: right-aligned), per row ``name`` the
    (mean, std) pairs in percent, and the digital accuracy (percent) or None."""
    lines = text.splitlines()
    rows, ends = {}, None
    for name in names:
        (line,) = [ln for ln in lines if ln.startswith(name + " ")]
        cells = list(CELL.finditer(line, len(name)))
        rows[name] = [(float(c.group(1)), float(c.group(2))) for c in cells]
        cell_ends = [c.end() for c in cells]
        assert ends is None or cell_ends == ends, "columns do not line up"
        ends = cell_ends
    header = lines[0]  # the title, then the labels, separated by two spaces or more
    _title, *labels = re.split(r"\s{2,}", header.strip())
    assert len(labels) == len(ends), (labels, ends)
    assert all(header[:e].endswith(lb) for lb, e in zip(labels, ends)), "labels not above their columns"
    # what is left (not the header, a rule or a row): the digital reference line, if any
    rest = [ln for ln in lines[1:] if ln.strip("-") and not any(ln.startswith(n + " ") for n in names)]
    assert len(rest) <= 1, rest
    return labels, rows, float(NUMBER.findall(rest[0])[-1]) if rest else None


def assert_table_shows(text: str, results: dict, labels, digital=None) -> None:
    """The table ``text`` shows ``results`` (fractions): mean and sample std
    in percent to one decimal, per label; ``digital`` likewise."""
    got_labels, rows, got_digital = parse_table(text, list(results))
    assert got_labels == list(labels)
    half_digit = 0.05 + 1e-9
    for name, acc in results.items():
        acc = torch.as_tensor(acc, dtype=torch.float64)
        mean = 100 * acc.mean(0)
        std = 100 * acc.std(0) if acc.shape[0] > 1 else torch.zeros_like(mean)  # one draw: no spread
        assert len(rows[name]) == len(labels), name
        for (m, s), want_m, want_s in zip(rows[name], mean.tolist(), std.tolist()):
            assert abs(m - want_m) <= half_digit and abs(s - want_s) <= half_digit, (name, m, s, want_m, want_s)
    if digital is None:
        assert got_digital is None
    else:
        assert abs(got_digital - 100 * digital) <= half_digit


def test_format_table_mean_and_spread():
    results = {
        "row a": torch.tensor([[0.9, 0.8], [0.7, 0.6]], dtype=torch.float64),
        "row b": torch.tensor([[0.5, 1.0]], dtype=torch.float64),
        "row c": torch.tensor([[0.123, 0.9999], [0.5, 0.0], [0.25, 0.75]], dtype=torch.float64),
    }
    labels = ["1 s", "1 h"]
    text = demo.format_table(results, labels, digital=0.987)
    assert_table_shows(text, results, labels, digital=0.987)
    assert_table_shows(demo.format_table(results, labels), results, labels, digital=None)
    # every line of the table is as wide as the header (rules included)
    widths = {len(ln) for ln in text.splitlines() if not ln.startswith("digital")}
    assert len(widths) == 1, widths


@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib figure saved (with its size in inches and the dpi
    it was saved at), recorded by a wrapper of Figure.savefig."""
    import matplotlib
    from matplotlib.figure import Figure

    saved = []
    savefig = Figure.savefig

    def recording(fig, fname, *args, **kwargs):
        dpi = kwargs.get("dpi", matplotlib.rcParams["savefig.dpi"])
        saved.append({"fig": fig, "path": str(fname), "inches": tuple(fig.get_size_inches()),
                      "dpi": fig.dpi if dpi in (None, "figure") else float(dpi), "bbox": kwargs.get("bbox_inches")})
        return savefig(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return saved


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG file, after checking that it is one: the
    signature, every chunk's CRC, IHDR first and IEND last; and it decodes."""
    import matplotlib.image

    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, kinds = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds, kinds
    img = matplotlib.image.imread(str(path))
    assert img.shape[:2] == (height, width)
    return width, height


def assert_png_of_figure(path, saved) -> dict:
    """``path`` was written by one savefig of a whole figure, and is a valid
    PNG of the figure's size in inches times the dpi it was saved at."""
    (rec,) = [s for s in saved if Path(s["path"]).resolve() == Path(path).resolve()]
    assert rec["bbox"] is None  # the whole figure: its pixels follow from size and dpi
    width, height = png_size(path)
    want_w, want_h = (inches * rec["dpi"] for inches in rec["inches"])
    assert abs(width - want_w) < 1 and abs(height - want_h) < 1, ((width, height), (want_w, want_h))
    return rec


def assert_plot_shows(fig, results: dict, times, labels, digital=None) -> None:
    """The plot's lines are the results' means in percent against the times
    (log axis, ticks labelled), the digital accuracy a horizontal line."""
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == list(times)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(labels)
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for name, acc in results.items():
        acc = torch.as_tensor(acc, dtype=torch.float64)
        line = lines.pop(name)
        assert list(line.get_xdata()) == list(times)
        assert torch.allclose(torch.as_tensor(line.get_ydata(), dtype=torch.float64), 100 * acc.mean(0))
    if digital is not None:
        (flat,) = lines.values()  # the one line left
        assert set(flat.get_ydata()) == {100 * digital}


def test_plot_is_a_png_of_the_results(tmp_path, saved_figures):
    results = {
        "a": torch.tensor([[0.9, 0.8, 0.7], [0.8, 0.7, 0.6]], dtype=torch.float64),
        "b": torch.tensor([[0.5, 0.4, 0.2]], dtype=torch.float64),
    }
    times, labels = [1.0, 3600.0, 86400.0], ["1 s", "1 h", "1 day"]
    path = tmp_path / "p.png"
    demo.plot_accuracy(results, times, labels, str(path), digital=0.95)
    rec = assert_png_of_figure(path, saved_figures)
    assert_plot_shows(rec["fig"], results, times, labels, digital=0.95)


UNITS = {"s": 1.0, "h": 3600.0, "day": 86400.0, "month": 30 * 86400.0, "year": 365 * 86400.0}


def test_times_are_the_promised_ones():
    # every label says its time; increasing, from 1 second to 1 year (README)
    for label, seconds in demo.TIMES:
        count, unit = label.split()
        assert seconds == float(count) * UNITS[unit], label
    seconds = [t for _, t in demo.TIMES]
    assert all(a < b for a, b in zip(seconds, seconds[1:]))
    assert seconds[0] == UNITS["s"] and seconds[-1] == UNITS["year"]


# --------------------------------------------------------------------------
# Bad input


def test_output_folder_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = str(blocker / "out")
    with pytest.raises(demo.DemoError) as info:
        demo.check_output_dir(target)
    assert target in str(info.value)
    assert main(["demo", "--quick", "--output", target]) == 2
    err = capsys.readouterr().err.strip()
    # one line, no traceback: the CLI's error prefix and the DemoError's message
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("fxanalog: error:") and err.endswith(str(info.value))
    assert not (blocker / "out").exists()


def test_output_folder_is_created(tmp_path):
    target = tmp_path / "x" / "y"
    assert demo.check_output_dir(str(target)) == str(target)
    assert target.is_dir() and list(target.iterdir()) == []


# --------------------------------------------------------------------------
# The whole demo, --quick


def test_quick_demo_end_to_end(tmp_path, capsys, monkeypatch, saved_figures):
    # Spies on the demo's steps: the trained models, every evaluation and
    # the DemoResult, to recompute what the demo reports.
    trained, evaluations, returned = [], [], []
    train, over_time, run_demo = demo.train, demo.accuracy_over_time, demo.run_demo

    def spy_train(model, *args, **kwargs):
        loss = train(model, *args, **kwargs)
        trained.append((kwargs.get("desc"), model))
        return loss

    def spy_over_time(model, x, y, times, draws, **kwargs):
        out = over_time(model, x, y, times, draws, **kwargs)
        evaluations.append({"model": model, "times": times, "draws": draws, "seed": kwargs.get("seed", 0),
                            "out": out.clone()})
        return out

    def spy_run_demo(*args, **kwargs):
        returned.append(run_demo(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(demo, "train", spy_train)
    monkeypatch.setattr(demo, "accuracy_over_time", spy_over_time)
    monkeypatch.setattr(demo, "run_demo", spy_run_demo)

    out_dir = tmp_path / "demo-out"
    draws, seed = 2, 0
    assert main(["demo", "--quick", "--draws", str(draws), "--seed", str(seed), "--output", str(out_dir),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    (result,) = returned

    # the files: what the demo says it wrote, all in the output folder
    assert {p.name for p in out_dir.iterdir()} == {Path(p).name for p in result.files.values()}
    assert all(Path(p).parent == out_dir for p in result.files.values())
    assert str(out_dir) in printed  # it says where the files are

    # the times: the promised ones, increasing; every evaluation at all of them
    data = json.loads((out_dir / "results.json").read_text())
    labels, times = [lb for lb, _ in demo.TIMES], [t for _, t in demo.TIMES]
    assert data["time_labels"] == labels and data["times_s"] == times
    assert all(a < b for a, b in zip(times, times[1:]))
    assert data["draws"] == draws and data["seed"] == seed and data["quick"] is True

    # the accuracies: one row per evaluation, (draws, times), whole counts of
    # the test images in [0, 1]; the JSON holds the returned numbers
    d = demo.load_digits_data(seed)
    n_test = len(d.y_test)
    assert len(evaluations) == len(result.results) >= 1
    assert [e["out"].tolist() for e in evaluations] == [acc.tolist() for acc in result.results.values()]
    assert data["accuracy"] == {name: acc.tolist() for name, acc in result.results.items()}
    for name, acc in result.results.items():
        assert acc.shape == (draws, len(times)), name
        assert ((acc >= 0) & (acc <= 1)).all(), name
        counts = acc * n_test
        assert torch.allclose(counts, counts.round(), atol=1e-6), name
    assert 0 <= result.digital_accuracy <= 1 and data["digital_accuracy"] == result.digital_accuracy

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the demo runs
    try:
        # the digital accuracy, recomputed from the trained network's predictions
        digital_model = next(m for desc, m in trained if desc == "digital training")
        with torch.no_grad():
            correct = int((digital_model(d.x_test).argmax(1) == d.y_test).sum())
        assert result.digital_accuracy == correct / n_test
        # the hardware-aware fine-tuning trained with the 'pcm-hwa' clip (2 std): no layer's
        # max|w| is over 2.4 std of its weights (demo.hardware_aware_finetune's tests)
        assert [desc for desc, _ in trained] == ["digital training", "hardware-aware training"]
        hwa_weights = [p for n, p in trained[1][1].named_parameters() if n.endswith("weight")]
        assert len(hwa_weights) == len(list(digital_model.parameters())) // 2
        assert all(w.abs().max() <= 2.4 * w.std(correction=0) for w in hwa_weights)
        # each evaluation, run again with its seeds: the same accuracies
        for e in evaluations:
            again = over_time(e["model"], d.x_test, d.y_test, e["times"], e["draws"], seed=e["seed"])
            assert torch.equal(again, e["out"])
            assert list(e["times"]) == times and e["draws"] == draws
    finally:
        torch.set_num_threads(before)
    # the two draws are different programmings: not every accuracy repeats
    assert any(not torch.equal(acc[0], acc[1]) for acc in result.results.values())
    # the trained network works, digitally and right after programming
    assert result.digital_accuracy > 0.9
    assert max(acc[:, 0].min().item() for acc in result.results.values()) > 0.8

    # the table: printed, saved and returned alike, and it shows the numbers
    assert (out_dir / "results.txt").read_text().rstrip("\n") == result.table
    assert result.table in printed
    assert_table_shows(result.table, result.results, labels, digital=result.digital_accuracy)

    # the plot: a PNG of its figure's size, showing the same numbers
    rec = assert_png_of_figure(out_dir / "accuracy_vs_time.png", saved_figures)
    assert_plot_shows(rec["fig"], result.results, times, labels, digital=result.digital_accuracy)

    # the graph dumps and the summary name every layer of the network
    assert (out_dir / "graph.dot").read_text().lstrip().startswith("digraph")
    graph = (out_dir / "graph.txt").read_text()
    summary = (out_dir / "analog_summary.txt").read_text().splitlines()
    layers = [n for n, m in digital_model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers
    for layer in layers:
        assert layer in graph
        assert sum(ln.split()[:1] == [layer] for ln in summary) == 1, layer  # one summary row each
