"""Generates ``docs/config-reference.md`` from the config dataclasses.

Every field of every registered config class (``fxanalog.config``'s registry:
RPU configs, their parameter groups, noise models, drift compensations) and
every member of the config enums gets a row: name, type, default (read from a
fresh instance) and meaning. Meanings come from the field's metadata
(``field(..., metadata={"doc": "..."})``) or, else, from ``MEANINGS`` below.
A missing meaning is an error, so a new field cannot go undocumented.

    python -m fxanalog._docgen          # rewrite docs/config-reference.md
    python -m fxanalog._docgen --check  # exit 1 if the file is stale

``tests/test_docs.py`` fails when the committed file differs from a fresh
generation.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import importlib.util
import os
import sys

__all__ = ["MEANINGS", "ENUM_MEANINGS", "generate", "missing_meanings", "config_classes", "config_enums",
           "default_path", "main"]

# --------------------------------------------------------------------------
# Meanings: class name -> field -> text (Markdown, one line)

MEANINGS: dict[str, dict[str, str]] = {
    "InferenceRPUConfig": {
        "forward": "Periphery of the forward pass (DAC, ADC, noise, noise and bound management).",
        "backward": "Periphery of the backward pass (the input gradient); perfect by default, so "
                    "hardware-aware training is a noisy forward with plain gradients.",
        "mapping": "How a layer's weights go onto tiles: weight scaling, tile sizes, digital bias.",
        "clip": "Clipping of the weights after each optimizer step (hardware-aware training).",
        "modifier": "Perturbation of the weights in each training forward pass (hardware-aware training).",
        "remap": "Remapping of the weights to the tile's range, the scales going to digital.",
        "pre_post": "Digital processing around the tiles: the learned input range (`PrePostProcessingParameter`).",
        "noise_model": "Programming noise, conductance drift and read noise applied by "
                       "`program_analog_weights` / `drift_analog_weights`.",
        "drift_compensation": "Digital correction of the drift (`GlobalDriftCompensation`), or `None` for none.",
    },
    "FloatingPointRPUConfig": {
        "mapping": "Tile sizes and scales; the tile computes exactly W x (its `forward` and `backward` "
                   "are perfect `IOParameters`).",
    },
    "IOParameters": {
        "is_perfect": "`True`: the tile computes exactly W x; none of the fields below applies.",
        "inp_bound": "DAC range is [-inp_bound, inp_bound] (must be 1.0 with noise management).",
        "inp_res": "DAC step as a fraction of the range (default 1/(2^7-2), 127 levels); a value > 1 is a "
                   "number of steps; <= 0 turns input quantization off.",
        "inp_sto_round": "Stochastic rounding at the DAC.",
        "inp_noise": "Additive Gaussian noise after the DAC, in normalized input units.",
        "out_bound": "ADC range is [-out_bound, out_bound], in normalized output units; <= 0: unbounded.",
        "out_res": "ADC step as a fraction of the range (default 1/(2^9-2), 511 levels); same convention "
                   "as `inp_res`.",
        "out_sto_round": "Stochastic rounding at the ADC.",
        "out_noise": "Additive Gaussian noise before the ADC, in normalized output units (its effect on the "
                     "result scales with the noise-management factor), drawn at every call.",
        "out_scale": "Digital factor applied to the output at the end.",
        "w_noise": "Weight read noise strength (see `w_noise_type`); 0 turns it off.",
        "w_noise_type": "Kind of weight read noise: `ADDITIVE_CONSTANT` (w_noise * ||v|| per output) or "
                        "`PCM_READ` (w_noise * sqrt(sum_j |w_ij| v_j^2) per output).",
        "noise_management": "Input scaling per input vector before the DAC: `ABS_MAX` (max|x|), `MAX`, "
                            "`CONSTANT` (nm_thres) or `NONE`.",
        "nm_thres": "`ABS_MAX`/`MAX`: upper cap on the scale when > 0; `CONSTANT`: the scale itself.",
        "bound_management": "`ITERATIVE`: when an output saturates the ADC, redo that input vector with "
                            "the input halved (r = 2, 4, ...); `NONE`: keep the clipped output.",
        "max_bm_factor": "Iterative bound management stops when the input reduction r exceeds this.",
        "max_bm_res": "... or when r exceeds max_bm_res divided by the DAC step.",
        "ir_drop": "Strength of the IR-drop model along the input lines; 0 turns it off.",
        "ir_drop_g_ratio": "Ratio of wire to device conductance in the IR-drop model (1/0.35/5e-6).",
        "out_nonlinearity": "Strength of the S-shaped ADC nonlinearity y/(1+|n y|); 0 turns it off.",
    },
    "MappingParameter": {
        "digital_bias": "The bias is added in digital after the tile (`False`, an analog bias column, "
                        "is not supported).",
        "weight_scaling_omega": "> 0: the tile holds W/alpha with alpha = max|W|/omega and alpha multiplies "
                                "the output in digital; 0: the weights go on the tile unscaled. 1.0 is the "
                                "usual choice.",
        "weight_scaling_columnwise": "Weight scaling per output (row of W) instead of per layer.",
        "learn_out_scaling": "A trainable digital output factor per tile (per column with "
                             "`out_scaling_columnwise`).",
        "out_scaling_columnwise": "With `learn_out_scaling`: one factor per output instead of one per layer.",
        "max_input_size": "Largest tile input count; bigger layers are split into balanced pieces whose "
                          "partial sums add in digital (0: unlimited).",
        "max_output_size": "Largest tile output count; bigger layers are split into balanced pieces "
                           "(0: unlimited).",
    },
    "WeightClipParameter": {
        "fixed_value": "`FIXED_VALUE`: clip the weights to [-fixed_value, fixed_value].",
        "sigma": "`LAYER_GAUSSIAN`: clip to +- sigma times the standard deviation of the layer's weights.",
        "type": "Kind of clipping applied after each optimizer step (`NONE` turns it off).",
    },
    "WeightModifierParameter": {
        "std_dev": "Noise strength of `ADD_NORMAL`, `MULT_NORMAL`, `DISCRETIZE_ADD_NORMAL` and `POLY`, "
                   "relative to amax (each tile's max|W|, or `assumed_wmax`); for `PCM_NOISE` the factor on "
                   "the PCM programming noise.",
        "per_batch_sample": "A separate perturbation per sample of the batch (each index of the input's "
                            "leading dimension) instead of one per forward pass; holds one weight copy per sample.",
        "res": "`DISCRETIZE`, `DISCRETIZE_ADD_NORMAL`: resolution of the weight discretization, as a "
               "fraction of amax (a value > 1 is a number of steps).",
        "sto_round": "Stochastic rounding in the discretization.",
        "pdrop": "Drop-connect probability: each weight is set to 0 with this probability (also "
                 "combined with the other types).",
        "enable_during_test": "Also perturb the weights in eval mode (use with care).",
        "rel_to_actual_wmax": "amax is the current max|W| of the layer; `False`: amax is `assumed_wmax`.",
        "assumed_wmax": "amax when `rel_to_actual_wmax` is `False`.",
        "coeffs": "`POLY`: coefficients c_k of the noise w += amax * std_dev * sum_k c_k (|w|/amax)^k * xi.",
        "type": "Kind of perturbation (`COPY`: none, the weights are used as they are).",
    },
    "WeightRemapParameter": {
        "remapped_wmax": "The weight value mapped to the largest conductance after remapping.",
        "max_scale_range": "aihwkit: largest allowed range of the remapping scales. Only 0 (no limit) is "
                           "supported.",
        "max_scale_ref": "aihwkit: reference (smallest) scale for `max_scale_range`. Only 0 is supported.",
        "type": "Kind of remapping: `LAYERWISE_SYMMETRIC` (one scale), `CHANNELWISE_SYMMETRIC` (per output) "
                "or `NONE`.",
    },
    "PrePostProcessingParameter": {
        "input_range": "The learned input range (`InputRangeParameter`).",
    },
    "InputRangeParameter": {
        "enable": "Clip each tile's inputs to [-r, r] and divide them by r before the DAC; multiply the "
                  "tile's output by r. One r per input piece of the tile array (`layer.input_range`).",
        "learn_input_range": "r is trained by the gradient below; `False`: r stays (after the "
                             "initialization from data).",
        "init_value": "Initial r.",
        "init_from_data": "Number of first training batches in which r <- |(r k + init_std_alpha std(x)) / "
                          "(k + 1)| (k: updates so far); 0: off.",
        "init_std_alpha": "Multiple of the inputs' standard deviation used by the initialization from data.",
        "decay": "Added to r's gradient, times r, while the fraction of unclipped inputs exceeds "
                 "`input_min_percentage` (the range shrinks).",
        "input_min_percentage": "Fraction of unclipped inputs above which `decay` applies.",
        "manage_output_clipping": "Widen r when the tile's outputs clip: r's gradient gets -(1 - f) r when "
                                  "the fraction f of unclipped outputs is below `output_min_percentage`. Needs "
                                  "noise and bound management `NONE` and an `out_bound`.",
        "output_min_percentage": "Fraction of unclipped outputs below which `manage_output_clipping` acts.",
        "gradient_scale": "Factor on r's clipping gradient (aihwkit applies it only with "
                          "`gradient_relative`; here always).",
        "gradient_relative": "Multiply r's clipping gradient by r.",
        "calibration_info": "Free text about a post-training calibration (kept, not used).",
    },
    "PCMLikeNoiseModel": {
        "prog_coeff": "Polynomial c0 + c1 gh + c2 gh^2 (gh = g/g_max) of the programming-noise standard "
                      "deviation in uS, fitted for g_max = 25 uS (Nandakumar et al., ICECS 2019).",
        "g_converter": "Mapping of a weight to the conductance pair (g+, g-).",
        "g_max": "Largest conductance in uS; scales the programming noise (sigma * g_max/25).",
        "t_read": "Duration of one read in seconds (read noise, 1/f).",
        "t_0": "Time in seconds between programming and the first read; drift is relative to it "
               "(t = t_inference + t_0).",
        "prog_noise_scale": "Factor on the programming noise (0 turns it off).",
        "read_noise_scale": "Factor on the read (1/f) noise (0 turns it off).",
        "drift_scale": "Factor on the drift exponents nu (0 turns drift off).",
    },
    "CustomDriftPCMLikeNoiseModel": {
        "custom_drift_model": "Measured drift statistics: `g_lst` (target conductances in uS, ascending), "
                              "`nu_mean_lst` and `nu_std_lst` (mean and spread of the drift exponent at each); "
                              "interpolated linearly in the conductance, clamped at the ends.",
    },
    "StateIndependentNoiseModel": {
        "g_converter": "Mapping of a weight to the conductance pair (g+, g-).",
        "g_max": "Largest conductance in uS; the read noise is relative to it.",
        "prog_coeff": "Polynomial c0 + c1 g/g_max + c2 (g/g_max)^2 of the programming-noise standard deviation "
                      "in uS (default: a constant 0.2 uS).",
        "prog_noise_scale": "Factor on the programming noise (0 turns it off).",
        "drift_nu_mean": "Mean of the drift exponent nu, the same for every conductance.",
        "drift_nu_std": "Device-to-device spread of nu: nu = |drift_nu_mean + drift_nu_std xi|.",
        "drift_scale": "Factor on the drift exponents (0 turns drift off).",
        "t_0": "Time in seconds between programming and the first read; drift is relative to it.",
        "read_noise_scale": "Factor on the read noise, |g/g_max| sqrt(ln((t + t_read)/(2 t_read))) (0 turns it off).",
        "t_read": "Duration of one read in seconds (read noise).",
    },
    "SinglePairConductanceConverter": {
        "g_max": "Conductance in uS of the largest weight magnitude: g = w * g_max / max|W| on g+ "
                 "(positive w) or g- (negative w).",
        "g_min": "Conductance in uS added to both devices of the pair (the zero weight).",
    },
}

ENUM_MEANINGS: dict[str, dict[str, str]] = {
    "NoiseManagementType": {
        "NONE": "No input scaling.",
        "ABS_MAX": "Divide each input vector by its largest magnitude (capped by `nm_thres` when > 0).",
        "MAX": "Divide each input vector by its largest value.",
        "CONSTANT": "Divide every input by `nm_thres`.",
    },
    "BoundManagementType": {
        "NONE": "Saturated outputs stay clipped.",
        "ITERATIVE": "Redo saturated input vectors with the input halved, up to `max_bm_factor`.",
    },
    "WeightNoiseType": {
        "NONE": "No weight read noise.",
        "ADDITIVE_CONSTANT": "Output noise w_noise * ||v||_2 (constant noise per weight).",
        "PCM_READ": "Output noise w_noise * sqrt(sum_j |w_ij| v_j^2) (noise grows with the conductance).",
    },
    "WeightClipType": {
        "NONE": "No clipping.",
        "FIXED_VALUE": "Clip to +- `fixed_value`.",
        "LAYER_GAUSSIAN": "Clip to +- `sigma` times the standard deviation of the layer's weights.",
        "AVERAGE_CHANNEL_MAX": "Clip to +- the mean over outputs of the largest magnitude of each output's weights.",
    },
    "WeightModifierType": {
        "NONE": "No perturbation.",
        "COPY": "No perturbation: the weights are used as they are.",
        "DISCRETIZE": "Round the weights to `res` steps of amax.",
        "MULT_NORMAL": "w += w * std_dev * amax * xi.",
        "ADD_NORMAL": "w += std_dev * amax * xi.",
        "DISCRETIZE_ADD_NORMAL": "`DISCRETIZE`, then `ADD_NORMAL`.",
        "POLY": "w += amax * std_dev * sum_k coeffs[k] (|w|/amax)^k * xi.",
        "PCM_NOISE": "The PCM programming noise of the config's noise model, scaled by `std_dev`, on each "
                     "tile's conductance pairs.",
        "DROP_CONNECT": "Set a fraction `pdrop` of the weights to 0.",
    },
    "WeightRemapType": {
        "NONE": "No remapping.",
        "LAYERWISE_SYMMETRIC": "One scale per layer: s = max|W| / remapped_wmax.",
        "CHANNELWISE_SYMMETRIC": "One scale per output.",
    },
}

_ORDER = [
    "InferenceRPUConfig",
    "FloatingPointRPUConfig",
    "IOParameters",
    "MappingParameter",
    "WeightModifierParameter",
    "WeightClipParameter",
    "WeightRemapParameter",
    "PrePostProcessingParameter",
    "InputRangeParameter",
    "PCMLikeNoiseModel",
    "CustomDriftPCMLikeNoiseModel",
    "StateIndependentNoiseModel",
    "SinglePairConductanceConverter",
    "GlobalDriftCompensation",
    "PerColumnDriftCompensation",
]

_INTRO = """\
# Config reference

