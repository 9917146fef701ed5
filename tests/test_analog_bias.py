"""Analog bias (``mapping.digital_bias = False``, docs/tile.md "Analog bias").

The bias is the tiles' last input column, driven by a constant input 1.0.
Expected values come from plain torch (perfect periphery), from the loop
implementation of a tile in ``reference_tile.py`` applied by hand to
``[x, 1]`` and ``[W | b]``, from hand computations of the weight scaling,
and from the digital gradient formulas.
"""

import pytest
import torch
import torch.nn.functional as F

import fxanalog
from fxanalog import InferenceRPUConfig, WeightClipType
from fxanalog.config import check_rpu_config
from fxanalog.nn import AnalogConv2d, AnalogLinear

from reference_tile import reference_tile, reference_tile_array


def analog_bias_config(**forward) -> InferenceRPUConfig:
    """Analog bias, no noise, the given forward fields."""
    cfg = InferenceRPUConfig()
    cfg.mapping.digital_bias = False
    cfg.forward.out_noise = 0.0
    for k, v in forward.items():
        setattr(cfg.forward, k, v)
    return cfg


def linear(w, b, cfg) -> AnalogLinear:
    layer = AnalogLinear(w.shape[1], w.shape[0], bias=b is not None, rpu_config=cfg)
    layer.set_weights(w, b)
    return layer


def test_digital_bias_false_is_accepted_and_without_bias_changes_nothing():
    cfg = InferenceRPUConfig()  # noisy defaults: out_noise 0.06, DAC and ADC on
    cfg.mapping.digital_bias = False
    check_rpu_config(cfg, "cfg")
    w = torch.randn(4, 6) * 0.3
    x = torch.randn(5, 6)
    outs = []
    for digital in (True, False):
        c = InferenceRPUConfig()
        c.mapping.digital_bias = digital
        layer = linear(w, None, c)
        assert not layer.analog_bias and layer.in_sizes == [6]
        torch.manual_seed(3)
        outs.append(layer(x))
    assert torch.equal(outs[0], outs[1])
    assert AnalogLinear(6, 4, rpu_config=cfg).analog_bias  # with a bias: the tile column


def test_perfect_periphery_is_x_wt_plus_b_and_gradients():
    cfg = analog_bias_config(is_perfect=True)
    w, b = torch.randn(3, 5), torch.randn(3)
    layer = linear(w, b, cfg)
    assert layer.in_sizes == [6] and layer.tile_shape == (3, 6)
    x = torch.randn(7, 5, requires_grad=True)
    y = layer(x)
    assert torch.allclose(y, x @ w.T + b, atol=1e-5)
    g = torch.randn(7, 3)
    y.backward(g)
    assert torch.allclose(layer.bias.grad, g.sum(0), atol=1e-5)
    assert torch.allclose(layer.weight.grad, g.T @ x.detach(), atol=1e-5)
    assert torch.allclose(x.grad, g @ w, atol=1e-5)


def test_bias_gradient_is_the_sum_of_output_gradients_with_noise():
    # Straight-through: the column's raw input is the constant 1, so the
    # bias gradient is sum_b d_b whatever the noise and quantization.
    cfg = InferenceRPUConfig()
    cfg.mapping.digital_bias = False
    layer = AnalogLinear(5, 3, rpu_config=cfg).train()
    x = torch.randn(8, 5)
    g = torch.randn(8, 3)
    layer(x).backward(g)
    assert torch.allclose(layer.bias.grad, g.sum(0), atol=1e-5)
    assert torch.allclose(layer.weight.grad, g.T @ x, atol=1e-5)


