"""Unit cells (fxanalog.cells, docs/unit-cells.md): the update op on a stack
of devices that share the pulse trains, and each cell's rule checked against
a computation by hand or against the single-device update it is made of."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import torch
from torch import nn

import fxanalog
from fxanalog import cells, devices
from fxanalog.config import (
    BoundManagementType,
    NoiseManagementType,
    ConstantStepDevice,
    DigitalRankUpdateRPUConfig,
    IOParameters,
    LinearStepDevice,
    MixedPrecisionCompound,
    OneSidedUnitCell,
    PulseType,
    ReferenceUnitCell,
    SoftBoundsDevice,
    TransferCompound,
    UnitCellRPUConfig,
    UpdateParameters,
    VectorUnitCell,
    VectorUnitCellUpdatePolicy,
)
from fxanalog.devices import ROUTE_DOWN_AS_UP, ROUTE_UP, draw_state, rule_of
from fxanalog.geometry import TileGeometry
from fxanalog.ops.tile_update_torch import PulsedUpdate, pack_rule, pack_update, pulse_trains, tile_update
from fxanalog.optim import AnalogSGD


def exact_device(**kw) -> ConstantStepDevice:
    """A constant step without any spread or noise, bounds +-10 (never reached here)."""
    base = dict(dw_min=0.01, dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max=10.0, w_min=-10.0,
                w_max_dtod=0.0, w_min_dtod=0.0)
    base.update(kw)
    return ConstantStepDevice(**base)


def stacked(dev, shape, routes=(0, 0)):
    rule = rule_of(dev)
    st = draw_state(dev, shape)
    p = torch.stack([st[n] for n in rule.pulse_names], dim=-1)
    return tuple(replace(rule, route=r) for r in routes), torch.stack([p] * len(routes)).contiguous(), p


# --------------------------------------------------------------------------
# The op on a stack of devices


@pytest.mark.parametrize("native", [True, False])
def test_stack_shares_the_trains_of_one_device(native):
    """Two identical devices of a stack (no noise) move exactly as one device
    updated with the same random stream: the same coincidences reach both."""
    G, N, K, B = 2, 5, 7, 6
    dev = exact_device()
    rules, pstack, p1 = stacked(dev, (G, N, K))
    x, d = torch.randn(G, B, K), torch.randn(G, B, N)
    up = PulsedUpdate.of(UpdateParameters(), dev.dw_min)
    w0 = torch.randn(G, N, K) * 0.1
    torch.manual_seed(5)
    single = w0.clone()
    tile_update(single, x, d, 0.05, up, rules[0], p1, [K], [N], use_native=native)
    torch.manual_seed(5)
    stack = torch.stack([w0, w0]).contiguous()
    touched = tile_update(stack, x, d, 0.05, up, rules, pstack, [K], [N], use_native=native)
    assert not torch.equal(single, w0)  # pulses landed
    torch.testing.assert_close(stack[0], single, rtol=0, atol=0)
    torch.testing.assert_close(stack[1], single, rtol=0, atol=0)
    assert touched[single != w0].all()  # every cross-point that moved got pulses


@pytest.mark.parametrize("native", [True, False])
def test_routes_split_the_pulses_of_a_one_sided_pair(native):
    """g+ (ROUTE_UP) takes the up pulses and g- (ROUTE_DOWN_AS_UP) the down
    pulses as up pulses: both only grow, and g+ - g- moves as one device
    with equal up and down steps on the same trains."""
    G, N, K, B = 1, 6, 8, 5
    dev = exact_device()
    rules, pstack, p1 = stacked(dev, (G, N, K), routes=(ROUTE_DOWN_AS_UP, ROUTE_UP))
    x, d = torch.randn(G, B, K), torch.randn(G, B, N)
    up = PulsedUpdate.of(UpdateParameters(), dev.dw_min)
    torch.manual_seed(9)
    single = torch.zeros(G, N, K)
    tile_update(single, x, d, 0.1, up, rule_of(dev), p1, [K], [N], use_native=native)
    torch.manual_seed(9)
    pair = torch.zeros(2, G, N, K)
    tile_update(pair, x, d, 0.1, up, rules, pstack, [K], [N], use_native=native)
    assert (pair >= 0).all() and (pair[0] > 0).any() and (pair[1] > 0).any()
    torch.testing.assert_close(pair[1] - pair[0], single, rtol=0, atol=1e-6)


def test_stack_native_matches_python_loop_on_given_trains():
    """The C kernel and the Python loop apply the same pulses to a stack of
    different devices with routes (given trains, no cycle-to-cycle noise)."""
    G, N, K, B = 2, 6, 9, 4
    a = SoftBoundsDevice(dw_min_std=0.0)
    b = SoftBoundsDevice(dw_min_std=0.0, dw_min=0.02)
    shape = (G, N, K)
    rules = (replace(rule_of(a), route=ROUTE_UP), replace(rule_of(b), route=ROUTE_DOWN_AS_UP))
    ps = []
    for dev, r in zip((a, b), rules):
        st = draw_state(dev, shape)
        ps.append(torch.stack([st[n] for n in r.pulse_names], dim=-1))
    params = torch.stack(ps).contiguous()
    x, d = torch.randn(G, B, K), torch.randn(G, B, N)
    up = PulsedUpdate.of(UpdateParameters(desired_bl=7), 0.015)
    trains = pulse_trains(x, d, 0.3, up, [5, 4], [3, 3])[:2]
    w = (torch.rand(2, G, N, K) * 0.2).contiguous()
    w_c, w_py = w.clone(), w.clone()
    t_c = tile_update(w_c, x, d, 0.3, up, rules, params, [5, 4], [3, 3], trains=trains, use_native=True)
    t_py = tile_update(w_py, x, d, 0.3, up, rules, params, [5, 4], [3, 3], trains=trains, use_native=False)
    assert not torch.equal(w_c, w)
    torch.testing.assert_close(w_c, w_py, rtol=0, atol=2e-7)
    assert torch.equal(t_c, t_py)


def test_op_refuses_mismatched_stack():
    dev = exact_device()
    rules, pstack, _ = stacked(dev, (1, 2, 3))
    w = torch.zeros(3, 1, 2, 3)  # three weight arrays, two rules
    with pytest.raises(ValueError, match=r"weights of shape \(3, 1, 2, 3\) with 2 packed device rules"):
        torch.ops.fxanalog.tile_update(w, torch.ones(1, 1, 3), torch.ones(1, 1, 2), pstack, 0.1,
                                       pack_update(PulsedUpdate.of(UpdateParameters(), 0.01)), pack_rule(rules),
                                       [3], [2])


# --------------------------------------------------------------------------
# The cells, on a layer


def layer_of(cfg, n_in=6, n_out=4, seed=0, mapped=False):
    """The analog layer; ``mapped``: split into tiles of the mapping's max sizes."""
    torch.manual_seed(seed)
    convert = fxanalog.convert_to_analog_mapped if mapped else fxanalog.convert_to_analog
    return convert(nn.Linear(n_in, n_out, bias=False), cfg).analog_weight


