"""Model factories for the command line (run from the repository root):

    fxanalog summary examples.models:lenet --input-shape 1,1,28,28 --config pcm
    fxanalog dump examples.models:mlp --format dot -o mlp.dot

A factory is any callable that returns an ``nn.Module``.
"""

from torch import nn


def mlp() -> nn.Module:
    """784 -> 256 -> 10: the first layer needs two tiles of 392 inputs at the default tile size."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def lenet() -> nn.Module:
    """LeNet-5 for 1x28x28 inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Tanh(),
        nn.Linear(120, 84), nn.Tanh(),
        nn.Linear(84, 10),
    )