def test_quantized_output_is_the_tile_applied_to_x_and_one():
    # inp_res 1/8: a coarse DAC, so the constant 1 taking part in the noise
    # management (alpha = max(max|x|, 1)) is visible.
    cfg = analog_bias_config(inp_res=1 / 8, out_res=1 / 64, out_bound=4.0)
    torch.manual_seed(0)
    w, b = torch.randn(4, 5) * 0.4, torch.randn(4) * 0.5
    layer = linear(w, b, cfg).eval()
    for scale in (0.3, 3.0):  # max|x| below 1 (alpha = 1) and above 1
        x = torch.randn(6, 5) * scale
        xa = torch.cat([x, torch.ones(6, 1)], dim=1)
        expected = reference_tile(xa, torch.cat([w, b[:, None]], dim=1), cfg.forward)
        assert torch.allclose(layer(x).double(), expected, atol=1e-5)
        # the digital bias adds b after the ADC, exactly: another result
        digital = InferenceRPUConfig()
        digital.forward = cfg.forward
        other = linear(w, b, digital).eval()(x)
        assert (other - layer(x)).abs().max() > 1e-3


def test_conv2d_grouped_perfect_and_quantized():
    cfg = analog_bias_config(is_perfect=True)
    layer = AnalogConv2d(4, 6, 3, padding=1, groups=2, rpu_config=cfg)
    assert layer.analog_bias and layer.in_sizes == [2 * 9 + 1]
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1, groups=2), atol=1e-5)

    q = analog_bias_config(inp_res=1 / 16, out_res=1 / 128, out_bound=8.0)
    layer = AnalogConv2d(2, 3, 2, rpu_config=q).eval()
    x = torch.randn(1, 2, 3, 3)
    rows = F.unfold(x, 2)[0].T  # (L, C k k), channel-major as the weight
    rows = torch.cat([rows, torch.ones(rows.shape[0], 1)], dim=1)
    wb = torch.cat([layer.weight.detach().reshape(3, -1), layer.bias.detach()[:, None]], dim=1)
    expected = reference_tile(rows, wb, q.forward).T.reshape(1, 3, 2, 2)
    assert torch.allclose(layer(x).double(), expected, atol=1e-5)


@pytest.mark.parametrize("K, sizes, digital_sizes", [(7, [4, 4], [4, 3]), (8, [3, 3, 3], [4, 4]), (3, [4], [3])])
def test_tile_split_counts_the_bias_column_in_the_last_piece(K, sizes, digital_sizes):
    cfg = analog_bias_config(inp_res=1 / 8, out_res=1 / 64, out_bound=4.0)
    cfg.mapping.max_input_size = 4
    torch.manual_seed(1)
    w, b = torch.randn(3, K) * 0.4, torch.randn(3) * 0.5
    layer = linear(w, b, cfg).eval()
    assert layer.in_sizes == sizes
    digital = InferenceRPUConfig()
    digital.mapping.max_input_size = 4
    assert AnalogLinear(K, 3, rpu_config=digital).in_sizes == digital_sizes
    x = torch.randn(5, K) * 2
    xa = torch.cat([x, torch.ones(5, 1)], dim=1)
    expected = reference_tile_array(xa, torch.cat([w, b[:, None]], dim=1), cfg.forward, 4, 0)
    assert torch.allclose(layer(x).double(), expected, atol=1e-5)


def test_weight_scaling_includes_the_bias_column():
    cfg = analog_bias_config(is_perfect=True)
    cfg.mapping.weight_scaling_omega = 0.5
    w = torch.tensor([[0.2, -0.4], [0.1, 0.3]])
    b = torch.tensor([2.0, -0.05])
    layer = linear(w, b, cfg)
    # alpha = max|[W | b]| / omega = 2 / 0.5 = 4 (the bias is the largest weight)
    assert torch.allclose(layer.tile.mapping_scales, torch.tensor([4.0]))
    tw, tb = layer.get_weights(apply_weight_scaling=False)
    assert torch.allclose(tw, w / 4) and torch.allclose(tb, b / 4)
    x = torch.randn(3, 2)
    assert torch.allclose(layer(x), x @ w.T + b, atol=1e-5)

    cfg.mapping.weight_scaling_columnwise = True  # per output row: max(0.4, 2) and max(0.3, 0.05)
    layer = linear(w, b, cfg)
    assert torch.allclose(layer.tile.mapping_scales, torch.tensor([4.0, 0.6]))
    tw, tb = layer.get_weights(apply_weight_scaling=False)
    assert torch.allclose(tb, torch.tensor([0.5, -0.05 / 0.6]))