def exact_update() -> UpdateParameters:
    return UpdateParameters(pulse_type=PulseType.NONE)


def perfect_config(device, config=UnitCellRPUConfig, **kw):
    return config(device=device, forward=IOParameters(is_perfect=True), backward=IOParameters(is_perfect=True),
                  update=kw.pop("update", exact_update()), **kw)


def train_rows(layer, x, lr):
    """One step: forward on x, backward of sum(y * g) with a fixed g, the
    optimizer's pulsed update. Returns the d the tile received."""
    g = torch.linspace(-1, 1, layer.out_features).expand(x.shape[0], -1)
    opt = AnalogSGD(layer.parameters(), lr=lr)
    opt.zero_grad()
    (layer(x) * g).sum().backward()
    opt.step()
    return g


def test_vector_all_is_the_mean_of_devices_moved_alike():
    """VectorUnitCell (ALL): weight = mean of the devices; with an exact
    update every device moves by -lr d^T x (clipped to its bounds)."""
    cfg = perfect_config(VectorUnitCell(unit_cell_devices=[exact_device(), exact_device(dw_min=0.02)]))
    layer = layer_of(cfg)
    st = layer.tile.device_state
    w0 = layer.weight.detach().clone()
    torch.testing.assert_close(st.weights[0, 0], w0)  # set_weights: every device holds w
    x = torch.randn(5, 6)
    g = train_rows(layer, x, 0.1)
    expected = w0 - 0.1 * g.T @ x
    torch.testing.assert_close(st.weights[:, 0], torch.stack([expected, expected]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=1e-5, atol=1e-6)


def test_vector_sequential_alternates_devices_row_by_row_and_gamma_weights():
    """SINGLE_SEQUENTIAL: row r goes to device (first + 1 + r) mod D; the
    weight is sum_k gamma_k W_k with the given gamma_vec."""
    cell = VectorUnitCell(unit_cell_devices=[exact_device()] * 3, gamma_vec=[0.5, 0.3, 0.2],
                          update_policy=VectorUnitCellUpdatePolicy.SINGLE_SEQUENTIAL, first_update_idx=1)
    layer = layer_of(perfect_config(cell))
    st = layer.tile.device_state
    w_dev0 = st.weights[:, 0].clone()
    x = torch.randn(7, 6)
    g = train_rows(layer, x, 0.2)
    expected = w_dev0.clone()
    for r in range(7):
        k = (1 + 1 + r) % 3
        expected[k] -= 0.2 * torch.outer(g[r], x[r])
    torch.testing.assert_close(st.weights[:, 0], expected, rtol=1e-5, atol=1e-6)
    assert int(st.update_index) == (1 + 7) % 3
    visible = 0.5 * expected[0] + 0.3 * expected[1] + 0.2 * expected[2]
    torch.testing.assert_close(layer.weight.detach(), visible, rtol=1e-5, atol=1e-6)


def test_reference_cell_updates_device_0_against_a_fixed_reference():
    """ReferenceUnitCell: weight = W_0 - W_1; the reference starts at 0 and
    never moves; one device given is used twice."""
    layer = layer_of(perfect_config(ReferenceUnitCell(unit_cell_devices=[exact_device()])))
    st = layer.tile.device_state
    assert st.weights.shape[0] == 2 and torch.count_nonzero(st.weights[1]) == 0
    w0 = layer.weight.detach().clone()
    x = torch.randn(3, 6)
    g = train_rows(layer, x, 0.1)
    torch.testing.assert_close(layer.weight.detach(), w0 - 0.1 * g.T @ x, rtol=1e-5, atol=1e-6)
    assert torch.count_nonzero(st.weights[1]) == 0


def test_one_sided_pair_and_refresh():
    """OneSidedUnitCell: g+ = max(w, 0), g- = max(-w, 0) when set; an exact
    update adds each row's increases to g+ and its decreases to g-; a
    refresh resets the pairs past the thresholds and writes their difference
    onto one device (exact update: to the value read)."""
    dev = exact_device(w_max=1.0, w_min=-1.0, reset_std=0.0)
    cell = OneSidedUnitCell(unit_cell_devices=[dev], refresh_every=1, units_in_mbatch=False,
                            refresh_forward=IOParameters(is_perfect=True), refresh_update=exact_update())
    cfg = perfect_config(cell)
    layer = layer_of(cfg)
    st = layer.tile.device_state
    w0 = layer.weight.detach().clone()
    torch.testing.assert_close(st.weights[1, 0], w0.clamp(min=0))
    torch.testing.assert_close(st.weights[0, 0], (-w0).clamp(min=0))
    # one row of large updates: some pairs end past the thresholds (0.75 / 0.25 of w_max = 1)
    x = torch.ones(1, 6)
    g = train_rows(layer, x, 0.9)
    rows = -0.9 * torch.outer(g[0], x[0])
    gp = w0.clamp(min=0) + rows.clamp(min=0)
    gm = (-w0).clamp(min=0) + (-rows).clamp(min=0)
    refresh = torch.where(gp > gm, (gp > 0.75) & (gm > 0.25), (gp > 0.25) & (gm > 0.75))
    assert refresh.any() and (~refresh).any()
    exp_p = torch.where(refresh, (gp - gm).clamp(min=0), gp)
    exp_m = torch.where(refresh, (gm - gp).clamp(min=0), gm)
    torch.testing.assert_close(st.weights[1, 0], exp_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(st.weights[0, 0], exp_m, rtol=1e-5, atol=1e-6)
    assert int(st.refresh_count) == int(refresh.sum())
    torch.testing.assert_close(layer.weight.detach(), exp_p - exp_m, rtol=1e-5, atol=1e-6)


def transfer_cell(**kw) -> TransferCompound:
    """Two exact constant-step devices; perfect reads; an update whose
    probabilities are all >= 1 (BL 3 slots, no management: A = B =
    sqrt(lr / (dw BL)) >= 1), so every cross-point with x_j d_i != 0 gets
    exactly 3 pulses."""
    base = dict(unit_cell_devices=[exact_device(), exact_device()], transfer_forward=IOParameters(is_perfect=True),
                transfer_update=UpdateParameters(desired_bl=3, update_bl_management=False, update_management=False))
    base.update(kw)
    return TransferCompound(**base)


def test_transfer_moves_the_expected_amount_by_hand():
    """A transfer of column j adds, where A[:, j] != 0, exactly BL pulses of
    dw_min in the direction of A[:, j] to C[:, j] (probabilities 1, no
    noise): a transfer learning rate of 1 with dw_min 0.01 and BL 3 gives
    A = B = sqrt(1 / 0.03) > 1 and |A[i, j]| >= 0.2 makes every error line
    fire too. The weight is C alone (gamma 0)."""
    layer = layer_of(perfect_config(transfer_cell(transfer_lr=1.0, scale_transfer_lr=False)))
    st = layer.tile.device_state
    w0 = layer.weight.detach().clone()
    torch.testing.assert_close(st.weights[1, 0], w0)  # set: C holds w, A is 0
    assert torch.count_nonzero(st.weights[0]) == 0
    a = torch.tensor([0.5, -0.3, 0.0, 0.25])
    st.weights[0, 0, :, 2] = a
    st.slice_index[0] = 2  # the column the next transfer reads
    st.transfer(0, lr=0.1)
    expected = w0.clone()
    expected[:, 2] += 3 * 0.01 * torch.sign(a)
    torch.testing.assert_close(st.weights[1, 0], expected, rtol=0, atol=1e-6)
    assert st.slice_index[0].tolist() == [3]  # the next column


def test_transfer_schedule_and_fast_lr():
    """units_in_mbatch=False, transfer_every=2: a transfer after every second
    row, columns in order; the fast device gets the SGD rows with fast_lr."""
    cell = transfer_cell(transfer_every=2.0, units_in_mbatch=False, fast_lr=0.5)
    layer = layer_of(perfect_config(cell))
    st = layer.tile.device_state
    x = torch.randn(5, 6)
    g = train_rows(layer, x, 0.1)
    torch.testing.assert_close(st.weights[0, 0], -0.5 * g.T @ x, rtol=1e-5, atol=1e-6)  # A from 0, lr fast_lr
    assert int(st.update_count) == 5 and st.slice_index[0].tolist() == [2]  # two transfers: columns 0 and 1


def test_transfer_gamma_weighting_of_three_devices():
    cell = transfer_cell(unit_cell_devices=[exact_device()] * 3, gamma=0.5)
    layer = layer_of(perfect_config(cell))
    st = layer.tile.device_state
    torch.testing.assert_close(st.gammas(), torch.tensor([0.25, 0.5, 1.0]))
    st.weights.copy_(torch.randn_like(st.weights))
    torch.testing.assert_close(st.visible(), 0.25 * st.weights[0] + 0.5 * st.weights[1] + st.weights[2])


def test_mixed_precision_accumulates_in_digital_and_transfers_whole_granules():
    """chi += lr d x^T; after the transfer (every batch, from the second on)
    the device moved by -n eps with n = trunc(chi / eps) and chi keeps the
    rest (an exact device update)."""
    dev = exact_device(dw_min=0.05)
    cfg = perfect_config(MixedPrecisionCompound(device=dev), config=DigitalRankUpdateRPUConfig)
    layer = layer_of(cfg)
    st = layer.tile.device_state
    w0 = layer.weight.detach().clone()
    x1, x2 = torch.randn(4, 6), torch.randn(4, 6)
    g = train_rows(layer, x1, 0.3)  # rows 0..3: counts 0..3, no transfer (count 0 is not one)
    chi = 0.3 * g.T @ x1
    torch.testing.assert_close(st.chi[0], chi, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.weight.detach(), w0)
    train_rows(layer, x2, 0.3)  # row 4 (count 4 = every): transfer after it, then rows 5..7
    chi_at = chi + 0.3 * torch.outer(g[0], x2[0])
    n = torch.trunc(chi_at / 0.05)
    torch.testing.assert_close(layer.weight.detach(), w0 - n * 0.05, rtol=1e-5, atol=1e-6)
    rest = chi_at - n * 0.05 + 0.3 * g[1:].T @ x2[1:]
    torch.testing.assert_close(st.chi[0], rest, rtol=1e-5, atol=1e-5)


def test_mixed_precision_quantizes_rows():
    """n_x_bins: each row of x to bins // 2 steps of max|x| / (bins // 2)
    each side of 0, rounded to nearest (no stochastic rounding)."""
    x = torch.tensor([[[0.9, -0.2, 0.45, 0.0]]])
    q = cells._quantize(x, 5, False)  # 2 steps of 0.45
    torch.testing.assert_close(q, torch.tensor([[[0.9, -0.0, 0.45, 0.0]]]))
    draws = cells._quantize(torch.full((1, 20000, 2), 0.3) * torch.tensor([1.0, 3.0]), 3, True)
    # stochastic rounding of 0.3 in steps of 0.9: mean stays 0.3 (binomial std 0.9 * 0.47 / sqrt(20000))
    assert abs(float(draws[..., 0].mean()) - 0.3) < 5 * 0.9 * 0.47 / 20000 ** 0.5
    # a tile array: each piece (the lines of one tile) with its own maximum, as aihwkit's tiles
    q = cells._quantize(torch.tensor([[[0.9, -0.2, 0.45, 0.1, -0.04]]]), 5, False, (3, 2))
    torch.testing.assert_close(q, torch.tensor([[[0.9, -0.0, 0.45, 0.1, -0.05]]]))


@pytest.mark.parametrize("every, expected", [(0.5, 6), (1.5, 3), (2.5, 2), (3.0, 2)])
def test_transfer_every_in_rows_rounds_halves_up(every, expected):
    """units_in_mbatch=False: the period is transfer_every rounded half away
    from 0 (aihwkit's roundf): 0.5 -> every row, 1.5 -> 2, 2.5 -> 3; six rows
    make that many transfers (slice index = transfers mod 6 columns)."""
    cell = transfer_cell(transfer_every=every, units_in_mbatch=False)
    layer = layer_of(perfect_config(cell))
    train_rows(layer, torch.randn(6, 6), 0.1)
    assert int(layer.tile.device_state.slice_index[0, 0]) == expected % 6


@pytest.mark.parametrize("cell", [
    VectorUnitCell(unit_cell_devices=[SoftBoundsDevice(), ConstantStepDevice()]),
    ReferenceUnitCell(unit_cell_devices=[SoftBoundsDevice()]),
    OneSidedUnitCell(unit_cell_devices=[SoftBoundsDevice()], refresh_every=1),
    TransferCompound(unit_cell_devices=[SoftBoundsDevice(), SoftBoundsDevice()], transfer_every=0.5,
                     units_in_mbatch=True),
    MixedPrecisionCompound(device=SoftBoundsDevice()),
], ids=lambda c: type(c).__name__)
def test_state_dict_round_trip_weights_only(cell):
    """Every cell's state (devices, buffers, counters) through torch.save /
    torch.load(weights_only=True) into a fresh layer: equal state, and the
    same next step from the same seed."""
    cfg = (DigitalRankUpdateRPUConfig if isinstance(cell, MixedPrecisionCompound) else UnitCellRPUConfig)(device=cell)
    cfg.mapping.max_input_size = 4  # a tile array (6 inputs: two pieces of 3)
    layer = layer_of(cfg, seed=1, mapped=True)
    assert layer.tile.device_state.geometry.in_sizes == (3, 3)
    for _ in range(2):
        train_rows(layer, torch.randn(3, 6), 0.1)
    check_round_trip(layer, layer_of(cfg, seed=2, mapped=True), train_rows)


def check_round_trip(layer, other, step) -> None:
    """``layer``'s state dict through torch.save / torch.load(weights_only=True)
    into ``other`` (a layer of the same config, other draws): equal state,
    then the same next step (``step(layer, x, lr)``) from the same seed, and
    equal state after it."""
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    other.load_state_dict(torch.load(buf, weights_only=True))
    for (k, a), (_, b) in zip(layer.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.randn(3, layer.in_features)
    for m in (layer, other):
        torch.manual_seed(3)
        step(m, x, 0.1)
    torch.testing.assert_close(layer.weight, other.weight, rtol=0, atol=0)
    for (k, a), (_, b) in zip(layer.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def noisy_write_device(**kw) -> LinearStepDevice:
    """Constant steps of 0.01 (a linear step without slopes), no spread or
    step noise, bounds +-1, write noise of std 2 dw_min."""
    base = dict(dw_min=0.01, dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0, w_max=1.0, w_min=-1.0,
                w_max_dtod=0.0, w_min_dtod=0.0, gamma_up=0.0, gamma_down=0.0, gamma_up_dtod=0.0,
                gamma_down_dtod=0.0, write_noise_std=2.0)
    base.update(kw)
    return LinearStepDevice(**base)


def test_write_noise_of_the_devices_of_a_cell():
    """Devices with write noise (std write_noise_std dw_min = 0.02): when
    set, each device's hidden weight is w (clipped) and its visible one
    w plus fresh noise; an exact update moves the hidden weights by
    -lr g x^T and draws the visible ones anew where they moved (the column
    of a zero input keeps its visible weights); the layer sees the mean of
    the visible weights. 2000 cross-points per device: the sample std of
    the noise is within 10% of 0.02 (its standard error is 1.6%)."""
    dev = noisy_write_device()
    cfg = perfect_config(VectorUnitCell(unit_cell_devices=[dev, dev]))
    layer = layer_of(cfg, n_in=50, n_out=40)
    st = layer.tile.device_state
    hidden0 = st.persistent_weight.clone()
    torch.testing.assert_close(hidden0[0], hidden0[1])
    noise = st.weights - hidden0
    assert abs(float(noise.std()) - 0.02) < 0.002 and abs(float(noise.mean())) < 0.002
    assert not torch.equal(noise[0], noise[1])  # each device its own draw
    torch.testing.assert_close(layer.weight.detach(), st.weights[:, 0].mean(0))
    visible0 = st.weights.clone()
    x = torch.randn(3, 50)
    x[:, 7] = 0.0  # column 7 gets no pulse
    g = train_rows(layer, x, 0.1)
    expected = hidden0[:, 0] - 0.1 * g.T @ x
    torch.testing.assert_close(st.persistent_weight[:, 0], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(st.weights[:, 0, :, 7], visible0[:, 0, :, 7], rtol=0, atol=0)
    moved = st.weights[:, 0] - st.persistent_weight[:, 0]
    others = torch.cat([moved[..., :7], moved[..., 8:]], dim=-1)
    assert abs(float(others.std()) - 0.02) < 0.002
    assert not torch.isclose(st.weights[:, 0, :, :7], visible0[:, 0, :, :7]).any()  # drawn anew
    torch.testing.assert_close(layer.weight.detach(), st.weights[:, 0].mean(0))
    quiet = perfect_config(VectorUnitCell(unit_cell_devices=[noisy_write_device(apply_write_noise_on_set=False)]))
    st = layer_of(quiet).tile.device_state
    assert torch.equal(st.weights, st.persistent_weight)  # no noise on set


def test_unit_cell_refuses_what_it_cannot_do():
    layer = layer_of(UnitCellRPUConfig(device=VectorUnitCell(unit_cell_devices=[SoftBoundsDevice()])))
    with pytest.raises(ValueError, match=r"closed-loop write of unit cells"):
        layer.tile.realistic_write(layer.weight_matrix())


def test_layer_weights_follow_the_visible_weight_written_by_columns():
    """After each step the layer's weights equal the cell's visible weight,
    though a Tiki-Taka step writes only the columns its transfers changed
    (gamma 0: the weight is C's); a write into the layer's weights from
    outside is undone by the next step's whole write (the devices hold the
    weights); so is a tile whose state was loaded."""
    cfg = UnitCellRPUConfig(device=TransferCompound(unit_cell_devices=[SoftBoundsDevice(), SoftBoundsDevice()],
                                                    n_reads_per_transfer=2))
    cfg.mapping.max_input_size = 4
    cfg.mapping.weight_scaling_omega = 1.0
    layer = layer_of(cfg, n_in=10, seed=4, mapped=True)
    tile = layer.tile

    def synced():
        return torch.equal(layer.weight_matrix(), tile.to_digital_units(tile.device_state.visible()))

    for _ in range(3):
        train_rows(layer, torch.randn(4, 10), 0.1)
        assert synced()
    cols = tile.device_state.take_changed()
    assert cols is not None and cols.numel() == 0  # taken by the step
    with torch.no_grad():
        layer.weight.add_(1.0)  # from outside
    assert not synced()
    train_rows(layer, torch.randn(4, 10), 0.1)
    assert synced()
    tile.device_state.load_state_dict(tile.device_state.state_dict())
    assert tile.device_state.take_changed() is None


def test_column_reads_are_the_tiles_forward_of_one_hot_inputs():
    """A transfer read of column j of each tile (a one-input tile holding
    the column, without IR drop) equals the tile array's own forward pass of
    the unit vector e_j through the same periphery (7-bit DAC, 9-bit ADC,
    no noise, so both are deterministic); with IR drop the whole tiles are
    read and the result differs by the drop."""
    io_ = IOParameters(out_noise=0.0, noise_management=NoiseManagementType.NONE, bound_management=BoundManagementType.NONE)
    cfg = perfect_config(TransferCompound(unit_cell_devices=[exact_device(), exact_device()], transfer_forward=io_))
    cfg.forward = io_
    cfg.mapping.max_input_size = 4
    layer = layer_of(cfg, n_in=10, n_out=6, seed=5, mapped=True)
    st = layer.tile.device_state
    st.weights[0].copy_(torch.rand_like(st.weights[0]) - 0.5)
    cols = torch.tensor([[1], [0], [2]])  # one column of each of the pieces (4, 3, 3)
    read = st.reads.columns(st.weights[0], io_, cols)  # (G, n_in, 1, N)
    onehot = torch.zeros(1, 3, 10)
    for p, j in enumerate([1, 4 + 0, 7 + 2]):
        onehot[0, p, j] = 1.0
    with torch.no_grad():
        layer.tile.eval()
        ref = layer.tile(onehot, st.weights[0])  # the layer's tile array on the unit vectors
    torch.testing.assert_close(read.reshape(1, 3, -1), ref, rtol=0, atol=0)
    io_.ir_drop, io_.ir_drop_g_ratio = 1.0, 2.0  # a strong drop (the ADC hides a weak one): whole tiles read
    dropped = st.reads.columns(st.weights[0], io_, cols)
    fwd = layer.tile.rpu_config.forward  # the tile's own copy of the config
    fwd.ir_drop, fwd.ir_drop_g_ratio = 1.0, 2.0
    with torch.no_grad():
        ref = layer.tile(onehot, st.weights[0])
    assert not torch.equal(dropped, read)
    torch.testing.assert_close(dropped.reshape(1, 3, -1), ref, rtol=0, atol=0)


def test_one_sided_copy_inverted_mirrors_g_plus():
    """copy_inverted (aihwkit's C++): g+ swaps its own up and down steps and
    mirrors its bounds; its slopes are g-'s, negated and swapped."""
    from fxanalog.config import LinearStepDevice
    dev = LinearStepDevice(gamma_up=0.5, gamma_down=0.2)
    plain = layer_of(UnitCellRPUConfig(device=OneSidedUnitCell(unit_cell_devices=[dev])), seed=7).tile.device_state
    inv = layer_of(UnitCellRPUConfig(device=OneSidedUnitCell(unit_cell_devices=[dev], copy_inverted=True)),
                   seed=7).tile.device_state
    names = plain.rules[1].pulse_names
    a, b = plain.params[1], inv.params[1]  # the same draws (same seed), g+
    g_minus = plain.params[0]
    col = {n: i for i, n in enumerate(names)}
    torch.testing.assert_close(b[..., col["scale_up"]], a[..., col["scale_down"]])
    torch.testing.assert_close(b[..., col["scale_down"]], a[..., col["scale_up"]])
    torch.testing.assert_close(b[..., col["b_max"]], -a[..., col["b_min"]])
    torch.testing.assert_close(b[..., col["b_min"]], -a[..., col["b_max"]])
    torch.testing.assert_close(b[..., col["slope_up"]], -g_minus[..., col["slope_down"]])
    torch.testing.assert_close(b[..., col["slope_down"]], -g_minus[..., col["slope_up"]])
    torch.testing.assert_close(inv.params[0], g_minus)  # g- untouched


def test_tiki_taka_through_the_torch_compile_backend():
    """The rows recorded under torch.compile (the fxanalog backend) reach
    the cell: after a step the fast device holds the SGD update (exact
    devices and update: -fast_lr g^T x) and the layer shows the visible
    weight."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 4, bias=False))
    cfg = perfect_config(transfer_cell(transfer_every=0.0))  # no transfer: A alone moves
    be = fxanalog.backend(cfg, inner="inductor", mapped=False, model=net)
    model = torch.compile(net, backend=be)
    x = torch.randn(5, 6)
    g = torch.linspace(-1, 1, 4).expand(5, -1)
    model(x)  # the backend builds the analog layer at the first call
    opt = AnalogSGD(net.parameters(), lr=0.1)
    opt.zero_grad()
    (model(x) * g).sum().backward()
    opt.step()
    (_, layer), = be.named_analog_layers()
    st = layer.tile.device_state
    torch.testing.assert_close(st.weights[0, 0], -1.0 * g.T @ x, rtol=1e-5, atol=1e-6)  # fast_lr 1
    torch.testing.assert_close(layer.weight_matrix(), layer.tile.to_digital_units(st.visible()))
