"""PyTorch reference training steps for ``bench/train_throughput.py`` (needs the ``[bench]`` extra).

Two references, written as a PyTorch user who knows the usual code would write them:

* :class:`IResNetSE` + :class:`ArcFaceLoss`: InsightFace ``arcface_torch``'s layout (``iresnet.py``
  ``IBasicBlock``: BN -> 3x3 conv -> BN -> PReLU -> 3x3 conv (stride) -> BN, plus the SE module of
  IR-SE; downsample = 1x1 conv + BN whenever the stride or width changes; output block BN ->
  dropout -> flatten -> FC -> BN1d with a frozen unit scale) and its ``CombinedMarginLoss``
  (ArcFace s = 64, m = 0.5) + cross-entropy, SGD with momentum 0.9 and coupled weight decay
  5e-4. ``units=(3, 4, 14, 3)`` is IR-SE-50 (the same backbone as ``backbone=ir_se50``).
* :class:`Pix2PixDepthGAN`: a pix2pix-style UNet generator with DepthNet's shape (stride-2 4x4
  LeakyReLU encoder, two bilinear-upsampling decoders with skips, tanh RGB/depth heads and a
  sigmoid mask head, instance norm) and three LSGAN PatchGAN discriminators, Adam(2e-4, 0.5) for
  both; one step = the generator and discriminator updates from one forward pass, as
  ``tf_rgbd.training.depthnet_gan`` does.

``make_step(model_kind, ..., channels_last, bf16_autocast)`` returns a closure running one full
training step on a fixed batch (what the bench times). Every tensor is NCHW in the API; with
``channels_last`` the model and the batch use ``torch.channels_last`` memory format (PyTorch's
recommended CPU setting for convolutions), and ``bf16_autocast`` runs the forward pass under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (losses in float32).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F


class SEModule(nn.Module):
    """Squeeze-and-excitation: GAP -> 1x1 conv C/r -> ReLU -> 1x1 conv C -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, max(1, channels // reduction), 1, bias=False)
        self.fc2 = nn.Conv2d(max(1, channels // reduction), channels, 1, bias=False)

    def forward(self, x):
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * gate


class IBasicBlockSE(nn.Module):
    """arcface_torch ``IBasicBlock`` with an SE module before the residual addition."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.se = SEModule(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes, eps=1e-5))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNetSE(nn.Module):
    """IR-SE backbone in arcface_torch's ``IResNet`` layout: image [B, 3, S, S] -> [B, 512]."""

    def __init__(self, units: Sequence[int] = (3, 4, 14, 3),
                 widths: Sequence[int] = (64, 128, 256, 512), image_size: int = 112,
                 num_features: int = 512, dropout: float = 0.4, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=1e-5)
        self.prelu = nn.PReLU(widths[0])
        layers, inplanes = [], widths[0]
        for count, planes in zip(units, widths):
            blocks = [IBasicBlockSE(inplanes, planes, 2)]
            blocks += [IBasicBlockSE(planes, planes, 1) for _ in range(count - 1)]
            layers.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layers = nn.Sequential(*layers)
        side = image_size // 16
        self.bn2 = nn.BatchNorm2d(widths[-1], eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(widths[-1] * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.layers(self.prelu(self.bn1(self.conv1(x))))
        x = self.dropout(self.bn2(x))
        with torch.autocast("cpu", enabled=False):  # arcface_torch: fc + features in float32
            return self.features(self.fc(torch.flatten(x, 1).float()))


class ArcFaceLoss(nn.Module):
    """arcface_torch's normalised FC + ``CombinedMarginLoss`` (ArcFace) + cross-entropy, float32."""

    def __init__(self, num_features: int, num_classes: int, s: float = 64.0, m: float = 0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.normal(0, 0.01, (num_classes, num_features)))
        self.s, self.m = s, m
        self.theta_limit = math.cos(math.pi - m)
        self.sin_mm = math.sin(math.pi - m) * m

    def forward(self, embeddings, labels):
        with torch.autocast("cpu", enabled=False):
            cosine = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight))
            cosine = cosine.clamp(-1 + 1e-7, 1 - 1e-7)
            target = cosine.gather(1, labels[:, None])
            with torch.no_grad():
                margin = torch.cos(torch.acos(target) + self.m)
                margin = torch.where(target > self.theta_limit, margin, target - self.sin_mm)
            logits = cosine.scatter(1, labels[:, None], margin + (target - target.detach()))
            return F.cross_entropy(logits * self.s, labels)


def _instance_norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True, eps=1e-5)


class _UNetDecoder(nn.Module):
    def __init__(self, widths: Sequence[int]):
        super().__init__()
        self.up, self.fuse = nn.ModuleList(), nn.ModuleList()
        below = widths[-1]
        for level in reversed(range(len(widths) - 1)):
            width = widths[level]
            self.up.append(nn.Sequential(nn.Conv2d(below, width, 3, 1, 1, bias=False),
                                         _instance_norm(width), nn.ReLU()))
            self.fuse.append(nn.Sequential(nn.Conv2d(2 * width, width, 3, 1, 1, bias=False),
                                           _instance_norm(width), nn.ReLU()))
            below = width

    def forward(self, skips):
        x = skips[-1]
        for index, level in enumerate(reversed(range(len(skips) - 1))):
            x = self.up[index](F.interpolate(x, scale_factor=2, mode="bilinear",
                                             align_corners=False))
            x = self.fuse[index](torch.cat([x, skips[level]], 1))
        return x


class Pix2PixUNet(nn.Module):
    """UNet generator of DepthNet's size: rgb [B, 3, S, S] -> (rgb, depth, mask)."""

    def __init__(self, levels: int, base: int = 32, maximum: int = 256, mask_classes: int = 7):
        super().__init__()
        widths = [min(base * 2 ** level, maximum) for level in range(levels + 1)]
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1), nn.LeakyReLU(0.2))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[level - 1], widths[level], 4, 2, 1, bias=False),
                          _instance_norm(widths[level]), nn.LeakyReLU(0.2))
            for level in range(1, levels + 1))
        self.face_decoder, self.auxiliary_decoder = _UNetDecoder(widths), _UNetDecoder(widths)
        self.rgb_head = nn.Conv2d(widths[0], 3, 3, 1, 1)
        self.depth_head = nn.Conv2d(widths[0], 1, 3, 1, 1)
        self.mask_head = nn.Conv2d(widths[0], mask_classes, 3, 1, 1)

    def forward(self, rgb):
        skips = [self.stem(rgb)]
        for block in self.down:
            skips.append(block(skips[-1]))
        trunk = self.auxiliary_decoder(skips)
        return (torch.tanh(self.rgb_head(self.face_decoder(skips)).float()),
                torch.tanh(self.depth_head(trunk).float()),
                torch.sigmoid(self.mask_head(trunk).float()))


