"""Acceptance: six models written the way their authors write them, each compared with
torch.autograd in float64 at rtol 1e-9 (every parameter's gradient and the δ of every
Conv and Linear layer), in eval mode and, where BatchNorm makes it matter, in train mode.

- the MNIST Net of the PyTorch examples (two convs, two dropouts, F.max_pool2d,
  torch.flatten, F.log_softmax with F.nll_loss), as in pytorch/examples mnist/main.py;
- LeNet-5 (tanh, average pooling);
- a small ResNet of torchvision's BasicBlock: an identity shortcut and a 1×1-conv + BN one;
- a VGG-style conv-BN-ReLU stack with a BatchNorm1d classifier (torchvision's make_layers);
- a pre-norm residual MLP block (LayerNorm, GELU), as in transformer and MLP-Mixer code;
- a two-branch block joined by torch.cat (Inception's BasicConv2d and branches).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tolerances import TOLERANCES

import torch_ref

TOL = TOLERANCES["model"]


# --- the MNIST Net of pytorch/examples (mnist/main.py), verbatim -------------------------


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()  # noqa: UP008  # as the example writes it
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


# --- LeNet-5 --------------------------------------------------------------------------


class LeNet5(nn.Module):
    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5, stride=1),
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2),
            nn.Conv2d(in_channels=6, out_channels=16, kernel_size=5, stride=1),
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2),
            nn.Conv2d(in_channels=16, out_channels=120, kernel_size=5, stride=1),
            nn.Tanh(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(in_features=120, out_features=84),
            nn.Tanh(),
            nn.Linear(in_features=84, out_features=n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_extractor(x)
        x = torch.flatten(x, 1)
        logits = self.classifier(x)
        return logits


# --- a small ResNet of torchvision's BasicBlock ---------------------------------------


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding"""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution"""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion: int = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)

        return out


class ResNet(nn.Module):
    def __init__(self, layers: list[int], num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * width * BasicBlock.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * BasicBlock.expansion, stride),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)

        x = self.layer1(x)
        x = self.layer2(x)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


# --- VGG-style: torchvision's make_layers with batch_norm=True --------------------------


def make_layers(cfg: list[str | int], batch_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Module, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(16 * 2 * 2, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(32, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


VGG_CFG: list[str | int] = [8, "M", 16, 16, "M"]


# --- a pre-norm residual MLP block (LayerNorm, GELU) -----------------------------------


class PreNormMLPBlock(nn.Module):
    """x + MLP(LayerNorm(x)), the feed-forward half of a pre-norm transformer layer."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(self.act(self.fc1(self.norm(x)))))


