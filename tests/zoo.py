"""The model zoo of the compiler tests, written in code (no downloads).

Each entry: a builder, example inputs, and the extra inputs that make every
branch run (for models with data-dependent control flow). Models are small
so that the whole zoo runs in seconds on CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(20, 32), nn.Linear(32, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class Block(nn.Module):
    """Residual block: grouped 3x3, depthwise 3x3, pointwise 1x1, conv shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.grouped = nn.Conv2d(cin, cin, 3, stride, 1, groups=4, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.depthwise = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.bn2 = nn.BatchNorm2d(cin)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = torch.relu(self.bn1(self.grouped(x)))
        h = torch.relu(self.bn2(self.depthwise(h)))
        h = self.bn3(self.pointwise(h))
        return torch.relu(h + self.shortcut(x))


class ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = Block(16, 16, 1)
        self.block2 = Block(16, 32, 2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(4, 8, 3)
        self.c2 = nn.Conv1d(8, 8, 3, dilation=2, padding="same")
        self.fc = nn.Linear(8 * 16, 5)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.c2(torch.relu(self.c1(x)))), 1))


class Conv3dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv3d(2, 4, 3)
        self.c2 = nn.Conv3d(4, 4, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.fc = nn.Linear(4 * 4 * 2 * 2, 3)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.c2(torch.relu(self.c1(x)))), 1))


class EncoderBlock(nn.Module):
    """Transformer encoder block: nn.MultiheadAttention and an FFN whose first
    layer is a functional F.linear on the block's own parameters."""

    def __init__(self, d=32, heads=4, ff=64):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.w1 = nn.Parameter(torch.randn(ff, d) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(ff))
        self.fc2 = nn.Linear(ff, d)

    def forward(self, x):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        x = x + a
        h = F.linear(self.ln2(x), self.w1, self.b1)
        return x + self.fc2(F.gelu(h))


class Conv1D(nn.Module):
    """HuggingFace GPT-2's Conv1D: weight stored (in, out), addmm."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.weight.size(-1),)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class GPTBlock(nn.Module):
    def __init__(self, d=32, heads=4):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.w_qkv = nn.Parameter(torch.randn(d, 3 * d) * 0.05)
        self.b_qkv = nn.Parameter(torch.zeros(3 * d))
        self.c_proj = Conv1D(d, d)
        self.w_fc = nn.Parameter(torch.randn(d, 4 * d) * 0.05)
        self.b_fc = nn.Parameter(torch.zeros(4 * d))
        self.w_out = nn.Parameter(torch.randn(4 * d, d) * 0.05)
        self.b_out = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        B, T, C = x.shape
        qkv = self.ln1(x) @ self.w_qkv + self.b_qkv
        q, k, v = qkv.split(C, dim=-1)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        h = F.gelu(self.ln2(x) @ self.w_fc + self.b_fc)
        return x + (h @ self.w_out + self.b_out)


class GPT(nn.Module):
    """GPT-2 style: token embedding tied to the output head."""

    def __init__(self, vocab=50, d=32, T=8):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Parameter(torch.randn(T, d) * 0.02)
        self.block = GPTBlock(d)
        self.ln_f = nn.LayerNorm(d)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe[: idx.shape[1]]
        x = self.ln_f(self.block(x))
        return x @ self.wte.weight.t()


class Gate(nn.Module):
    """Data-dependent control flow: fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 16), nn.Linear(16, 8), nn.Linear(16, 8)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        if x.sum() > 0:
            return self.fc2(h)
        return -self.fc3(h)


class ControlFlowNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(10, 16)
        self.gate = Gate()
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.gate(self.inp(x)))


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 12, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def _gpt_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 50, (2, 8), generator=g),)


def _randn(*shape):
    def make(seed: int):
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(*shape, generator=g),)
    return make


def _control_flow_inputs(model: nn.Module):
    """Inputs that take each branch of the gate (found by trying seeds)."""
    found = {}
    with torch.no_grad():
        for seed in range(200):
            x = _randn(4, 10)(seed)[0]
            found.setdefault(bool(model.inp(x).sum() > 0), x)
            if len(found) == 2:
                break
    assert len(found) == 2, "no input takes both branches"
    return [(x,) for x in found.values()]


# name -> (builder, make_inputs(seed)). Every model is built after
# torch.manual_seed(0) by the tests.
ZOO = {
    "mlp": (MLP, _randn(5, 20)),
    "lenet": (LeNet, _randn(2, 1, 28, 28)),
    "resnet": (ResNetish, _randn(2, 3, 8, 8)),
    "conv1d": (Conv1dNet, _randn(2, 4, 18)),
    "conv3d": (Conv3dNet, _randn(2, 2, 6, 6, 6)),
    "encoder": (EncoderBlock, _randn(2, 5, 32)),
    "gpt": (GPT, _gpt_inputs),
    "control_flow": (ControlFlowNet, _randn(4, 10)),
    "lstm": (LSTMNet, _randn(3, 7, 6)),
}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = ZOO[name][0]()
    if name == "resnet":  # non-trivial BatchNorm statistics
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def inputs(name: str, seed: int = 1):
    return ZOO[name][1](seed)


def all_branch_inputs(name: str, model: nn.Module):
    """Input tuples that together run every weight matmul of the model."""
    if name == "control_flow":
        return _control_flow_inputs(model)
    return [inputs(name)]


# -- structures of real models (issue 14): what tracing must not break ------------------


