"""Buffered, chopped and dynamic Tiki-Taka (fxanalog/config/chopped.py,
fxanalog.cells): each rule checked against a computation by hand (or a
scalar loop written here from the rule) on small deterministic cases:
perfect reads, exact updates (``PulseType.NONE``) and chopper probabilities
of 0 or 1; the weight as the combination of the devices; the state-dict
round trip; short training runs; the TTv2 / ChoppedTTv2 / AGAD presets;
six deterministic cases against aihwkit 1.1.0's C++ tile."""

from __future__ import annotations

import json
import math
import os
import types

import pytest
import torch
from torch import nn

import fxanalog
from fxanalog.config import (
    BufferedTransferCompound,
    ChoppedTransferCompound,
    ConstantStepDevice,
    DynamicTransferCompound,
    IOParameters,
    PulseType,
    SoftBoundsDevice,
    UnitCellRPUConfig,
    UpdateParameters,
)
from fxanalog.optim import AnalogSGD

import aihwkit_chopped_cases
from test_cells import check_round_trip

pytestmark = pytest.mark.filterwarnings("ignore::fxanalog.SmallWeightRangeWarning")  # small test layers

DW = 0.01  # the devices' step


def exact_device(**kw) -> ConstantStepDevice:
    """A constant step of DW without any spread or noise, bounds +-10 (never reached here)."""
    base = dict(dw_min=DW, dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max=10.0, w_min=-10.0,
                w_max_dtod=0.0, w_min_dtod=0.0)
    base.update(kw)
    return ConstantStepDevice(**base)


def exact(**kw) -> UpdateParameters:
    return UpdateParameters(pulse_type=PulseType.NONE, **kw)


def cell_of(cls, **kw):
    """Two exact devices, perfect transfer reads, an exact transfer write
    (the write adds step dw n to C exactly)."""
    base = dict(unit_cell_devices=[exact_device(), exact_device()], transfer_forward=IOParameters(is_perfect=True),
                transfer_update=exact(desired_bl=kw.pop("bl", 1)))
    base.update(kw)
    return cls(**base)


def layer_of(cell, n_in=6, n_out=4, max_in=0, seed=0):
    torch.manual_seed(seed)
    cfg = UnitCellRPUConfig(device=cell, forward=IOParameters(is_perfect=True),
                            backward=IOParameters(is_perfect=True), update=exact())
    cfg.mapping.max_input_size = max_in
    convert = fxanalog.convert_to_analog_mapped if max_in else fxanalog.convert_to_analog
    return convert(nn.Linear(n_in, n_out, bias=False), cfg).analog_weight


def train_rows(layer, x, lr):
    """One step: backward of sum(y * g), g fixed, so the tile's update has
    d = g (rows) and x; returns g."""
    g = torch.linspace(-1, 1, layer.out_features).expand(x.shape[0], -1)
    opt = AnalogSGD(layer.parameters(), lr=lr)
    opt.zero_grad()
    (layer(x) * g).sum().backward()
    opt.step()
    return g


# --------------------------------------------------------------------------
# BufferedTransferCompound