class ResidualMLP(nn.Module):
    def __init__(self, in_dim: int, dim: int, depth: int, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.blocks = nn.Sequential(*[PreNormMLPBlock(dim, 2 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, tokens, in_dim)
        x = self.embed(x)
        x = self.blocks(x)
        x = self.norm(x)
        return self.head(x.mean(dim=1))


# --- a two-branch block joined by torch.cat (Inception's BasicConv2d) ------------------


class BasicConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.bn(x)
        return F.relu(x, inplace=True)


class TwoBranch(nn.Module):
    def __init__(self, in_channels: int, num_classes: int = 5) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 4, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 3, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(3, 6, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, 2, kernel_size=1)
        self.fc = nn.Linear(4 + 6 + 2, num_classes)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch1x1 = self.branch1x1(x)

        branch3x3 = self.branch3x3_1(x)
        branch3x3 = self.branch3x3_2(branch3x3)

        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(branch_pool)

        outputs = [branch1x1, branch3x3, branch_pool]
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self._forward(x)
        x = torch.cat(outputs, 1)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = x.view(x.size(0), -1)
        return self.fc(x)


# --- the acceptance table ---------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    loss: Callable[..., torch.Tensor]
    #: "classes:K" (class indices in 0..K-1) or "regression" (a target like the output)
    target: str
    modes: tuple[str, ...]
    #: qualified names of the Conv and Linear layers: a δ row for each
    deltas: tuple[str, ...]


MODELS = [
    Model("mnist-net", Net, (2, 1, 28, 28), F.nll_loss, "classes:10", ("eval",),
          ("conv1", "conv2", "fc1", "fc2")),
    Model("lenet5", LeNet5, (3, 1, 32, 32), nn.CrossEntropyLoss(), "classes:10", ("eval",),
          ("feature_extractor.0", "feature_extractor.3", "feature_extractor.6", "classifier.0",
           "classifier.2")),
    Model("resnet-basicblock", lambda: ResNet([1, 1]), (4, 3, 8, 8), nn.CrossEntropyLoss(),
          "classes:10", ("eval", "train"),
          ("conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2",
           "layer2.0.downsample.0", "fc")),
    Model("vgg-bn", lambda: VGG(make_layers(VGG_CFG, batch_norm=True)), (4, 3, 8, 8),
          nn.CrossEntropyLoss(), "classes:10", ("eval",),
          ("features.0", "features.4", "features.7", "classifier.0", "classifier.4",
           "classifier.8")),
    Model("vgg-bn-no-dropout", lambda: VGG(make_layers(VGG_CFG, batch_norm=True), dropout=0.0),
          (4, 3, 8, 8), nn.CrossEntropyLoss(), "classes:10", ("eval", "train"),
          ("features.0", "features.4", "features.7", "classifier.0", "classifier.4",
           "classifier.8")),
    Model("prenorm-residual-mlp", lambda: ResidualMLP(5, 8, depth=2, num_classes=3), (3, 4, 5),
          nn.MSELoss(), "regression", ("eval", "train"),
          ("embed", "blocks.0.fc1", "blocks.0.fc2", "blocks.1.fc1", "blocks.1.fc2", "head")),
    Model("two-branch-cat", lambda: TwoBranch(3), (4, 3, 6, 6), nn.CrossEntropyLoss(),
          "classes:5", ("eval", "train"),
          ("branch1x1.conv", "branch3x3_1.conv", "branch3x3_2.conv", "branch_pool.conv", "fc")),
]  # fmt: skip

PAIRS = [pytest.param(m, mode, id=f"{m.name}-{mode}") for m in MODELS for mode in m.modes]


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def build(spec: Model, mode: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model in float64 and `mode`, BatchNorm running statistics warmed up as training
    leaves them (so eval mode does not normalise with the initial 0 and 1)."""
    torch.manual_seed(0)
    model = spec.build().double()
    if has_batch_norm(model):
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(2 * torch.randn(spec.input_shape, dtype=torch.float64) + 0.5)
    model.train(mode == "train")
    x = torch.randn(spec.input_shape, dtype=torch.float64)
    if spec.target.startswith("classes:"):
        target = torch.randint(0, int(spec.target.split(":")[1]), (spec.input_shape[0],))
    else:
        with torch.no_grad():
            target = torch.randn_like(copy.deepcopy(model)(x))
    return model, x, target


@pytest.mark.parametrize(("spec", "mode"), PAIRS)
def test_model_matches_autograd(spec: Model, mode: str):
    model, x, target = build(spec, mode)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = torch_ref.compare_gradients(model, spec.loss, x, target, **TOL)
    assert report.ok, f"{spec.name} ({mode})\n{report}"
    params = [r.name for r in report.rows if r.kind == "param"]
    assert params == [n for n, _ in model.named_parameters()], spec.name
    deltas = [r.name for r in report.rows if r.kind == "delta"]
    assert sorted(deltas) == sorted(spec.deltas), f"{spec.name}: δ rows {deltas}"
    # the caller's model is as it was: weights, running statistics, modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), spec.name
    assert all(m.training == (mode == "train") for m in model.modules()), spec.name


@pytest.mark.parametrize("spec", [MODELS[0], MODELS[3]], ids=["mnist-net", "vgg-bn"])
def test_dropout_models_refuse_train_mode(spec: Model):
    model, x, target = build(spec, "train")
    with pytest.raises(ValueError, match=r"module '[\w.]+' \(Dropout\).* is in training mode"):
        torch_ref.compare_gradients(model, spec.loss, x, target, **TOL)


def test_train_and_eval_batch_norm_differ():
    """The two modes are different functions, so matching autograd in both checks both."""
    spec = MODELS[2]
    grads = {}
    for mode in ("train", "eval"):
        model, x, target = build(spec, mode)
        grads[mode] = torch_ref.manual_gradients(model, spec.loss, x, target)["conv1.weight"]
    assert not torch.allclose(grads["train"], grads["eval"], rtol=1e-3)
