"""The demo: data, training, the evaluation loop, the table, the plot, bad
output folders, and the whole demo end to end in ``--quick`` mode."""

from __future__ import annotations

import json
import math

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
# Report


def test_format_table_mean_and_spread():
    results = {
        "row a": torch.tensor([[0.9, 0.8], [0.7, 0.6]], dtype=torch.float64),
        "row b": torch.tensor([[0.5, 1.0]], dtype=torch.float64),
    }
    text = demo.format_table(results, ["1 s", "1 h"], digital=0.987)
    lines = text.splitlines()
    assert lines[0].startswith("time after programming") and lines[0].endswith("1 h") and "1 s" in lines[0]
    row_a = next(ln for ln in lines if ln.startswith("row a"))
    # mean 80.0 and 70.0; sample std of (90, 70) = sqrt(200) = 14.14
    assert "80.0 ± 14.1" in row_a and "70.0 ± 14.1" in row_a
    row_b = next(ln for ln in lines if ln.startswith("row b"))
    assert " 50.0 ±  0.0" in row_b and "100.0 ±  0.0" in row_b  # one draw: no spread
    assert lines[-1].startswith("digital (floating point)") and lines[-1].endswith("98.7")
    # columns line up: every row as wide as the header
    assert len({len(ln) for ln in lines[:4] if not ln.startswith("-")}) == 1


def test_plot_is_a_png(tmp_path):
    import matplotlib.image

    results = {"a": torch.tensor([[0.9, 0.8, 0.7], [0.8, 0.7, 0.6]], dtype=torch.float64)}
    path = tmp_path / "p.png"
    demo.plot_accuracy(results, [1.0, 3600.0, 86400.0], ["1 s", "1 h", "1 day"], str(path), digital=0.95)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(str(path))
    assert img.shape[:2] == (540, 840)  # figsize (7, 4.5) at 120 dpi


def test_times_are_the_promised_ones():
    assert [label for label, _ in demo.TIMES] == ["1 s", "1 h", "1 day", "1 month", "1 year"]
    assert [t for _, t in demo.TIMES] == [1.0, 3600.0, 86400.0, 2592000.0, 31536000.0]


# --------------------------------------------------------------------------
# Bad input


def test_output_folder_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(demo.DemoError, match="cannot write to it"):
        demo.check_output_dir(str(blocker / "out"))
    assert main(["demo", "--quick", "--output", str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("fxanalog: error: output folder") and str(blocker / "out") in err


def test_output_folder_is_created(tmp_path):
    target = tmp_path / "x" / "y"
    assert demo.check_output_dir(str(target)) == str(target)
    assert target.is_dir() and list(target.iterdir()) == []


# --------------------------------------------------------------------------
# The whole demo, --quick


def test_quick_demo_end_to_end(tmp_path, capsys):
    out_dir = tmp_path / "demo-out"
    assert main(["demo", "--quick", "--draws", "2", "--seed", "0", "--output", str(out_dir), "--no-progress"]) == 0
    printed = capsys.readouterr().out

    files = {p.name for p in out_dir.iterdir()}
    assert files == {"accuracy_vs_time.png", "results.txt", "results.json", "analog_summary.txt",
                     "graph.txt", "graph.dot"}
    assert str(out_dir) in printed  # it says where the files are

    data = json.loads((out_dir / "results.json").read_text())
    assert data["draws"] == 2 and data["quick"] is True
    assert data["time_labels"] == ["1 s", "1 h", "1 day", "1 month", "1 year"]
    rows = data["accuracy"]
    assert list(rows) == ["digital training, no compensation", "digital training, drift compensation",
                          "HWA training, no compensation", "HWA training, drift compensation"]
    for name, acc in rows.items():
        acc = torch.tensor(acc, dtype=torch.float64)
        assert acc.shape == (2, 5), name
        # accuracies are whole counts of the 450 test images
        counts = acc * 450
        assert torch.allclose(counts, counts.round(), atol=1e-6), name
        # the table printed is the mean and spread of these numbers
        mean, std = acc.mean(0), acc.std(0)
        line = next(ln for ln in printed.splitlines() if ln.startswith(name))
        for m, s in zip(mean.tolist(), std.tolist()):
            assert f"{100 * m:5.1f} ± {100 * s:4.1f}" in line, (name, line)
    # the two draws are different programmings: not every accuracy repeats
    assert any(a[0] != a[1] for a in rows["digital training, no compensation"])
    # the trained network works, digitally and right after programming on PCM
    assert data["digital_accuracy"] > 0.9
    assert min(rows["digital training, drift compensation"][d][0] for d in range(2)) > 0.8

    assert (out_dir / "accuracy_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out_dir / "graph.dot").read_text().lstrip().startswith("digraph")
    graph = (out_dir / "graph.txt").read_text()
    summary = (out_dir / "analog_summary.txt").read_text()
    for layer in ("conv1", "conv2", "fc1", "fc2"):
        assert layer in graph and layer in summary
    assert "4 analog layers" in summary