@pytest.mark.parametrize("forget_buffer", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_buffered_accumulates_and_transfers_whole_steps(forget_buffer, gamma):
    """H += |lr_t| v (lr_t = transfer_lr, times gamma_A / gamma_C = gamma
    when both > 0); n = trunc(H / (thres_scale dw)) capped at BL = 2 goes
    onto C as n step dw; H keeps momentum H (forget) or
    H - (1 - momentum) n thres_scale dw where n != 0."""
    cell = cell_of(BufferedTransferCompound, bl=2, thres_scale=1.5, step=0.5, momentum=0.25,
                   forget_buffer=forget_buffer, scale_transfer_lr=False, transfer_lr=2.0, gamma=gamma)
    layer = layer_of(cell)
    st = layer.tile.device_state
    c0 = st.weights[1, 0].clone()
    a = torch.tensor([0.025, -0.013, 0.004, 0.031])
    h0 = torch.tensor([0.0, 0.002, -0.005, 0.04])
    st.weights[0, 0, :, 2] = a
    st.buffer[0, 0, :, 2] = h0
    st.slice_index[0] = 2
    st.transfer(0, lr=0.1)
    lr_t = 2.0 * (gamma if gamma > 0 else 1.0)
    thres = 1.5 * DW
    omega = h0 + lr_t * a
    n = torch.clamp(torch.trunc(omega / thres), -2, 2)
    assert (n != 0).any() and (n == 0).any() and (n.abs() == 2).any()  # the case has all three kinds
    kept = omega * 0.25 if forget_buffer else omega - 0.75 * n * thres
    torch.testing.assert_close(st.buffer[0, 0, :, 2], torch.where(n != 0, kept, omega), rtol=1e-5, atol=1e-7)
    expected_c = c0.clone()
    expected_c[:, 2] += 0.5 * DW * n
    torch.testing.assert_close(st.weights[1, 0], expected_c, rtol=0, atol=1e-6)
    assert torch.count_nonzero(st.buffer[0, 0, :, [0, 1, 3, 4, 5]]) == 0  # other columns untouched
    assert st.slice_index[0].tolist() == [3]
    torch.testing.assert_close(st.visible(), gamma * st.weights[0] + st.weights[1])


def test_buffered_one_pulse_write_by_default():
    """The default transfer write (BL 1, no management, stochastic) with
    step 1 has probability 1 on both lines: exactly one pulse of dw where
    n != 0, whatever |n|, and the buffer forgets to momentum H."""
    cell = BufferedTransferCompound(unit_cell_devices=[exact_device(), exact_device()],
                                    transfer_forward=IOParameters(is_perfect=True), scale_transfer_lr=False)
    layer = layer_of(cell)
    st = layer.tile.device_state
    c0 = st.weights[1, 0].clone()
    a = torch.tensor([0.035, -0.012, 0.004, -0.0])
    st.weights[0, 0, :, 0] = a
    st.transfer(0, lr=1.0)
    n = torch.clamp(torch.trunc(a / DW), -1, 1)
    expected = c0.clone()
    expected[:, 0] += DW * n
    torch.testing.assert_close(st.weights[1, 0], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(st.buffer[0, 0, :, 0], torch.where(n != 0, 0.1 * a, a))  # momentum 0.1


# --------------------------------------------------------------------------
# ChoppedTransferCompound


def chop_signs(cin, cout, in_sizes):
    """s[i, j] = -1 where column j's chopper differs from row i's chopper of j's tile."""
    piece = torch.repeat_interleave(torch.arange(len(in_sizes)), torch.tensor(in_sizes))
    return torch.where(cin[None, :] != cout[piece].T, -1.0, 1.0)


def test_chopped_signs_the_fast_update_and_recovers_them_in_the_read():
    """Tile array of two input pieces (3 + 3), a transfer after every row.
    A gets -fast_lr s * outer(g, x) with s the chopper signs (the output
    choppers differ between the pieces); each tile reads its next column,
    the buffer gets s v |lr_t| / (buffer_granularity dw_A), which is the
    unchopped gradient; where |H| >= 1, n = trunc(H) (BL 3) goes onto C;
    the choppers of the columns read switch (probability 1), the others
    and the output choppers (probability 0) keep theirs."""
    cell = cell_of(ChoppedTransferCompound, bl=3, in_chop_prob=1.0, fast_lr=0.5, buffer_granularity=2.0,
                   momentum=0.5, transfer_lr=1.0)
    layer = layer_of(cell, max_in=3)
    st = layer.tile.device_state
    assert st.out_chopper.shape == (1, 2, 4)
    cin = torch.tensor([True, False, True, False, False, True])
    cout = torch.tensor([[False, True, False, False], [True, True, False, True]])
    st.in_chopper[0] = cin
    st.out_chopper[0] = cout
    c0 = st.weights[1, 0].clone()
    x1 = torch.tensor([[0.8, -0.3, 0.5, 0.1, -0.6, 0.2]])
    g = train_rows(layer, x1, lr=0.1)[0]
    s1 = chop_signs(cin, cout, [3, 3])
    a1 = -0.5 * s1 * torch.outer(g, x1[0])
    torch.testing.assert_close(st.weights[0, 0], a1, rtol=1e-5, atol=1e-7)
    # the transfer after the row: columns 0 and 3 (each piece its first), lr_t = 1 x 0.1, g = 2 dw
    scale = 0.1 / (2.0 * DW)
    h = -0.5 * torch.outer(g, x1[0])[:, [0, 3]] * scale  # the unchopped gradient: the signs cancel
    n = torch.where(h.abs() >= 1, torch.trunc(h).clamp(-3, 3), torch.zeros_like(h))
    assert (n != 0).any() and (n == 0).any()
    torch.testing.assert_close(st.buffer[0, 0][:, [0, 3]], torch.where(n != 0, 0.5 * h, h), rtol=1e-5, atol=1e-6)
    expected_c = c0.clone()
    expected_c[:, [0, 3]] += DW * n
    torch.testing.assert_close(st.weights[1, 0], expected_c, rtol=0, atol=1e-6)
    cin2 = cin.clone()
    cin2[[0, 3]] = ~cin2[[0, 3]]
    assert torch.equal(st.in_chopper[0], cin2) and torch.equal(st.out_chopper[0], cout)
    assert st.transfer_counter.tolist() == [0, 0]
    # a second row runs with the switched choppers of columns 0 and 3
    x2 = torch.tensor([[-0.4, 0.7, 0.3, -0.2, 0.9, 0.5]])
    train_rows(layer, x2, lr=0.1)
    a2 = a1 - 0.5 * chop_signs(cin2, cout, [3, 3]) * torch.outer(g, x2[0])
    torch.testing.assert_close(st.weights[0, 0], a2, rtol=1e-5, atol=1e-7)
    assert st.slice_index[0].tolist() == [2, 2]  # columns 1 and 4 read after the second row


def test_chopped_rows_swap_the_roles_of_inputs_and_outputs():
    """transfer_columns = False: the choppers of the read axis are on the
    rows (outputs), the other ones on the columns; A gets -fast_lr s *
    outer(g, x) with s[i, j] = -1 where row i's and column j's choppers
    differ; the transfer reads row 0 of A (the transposed read) and the
    buffer's whole units go onto C's row 0 (x = -n, d = the unit row)."""
    cell = cell_of(ChoppedTransferCompound, bl=3, in_chop_prob=0.0, fast_lr=0.5, transfer_columns=False)
    layer = layer_of(cell)
    st = layer.tile.device_state
    assert st.in_chopper.shape == (1, 4) and st.out_chopper.shape == (1, 1, 6)
    cin = torch.tensor([True, False, False, True])
    cout = torch.tensor([False, True, True, False, False, False])
    st.in_chopper[0] = cin
    st.out_chopper[0, 0] = cout
    c0 = st.weights[1, 0].clone()
    x = torch.tensor([[0.8, -0.3, 0.5, 0.1, -0.6, 0.2]])
    g = train_rows(layer, x, lr=0.1)[0]
    s = torch.where(cin[:, None] != cout[None, :], -1.0, 1.0)
    torch.testing.assert_close(st.weights[0, 0], -0.5 * s * torch.outer(g, x[0]), rtol=1e-5, atol=1e-7)
    h = -0.5 * g[0] * x[0] * 0.1 / DW  # row 0, sign corrected: the unchopped gradient
    n = torch.where(h.abs() >= 1, torch.trunc(h).clamp(-3, 3), torch.zeros_like(h))
    assert (n != 0).any() and (n == 0).any()
    torch.testing.assert_close(st.buffer[0, 0, 0], torch.where(n != 0, 0 * h, h), rtol=1e-5, atol=1e-6)
    expected = c0.clone()
    expected[0] += DW * n
    torch.testing.assert_close(st.weights[1, 0], expected, rtol=0, atol=1e-6)
    assert st.slice_index[0].tolist() == [1]


def test_chopped_sweeps_switch_output_choppers_and_regular_input_choppers():
    """Regular input choppers (in_chop_prob 0.5: period N = 2): during the
    first sweep over a tile's columns nothing switches, during the second
    every column switches as it is read; after each full sweep the output
    choppers switch (probability 1) and the sweep counter advances."""
    cell = cell_of(ChoppedTransferCompound, in_chop_prob=0.5, in_chop_random=False, out_chop_prob=1.0)
    layer = layer_of(cell, n_in=3, n_out=2)
    st = layer.tile.device_state
    for t in range(3):
        st.transfer(0, lr=0.1)
    assert not st.in_chopper.any() and st.out_chopper.all() and st.transfer_counter.tolist() == [1]
    st.transfer(0, lr=0.1)
    assert st.in_chopper[0].tolist() == [True, False, False]
    for t in range(2):
        st.transfer(0, lr=0.1)
    assert st.in_chopper.all() and not st.out_chopper.any() and st.transfer_counter.tolist() == [2]


def test_chopped_without_choppers_is_the_buffered_rule_with_unit_threshold():
    """With chopper probabilities 0, a read adds v |lr_t| / (buffer_granularity
    dw) (auto_granularity: times 1000 / (in_size transfer_every)) and the
    whole units go onto C; forget_buffer False subtracts (1 - momentum) n;
    no_buffer starts every read from 0."""
    for no_buffer in (False, True):
        cell = cell_of(ChoppedTransferCompound, in_chop_prob=0.0, auto_granularity=1000.0, transfer_every=2.0,
                       forget_buffer=False, momentum=0.2, no_buffer=no_buffer, bl=5)
        layer = layer_of(cell)
        st = layer.tile.device_state
        c0 = st.weights[1, 0].clone()
        a = torch.tensor([2.5, -1.1, 0.3, 7.0])
        h0 = torch.tensor([0.5, 0.0, -0.9, 0.0])
        st.weights[0, 0, :, 0] = a
        st.buffer[0, 0, :, 0] = h0
        st.transfer(0, lr=1.0)
        g = DW * 1000.0 / (6 * 2.0)
        omega = (0 if no_buffer else h0) + a * 1.0 / g
        n = torch.where(omega.abs() >= 1, torch.trunc(omega).clamp(-5, 5), torch.zeros_like(omega))
        torch.testing.assert_close(st.buffer[0, 0, :, 0], torch.where(n != 0, omega - 0.8 * n, omega),
                                   rtol=1e-5, atol=1e-6)
        expected = c0.clone()
        expected[:, 0] += DW * n
        torch.testing.assert_close(st.weights[1, 0], expected, rtol=0, atol=1e-6)
        assert (n != 0).any() and (n == 0).any()


def test_chopped_correct_gradient_magnitudes():
    """correct_gradient_magnitudes: the buffer unit is buffer_granularity dw_C
    (instead of dw_A) and the increment is further divided by the fast
    learning rate: H = v |lr_t| / (fast_lr buffer_granularity dw_C)."""
    cell = cell_of(ChoppedTransferCompound, in_chop_prob=0.0, correct_gradient_magnitudes=True, fast_lr=0.5,
                   buffer_granularity=1.5, bl=9, unit_cell_devices=[exact_device(), exact_device(dw_min=0.02)])
    layer = layer_of(cell)
    st = layer.tile.device_state
    train_rows(layer, torch.zeros(1, 6), lr=0.2)  # a row of zeros: sets the fast rate (0.5), moves nothing
    c0 = st.weights[1, 0].clone()
    st.weights[0, 0, :, 1] = a = torch.tensor([0.4, -0.07, 0.02, 0.9])
    st.transfer(0, lr=0.2)
    h = a * 0.2 / (0.5 * 1.5 * 0.02)
    n = torch.where(h.abs() >= 1, torch.trunc(h).clamp(-9, 9), torch.zeros_like(h))
    assert (n != 0).any() and (n == 0).any()
    torch.testing.assert_close(st.buffer[0, 0, :, 1], torch.where(n != 0, 0 * h, h), rtol=1e-5, atol=1e-6)
    expected = c0.clone()
    expected[:, 1] += 0.02 * n
    torch.testing.assert_close(st.weights[1, 0], expected, rtol=0, atol=1e-6)


def test_chopped_auto_scale_rate_by_running_maxima():
    """auto_scale: before each row the running means move towards the row's
    max|x|, max|d| by tau = (1 - auto_momentum) / B (the first row sets
    them), and row r reaches A with the rate fast_lr BL dw_A / (m_x m_d)."""
    cell = cell_of(ChoppedTransferCompound, in_chop_prob=0.0, auto_scale=True, auto_momentum=0.5, fast_lr=0.2,
                   transfer_every=0.0)
    layer = layer_of(cell)
    st = layer.tile.device_state
    x = torch.tensor([[0.5, -0.2, 0.1, 0.0, 0.3, -0.4], [1.0, 0.6, -2.0, 0.2, 0.1, 0.0],
                      [-0.3, 0.2, 0.1, 0.25, 0.0, 0.1]])
    g = train_rows(layer, x, lr=0.1)
    bl = UpdateParameters().desired_bl
    tau, mx, md = (1 - 0.5) / 3, 0.0, 0.0
    expected = torch.zeros(4, 6)
    for r in range(3):
        vx, vd = float(x[r].abs().max()), float(g[r].abs().max())
        mx = vx if mx <= 0 else (1 - tau) * mx + tau * vx
        md = vd if md <= 0 else (1 - tau) * md + tau * vd
        expected -= 0.2 * bl * DW / (mx * md) * torch.outer(g[r], x[r])
    torch.testing.assert_close(st.weights[0, 0], expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(st.m_x, torch.tensor([[mx]]))
    torch.testing.assert_close(st.m_d, torch.tensor([[md]]))


# --------------------------------------------------------------------------
# DynamicTransferCompound (AGAD)


def agad_reference(reads, n_cols, period, tail, scale, momentum, bl, forget=True, cap=0.0, correct=False):
    """The AGAD rule for one tile, cross-point by cross-point, from its
    description: reads[t] the column read at transfer t (in order), each
    (rows,). Returns the buffer, the running and past means, the total
    written onto C and the choppers (all by column)."""
    rows = len(reads[0])
    H = [[0.0] * n_cols for _ in range(rows)]
    M = [[0.0] * n_cols for _ in range(rows)]
    P = [[0.0] * n_cols for _ in range(rows)]
    C = [[0.0] * n_cols for _ in range(rows)]
    chop, switched, counter = [False] * n_cols, [False] * n_cols, 0
    s = min(tail / period, 1.0)
    for t, v in enumerate(reads):
        j = t % n_cols
        sample = counter % period + 1
        for i in range(rows):
            if switched[j]:
                P[i][j] = M[i][j]
            dw = (v[i] - P[i][j]) * (-1.0 if chop[j] else 1.0)
            omega = H[i][j] + dw * scale / (min(sample, 1 / DW) if correct else 1.0)
            n = 0.0
            if abs(omega) >= 1:
                n = max(min(math.trunc(omega), bl), -bl)
                if forget:
                    omega *= momentum
                else:
                    omega -= (1 - momentum) * n
                    if cap > 0:
                        omega = max(min(omega, cap * bl), -cap * bl)
            H[i][j] = omega
            M[i][j] = M[i][j] * (1 - s) + v[i] * s
            if counter > period:
                C[i][j] += n
        switched[j] = sample == period
        if switched[j]:
            chop[j] = not chop[j]
        if j == n_cols - 1:
            counter += 1
    return H, M, P, C, chop


@pytest.mark.parametrize("forget,cap,correct", [(True, 0.0, False), (False, 0.75, True)])
def test_dynamic_buffers_the_difference_to_the_previous_period_mean(forget, cap, correct):
    """AGAD on a 3 x 2 layer: A set by hand before each of 16 transfers (8
    sweeps; period N = 2, tail_weightening 1: the running mean moves by 1/2);
    buffer, means, choppers and C after them equal the rule computed cross-
    point by cross-point; the writes start after N sweeps. Also without
    forget_buffer, with buffer_cap and experimental_correct_accumulation."""
    cell = cell_of(DynamicTransferCompound, in_chop_prob=0.5, tail_weightening=1.0, momentum=0.3, bl=2,
                   scale_transfer_lr=False, transfer_lr=0.05, forget_buffer=forget, buffer_cap=cap,
                   experimental_correct_accumulation=correct)
    layer = layer_of(cell, n_in=2, n_out=3)
    st = layer.tile.device_state
    c0 = st.weights[1, 0].clone()
    torch.manual_seed(4)
    reads = []
    for t in range(16):
        j = t % 2
        v = torch.randn(3) * 0.3 + torch.tensor([0.2, -0.1, 0.05]) * (t // 2)
        # the read sees the chopped weight: the fast device holds the signed signal
        st.weights[0, 0, :, j] = v
        reads.append(v.tolist())
        st.transfer(0, lr=1.0)
    H, M, P, C, chop = agad_reference(reads, 2, 2, 1.0, 0.05 / DW, 0.3, 2, forget, cap, correct)
    torch.testing.assert_close(st.buffer[0, 0], torch.tensor(H), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(st.running_mean[0], torch.tensor(M), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(st.past_mean[0], torch.tensor(P), rtol=1e-5, atol=1e-6)
    assert st.in_chopper[0].tolist() == chop
    total = torch.tensor(C)
    assert total.abs().sum() > 0
    torch.testing.assert_close(st.weights[1, 0], c0 + DW * total, rtol=0, atol=1e-5)
    assert st.transfer_counter.tolist() == [8]


# --------------------------------------------------------------------------
# All three: weight, state dict, training, validation


@pytest.mark.parametrize("cls", [BufferedTransferCompound, ChoppedTransferCompound, DynamicTransferCompound])
def test_weight_is_gamma_a_plus_c(cls):
    layer = layer_of(cell_of(cls, gamma=0.3))
    st = layer.tile.device_state
    w0 = layer.weight.detach().clone()
    torch.testing.assert_close(st.weights[1, 0], w0)  # set: C holds w, A is 0
    train_rows(layer, torch.randn(3, 6), 0.1)
    torch.testing.assert_close(layer.weight.detach(), 0.3 * st.weights[0, 0] + st.weights[1, 0])
    assert torch.count_nonzero(st.weights[0]) > 0


@pytest.mark.parametrize("cls", [BufferedTransferCompound, ChoppedTransferCompound, DynamicTransferCompound])
def test_state_dict_round_trip_weights_only(cls):
    """The state (devices, buffer, choppers, means, counters) through
    torch.save / torch.load(weights_only=True) into a fresh layer: equal
    state, and the same next step from the same seed."""
    cell = cls(unit_cell_devices=[SoftBoundsDevice(), SoftBoundsDevice()], transfer_every=1.0)
    if cls is not BufferedTransferCompound:
        cell.out_chop_prob = 0.5 if cls is ChoppedTransferCompound else 0.0
        cell.in_chop_prob = 0.5
        cell.auto_scale = True
        cell.forget_buffer = False  # the buffer keeps what it carries
    cfg = UnitCellRPUConfig(device=cell)
    cfg.mapping.max_input_size = 4  # a tile array
    cfg.mapping.weight_scaling_omega = 1.0

    def make(seed):
        torch.manual_seed(seed)
        return fxanalog.convert_to_analog_mapped(nn.Linear(6, 4, bias=False), cfg).analog_weight

    layer = make(1)
    for _ in range(3):
        train_rows(layer, torch.randn(3, 6), 0.1)
    st = layer.tile.device_state
    assert st.buffer.abs().sum() > 0
    check_round_trip(layer, make(2), train_rows)


def regression_loss(cls, steps, **kw):
    """A 8 -> 4 layer trained on a fixed linear target with soft-bounds
    devices (stochastic pulses); returns the loss before and after."""
    torch.manual_seed(0)
    dev = SoftBoundsDevice(dw_min=0.01, w_max=1.0, w_min=-1.0)
    cell = cls(unit_cell_devices=[dev, dev], transfer_forward=IOParameters(is_perfect=True), **kw)
    cfg = UnitCellRPUConfig(device=cell, forward=IOParameters(is_perfect=True),
                            backward=IOParameters(is_perfect=True))
    model = fxanalog.convert_to_analog(nn.Linear(8, 4, bias=False), cfg)
    target = torch.randn(4, 8) * 0.3
    x = torch.randn(64, 8)
    y = x @ target.T
    opt = AnalogSGD(model.parameters(), lr=0.1)

    def loss():
        with torch.no_grad():
            return float(((model(x) - y) ** 2).mean())

    before = loss()
    for step in range(steps):
        xb, yb = x[step % 4 * 16:(step % 4 + 1) * 16], y[step % 4 * 16:(step % 4 + 1) * 16]
        opt.zero_grad()
        ((model(xb) - yb) ** 2).mean().backward()
        opt.step()
    return before, loss()


@pytest.mark.parametrize("cls,kw", [
    (BufferedTransferCompound, dict(transfer_every=1.0, units_in_mbatch=False, fast_lr=0.1)),
    (ChoppedTransferCompound, dict(fast_lr=0.1, in_chop_prob=0.1)),
    (DynamicTransferCompound, dict(fast_lr=0.1, in_chop_prob=0.25, units_in_mbatch=False)),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_short_training_lowers_the_loss(cls, kw):
    before, after = regression_loss(cls, 40, **kw)
    assert after < 0.7 * before, (before, after)


def test_configs_refuse_what_aihwkit_refuses():
    two = [SoftBoundsDevice(), SoftBoundsDevice()]
    with pytest.raises(ValueError, match=r"unit_cell_devices: 3 devices: expected exactly 2"):
        ChoppedTransferCompound(unit_cell_devices=two + [SoftBoundsDevice()]).validate("cfg.device")
    with pytest.raises(ValueError, match=r"cfg.device.n_reads_per_transfer = 2: expected 1"):
        DynamicTransferCompound(unit_cell_devices=two, n_reads_per_transfer=2).validate("cfg.device")
    with pytest.raises(ValueError, match=r"cfg.device.random_selection = True: expected False"):
        ChoppedTransferCompound(unit_cell_devices=two, random_selection=True).validate("cfg.device")
    with pytest.raises(ValueError, match=r"cfg.device.with_reset_prob = 0.5: expected 0.0"):
        BufferedTransferCompound(unit_cell_devices=two, with_reset_prob=0.5).validate("cfg.device")
    with pytest.raises(ValueError, match=r"cfg.device.out_chop_prob = 0.1: expected 0.0"):
        DynamicTransferCompound(unit_cell_devices=two, out_chop_prob=0.1).validate("cfg.device")
    with pytest.raises(ValueError, match=r"cfg.device.in_chop_prob = 1.5: expected"):
        ChoppedTransferCompound(unit_cell_devices=two, in_chop_prob=1.5).validate("cfg.device")
    BufferedTransferCompound(unit_cell_devices=two * 2, n_reads_per_transfer=2).validate("cfg.device")  # allowed


def test_defaults_are_aihwkits():
    b, c, d = BufferedTransferCompound(), ChoppedTransferCompound(), DynamicTransferCompound()
    assert (b.thres_scale, b.step, b.momentum, b.forget_buffer, b.units_in_mbatch) == (1.0, 1.0, 0.1, True, True)
    assert (b.transfer_update.desired_bl, b.transfer_update.update_bl_management,
            b.transfer_update.update_management) == (1, False, False)
    assert (c.in_chop_prob, c.in_chop_random, c.out_chop_prob, c.buffer_granularity, c.auto_granularity,
            c.momentum, c.no_buffer, c.units_in_mbatch, c.auto_scale, c.auto_momentum,
            c.correct_gradient_magnitudes) == (0.1, True, 0.0, 1.0, 0.0, 0.0, False, False, False, 0.99, False)
    assert (d.in_chop_prob, d.in_chop_random, d.experimental_correct_accumulation, d.buffer_cap,
            d.tail_weightening, d.momentum) == (0.1, False, False, 0.0, 5.0, 0.0)
    assert isinstance(d, ChoppedTransferCompound)


# --------------------------------------------------------------------------
# Presets (aihwkit 1.1.0's presets/configs.py, the values copied from there)

# name: (compound, device preset, fast_lr, auto_granularity, in_chop_prob, tail_weightening, update desired_bl)
AIHWKIT_PRESETS = {
    "TTv2ReRamESPreset": ("Chopped", "ReRamESPresetDevice", 0.5, 1000, 0.0, None, 31),
    "TTv2ReRamSBPreset": ("Chopped", "ReRamSBPresetDevice", 0.5, 1000, 0.0, None, 31),
    "TTv2CapacitorPreset": ("Chopped", "CapacitorPresetDevice", 0.1, 1000, 0.0, None, 31),
    "TTv2EcRamPreset": ("Chopped", "EcRamPresetDevice", 0.1, 500, 0.0, None, 100),
    "TTv2EcRamMOPreset": ("Chopped", "EcRamMOPresetDevice", 0.1, 500, 0.0, None, 100),
    "TTv2IdealizedPreset": ("Chopped", "IdealizedPresetDevice", 0.1, 500, 0.0, None, 100),
    "ChoppedTTv2ReRamESPreset": ("Chopped", "ReRamESPresetDevice", 0.5, 1000, 0.01, None, 31),
    "ChoppedTTv2ReRamSBPreset": ("Chopped", "ReRamSBPresetDevice", 0.5, 1000, 0.01, None, 31),
    "ChoppedTTv2CapacitorPreset": ("Chopped", "CapacitorPresetDevice", 0.1, 1000, 0.01, None, 31),
    "ChoppedTTv2EcRamPreset": ("Chopped", "EcRamPresetDevice", 1.0, 500, 0.01, None, 100),
    "ChoppedTTv2EcRamMOPreset": ("Chopped", "EcRamMOPresetDevice", 0.1, 500, 0.001, None, 100),
    "ChoppedTTv2IdealizedPreset": ("Chopped", "IdealizedPresetDevice", 0.1, 500, 0.001, None, 100),
    "AGADReRamESPreset": ("Dynamic", "ReRamESPresetDevice", 0.5, 1000, 0.02, 5.0, 31),
    "AGADReRamSBPreset": ("Dynamic", "ReRamSBPresetDevice", 0.5, 1000, 0.02, 5.0, 31),
    "AGADCapacitorPreset": ("Dynamic", "CapacitorPresetDevice", 0.1, 1000, 0.01, 20.0, 31),
    "AGADEcRamPreset": ("Dynamic", "EcRamPresetDevice", 0.1, 750, 0.005, 50.0, 31),
    "AGADEcRamMOPreset": ("Dynamic", "EcRamMOPresetDevice", 0.1, 500, 0.005, 50.0, 100),
    "AGADIdealizedPreset": ("Dynamic", "IdealizedPresetDevice", 0.1, 500, 0.005, 50.0, 100),
}


@pytest.mark.parametrize("name", list(AIHWKIT_PRESETS))
def test_preset_matches_aihwkit_and_makes_a_layer(name):
    from fxanalog import presets

    compound, device, fast_lr, auto_gran, in_chop, tail, bl = AIHWKIT_PRESETS[name]
    assert name in presets.__all__
    cfg = getattr(presets, name)()
    cfg.validate()
    cell = cfg.device
    assert type(cell) is (DynamicTransferCompound if compound == "Dynamic" else ChoppedTransferCompound)
    assert [type(d).__name__ for d in cell.unit_cell_devices] == [device, device]
    # aihwkit's ReRamSB compound presets subtract the devices' symmetry point
    assert all(getattr(d, "subtract_symmetry_point", False) == ("ReRamSB" in name) for d in cell.unit_cell_devices)
    assert (cell.fast_lr, cell.auto_granularity, cell.in_chop_prob, cell.auto_scale) == (fast_lr, auto_gran,
                                                                                         in_chop, True)
    assert cell.units_in_mbatch is False and cell.transfer_every == 1.0 and cell.out_chop_prob == 0.0
    if tail is not None:
        assert cell.tail_weightening == tail and cell.in_chop_random is False
    else:
        assert cell.in_chop_random is True
    tu = cell.transfer_update
    assert (type(tu).__name__, tu.desired_bl, tu.update_bl_management, tu.update_management) == (
        "PresetUpdateParameters", 1, False, False)
    tf = cell.transfer_forward
    assert (type(tf).__name__, tf.noise_management.name, tf.bound_management.name) == ("PresetIOParameters",
                                                                                        "NONE", "NONE")
    assert type(cfg.update).__name__ == "PresetUpdateParameters" and cfg.update.desired_bl == bl
    assert type(cfg.forward).__name__ == type(cfg.backward).__name__ == "PresetIOParameters"
    assert getattr(presets, name)().device is not cell  # each instance its own compound
    torch.manual_seed(0)
    model = fxanalog.convert_to_analog(nn.Linear(5, 3), cfg).analog_weight
    st = model.tile.device_state
    assert type(st).__name__ == ("DynamicTransferState" if compound == "Dynamic" else "ChoppedTransferState")
    x = torch.randn(4, 5)
    opt = AnalogSGD(model.parameters(), lr=0.05)
    opt.zero_grad()
    model(x).pow(2).sum().backward()
    opt.step()
    assert torch.count_nonzero(st.weights[0]) > 0  # the fast device learned (auto_scale rate)
    assert int(st.update_count) == 4 and st.slice_index[0].tolist() == [4]  # 4 rows, 4 transfers (5 inputs)
    assert torch.isfinite(model.weight).all() and torch.isfinite(st.buffer).all()
    if device == "ReRamESPresetDevice":  # write noise (std 75 dw_min): hidden weights, visible ones around them
        assert st.persistent_weight is not None and not torch.equal(st.persistent_weight, st.weights)


# --------------------------------------------------------------------------
# Against aihwkit 1.1.0's C++ CPU tile (tests/aihwkit_chopped_cases.py made
# tests/data/aihwkit_chopped_cells.json with aihwkit)

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "aihwkit_chopped_cells.json")
STATE_OF = {"buffered_FP_weight": "buffer", "running_mean_weight": "running_mean", "past_mean_weight": "past_mean"}


@pytest.mark.parametrize("name", sorted(aihwkit_chopped_cases.cases(types.SimpleNamespace(
    **{n: getattr(fxanalog.config, n) for n in fxanalog.config.__all__}))))
def test_compound_matches_aihwkit(name):
    """Deterministic pulses, exact devices, perfect reads, deterministic
    choppers: every device's weights, the layer's weights, the buffers and
    AGAD's means equal aihwkit's after the steps (to float32 rounding; a
    pulse is 0.01), also on tile arrays with uneven input pieces (each tile
    its own reads, sweeps, output choppers and auto-scale means)."""
    ns = types.SimpleNamespace(**{n: getattr(fxanalog.config, n) for n in fxanalog.config.__all__})
    cell, n_steps, lr = aihwkit_chopped_cases.cases(ns)[name]
    cfg = UnitCellRPUConfig(device=cell, forward=IOParameters(is_perfect=True), backward=IOParameters(is_perfect=True),
                            update=aihwkit_chopped_cases.update(ns))
    n_out, n_in = aihwkit_chopped_cases.shape(name)
    linear = nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        linear.weight.copy_(aihwkit_chopped_cases.initial_weights(torch, n_out, n_in))
    if name in aihwkit_chopped_cases.ARRAYS:  # a tile array: input pieces [3, 2, 2], output pieces [2, 2]
        _, cfg.mapping.max_input_size, cfg.mapping.max_output_size = aihwkit_chopped_cases.ARRAYS[name]
        layer = fxanalog.convert_to_analog_mapped(linear, cfg).analog_weight
        assert layer.tile.device_state.geometry.in_sizes == (3, 2, 2)
    else:
        layer = fxanalog.convert_to_analog(linear, cfg).analog_weight
    opt = AnalogSGD(layer.parameters(), lr=lr)
    for x, g in aihwkit_chopped_cases.steps(torch, n_steps, n_out, n_in):
        opt.zero_grad()
        (layer(x) * g).sum().backward()
        opt.step()
    with open(GOLDEN) as f:
        gold = json.load(f)[name]
    torch.testing.assert_close(layer.weight.detach(), torch.tensor(gold["weight"]), rtol=0, atol=1e-5)
    st = layer.tile.device_state
    assert st.buffer.abs().max() > 0 and torch.count_nonzero(st.weights[0]) > 0
    for key, value in gold["hidden"].items():
        index = int(key.rsplit("_", 1)[1]) if key[-1].isdigit() else 0
        if key.startswith("hidden_weights"):
            mine = st.weights[index, 0]
        else:
            t = getattr(st, STATE_OF[key.rstrip("_0123456789")])
            mine = t[index, 0] if t.dim() == 4 else t[0]
        torch.testing.assert_close(mine, torch.tensor(value), rtol=1e-5, atol=1e-5, msg=f"{name}: {key}")
