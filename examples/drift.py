"""Program a compiled model onto PCM devices and watch its outputs drift,
with and without global drift compensation.

    python examples/drift.py
"""

import torch

import fxanalog
from fxanalog.inference import drift_analog_weights, program_analog_weights
from fxanalog.presets import get_preset

from models import mlp  # noqa: E402  (examples/ is the script's folder)

TIMES = {"1 s": 1.0, "1 h": 3600.0, "1 day": 86400.0, "1 year": 365 * 86400.0}


def main() -> None:
    torch.manual_seed(0)
    model = mlp().eval()
    x = torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)

    for compensate in (False, True):
        cfg = get_preset("pcm")
        if not compensate:
            cfg.drift_compensation = None
        analog = fxanalog.compile(model, cfg, example_inputs=(x,)).eval()
        fxanalog.manual_seed(1)
        program_analog_weights(analog)
        print("with global drift compensation" if compensate else "without drift compensation")
        for label, t in TIMES.items():
            drift_analog_weights(analog, t)
            with torch.no_grad():
                out = analog(x)
            scale = (out.norm() / ref.norm()).item()
            err = ((out - ref).norm() / ref.norm()).item()
            print(f"  {label:>6}: output scale {scale:.3f}, relative error {err:.3f}")


if __name__ == "__main__":
    main()