def window_attention(x, qkv_weight, proj_weight, qkv_bias, proj_bias, window: int, heads: int):
    """torchvision's ``shifted_window_attention`` in small: the block's weights
    are passed into a ``torch.fx.wrap``ped function (opaque to fx), which
    pads to whole windows and runs attention in each."""
    B, L, C = x.shape
    pad = (window - L % window) % window
    x = F.pad(x, (0, 0, 0, pad))
    n = x.shape[1] // window
    x = x.reshape(B * n, window, C)
    qkv = F.linear(x, qkv_weight, qkv_bias).reshape(B * n, window, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(B * n, window, C)
    y = F.linear(y, proj_weight, proj_bias)
    return y.reshape(B, n * window, C)[:, :L]


torch.fx.wrap("window_attention")


class WindowBlock(nn.Module):
    """A Swin block: ``nn.Linear`` modules whose weights reach the matmul
    through the wrapped ``window_attention``, then an MLP."""

    def __init__(self, d=16, heads=2, window=3):
        super().__init__()
        self.heads, self.window = heads, window
        self.norm = nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        x = x + window_attention(self.norm(x), self.qkv.weight, self.proj.weight, self.qkv.bias, self.proj.bias,
                                 self.window, self.heads)
        return x + self.mlp(x)


class TiedLM(nn.Module):
    """A language model whose head is ``F.linear(h, self.wte.weight)``,
    tied to the token embedding."""

    def __init__(self, vocab=40, d=16):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.fc = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)

    def forward(self, idx):
        return F.linear(self.ln(torch.tanh(self.fc(self.wte(idx)))), self.wte.weight)


class CheckedTiedLM(TiedLM):
    """The same with a data-dependent check in its own forward (as
    HuggingFace models have): fx cannot trace it, so its own ``F.linear``
    on the tied weight is inside an untraceable forward."""

    def forward(self, idx):
        if (idx < 0).any():
            raise ValueError("negative token id")
        return F.linear(self.ln(torch.tanh(self.fc(self.wte(idx)))), self.wte.weight)


class InplaceActNet(nn.Module):
    """SqueezeNet's pattern: an in-place activation right after a layer."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu = nn.Conv2d(3, 8, 3), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 4, 3)

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x))).mean(dim=(2, 3))


class CachedBiasAttention(nn.Module):
    """timm LeViT's attention: in eval, the attention bias is gathered on the
    first call and cached per device in a dict."""

    def __init__(self, d=16, heads=2, n=6):
        super().__init__()
        self.heads, self.scale = heads, (d // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.attention_biases = nn.Parameter(torch.randn(heads, n) * 0.1)
        idx = torch.arange(n)
        self.register_buffer("attention_bias_idxs", (idx[:, None] - idx[None, :]).abs(), persistent=False)
        self.attention_bias_cache = {}

    def get_attention_biases(self, device):
        if self.training:
            return self.attention_biases[:, self.attention_bias_idxs]
        key = str(device)
        if key not in self.attention_bias_cache:
            self.attention_bias_cache[key] = self.attention_biases[:, self.attention_bias_idxs]
        return self.attention_bias_cache[key]

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.get_attention_biases(x.device)
        y = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(y)


class LazyScale(nn.Module):
    """torchvision's ``MultiScaleRoIAlign``: a scale inferred from the first
    input and stored on the module; fx cannot trace the comparison."""

    def __init__(self, d=8):
        super().__init__()
        self.scales = None
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        if self.scales is None:
            self.scales = x.shape[-1]
        if self.scales > 4:
            x = x / self.scales
        return self.fc(x)


class LazyScaleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.pool = LazyScale(8)

    def forward(self, x):
        return self.pool(torch.relu(self.inp(x)))


class FirstCallBuffer(nn.Module):
    """A model whose first forward fills a buffer (data-driven init) and sets a flag."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.zeros(8))
        self.initialized = False
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if not self.initialized:
            self.scale.copy_(x.abs().amax(0) + 1)
            self.initialized = True
        return self.fc(x / self.scale)


def transformer_encoder():
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), 2,
                                 enable_nested_tensor=False)


# The structures of issue 14's real models: name -> (builder, make_inputs(seed)).
REAL = {
    "window": (WindowBlock, _randn(2, 7, 16)),
    "tied_lm": (TiedLM, lambda seed: (torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(seed)),)),
    "checked_tied_lm": (CheckedTiedLM,
                        lambda seed: (torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(seed)),)),
    "inplace_act": (InplaceActNet, _randn(2, 3, 8, 8)),
    "cached_bias": (CachedBiasAttention, _randn(2, 6, 16)),
    "lazy_scale": (LazyScaleNet, _randn(3, 6)),
    "first_call_buffer": (FirstCallBuffer, _randn(3, 8)),
    "transformer_encoder": (transformer_encoder, _randn(2, 5, 16)),
    "lstm": (LSTMNet, _randn(3, 7, 6)),
}


def build_real(name: str) -> nn.Module:
    torch.manual_seed(0)
    return REAL[name][0]().eval()


def real_inputs(name: str, seed: int = 1):
    return REAL[name][1](seed)


class HFAttention(nn.Module):
    """HuggingFace GPT-2's attention: ``Conv1D`` children and a forward fx
    cannot trace (a data-dependent branch), so each ``Conv1D`` is converted
    on its own."""

    def __init__(self, d=16, heads=2):
        super().__init__()
        self.d, self.heads = d, heads
        self.c_attn, self.c_proj = Conv1D(3 * d, d), Conv1D(d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.d, dim=2)
        if bool(torch.isnan(q).any()):
            raise ValueError("nan in the queries")
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class HFMLP(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.c_fc, self.c_proj = Conv1D(4 * d, d), Conv1D(d, 4 * d)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class HFBlock(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn, self.mlp = HFAttention(d), HFMLP(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


REAL["hf_block"] = (HFBlock, _randn(2, 5, 16))