class PatchGAN(nn.Module):
    """LSGAN PatchGAN: [B, C, S, S] -> [B, 1, S / 2^n, S / 2^n] scores."""

    def __init__(self, channels: int, base: int = 32, downsamples: int = 3, maximum: int = 256):
        super().__init__()
        layers, previous = [], channels
        for level in range(downsamples + 1):
            width = min(base * 2 ** level, maximum)
            stride = 2 if level < downsamples else 1
            layers += [nn.Conv2d(previous, width, 4, stride, 1 if stride == 2 else "same",
                                 bias=level == 0)]
            if level:
                layers.append(_instance_norm(width))
            layers.append(nn.LeakyReLU(0.2))
            previous = width
        layers.append(nn.Conv2d(previous, 1, 4, 1, "same"))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).float()


def _memory_format(channels_last: bool):
    return torch.channels_last if channels_last else torch.contiguous_format


def recognizer_step(batch_size: int, image_size: int, num_classes: int,
                    units: Sequence[int] = (3, 4, 14, 3), widths: Sequence[int] = (64, 128, 256, 512),
                    channels_last: bool = False, bf16_autocast: bool = False,
                    seed: int = 0) -> Callable[[], float]:
    """One arcface_torch-style training step (forward, ArcFace CE, backward, SGD) per call."""
    torch.manual_seed(seed)
    backbone = IResNetSE(units, widths, image_size).to(memory_format=_memory_format(channels_last))
    head = ArcFaceLoss(512, num_classes)
    optimizer = torch.optim.SGD([{"params": backbone.parameters()},
                                 {"params": head.parameters()}],
                                lr=0.1, momentum=0.9, weight_decay=5e-4)
    images = torch.rand(batch_size, 3, image_size, image_size) * 2 - 1
    images = images.contiguous(memory_format=_memory_format(channels_last))
    labels = torch.arange(batch_size) % num_classes
    backbone.train()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_autocast):
            loss = head(backbone(images), labels)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def depth_gan_step(batch_size: int, image_size: int, levels: int, base_filters: int = 32,
                   max_filters: int = 256, discriminator_filters: int = 32,
                   discriminator_downsamples: int = 3, channels_last: bool = False,
                   bf16_autocast: bool = False, seed: int = 0) -> Callable[[], float]:
    """One DepthNet-shaped pix2pix LSGAN step (generator + 3 discriminators) per call."""
    torch.manual_seed(seed)
    memory = _memory_format(channels_last)
    generator = Pix2PixUNet(levels, base_filters, max_filters).to(memory_format=memory)
    discriminators = nn.ModuleList(
        PatchGAN(channels, discriminator_filters, discriminator_downsamples, max_filters)
        for channels in (3, 1, 7)).to(memory_format=memory)
    g_optimizer = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminators.parameters(), 2e-4, betas=(0.5, 0.999))
    rgb = (torch.rand(batch_size, 3, image_size, image_size) * 2 - 1).contiguous(
        memory_format=memory)
    depth = torch.rand(batch_size, 1, image_size, image_size).contiguous(memory_format=memory)
    mask = F.one_hot(torch.randint(0, 7, (batch_size, image_size, image_size)), 7).permute(
        0, 3, 1, 2).float().contiguous(memory_format=memory)

    generator_parameters = list(generator.parameters())
    discriminator_parameters = list(discriminators.parameters())

    def step() -> float:
        # As tf_rgbd.training.depthnet_gan: one forward pass, each discriminator scores the real
        # and the fake image once, then the generator's and the discriminators' gradients.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_autocast):
            fake_rgb, fake_depth, fake_mask = generator(rgb)
            fakes, reals = (fake_rgb, fake_depth, fake_mask), (rgb, depth, mask)
            fake_scores = [model(fake) for model, fake in zip(discriminators, fakes)]
            real_scores = [model(real) for model, real in zip(discriminators, reals)]
        adversarial = sum(((score - 1) ** 2).mean() for score in fake_scores)
        probability = fake_mask.clamp(1e-6, 1 - 1e-6)
        g_loss = (F.l1_loss(fake_depth, depth) + F.l1_loss(fake_rgb, rgb) + adversarial
                  - (mask * probability.log() + (1 - mask) * (1 - probability).log()).mean())
        d_loss = sum(((real - 1) ** 2).mean() + (fake ** 2).mean()
                     for real, fake in zip(real_scores, fake_scores))
        g_grads = torch.autograd.grad(g_loss, generator_parameters, retain_graph=True)
        d_grads = torch.autograd.grad(d_loss, discriminator_parameters)
        for parameter, gradient in zip(generator_parameters, g_grads):
            parameter.grad = gradient
        for parameter, gradient in zip(discriminator_parameters, d_grads):
            parameter.grad = gradient
        g_optimizer.step()
        d_optimizer.step()
        return float(g_loss.detach())

    return step


def train_step_flops(step_model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """FLOPs of one forward + backward pass of ``step_model`` (PyTorch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        outputs = step_model(*inputs)
        loss = sum(output.float().mean() for output in (
            outputs if isinstance(outputs, (tuple, list)) else [outputs]))
        loss.backward()
    return int(counter.get_total_flops())