def test_per_tile_scaling_of_the_piece_holding_the_bias():
    cfg = analog_bias_config(is_perfect=True)
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.mapping.max_input_size = 2
    w = torch.tensor([[0.5, -0.25, 0.1]])
    b = torch.tensor([-2.0])
    layer = linear(w, b, cfg)
    assert layer.in_sizes == [2, 2]  # [w0, w1], [w2, b]
    assert torch.allclose(layer.tile.mapping_scales.flatten(), torch.tensor([0.5, 2.0]))
    tw, tb = layer.get_weights(apply_weight_scaling=False)
    assert torch.allclose(tw, torch.tensor([[1.0, -0.5, 0.05]])) and torch.allclose(tb, torch.tensor([-1.0]))


def test_get_and_set_weights_round_trip():
    cfg = analog_bias_config()
    cfg.mapping.weight_scaling_omega = 1.0
    layer = AnalogLinear(4, 3, rpu_config=cfg)
    w, b = torch.randn(3, 4), torch.randn(3) * 3
    layer.set_weights(w, b)
    w2, b2 = layer.get_weights()
    assert torch.allclose(w2, w, atol=1e-6) and torch.allclose(b2, b, atol=1e-6)
    # tile units in, tile units out; the mapping scales kept
    tw, tb = torch.randn(3, 4) * 0.5, torch.randn(3) * 0.5
    layer.set_weights(tw, tb, apply_weight_scaling=False)
    tw2, tb2 = layer.get_weights(apply_weight_scaling=False)
    assert torch.allclose(tw2, tw, atol=1e-6) and torch.allclose(tb2, tb, atol=1e-6)
    s = layer.tile.mapping_scales
    assert torch.allclose(layer.bias.detach(), tb * s, atol=1e-6)
    # the bias kept when only the weight is given, in digital or tile units
    layer.set_weights(tw, apply_weight_scaling=False)
    assert torch.allclose(layer.bias.detach(), tb * s, atol=1e-6)
    layer.set_weights(w)
    assert torch.allclose(layer.get_weights()[1], tb * s, atol=1e-6)
    # matrix form and the layer's state dict keys
    assert layer.get_weights(matrix=True)[0].shape == (3, 4)
    keys = {k for k in layer.state_dict() if not k.startswith("tile.")}
    assert keys == {"weight", "bias"}


def test_programming_and_drift_apply_to_the_bias_column():
    cfg = analog_bias_config(is_perfect=True)  # the periphery exact: the output shows the weights
    cfg.mapping.weight_scaling_omega = 1.0
    torch.manual_seed(2)
    layer = AnalogLinear(6, 4, rpu_config=cfg).eval()
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.8, -0.6, 0.4, -0.2]))
    layer.remap_analog_weights(1.0)
    layer.program_analog_weights()
    layer.drift_analog_weights(3600.0)
    we, be = layer.get_weights()
    assert not torch.allclose(be, layer.bias.detach(), atol=1e-4)  # programming noise on the column
    assert (be - layer.bias.detach()).abs().max() < 0.5
    x = torch.randn(5, 6)
    assert torch.allclose(layer(x), x @ we.T + be, atol=1e-4)


def test_clipping_writes_the_bias_back():
    cfg = analog_bias_config()
    cfg.clip.type = WeightClipType.FIXED_VALUE
    cfg.clip.fixed_value = 0.5
    layer = linear(torch.tensor([[0.2, -0.9]]), torch.tensor([1.5]), cfg)
    layer.tile.post_update_step(layer.weight_matrix())
    assert torch.equal(layer.weight.detach(), torch.tensor([[0.2, -0.5]]))
    assert torch.equal(layer.bias.detach(), torch.tensor([0.5]))  # the bias column clipped too