Every field of fxanalog's configs, its default and its meaning. Names,
nesting and defaults are those of aihwkit's `InferenceRPUConfig` (see
[concepts](concepts.md) and the [physics](physics.md)).

This page is generated from the dataclasses by `python -m fxanalog._docgen`;
a test fails when it is out of date. Do not edit it by hand.

```python
from fxanalog import InferenceRPUConfig
from fxanalog.config import config_from_dict

cfg = InferenceRPUConfig()
cfg.forward.out_noise = 0.02          # fields as in aihwkit
cfg.mapping.weight_scaling_omega = 1.0
print(cfg)                            # shows what differs from the defaults
assert config_from_dict(cfg.to_dict()) == cfg   # the JSON format of --config
```
"""


# --------------------------------------------------------------------------
# Discovery


def _load_modules() -> None:
    """Import the modules that register config classes."""
    for name in ("fxanalog.config", "fxanalog.inference"):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def config_classes() -> list[type]:
    """Every registered config dataclass, in the page's order."""
    _load_modules()
    from fxanalog.config.base import _REGISTRY

    names = [n for n in _ORDER if n in _REGISTRY]
    names += sorted(n for n in _REGISTRY if n not in names)
    return [_REGISTRY[n] for n in names]


def config_enums() -> list[type]:
    """Every enum of the config fields (the ``_NamedEnum`` subclasses)."""
    _load_modules()
    from fxanalog.config import NamedEnum as _NamedEnum

    seen: list[type] = []
    todo = list(_NamedEnum.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen


def _meaning(cls: type, f: dataclasses.Field) -> str | None:
    """The field's ``metadata["doc"]``, else ``MEANINGS`` of the class or of
    the nearest base class that documents it (subclasses inherit meanings)."""
    doc = f.metadata.get("doc") if f.metadata else None
    if doc:
        return doc
    for base in cls.__mro__:
        text = MEANINGS.get(base.__name__, {}).get(f.name)
        if text:
            return text
    return None


def missing_meanings() -> list[str]:
    """``Class.field`` / ``Enum.MEMBER`` names that have no meaning."""
    missing = []
    for cls in config_classes():
        for f in dataclasses.fields(cls):
            if not _meaning(cls, f):
                missing.append(f"{cls.__name__}.{f.name}")
    for e in config_enums():
        for name in e.__members__:
            if not ENUM_MEANINGS.get(e.__name__, {}).get(name):
                missing.append(f"{e.__name__}.{name}")
    return missing


# --------------------------------------------------------------------------
# Rendering


def _fmt_default(value) -> str:
    from fxanalog.config import ConfigBase as _Config

    if isinstance(value, enum.Enum):
        return f"`{value.name}`"
    if isinstance(value, _Config):
        return f"[`{value!r}`](#{type(value).__name__.lower()})"
    if isinstance(value, float):
        text = repr(value)
        return f"`{text if len(text) <= 10 else format(value, '.6g')}`"
    if value is None:
        return "`None`"
    return f"`{value!r}`"


def _type_name(f: dataclasses.Field) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return t.replace("|", "or")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def generate() -> str:
    """The Markdown of ``docs/config-reference.md``; raises ``ValueError``
    listing the fields that have no meaning."""
    missing = missing_meanings()
    if missing:
        raise ValueError(
            "config reference: no meaning for " + ", ".join(missing)
            + " (add it to fxanalog/_docgen.py MEANINGS/ENUM_MEANINGS or to the field's metadata['doc'])"
        )
    out = [_INTRO]
    classes = config_classes()
    out.append("## Contents\n")
    for cls in classes:
        out.append(f"- [{cls.__name__}](#{cls.__name__.lower()})")
    out.append("- [Enums](#enums)\n")
    for cls in classes:
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        out.append(f"## {cls.__name__}\n")
        out.append(f"`{cls.__module__}.{cls.__name__}`: {doc}\n")
        fields = dataclasses.fields(cls)
        if not fields:
            out.append("No fields.\n")
            continue
        default = cls()
        out.append("| field | type | default | meaning |")
        out.append("|---|---|---|---|")
        for f in fields:
            out.append(
                f"| `{f.name}` | {_cell(_type_name(f))} | {_cell(_fmt_default(getattr(default, f.name)))} "
                f"| {_cell(_meaning(cls, f))} |"
            )
        out.append("")
    out.append("## Enums\n")
    out.append("Fields of these types accept the member or its name as a string (any case), "
               "as in JSON configs.\n")
    for e in config_enums():
        out.append(f"### {e.__name__}\n")
        out.append("| member | meaning |")
        out.append("|---|---|")
        for name in e.__members__:
            out.append(f"| `{name}` | {_cell(ENUM_MEANINGS[e.__name__][name])} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def default_path() -> str:
    """``docs/config-reference.md`` of the source tree this package lives in."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "docs", "config-reference.md")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in argv
    path = default_path()
    text = generate()
    if check:
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            print(f"{path} is out of date: run python -m fxanalog._docgen", file=sys.stderr)
            return 1
        return 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
