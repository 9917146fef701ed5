"""Compile a model to analog tiles, look at it, and compare with the digital result.

    python examples/first_compile.py
"""

import torch

import fxanalog
from fxanalog.presets import get_preset

from models import lenet  # noqa: E402  (examples/ is the script's folder)


def main() -> None:
    torch.manual_seed(0)
    model = lenet().eval()
    x = torch.rand(8, 1, 28, 28)

    analog = fxanalog.compile(model, get_preset("pcm"), example_inputs=(x,))
    print(fxanalog.analog_summary(analog, example_inputs=(x,)))
    print(analog.code)

    with torch.no_grad():
        ref = model(x)
        out = analog(x)
    err = ((out - ref).norm() / ref.norm()).item()
    print(f"relative error of the analog output: {err:.3f}")
    print(f"same top-1 class: {(out.argmax(1) == ref.argmax(1)).float().mean().item():.0%} of the inputs")


if __name__ == "__main__":
    main()