def test_checkpoints():
    cfg = analog_bias_config()
    a = AnalogLinear(5, 2, rpu_config=cfg)
    b = AnalogLinear(5, 2, rpu_config=cfg)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.bias, a.bias) and torch.equal(b.weight, a.weight)
    # a digital checkpoint: the bias goes on the column
    lin = torch.nn.Linear(5, 2)
    b.load_state_dict(lin.state_dict())
    assert torch.equal(b.get_weights()[1], lin.bias.detach())
    # a checkpoint with a digital bias: another config and another split, the layer unchanged
    before = b.bias.detach().clone()
    other = analog_bias_config()
    other.mapping.digital_bias = True
    digital = AnalogLinear(5, 2, rpu_config=other).state_dict()
    with pytest.raises(RuntimeError, match=r"in_sizes: checkpoint \[5\], this model \[6\]; "
                                           r"mapping\.digital_bias: checkpoint True, this model False"):
        b.load_state_dict(digital)
    with pytest.raises(RuntimeError, match=r"split differently.*digital_bias"):
        b.load_state_dict(digital, load_rpu_config=True)
    assert torch.equal(b.bias.detach(), before)


def test_refused_combinations_name_the_field():
    cfg = fxanalog.SingleRPUConfig()
    cfg.mapping.digital_bias = False
    with pytest.raises(ValueError, match=r"mapping\.digital_bias = False with a SingleRPUConfig"):
        AnalogLinear(4, 2, rpu_config=cfg)
    assert not AnalogLinear(4, 2, bias=False, rpu_config=cfg).analog_bias  # no bias: nothing to put on the tile

    ir = analog_bias_config()
    ir.pre_post.input_range.enable = True
    with pytest.raises(ValueError, match=r"digital_bias = False with pre_post\.input_range\.enable = True"):
        AnalogLinear(4, 2, rpu_config=ir)

    layer = AnalogLinear(4, 2, rpu_config=analog_bias_config())
    with pytest.raises(ValueError, match=r"digital_bias = True, but the tile holds the bias column"):
        layer.tile.replace_rpu_config(InferenceRPUConfig())
    assert not layer.rpu_config.mapping.digital_bias  # the layer unchanged


def test_realistic_read_and_write_include_the_bias_column():
    cfg = analog_bias_config(inp_res=0.0, out_res=0.0)  # a noise-free tile: the read is exact
    w, b = torch.randn(3, 4) * 0.5, torch.tensor([0.7, -0.3, 0.1])
    layer = linear(w, b, cfg)
    rw, rb = layer.get_weights(realistic=True)
    assert torch.allclose(rw, w, atol=1e-4) and torch.allclose(rb, b, atol=1e-4)
    # closed-loop writing (with the config's programming noise) writes the column into the bias
    torch.manual_seed(4)
    layer.set_weights(w, b, realistic=True)
    assert not torch.equal(layer.bias.detach(), b)
    assert (layer.bias.detach() - b).abs().max() < 0.05 * max(w.abs().max(), b.abs().max())


@pytest.mark.parametrize("bias", [True, False])
def test_explain_plans_the_tiles_the_layer_builds(bias):
    # explain (a dry run) plans the bias column as one more input, as the built layer holds it:
    # Linear(8, 3) with max_input_size 4 is 9 inputs in pieces of 3 with a bias, 8 in pieces of 4 without.
    import warnings

    cfg = InferenceRPUConfig()
    cfg.mapping.digital_bias = False
    cfg.mapping.max_input_size = 4
    model = torch.nn.Sequential(torch.nn.Linear(8, 3, bias=bias))
    x = torch.randn(2, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = fxanalog.explain(model, cfg, example_inputs=(x,)).rows[0]
        (tile,) = fxanalog.compile(model, cfg, example_inputs=(x,)).analog_tiles()
    assert row["in_sizes"] == list(tile.geometry.in_sizes) == ([3, 3, 3] if bias else [4, 4])
    assert row["tiles"] == (3 if bias else 2)
