"""The networks of the cooperative-training paper (methods.md §1): encoder, decoupler, decoders, STN.

Widths follow the public code's `FCN_16_standard` with width divisor 4 (16, 32, 64, 128, 128),
so a 192² slice becomes a 128×12×12 code. Every network of the benchmark (standard training
and all baselines) uses these blocks, so differences between methods come from training,
not from capacity.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

WIDTHS = (16, 32, 64, 128, 128)
DOWNSAMPLING = 16  # inputs must be multiples of this


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2), nn.BatchNorm2d(cout)]


class ResidualBlock(nn.Module):
    """out = LReLU(conv1x1(x) + [conv3x3→BN→LReLU→conv3x3→BN](x))."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.shortcut = nn.Conv2d(cin, cout, 1)
        self.body = nn.Sequential(*_conv_bn(cin, cout), nn.LeakyReLU(0.2), *_conv_bn(cout, cout))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shortcut(x) + self.body(x))


class DownBlock(nn.Module):
    """Strided 3×3 convolution (same channels), then a residual block that changes width."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.down = nn.Conv2d(cin, cin, 3, stride=2, padding=1)
        self.block = ResidualBlock(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(self.down(x))


class UpBlock(nn.Module):
    """×2 upsampling (nearest, or a learned transposed convolution), then a residual block."""

    def __init__(self, cin: int, cout: int, upsample: Literal["nearest", "transpose"]):
        super().__init__()
        self.up = (
            nn.ConvTranspose2d(cin, cin, kernel_size=2, stride=2)
            if upsample == "transpose"
            else nn.Upsample(scale_factor=2, mode="nearest")
        )
        self.block = ResidualBlock(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(self.up(x))


class Encoder(nn.Module):
    """Image (or shape) → 128×H/16×W/16 code; the head activation differs between FTN and STN only by name."""

    def __init__(self, in_channels: int, head_activation: Literal["relu", "leaky"] = "relu"):
        super().__init__()
        w = WIDTHS
        self.stem = nn.Sequential(
            *_conv_bn(in_channels, w[0]), nn.LeakyReLU(0.2), *_conv_bn(w[0], w[0]), nn.LeakyReLU(0.2)
        )
        self.down = nn.Sequential(*(DownBlock(w[i], w[i + 1]) for i in range(4)))
        act = nn.ReLU() if head_activation == "relu" else nn.LeakyReLU(0.2)
        self.head = nn.Sequential(*_conv_bn(w[-1], w[-1], kernel=1), act)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.down(self.stem(x)))


class Decoupler(nn.Module):
    """Image code z_i → shape code z_s (non-negative, like z_i)."""

    def __init__(self, channels: int = WIDTHS[-1]):
        super().__init__()
        self.net = nn.Sequential(
            *_conv_bn(channels, channels), nn.LeakyReLU(0.2), *_conv_bn(channels, channels), nn.ReLU()
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class Decoder(nn.Module):
    """Code → map at full resolution: 128→64→32→16→16 up blocks, then a 1×1 projection."""

    def __init__(self, out_channels: int, upsample: Literal["nearest", "transpose"], final_sigmoid: bool = False):
        super().__init__()
        widths = (WIDTHS[-1], 64, 32, 16, 16)
        self.up = nn.Sequential(*(UpBlock(widths[i], widths[i + 1], upsample) for i in range(4)))
        self.out = nn.Conv2d(widths[-1], out_channels, 1)
        self.final_sigmoid = final_sigmoid

    def forward(self, z: Tensor) -> Tensor:
        y = self.out(self.up(z))
        return torch.sigmoid(y) if self.final_sigmoid else y


class ShapeNet(nn.Module):
    """STN: a denoising shape auto-encoder on 4-channel label maps (one-hot or tempered softmax)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.encoder = Encoder(num_classes, head_activation="relu")
        self.decoder = Decoder(num_classes, upsample="nearest")

    def forward(self, shape: Tensor) -> Tensor:
        return self.decoder(self.encoder(shape))


class DualNet(nn.Module):
    """FTN (encoder, decoupler, image decoder, segmentation decoder) plus the STN.

    Kept as five named sub-networks because methods treat them differently (hard-example
    passes freeze some BN layers; latent masking needs the codes between the parts).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 4):
        super().__init__()
        self.encoder = Encoder(in_channels, head_activation="relu")
        self.decoupler = Decoupler()
        self.image_decoder = Decoder(in_channels, upsample="transpose", final_sigmoid=True)
        self.seg_decoder = Decoder(num_classes, upsample="nearest")
        self.stn = ShapeNet(num_classes)
        self.num_classes = num_classes
        init_weights(self)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z_i = self.encoder(x)
        return z_i, self.decoupler(z_i)

    def segment(self, x: Tensor) -> Tensor:
        return self.seg_decoder(self.decoupler(self.encoder(x)))

    def refine(self, logits: Tensor, temperature: float = 2.0) -> Tensor:
        """STN refinement of FTN logits: STN(softmax(logits / T))."""
        return self.stn(torch.softmax(logits / temperature, dim=1))


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_in) convolutions, BN weight ~ N(1, 0.02); transposed convs keep PyTorch's default."""
    for m in module.modules():
        if type(m) is nn.Conv2d:
            nn.init.kaiming_normal_(m.weight, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """(N,H,W) int → (N,C,H,W) float."""
    return F.one_hot(labels, num_classes).permute(0, 3, 1, 2).to(torch.float32)
