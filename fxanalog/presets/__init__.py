"""Presets: aihwkit's training and inference presets, the command line's named configs, example models.

aihwkit's presets, with its names and published parameters (``from
fxanalog.presets import ReRamSBPreset`` where aihwkit has ``from
aihwkit.simulator.presets import ReRamSBPreset``), one module per group as
in aihwkit:

* ``devices``: devices fitted to measurements (``ReRamSBPresetDevice``, ...);
* ``compounds``: ``PCMPresetUnitCell``;
* ``utils``: the periphery and update of the presets (``PresetIOParameters``,
  ``PresetUpdateParameters``, ``StandardIOParameters``);
* ``configs``: the training configs (``ReRamSBPreset``, ``ReRamSB2Preset``,
  ``TikiTakaReRamESPreset``, ``MixedPrecisionPCMPreset``, ...);
* ``inference``: ``StandardHWATrainingPreset``.

Config presets by name (``fxanalog summary MODEL --config NAME``)::

    from fxanalog.presets import get_preset
    cfg = get_preset("pcm")          # a fresh InferenceRPUConfig each call

``load_config`` also reads a JSON file in the ``to_dict`` format, which is how
a config travels from Python to the command line::

    import json
    json.dump(cfg.to_dict(), open("my-config.json", "w"))
    # fxanalog summary fxanalog.presets:small_cnn --input-shape 1,3,32,32 --config my-config.json

Model factories (``package.module:factory`` on the command line):
``fxanalog.presets:small_cnn``, ``fxanalog.presets:tiny_mlp``.
"""

from __future__ import annotations

import json
import os
from typing import Callable

from torch import nn

from fxanalog.config import (
    FloatingPointRPUConfig,
    InferenceRPUConfig,
    IOParameters,
    WeightClipType,
    WeightModifierType,
    config_from_dict,
)

from fxanalog.presets import compounds, configs, devices, inference, utils
from fxanalog.presets.compounds import *  # noqa: F401,F403  (aihwkit's names, listed in __all__)
from fxanalog.presets.configs import *  # noqa: F401,F403
from fxanalog.presets.devices import *  # noqa: F401,F403
from fxanalog.presets.inference import *  # noqa: F401,F403
from fxanalog.presets.utils import *  # noqa: F401,F403
from fxanalog.presets.chopped import *  # noqa: F401,F403  (TTv2, ChoppedTTv2, AGAD; binds `chopped` too)

__all__ = (["PRESETS", "preset_names", "get_preset", "load_config", "small_cnn", "tiny_mlp"] + devices.__all__
           + compounds.__all__ + utils.__all__ + configs.__all__ + inference.__all__ + chopped.__all__)


def _inference() -> InferenceRPUConfig:
    return InferenceRPUConfig()


def _pcm() -> InferenceRPUConfig:
    from fxanalog.config.noise import GlobalDriftCompensation, PCMLikeNoiseModel

    cfg = InferenceRPUConfig(noise_model=PCMLikeNoiseModel(), drift_compensation=GlobalDriftCompensation())
    cfg.mapping.weight_scaling_omega = 1.0
    return cfg


def _pcm_hwa() -> InferenceRPUConfig:
    # The hardware-aware training recipe of Joshi et al., Nature Communications
    # 11, 2473 (2020), and of aihwkit's HWA tutorial (notebooks/tutorial/
    # hw_aware_training.ipynb): Gaussian weight noise relative to each tile's
    # max|W| in every training forward (on top of the noisy forward, output
    # noise 0.06), and the weights clipped to 2 standard deviations of their
    # tile after every optimizer step (docs/physics.md, "Hardware-aware
    # training"; the demo's measurements: docs/getting-started.md).
    cfg = _pcm()
    cfg.modifier.type = WeightModifierType.ADD_NORMAL
    cfg.modifier.std_dev = 0.08
    cfg.modifier.rel_to_actual_wmax = True
    cfg.clip.type = WeightClipType.LAYER_GAUSSIAN
    cfg.clip.sigma = 2.0
    return cfg


def _ideal() -> InferenceRPUConfig:
    cfg = InferenceRPUConfig(forward=IOParameters(is_perfect=True))
    cfg.mapping.weight_scaling_omega = 1.0
    return cfg


def _floating_point() -> FloatingPointRPUConfig:
    return FloatingPointRPUConfig()


#: name -> (one-line description, builder of a fresh config)
PRESETS: dict[str, tuple[str, Callable]] = {
    "inference": ("InferenceRPUConfig() with aihwkit's defaults (no weight scaling)", _inference),
    "pcm": (
        "InferenceRPUConfig with weight_scaling_omega=1.0, the PCM noise model and global drift compensation",
        _pcm,
    ),
    "pcm-hwa": (
        "'pcm' plus hardware-aware training: ADD_NORMAL weight noise (std_dev 0.08 of max|W|), weights clipped "
        "to 2 std (LAYER_GAUSSIAN sigma 2.0) after each optimizer step (the demo's)",
        _pcm_hwa,
    ),
    "ideal": (
        "InferenceRPUConfig with a perfect periphery (forward.is_perfect=True) and weight_scaling_omega=1.0",
        _ideal,
    ),
    "floating-point": ("FloatingPointRPUConfig(): exactly the digital result", _floating_point),
}


def preset_names() -> list[str]:
    """The names ``get_preset`` knows."""
    return list(PRESETS)


def get_preset(name: str):
    """A fresh config for a preset name (see ``PRESETS``)."""
    if name not in PRESETS:
        raise ValueError(f"config preset {name!r}: unknown; expected one of {', '.join(PRESETS)}")
    return PRESETS[name][1]()


def load_config(spec: str):
    """A preset name, or the path of a JSON file written from ``config.to_dict()``.

    Raises ``ValueError`` with a one-line message naming the file, the bad
    field or the preset names.
    """
    if spec in PRESETS:
        return get_preset(spec)
    if not (spec.endswith(".json") or os.path.sep in spec or os.path.exists(spec)):
        raise ValueError(
            f"config {spec!r}: not a preset ({', '.join(PRESETS)}) nor a JSON file"
        )
    try:
        with open(spec, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f"config file {spec!r}: cannot read it: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"config file {spec!r}: not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {spec!r}: expected a JSON object (a config's to_dict()), "
                         f"got {type(data).__name__}")
    if "class" not in data:
        raise ValueError(f"config file {spec!r}: no \"class\" entry; expected a config's to_dict(), "
                         "e.g. {\"class\": \"InferenceRPUConfig\", ...}")
    try:
        cfg = config_from_dict(data)
        cfg.validate()
    except (ValueError, TypeError) as e:
        raise ValueError(f"config file {spec!r}: {e}") from None
    return cfg


# --------------------------------------------------------------------------
# Example models (factories for ``package.module:factory``)


def small_cnn(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """Two convolutions and a classifier; any input size of at least 2x2."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def tiny_mlp(in_features: int = 16, hidden: int = 32, out_features: int = 4) -> nn.Module:
    """Linear -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
