"""Inference physics on every tile of a model: thin loops over the analog
layers, each calling its tile (``fxanalog.tile.AnalogTile``), which owns the
state and its transitions.

Deployment (eval mode):

* ``program_analog_weights(model)``: every tile draws its programming noise
  and drift exponents once and keeps that programmed state;
* ``drift_analog_weights(model, t)``: every tile ``t`` seconds after
  programming (drift, 1/f read noise, drift compensation), always from the
  programmed state. Called before programming, it programs first.

Training (hardware-aware training):

* the weight modifier (``rpu_config.modifier``) acts inside each training
  forward (``AnalogTile.tiles``);
* ``install_weight_clipping(optimizer, model)``: clipping (``rpu_config.clip``)
  and remapping (``rpu_config.remap``) after every optimizer step
  (``post_update_step``).

Writing and reading as on a chip:

* ``realistic_write(model)``: closed-loop programming (program and verify)
  of every tile, vectorized over all tiles of a layer;
* ``read_weights(layer)``: least-squares estimate of the weights from noisy
  forward passes.

``model`` may itself be one analog layer. Noise is drawn from torch's
global generator (``fxanalog.manual_seed``). docs/physics.md states the
formulas.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from fxanalog import programming
from fxanalog.hwa import apply_weight_modifier
from fxanalog.nn.modules import AnalogLayerBase, drift_layers, named_analog_layers, program_layers
from fxanalog.programming import register_write_step

__all__ = [
    "program_analog_weights",
    "drift_analog_weights",
    "remap_analog_weights",
    "realistic_write",
    "read_weights",
    "register_write_step",
    "apply_weight_modifier",
    "clip_weights",
    "remap_weights",
    "post_update_step",
    "install_weight_clipping",
]


def _layers(model: nn.Module, what: str) -> list[tuple[str, AnalogLayerBase]]:
    layers = named_analog_layers(model)
    if not layers:
        raise ValueError(f"{what}: the model has no analog layers; convert it first (fxanalog.compile)")
    return layers


def program_analog_weights(model: nn.Module, noise_model=None) -> None:
    """Program every tile of ``model`` (eval mode): draw the programming noise
    and drift exponents of all devices once (vectorized per layer) and keep
    them, with the drift-compensation reference, in the tiles' buffers. A
    ``noise_model`` given replaces every layer's (as aihwkit's).

    Layers without a noise model (``FloatingPointRPUConfig``) are left as
    they are. Raises ``ValueError`` in training mode (checked on every layer
    before any is programmed). The same as ``AnalogSequential``'s method:
    one loop (``fxanalog.nn.modules.program_layers``) over the layers'
    ``program_analog_weights``, which call their tiles."""
    program_layers(model, noise_model)


def drift_analog_weights(model: nn.Module, t_inference: float = 0.0) -> None:
    """Set every tile to its state ``t_inference`` seconds after programming
    (eval mode): drift and 1/f read noise of the noise model, recomputed from
    the programmed state (not cumulative), then the drift compensation.

    A layer not yet programmed is programmed first. Raises ``ValueError`` in
    training mode or for a negative or non-numeric time
    (``fxanalog.nn.modules.drift_layers``)."""
    drift_layers(model, t_inference)


def remap_analog_weights(model: nn.Module, weight_scaling_omega: Optional[float] = 1.0) -> None:
    """aihwkit's ``remap_analog_weights`` on every analog layer: mapping
    scales anew from the digital weights for ``weight_scaling_omega``
    (``AnalogLayerBase.remap_analog_weights``)."""
    for _, layer in _layers(model, "remap_analog_weights"):
        layer.remap_analog_weights(weight_scaling_omega)


def realistic_write(model: nn.Module, tolerance: float = 0.01, max_iterations: int = 100,
                    probe: str = "auto") -> dict[str, dict]:
    """Write every layer's weights by closed-loop programming
    (``AnalogTile.realistic_write``): the written weights replace the
    layer's digital weights (the programmed state is cleared). ``probe``:
    ``"auto"`` draws a verify read from its closed form where the tile's
    forward has one (docs/physics.md), ``"forward"`` always runs the tile's
    forward on the probe rows.

    Returns ``{layer name: {"iterations": writes, "error": max over tiles of
    the measured relative error when the tile was found done (or the last
    one)}}``; each report is also kept as ``layer.tile.programming_report``.
    """
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"realistic_write: tolerance = {tolerance!r}: expected a number > 0")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"realistic_write: max_iterations = {max_iterations!r}: expected a whole number >= 1")
    if probe not in programming.PROBES:
        raise ValueError(f"realistic_write: probe = {probe!r}: expected one of {programming.PROBES}")
    return {name: layer.tile.realistic_write(layer.weight_matrix(), float(tolerance), max_iterations, probe)
            for name, layer in _layers(model, "realistic_write")}


def read_weights(layer: nn.Module) -> tuple[Tensor, Optional[Tensor]]:
    """A layer's effective weights estimated from noisy forward passes (each
    tile gets X ~ N(0, 1) of shape (10 n_in, n_in) through its full forward;
    ``W_hat = lstsq(X, Y)^T``), in the layer's weight shape, and a copy of
    the bias: ``layer.get_weights(realistic=True)``."""
    if not isinstance(layer, AnalogLayerBase):
        raise TypeError(f"read_weights: expected an analog layer, got {type(layer).__name__}")
    return layer.get_weights(realistic=True)


def clip_weights(model: nn.Module) -> None:
    """Clip the tile weights of every layer whose config asks for it
    (``rpu_config.clip``), per tile: FIXED_VALUE to +-fixed_value,
    LAYER_GAUSSIAN to +-sigma std(w) (population std), AVERAGE_CHANNEL_MAX to
    +- the mean over rows of max|w_row|."""
    for _, layer in named_analog_layers(model):
        layer.tile.clip_(layer.weight_matrix())


def remap_weights(model: nn.Module) -> None:
    """Remap the tile weights of every layer whose config asks for it
    (``rpu_config.remap``); the effective weights do not change."""
    for _, layer in named_analog_layers(model):
        layer.tile.remap(layer.weight_matrix())


def post_update_step(model: nn.Module) -> None:
    """What follows an optimizer step, for every tile: clipping, then remapping."""
    for _, layer in named_analog_layers(model):
        layer.tile.post_update_step(layer.weight_matrix())


def install_weight_clipping(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Run ``post_update_step(model)`` (clipping and remapping) after every
    ``optimizer.step()``, for any torch optimizer. Returns the hook's handle
    (``handle.remove()`` uninstalls it)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"install_weight_clipping: expected a torch optimizer, got {type(optimizer).__name__}")
    named_analog_layers(model)  # type check
    return optimizer.register_step_post_hook(lambda opt, args, kwargs: post_update_step(model))
