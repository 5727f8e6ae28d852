"""Acceptance: the models people write today, each written the way its authors write
it (torchvision, timm, nanoGPT, the Swin and U-Net reference code: our own code, in their
style), compared with torch.autograd in float64 at rtol 1e-9: every parameter's gradient,
the δ of every weighted layer and ∂L/∂x of every floating input, in eval mode and, where
training mode computes something else (BatchNorm's batch statistics; the dropout flags of
nn.MultiheadAttention and F.scaled_dot_product_attention) or normalises per sample
(GroupNorm, InstanceNorm), in train mode too, with stochastic depth and dropout at 0.

- MobileNetV3 (torchvision mobilenetv3.py: inverted residuals with Conv2dNormActivation,
  torchvision.ops' squeeze-excitation with Hardsigmoid, Hardswish, `result += input`);
- EfficientNet (torchvision efficientnet.py: MBConv with SiLU, squeeze-excitation and
  torchvision.ops' stochastic_depth/StochasticDepth);
- ConvNeXt twice: torchvision's CNBlock (Permute modules, a (C, 1, 1) layer-scale
  parameter, StochasticDepth, LayerNorm2d) and the original block (channels-last
  `self.gamma * x`, timm's DropPath);
- ShuffleNetV2 (torchvision shufflenetv2.py: the stride-1 unit with chunk and the stride-2
  unit, channel_shuffle by view/transpose/contiguous/view, cat);
- ViT (torchvision vision_transformer.py: patch conv, flatten/transpose, class token
  expanded and concatenated, positional parameter, pre-norm nn.MultiheadAttention, the MLP
  of torchvision.ops.MLP, head on x[:, 0], torch._assert size checks);
- GPT (nanoGPT model.py: nn.Embedding of token ids, torch.arange positions, causal
  F.scaled_dot_product_attention or the masked softmax with a tril buffer, tied lm_head,
  cross-entropy over the vocabulary on (B, V, T) logits and on logits.view(-1, V));
- Swin (the reference Swin Transformer code: window_partition/window_reverse, a relative
  position bias table indexed by a buffer, torch.roll and the attention-mask buffer of the
  shifted windows, timm's DropPath; WindowAttention.forward(x, mask=None) alone, and with
  the mask as a second input);
- U-Net (the Pytorch-UNet layout: DoubleConv/Down/Up/OutConv, ConvTranspose2d and
  F.interpolate bilinear with and without align_corners, F.pad to the skip's size, cat,
  GroupNorm and InstanceNorm2d, max-pool down-sampling; per-pixel cross-entropy);
- nn.TransformerEncoder(Layer) (norm_first False/True, a bool key-padding mask as an input,
  forward(src, src_key_padding_mask=None)) and nn.TransformerDecoderLayer (norm_first
  False/True, a causal tgt_mask, two inputs), and a FiLM-conditioned conv block (two inputs).

Beside them: the trace reports δ of every weighted module (Linear, Conv, ConvTranspose,
Embedding, <attn>.q_proj/k_proj/v_proj/out_proj) by qualified name in its output's shape;
the q/k/v δ, which compare_gradients has no autograd probe for, against autograd here;
random layers in training mode are refused (a forward that draws random numbers, by hand
included, is refused and torch's random state restored); a tied weight's gradient is the sum
of its uses.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tolerances import TOLERANCES
from torch import Tensor

import torch_ref

TOL = TOLERANCES["model"]
#: torch's own notice when a pre-norm nn.TransformerEncoder is built as users build it
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: torch's intra-op threads only cost time (on 2 shared cores,
    ten times the file's run time). Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- torchvision.ops: Conv2dNormActivation, SqueezeExcitation, MLP, Permute --------------


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """The channel rounding of the MobileNet papers: to a multiple of `divisor`, never more
    than 10% below v."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Conv2dNormActivation(nn.Sequential):
    """Conv2d → norm → activation, as torchvision.ops builds its stems and block parts."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        norm_layer: Callable[..., nn.Module] | None = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] | None = nn.ReLU,
        dilation: int = 1,
        inplace: bool | None = True,
        bias: bool | None = None,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            params = {} if inplace is None else {"inplace": inplace}
            layers.append(activation_layer(**params))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): x · σ(W2 δ(W1 avgpool(x)))."""

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, input: Tensor) -> Tensor:
        scale = self.avgpool(input)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)

    def forward(self, input: Tensor) -> Tensor:
        scale = self._scale(input)
        return scale * input


class MLP(nn.Sequential):
    """Linear → activation → Dropout, for each hidden size; the last Linear without the
    activation (torchvision.ops.MLP)."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: list[int],
        activation_layer: Callable[..., nn.Module] | None = nn.ReLU,
        inplace: bool | None = None,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        params = {} if inplace is None else {"inplace": inplace}
        layers: list[nn.Module] = []
        in_dim = in_channels
        for hidden_dim in hidden_channels[:-1]:
            layers.append(nn.Linear(in_dim, hidden_dim, bias=bias))
            if activation_layer is not None:
                layers.append(activation_layer(**params))
            layers.append(nn.Dropout(dropout, **params))
            in_dim = hidden_dim
        layers.append(nn.Linear(in_dim, hidden_channels[-1], bias=bias))
        layers.append(nn.Dropout(dropout, **params))
        super().__init__(*layers)


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return torch.permute(x, self.dims)


# --- stochastic depth: torchvision.ops.stochastic_depth and timm's DropPath --------------


def stochastic_depth(input: Tensor, p: float, mode: str, training: bool = True) -> Tensor:
    """Stochastic depth (Huang et al., 2016, "Deep Networks with Stochastic Depth"): zero the
    whole residual branch ("batch") or each sample's ("row") with probability p, scaling the
    survivors by 1/(1 − p); the identity in eval mode."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ["batch", "row"]:
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input

    survival_rate = 1.0 - p
    if mode == "row":
        size = [input.shape[0]] + [1] * (input.ndim - 1)
    else:
        size = [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device)
    noise = noise.bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


class StochasticDepth(nn.Module):
    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, input: Tensor) -> Tensor:
        return stochastic_depth(input, self.p, self.mode, self.training)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p}, mode={self.mode})"


def fx_wrapped_stochastic_depth(
    input: Tensor, p: float, mode: str, training: bool = True
) -> Tensor:
    """stochastic_depth as torchvision.ops ships it: registered with torch.fx.wrap, so fx
    records one call of it instead of tracing its body."""
    return stochastic_depth(input, p, mode, training)


torch.fx.wrap("fx_wrapped_stochastic_depth")


class FxWrappedStochasticDepth(StochasticDepth):
    def forward(self, input: Tensor) -> Tensor:
        return fx_wrapped_stochastic_depth(input, self.p, self.mode, self.training)


def drop_path(
    x: Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True
) -> Tensor:
    """Drop paths per sample (timm): stochastic depth in the main path of residual blocks."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # work with diff dim tensors, not just 2D
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)


# --- MobileNetV3: inverted residual with squeeze-excitation and Hardswish ----------------


class InvertedResidualConfig:
    def __init__(
        self,
        input_channels: int,
        kernel: int,
        expanded_channels: int,
        out_channels: int,
        use_se: bool,
        activation: str,
        stride: int,
        dilation: int = 1,
    ) -> None:
        self.input_channels = input_channels
        self.kernel = kernel
        self.expanded_channels = expanded_channels
        self.out_channels = out_channels
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride = stride
        self.dilation = dilation


class InvertedResidual(nn.Module):
    def __init__(
        self,
        cnf: InvertedResidualConfig,
        norm_layer: Callable[..., nn.Module],
        se_layer: Callable[..., nn.Module] = partial(  # noqa: B008  # (as torchvision)
            SqueezeExcitation, scale_activation=nn.Hardsigmoid
        ),
    ) -> None:
        super().__init__()
        if not (1 <= cnf.stride <= 2):
            raise ValueError("illegal stride value")

        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels

        layers: list[nn.Module] = []
        activation_layer = nn.Hardswish if cnf.use_hs else nn.ReLU

        # expand
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(
                Conv2dNormActivation(
                    cnf.input_channels,
                    cnf.expanded_channels,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=activation_layer,
                )
            )

        # depthwise
        stride = 1 if cnf.dilation > 1 else cnf.stride
        layers.append(
            Conv2dNormActivation(
                cnf.expanded_channels,
                cnf.expanded_channels,
                kernel_size=cnf.kernel,
                stride=stride,
                dilation=cnf.dilation,
                groups=cnf.expanded_channels,
                norm_layer=norm_layer,
                activation_layer=activation_layer,
            )
        )
        if cnf.use_se:
            squeeze_channels = _make_divisible(cnf.expanded_channels // 4, 8)
            layers.append(se_layer(cnf.expanded_channels, squeeze_channels))

        # project
        layers.append(
            Conv2dNormActivation(
                cnf.expanded_channels,
                cnf.out_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=None,
            )
        )

        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels
        self._is_cn = cnf.stride > 1

    def forward(self, input: Tensor) -> Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result += input
        return result


class MobileNetV3(nn.Module):
    def __init__(
        self,
        inverted_residual_setting: list[InvertedResidualConfig],
        last_channel: int,
        num_classes: int = 10,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)

        layers: list[nn.Module] = []
        firstconv_output_channels = inverted_residual_setting[0].input_channels
        layers.append(
            Conv2dNormActivation(
                3,
                firstconv_output_channels,
                kernel_size=3,
                stride=2,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        )
        for cnf in inverted_residual_setting:
            layers.append(InvertedResidual(cnf, norm_layer))
        lastconv_input_channels = inverted_residual_setting[-1].out_channels
        lastconv_output_channels = 6 * lastconv_input_channels
        layers.append(
            Conv2dNormActivation(
                lastconv_input_channels,
                lastconv_output_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv_output_channels, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def mobilenet_v3_tiny(dropout: float = 0.2) -> MobileNetV3:
    bneck_conf = InvertedResidualConfig
    setting = [
        bneck_conf(8, 3, 8, 8, True, "RE", 2),  # SE, stride 2, no expansion
        bneck_conf(8, 3, 24, 8, False, "HS", 1),  # residual
        bneck_conf(8, 5, 24, 8, True, "HS", 1),  # residual with SE
        bneck_conf(8, 3, 24, 12, True, "HS", 2),
    ]
    return MobileNetV3(setting, last_channel=16, num_classes=10, dropout=dropout)


# --- EfficientNet: MBConv with SiLU, squeeze-excitation and stochastic depth --------------


@dataclass
class MBConvConfig:
    expand_ratio: float
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int

    @staticmethod
    def adjust_channels(channels: int, width_mult: float, min_value: int | None = None) -> int:
        return _make_divisible(channels * width_mult, 8, min_value)


class MBConv(nn.Module):
    def __init__(
        self,
        cnf: MBConvConfig,
        stochastic_depth_prob: float,
        norm_layer: Callable[..., nn.Module],
        se_layer: Callable[..., nn.Module] = SqueezeExcitation,
    ) -> None:
        super().__init__()
        if not (1 <= cnf.stride <= 2):
            raise ValueError("illegal stride value")

        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels

        layers: list[nn.Module] = []
        activation_layer = nn.SiLU

        # expand
        expanded_channels = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        if expanded_channels != cnf.input_channels:
            layers.append(
                Conv2dNormActivation(
                    cnf.input_channels,
                    expanded_channels,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=activation_layer,
                )
            )

        # depthwise
        layers.append(
            Conv2dNormActivation(
                expanded_channels,
                expanded_channels,
                kernel_size=cnf.kernel,
                stride=cnf.stride,
                groups=expanded_channels,
                norm_layer=norm_layer,
                activation_layer=activation_layer,
            )
        )

        # squeeze and excitation
        squeeze_channels = max(1, cnf.input_channels // 4)
        layers.append(
            se_layer(expanded_channels, squeeze_channels, activation=partial(nn.SiLU, inplace=True))
        )

        # project
        layers.append(
            Conv2dNormActivation(
                expanded_channels,
                cnf.out_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=None,
            )
        )

        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, input: Tensor) -> Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += input
        return result


class EfficientNet(nn.Module):
    def __init__(
        self,
        inverted_residual_setting: list[MBConvConfig],
        dropout: float,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 10,
        dropout_inplace: bool = True,
    ) -> None:
        super().__init__()
        norm_layer = nn.BatchNorm2d
        layers: list[nn.Module] = []

        # building first layer
        firstconv_output_channels = inverted_residual_setting[0].input_channels
        layers.append(
            Conv2dNormActivation(
                3,
                firstconv_output_channels,
                kernel_size=3,
                stride=2,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        )

        # building inverted residual blocks
        total_stage_blocks = sum(cnf.num_layers for cnf in inverted_residual_setting)
        stage_block_id = 0
        for cnf in inverted_residual_setting:
            stage: list[nn.Module] = []
            for _ in range(cnf.num_layers):
                block_cnf = copy.copy(cnf)
                # overwrite info if not the first conv in the stage
                if stage:
                    block_cnf.input_channels = block_cnf.out_channels
                    block_cnf.stride = 1
                # adjust stochastic depth probability based on the depth of the stage block
                sd_prob = stochastic_depth_prob * float(stage_block_id) / total_stage_blocks
                stage.append(MBConv(block_cnf, sd_prob, norm_layer))
                stage_block_id += 1
            layers.append(nn.Sequential(*stage))

        # building last several layers
        lastconv_input_channels = inverted_residual_setting[-1].out_channels
        lastconv_output_channels = 4 * lastconv_input_channels
        layers.append(
            Conv2dNormActivation(
                lastconv_input_channels,
                lastconv_output_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        )

        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=dropout_inplace),
            nn.Linear(lastconv_output_channels, num_classes),
        )

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init_range = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -init_range, init_range)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def efficientnet_tiny(
    dropout: float = 0.2, stochastic_depth_prob: float = 0.2, dropout_inplace: bool = True
) -> EfficientNet:
    """torchvision's EfficientNet writes nn.Dropout(p=dropout, inplace=True) after
    torch.flatten (a view); `dropout_inplace=False` is the one change from it."""
    setting = [
        MBConvConfig(1, 3, 1, 8, 8, 1),
        MBConvConfig(4, 3, 2, 8, 16, 2),  # the second block of the stage is residual
        MBConvConfig(4, 5, 1, 16, 16, 1),
    ]
    return EfficientNet(setting, dropout, stochastic_depth_prob, dropout_inplace=dropout_inplace)


# --- ConvNeXt: torchvision's CNBlock, and the original block (channels-last gamma) --------


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        x = x.permute(0, 3, 1, 2)
        return x


class CNBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        layer_scale: float,
        stochastic_depth_prob: float,
        norm_layer: Callable[..., nn.Module] | None = None,
        stochastic_depth_layer: Callable[..., nn.Module] = StochasticDepth,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = partial(nn.LayerNorm, eps=1e-6)

        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            norm_layer(dim),
            nn.Linear(in_features=dim, out_features=4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(in_features=4 * dim, out_features=dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = stochastic_depth_layer(stochastic_depth_prob, "row")

    def forward(self, input: Tensor) -> Tensor:
        result = self.layer_scale * self.block(input)
        result = self.stochastic_depth(result)
        result += input
        return result


class ConvNeXt(nn.Module):
    def __init__(
        self,
        dims: Sequence[int] = (8, 16),
        layer_scale: float = 0.5,
        stochastic_depth_prob: float = 0.1,
        num_classes: int = 10,
        stochastic_depth_layer: Callable[..., nn.Module] = StochasticDepth,
    ) -> None:
        super().__init__()
        norm_layer = partial(LayerNorm2d, eps=1e-6)
        layers: list[nn.Module] = []

        # Stem
        layers.append(
            Conv2dNormActivation(
                3,
                dims[0],
                kernel_size=4,
                stride=4,
                padding=0,
                norm_layer=norm_layer,
                activation_layer=None,
                bias=True,
            )
        )
        total_stage_blocks = len(dims)
        stage_block_id = 0
        for i, dim in enumerate(dims):
            # Bottlenecks
            sd_prob = stochastic_depth_prob * stage_block_id / (total_stage_blocks - 1.0)
            block = CNBlock(
                dim, layer_scale, sd_prob, stochastic_depth_layer=stochastic_depth_layer
            )
            layers.append(nn.Sequential(block))
            stage_block_id += 1
            # Downsampling
            if i + 1 < len(dims):
                layers.append(
                    nn.Sequential(
                        norm_layer(dim),
                        nn.Conv2d(dim, dims[i + 1], kernel_size=2, stride=2),
                    )
                )

        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            norm_layer(dims[-1]), nn.Flatten(1), nn.Linear(dims[-1], num_classes)
        )

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = self.classifier(x)
        return x


class ConvNeXtBlock(nn.Module):
    """The original ConvNeXt block: dwconv → permute → LayerNorm → Linear 4× → GELU → Linear
    → gamma (channels-last) → permute back → DropPath → residual."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init_value: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)  # depthwise conv
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)  # pointwise/1x1 convs, implemented with linear
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = (
            nn.Parameter(layer_scale_init_value * torch.ones(dim), requires_grad=True)
            if layer_scale_init_value > 0
            else None
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        input = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        if self.gamma is not None:
            x = self.gamma * x
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)

        x = input + self.drop_path(x)
        return x


class ConvNeXtOriginal(nn.Module):
    def __init__(self, in_chans: int = 3, num_classes: int = 10, dim: int = 8, drop_path=0.1):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dim, kernel_size=4, stride=4), LayerNorm2d(dim, eps=1e-6)
        )
        self.stages = nn.Sequential(
            ConvNeXtBlock(dim, drop_path=drop_path, layer_scale_init_value=0.5),
            ConvNeXtBlock(dim, drop_path=drop_path, layer_scale_init_value=0.5),
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)  # final norm layer
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        x = self.norm(x.mean([-2, -1]))  # global average pooling, (N, C, H, W) -> (N, C)
        return self.head(x)


# --- ShuffleNetV2: chunk, channel shuffle, cat ---------------------------------------------


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups

    # reshape
    x = x.view(batchsize, groups, channels_per_group, height, width)

    x = torch.transpose(x, 1, 2).contiguous()

    # flatten
    x = x.view(batchsize, num_channels, height, width)

    return x


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's InvertedResidual: stride 1 splits the channels with chunk, stride 2
    runs both branches on the whole input."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()

        if not (1 <= stride <= 3):
            raise ValueError("illegal stride value")
        self.stride = stride

        branch_features = oup // 2
        if (self.stride == 1) and (inp != branch_features << 1):
            raise ValueError(
                f"Invalid combination of stride {stride}, inp {inp} and oup {oup} values. "
                "If stride == 1 then inp should be equal to oup // 2 << 1."
            )

        if self.stride > 1:
            self.branch1 = nn.Sequential(
                self.depthwise_conv(inp, inp, kernel_size=3, stride=self.stride, padding=1),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()

        self.branch2 = nn.Sequential(
            nn.Conv2d(
                inp if (self.stride > 1) else branch_features,
                branch_features,
                kernel_size=1,
                stride=1,
                padding=0,
                bias=False,
            ),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            self.depthwise_conv(
                branch_features, branch_features, kernel_size=3, stride=self.stride, padding=1
            ),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(
                branch_features, branch_features, kernel_size=1, stride=1, padding=0, bias=False
            ),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    @staticmethod
    def depthwise_conv(
        i: int, o: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = False
    ) -> nn.Conv2d:
        return nn.Conv2d(i, o, kernel_size, stride, padding, bias=bias, groups=i)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)

        out = channel_shuffle(out, 2)

        return out


class ShuffleNetV2(nn.Module):
    def __init__(self, stages_out_channels: Sequence[int] = (8, 16, 32), num_classes: int = 10):
        super().__init__()
        input_channels = 3
        output_channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        input_channels = output_channels

        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        output_channels = stages_out_channels[1]
        self.stage2 = nn.Sequential(
            ShuffleUnit(input_channels, output_channels, 2),
            ShuffleUnit(output_channels, output_channels, 1),
        )
        input_channels = output_channels

        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )

        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.conv5(x)
        x = x.mean([2, 3])  # globalpool
        x = self.fc(x)
        return x


# --- ViT: patch embedding, class token, positional parameter, nn.MultiheadAttention -------


class MLPBlock(MLP):
    """Transformer MLP block."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(in_dim, [mlp_dim, in_dim], activation_layer=nn.GELU, dropout=dropout)

        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """Transformer encoder block: pre-norm attention and MLP, each with a residual."""

    def __init__(
        self,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
        norm_layer: Callable[..., nn.Module] = partial(nn.LayerNorm, eps=1e-6),  # noqa: B008
    ) -> None:
        super().__init__()
        self.num_heads = num_heads

        # Attention block
        self.ln_1 = norm_layer(hidden_dim)
        self.self_attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=attention_dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)

        # MLP block
        self.ln_2 = norm_layer(hidden_dim)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, input: Tensor) -> Tensor:
        torch._assert(
            input.dim() == 3,
            f"Expected (batch_size, seq_length, hidden_dim) got {input.shape}",
        )
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x)
        x = x + input

        y = self.ln_2(x)
        y = self.mlp(y)
        return x + y


class Encoder(nn.Module):
    """Transformer encoder: positional parameter added, the blocks, a final LayerNorm."""

    def __init__(
        self,
        seq_length: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
        norm_layer: Callable[..., nn.Module] = partial(nn.LayerNorm, eps=1e-6),  # noqa: B008
    ) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(
            torch.empty(1, seq_length, hidden_dim).normal_(std=0.02)
        )  # from BERT
        self.dropout = nn.Dropout(dropout)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(num_layers):
            layers[f"encoder_layer_{i}"] = EncoderBlock(
                num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, norm_layer
            )
        self.layers = nn.Sequential(layers)
        self.ln = norm_layer(hidden_dim)

    def forward(self, input: Tensor) -> Tensor:
        torch._assert(
            input.dim() == 3,
            f"Expected (batch_size, seq_length, hidden_dim) got {input.shape}",
        )
        input = input + self.pos_embedding
        return self.ln(self.layers(self.dropout(input)))


class VisionTransformer(nn.Module):
    def __init__(
        self,
        image_size: int = 8,
        patch_size: int = 4,
        num_layers: int = 2,
        num_heads: int = 2,
        hidden_dim: int = 8,
        mlp_dim: int = 16,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        torch._assert(image_size % patch_size == 0, "Input shape indivisible by patch size!")
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim

        self.conv_proj = nn.Conv2d(
            in_channels=3, out_channels=hidden_dim, kernel_size=patch_size, stride=patch_size
        )

        seq_length = (image_size // patch_size) ** 2

        # Add a class token
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        seq_length += 1

        self.encoder = Encoder(
            seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout
        )
        self.seq_length = seq_length

        heads_layers: OrderedDict[str, nn.Module] = OrderedDict()
        heads_layers["head"] = nn.Linear(hidden_dim, num_classes)
        self.heads = nn.Sequential(heads_layers)

        fan_in = self.conv_proj.in_channels * self.conv_proj.kernel_size[0] ** 2
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.normal_(self.class_token, std=0.02)  # (zeros in torchvision; a live gradient)

    def _process_input(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        torch._assert(h == self.image_size, f"Wrong image height! Expected {self.image_size}")
        torch._assert(w == self.image_size, f"Wrong image width! Expected {self.image_size}")

        # (n, c, h, w) -> (n, hidden_dim, n_h, n_w) -> (n, n_h * n_w, hidden_dim)
        x = self.conv_proj(x)
        x = x.flatten(2).transpose(1, 2)
        return x

    def forward(self, x: Tensor) -> Tensor:
        # Reshape and permute the input tensor
        x = self._process_input(x)
        n = x.shape[0]

        # Expand the class token to the full batch
        batch_class_token = self.class_token.expand(n, -1, -1)
        x = torch.cat([batch_class_token, x], dim=1)

        x = self.encoder(x)

        # Classifier "token" as used by standard language architectures
        x = x[:, 0]

        x = self.heads(x)

        return x


# --- nanoGPT: embeddings of token ids, causal attention, tied output weights -------------


@dataclass
class GPTConfig:
    block_size: int = 8
    vocab_size: int = 11
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 8
    dropout: float = 0.0
    bias: bool = True  # True: bias in Linears and LayerNorms, like GPT-2
    flash: bool = True  # F.scaled_dot_product_attention; False: the masked softmax


class LayerNorm(nn.Module):
    """LayerNorm but with an optional bias. PyTorch doesn't support simply bias=False"""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0
        # key, query, value projections for all heads, but in a batch
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        # output projection
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        # regularization
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.flash = config.flash
        if not self.flash:
            # causal mask to ensure that attention is only applied to the left in the input
            self.register_buffer(
                "bias",
                torch.tril(torch.ones(config.block_size, config.block_size)).view(
                    1, 1, config.block_size, config.block_size
                ),
            )

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.size()  # batch size, sequence length, embedding dimensionality (n_embd)

        # query, key, values for all heads in batch, and move head forward to be the batch dim
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)

        # causal self-attention; Self-attend: (B, nh, T, hs) x (B, nh, hs, T) -> (B, nh, T, T)
        if self.flash:
            y = torch.nn.functional.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=None,
                dropout_p=self.dropout if self.training else 0,
                is_causal=True,
            )
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v  # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs

        # output projection
        y = self.resid_dropout(self.c_proj(y))
        return y


class GPTMLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.c_fc(x)
        x = self.gelu(x)
        x = self.c_proj(x)
        x = self.dropout(x)
        return x


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = GPTMLP(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """nanoGPT's model; forward returns the logits of every position (the loss is the
    oracle's loss_fn, called on them)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        assert config.vocab_size is not None
        assert config.block_size is not None
        self.config = config

        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying

        # init all weights
        self.apply(self._init_weights)
        # apply special scaled init to the residual projections, per GPT-2 paper
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.2)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.2)

    def forward(self, idx: Tensor) -> Tensor:
        device = idx.device
        b, t = idx.size()
        assert t <= self.config.block_size, (
            f"Cannot forward sequence of length {t}, block size is only {self.config.block_size}"
        )
        pos = torch.arange(0, t, dtype=torch.long, device=device)  # shape (t)

        # forward the GPT model itself
        tok_emb = self.transformer.wte(idx)  # token embeddings of shape (b, t, n_embd)
        pos_emb = self.transformer.wpe(pos)  # position embeddings of shape (t, n_embd)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        return logits


class LogitsByClass(nn.Module):
    """(B, T, V) logits as nn.CrossEntropyLoss takes K-dim inputs: (B, V, T), with (B, T)
    targets (`F.cross_entropy(logits.permute(0, 2, 1), targets)`)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, idx: Tensor) -> Tensor:
        logits = self.lm(idx)
        return logits.permute(0, 2, 1)


class LogitsFlat(nn.Module):
    """nanoGPT's loss layout: logits.view(-1, V), with targets.view(-1)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, idx: Tensor) -> Tensor:
        logits = self.lm(idx)
        return logits.view(-1, logits.size(-1))


# --- Swin: window attention with a relative position bias, shifted windows ---------------


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """(B, H, W, C) -> (num_windows*B, window_size, window_size, C)"""
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, C)
    return windows


def window_reverse(windows: Tensor, window_size: int, H: int, W: int) -> Tensor:
    """(num_windows*B, window_size, window_size, C) -> (B, H, W, C)"""
    B = int(windows.shape[0] / (H * W / window_size / window_size))
    x = windows.view(B, H // window_size, W // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, H, W, -1)
    return x


class Mlp(nn.Module):
    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)
        x = self.drop(x)
        return x


class WindowAttention(nn.Module):
    """Window based multi-head self attention with a relative position bias; shifted and
    non-shifted windows (the mask)."""

    def __init__(
        self,
        dim: int,
        window_size: tuple[int, int],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size  # Wh, Ww
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5

        # define a parameter table of relative position bias
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads)
        )  # 2*Wh-1 * 2*Ww-1, nH

        # get pair-wise relative position index for each token inside the window
        coords_h = torch.arange(self.window_size[0])
        coords_w = torch.arange(self.window_size[1])
        coords = torch.stack(torch.meshgrid([coords_h, coords_w], indexing="ij"))  # 2, Wh, Ww
        coords_flatten = torch.flatten(coords, 1)  # 2, Wh*Ww
        relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]
        relative_coords = relative_coords.permute(1, 2, 0).contiguous()  # Wh*Ww, Wh*Ww, 2
        relative_coords[:, :, 0] += self.window_size[0] - 1  # shift to start from 0
        relative_coords[:, :, 1] += self.window_size[1] - 1
        relative_coords[:, :, 0] *= 2 * self.window_size[1] - 1
        relative_position_index = relative_coords.sum(-1)  # Wh*Ww, Wh*Ww
        self.register_buffer("relative_position_index", relative_position_index)

        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.5)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (num_windows*B, N, C); mask: (num_windows, Wh*Ww, Wh*Ww) of 0/-100, or None."""
        B_, N, C = x.shape
        qkv = (
            self.qkv(x)
            .reshape(B_, N, 3, self.num_heads, C // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv[0], qkv[1], qkv[2]  # make torchscript happy (cannot use tensor as tuple)

        q = q * self.scale
        attn = q @ k.transpose(-2, -1)

        relative_position_bias = self.relative_position_bias_table[
            self.relative_position_index.view(-1)
        ].view(
            self.window_size[0] * self.window_size[1], self.window_size[0] * self.window_size[1], -1
        )  # Wh*Ww,Wh*Ww,nH
        relative_position_bias = relative_position_bias.permute(2, 0, 1).contiguous()
        attn = attn + relative_position_bias.unsqueeze(0)

        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
            attn = self.softmax(attn)
        else:
            attn = self.softmax(attn)

        attn = self.attn_drop(attn)

        x = (attn @ v).transpose(1, 2).reshape(B_, N, C)
        x = self.proj(x)
        x = self.proj_drop(x)
        return x


class SwinTransformerBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mlp_ratio = mlp_ratio
        if min(self.input_resolution) <= self.window_size:
            # if window size is larger than input resolution, we don't partition windows
            self.shift_size = 0
            self.window_size = min(self.input_resolution)
        assert 0 <= self.shift_size < self.window_size, "shift_size must in 0-window_size"

        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(
            dim, window_size=(self.window_size, self.window_size), num_heads=num_heads
        )

        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        mlp_hidden_dim = int(dim * mlp_ratio)
        self.mlp = Mlp(in_features=dim, hidden_features=mlp_hidden_dim, act_layer=act_layer)

        if self.shift_size > 0:
            # calculate attention mask for SW-MSA
            H, W = self.input_resolution
            img_mask = torch.zeros((1, H, W, 1))  # 1 H W 1
            h_slices = (
                slice(0, -self.window_size),
                slice(-self.window_size, -self.shift_size),
                slice(-self.shift_size, None),
            )
            w_slices = (
                slice(0, -self.window_size),
                slice(-self.window_size, -self.shift_size),
                slice(-self.shift_size, None),
            )
            cnt = 0
            for h in h_slices:
                for w in w_slices:
                    img_mask[:, h, w, :] = cnt
                    cnt += 1

            mask_windows = window_partition(img_mask, self.window_size)  # nW, ws, ws, 1
            mask_windows = mask_windows.view(-1, self.window_size * self.window_size)
            attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
            attn_mask = attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(
                attn_mask == 0, 0.0
            )
        else:
            attn_mask = None

        self.register_buffer("attn_mask", attn_mask)

    def forward(self, x: Tensor) -> Tensor:
        H, W = self.input_resolution
        B, L, C = x.shape
        assert L == H * W, "input feature has wrong size"

        shortcut = x
        x = self.norm1(x)
        x = x.view(B, H, W, C)

        # cyclic shift
        if self.shift_size > 0:
            shifted_x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        else:
            shifted_x = x

        # partition windows
        x_windows = window_partition(shifted_x, self.window_size)  # nW*B, ws, ws, C
        x_windows = x_windows.view(-1, self.window_size * self.window_size, C)  # nW*B, ws*ws, C

        # W-MSA/SW-MSA
        attn_windows = self.attn(x_windows, mask=self.attn_mask)  # nW*B, ws*ws, C

        # merge windows
        attn_windows = attn_windows.view(-1, self.window_size, self.window_size, C)
        shifted_x = window_reverse(attn_windows, self.window_size, H, W)  # B H' W' C

        # reverse cyclic shift
        if self.shift_size > 0:
            x = torch.roll(shifted_x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        else:
            x = shifted_x
        x = x.view(B, H * W, C)

        # FFN
        x = shortcut + self.drop_path(x)
        x = x + self.drop_path(self.mlp(self.norm2(x)))

        return x


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int = 2, in_chans: int = 3, embed_dim: int = 8) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # B Ph*Pw C
        x = self.norm(x)
        return x


class SwinTiny(nn.Module):
    """Patch embedding, a W-MSA block and an SW-MSA block, average pooling, head."""

    def __init__(self, img_size: int = 8, dim: int = 8, num_classes: int = 10, drop_path=0.1):
        super().__init__()
        resolution = (img_size // 2, img_size // 2)
        self.patch_embed = PatchEmbed(2, 3, dim)
        self.blocks = nn.ModuleList(
            [
                SwinTransformerBlock(
                    dim,
                    resolution,
                    num_heads=2,
                    window_size=2,
                    shift_size=0 if (i % 2 == 0) else 1,
                    mlp_ratio=2.0,
                    drop_path=drop_path,
                )
                for i in range(2)
            ]
        )
        self.norm = nn.LayerNorm(dim)
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)  # B L C
        x = self.avgpool(x.transpose(1, 2))  # B C 1
        x = torch.flatten(x, 1)
        x = self.head(x)
        return x


# --- a small U-Net: down by max pool, up by ConvTranspose2d or bilinear interpolation ----


class DoubleConv(nn.Module):
    """(convolution => [GN/IN] => ReLU) * 2"""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int | None = None,
        norm: str = "group",
    ) -> None:
        super().__init__()
        if not mid_channels:
            mid_channels = out_channels

        def norm_layer(c: int) -> nn.Module:
            if norm == "group":
                return nn.GroupNorm(2, c)
            return nn.InstanceNorm2d(c, affine=True)

        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            norm_layer(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            norm_layer(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """Downscaling with maxpool then double conv"""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "group") -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(
            nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, norm=norm)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Upscaling (ConvTranspose2d, or bilinear interpolation) then double conv"""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        bilinear: bool = True,
        align_corners: bool = True,
        norm: str = "group",
    ) -> None:
        super().__init__()
        self.bilinear = bilinear
        self.align_corners = align_corners
        if bilinear:
            self.conv = DoubleConv(in_channels + skip_channels, out_channels, norm=norm)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels // 2 + skip_channels, out_channels, norm=norm)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        if self.bilinear:
            x1 = F.interpolate(
                x1, scale_factor=2, mode="bilinear", align_corners=self.align_corners
            )
        else:
            x1 = self.up(x1)
        # input is CHW
        diffY = x2.size()[2] - x1.size()[2]
        diffX = x2.size()[3] - x1.size()[3]

        x1 = F.pad(x1, [diffX // 2, diffX - diffX // 2, diffY // 2, diffY - diffY // 2])
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, n_channels: int = 3, n_classes: int = 3) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.n_classes = n_classes

        self.inc = DoubleConv(n_channels, 4)
        self.down1 = Down(4, 8)
        self.down2 = Down(8, 8, norm="instance")
        self.down3 = Down(8, 8)  # (1 × 1: instance statistics need more than one element)
        self.up1 = Up(8, 8, 8, bilinear=False)  # ConvTranspose2d, padded to the skip's size
        self.up2 = Up(8, 8, 4, bilinear=True, align_corners=True, norm="instance")
        self.up3 = Up(4, 4, 4, bilinear=True, align_corners=False)
        self.outc = OutConv(4, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up1(x4, x3)
        x = self.up2(x, x2)
        x = self.up3(x, x1)
        logits = self.outc(x)
        return logits


# --- torch.nn's Transformer layers as users use them --------------------------------------


class TransformerClassifier(nn.Module):
    """Token features → Linear embedding + learned positions → nn.TransformerEncoder → mean
    pool → head; an optional key-padding mask (forward(src, src_key_padding_mask=None))."""

    def __init__(
        self,
        in_dim: int = 5,
        d_model: int = 8,
        num_classes: int = 3,
        norm_first: bool = False,
        enable_nested_tensor: bool = True,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, d_model)
        self.pos = nn.Parameter(torch.randn(1, 4, d_model) * 0.5)
        layer = nn.TransformerEncoderLayer(
            d_model,
            nhead=2,
            dim_feedforward=16,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=norm_first,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=2, enable_nested_tensor=enable_nested_tensor
        )
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, src: Tensor, src_key_padding_mask: Tensor | None = None) -> Tensor:
        x = self.embed(src) + self.pos[:, : src.size(1)]
        x = self.encoder(x, src_key_padding_mask=src_key_padding_mask)
        return self.head(x.mean(dim=1))


class Seq2SeqDecoder(nn.Module):
    """Two inputs: target embeddings and the encoder's memory; one nn.TransformerDecoderLayer
    with a causal mask on the target."""

    def __init__(self, d_model: int = 8, vocab: int = 7, norm_first: bool = False) -> None:
        super().__init__()
        self.decoder_layer = nn.TransformerDecoderLayer(
            d_model, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True,
            norm_first=norm_first,
        )  # fmt: skip
        self.out = nn.Linear(d_model, vocab)

    def forward(self, tgt: Tensor, memory: Tensor) -> Tensor:
        tgt_mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(1), dtype=tgt.dtype)
        x = self.decoder_layer(tgt, memory, tgt_mask=tgt_mask, tgt_is_causal=True)
        return self.out(x).permute(0, 2, 1)  # (N, vocab, T) for the K-dim cross-entropy


class FiLMBlock(nn.Module):
    """Two inputs: a feature map and a conditioning vector (FiLM, Perez et al., 2018, as
    diffusion U-Nets condition on the time embedding): conv(x) · (1 + γ) + β, (γ, β) from
    a Linear on the condition."""

    def __init__(self, channels: int = 4, cond_dim: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(2, channels)
        self.film = nn.Linear(cond_dim, 2 * channels)
        self.act = nn.SiLU()
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        gamma, beta = self.film(cond).chunk(2, dim=-1)
        h = self.norm(self.conv(x))
        h = h * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return x + self.out(self.act(h))


# --- the acceptance table -----------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """One model input: floating N(0, 1) values, integer ids in 0..vocab-1, or a key-padding
    mask (bool, True = padded: the last token of the first sequence, the last two of the
    last one)."""

    shape: tuple[int, ...]
    vocab: int | None = None
    padding_mask: bool = False


@dataclass(frozen=True)
class Model:
    name: str
    build: Callable[[], nn.Module]
    inputs: tuple[Input, ...]
    loss: Any
    #: "classes:K" (class indices in 0..K-1, K-dim when the output has d1, ...) or
    #: "regression" (a target like the output)
    target: str
    modes: tuple[str, ...]
    #: the torchvision/timm/... families the model stands for
    families: str = ""


CE = nn.CrossEntropyLoss()
IMG = (Input((2, 3, 16, 16)),)
PADDED = (Input((3, 4, 5)), Input((3, 4), padding_mask=True))
SMALL = (Input((2, 3, 8, 8)),)

MODELS = [
    Model("mobilenet-v3", mobilenet_v3_tiny, IMG, CE, "classes:10", ("eval",),
          "torchvision mobilenet_v3_small/large, lraspp/ssdlite backbones"),
    Model("mobilenet-v3-dropout0", lambda: mobilenet_v3_tiny(dropout=0.0), IMG, CE,
          "classes:10", ("train",), "torchvision mobilenet_v3 (batch statistics)"),
    Model("efficientnet", efficientnet_tiny, IMG, CE, "classes:10", ("eval",),
          "torchvision efficientnet_b0..b7, efficientnet_v2 classifier"),
    Model("efficientnet-mbconv", lambda: efficientnet_tiny(dropout_inplace=False), IMG, CE,
          "classes:10", ("eval",), "torchvision efficientnet_b0..b7, mnasnet-like MBConv"),
    Model("efficientnet-mbconv-sd0",
          lambda: efficientnet_tiny(0.0, stochastic_depth_prob=0.0, dropout_inplace=False), IMG,
          CE, "classes:10", ("train",), "torchvision efficientnet (batch statistics)"),
    Model("convnext-torchvision", ConvNeXt, IMG, CE, "classes:10", ("eval",),
          "torchvision convnext_tiny..large"),
    Model("convnext-torchvision-fx-wrapped-stochastic-depth",
          lambda: ConvNeXt(stochastic_depth_layer=FxWrappedStochasticDepth), IMG, CE,
          "classes:10", ("eval",), "torchvision convnext, efficientnet, swin, maxvit as shipped"),
    Model("convnext-original", ConvNeXtOriginal, IMG, CE, "classes:10", ("eval",),
          "timm convnext (DropPath, channels-last gamma)"),
    Model("shufflenet-v2", ShuffleNetV2, IMG, CE, "classes:10", ("eval", "train"),
          "torchvision shufflenet_v2_x0_5..x2_0"),
    Model("vit", VisionTransformer, SMALL, CE, "classes:10", ("eval", "train"),
          "torchvision vit_b_16..vit_h_14, timm vit with nn.MultiheadAttention"),
    Model("gpt-sdpa-nct", lambda: LogitsByClass(GPT(GPTConfig())), (Input((2, 6), vocab=11),),
          CE, "classes:11", ("eval", "train"), "nanoGPT/minGPT, GPT-2 style decoders"),
    Model("gpt-sdpa-flat", lambda: LogitsFlat(GPT(GPTConfig())), (Input((2, 6), vocab=11),),
          F.cross_entropy, "classes:11", ("eval",), "nanoGPT's loss layout"),
    Model("gpt-masked-softmax-nobias",
          lambda: LogitsFlat(GPT(GPTConfig(flash=False, bias=False))),
          (Input((2, 6), vocab=11),), CE, "classes:11", ("eval",),
          "nanoGPT without flash attention, bias=False"),
    Model("swin", SwinTiny, SMALL, CE, "classes:10", ("eval",),
          "torchvision swin_t/s/b (v1), timm swin"),
    Model("swin-window-attention-mask-none",
          lambda: WindowAttention(8, (2, 2), num_heads=2), (Input((3, 4, 8)),), nn.MSELoss(),
          "regression", ("eval",), "Swin's W-MSA alone: forward(x, mask=None)"),
    Model("swin-window-attention-mask-input",
          lambda: WindowAttention(8, (2, 2), num_heads=2), (Input((4, 4, 8)), Input((2, 4, 4))),
          nn.MSELoss(), "regression", ("eval",),
          "W-MSA with its mask given as a second (floating) input: ∂L/∂mask too"),
    Model("unet", UNet, (Input((2, 3, 12, 12)),), CE, "classes:3", ("eval", "train"),
          "Pytorch-UNet layout, diffusion/segmentation U-Nets"),
    Model("transformer-encoder-post-norm", TransformerClassifier, (Input((3, 4, 5)),), CE,
          "classes:3", ("eval", "train"), "nn.TransformerEncoder(Layer), norm_first=False"),
    Model("transformer-encoder-pre-norm", lambda: TransformerClassifier(norm_first=True),
          (Input((3, 4, 5)),), CE, "classes:3", ("eval",),
          "nn.TransformerEncoder(Layer), norm_first=True"),
    Model("transformer-encoder-padding-mask", TransformerClassifier, PADDED, CE, "classes:3",
          ("eval",), "nn.TransformerEncoder with src_key_padding_mask (a bool input)"),
    Model("transformer-encoder-padding-mask-train", TransformerClassifier, PADDED, CE,
          "classes:3", ("train",), "the same in train mode (no fast-path check there)"),
    Model("transformer-encoder-padding-mask-no-nested",
          lambda: TransformerClassifier(enable_nested_tensor=False), PADDED, CE, "classes:3",
          ("eval",), "the same with enable_nested_tensor=False"),
    Model("transformer-decoder-post-norm", Seq2SeqDecoder, (Input((2, 4, 8)), Input((2, 5, 8))),
          CE, "classes:7", ("eval", "train"), "nn.TransformerDecoderLayer, norm_first=False"),
    Model("transformer-decoder-pre-norm", lambda: Seq2SeqDecoder(norm_first=True),
          (Input((2, 4, 8)), Input((2, 5, 8))), CE, "classes:7", ("eval",),
          "nn.TransformerDecoderLayer, norm_first=True"),
    Model("film-two-inputs", FiLMBlock, (Input((2, 4, 5, 5)), Input((2, 3))), nn.MSELoss(),
          "regression", ("eval", "train"), "FiLM / time-embedding conditioning"),
]  # fmt: skip

BY_NAME = {m.name: m for m in MODELS}


PAIRS = [pytest.param(m, mode, id=f"{m.name}-{mode}") for m in MODELS for mode in m.modes]


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def padding_mask(shape: tuple[int, ...]) -> Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[0, -1] = True
    mask[-1, -2:] = True
    return mask


def make_inputs(spec: Model) -> tuple[Tensor, ...]:
    return tuple(
        padding_mask(i.shape)
        if i.padding_mask
        else torch.randint(0, i.vocab, i.shape)
        if i.vocab is not None
        else torch.randn(i.shape, dtype=torch.float64)
        for i in spec.inputs
    )


def build(spec: Model, mode: str) -> tuple[nn.Module, tuple[Tensor, ...], Tensor]:
    """The model in float64 and `mode`, BatchNorm running statistics warmed up as training
    leaves them (so eval mode does not normalise with the initial 0 and 1)."""
    torch.manual_seed(0)
    model = spec.build().double()
    if has_batch_norm(model):
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(*(2 * x + 0.5 if x.is_floating_point() else x for x in make_inputs(spec)))
    model.train(mode == "train")
    inputs = make_inputs(spec)
    out = copy.deepcopy(model)(*inputs).detach()  # (grad enabled: torch's own path, no fast path)
    if spec.target.startswith("classes:"):
        k = int(spec.target.split(":")[1])
        target = torch.randint(0, k, out.shape[:1] + out.shape[2:])
    else:
        target = torch.randn_like(out)
    return model, inputs, target


def floating(inputs: tuple[Tensor, ...]) -> int:
    return sum(x.is_floating_point() for x in inputs)


@pytest.mark.parametrize(("spec", "mode"), PAIRS)
def test_model_matches_autograd(spec: Model, mode: str) -> None:
    model, inputs, target = build(spec, mode)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    x = inputs if len(inputs) > 1 else inputs[0]
    report = torch_ref.compare_gradients(model, spec.loss, x, target, input_grads=True, **TOL)
    assert torch.equal(rng, torch.get_rng_state()), f"{spec.name}: torch's random state changed"
    assert report.ok, f"{spec.name} ({mode})\n{report}"
    params = [r.name for r in report.rows if r.kind == "param"]
    assert params == [n for n, _ in model.named_parameters()], spec.name
    deltas = {r.name for r in report.rows if r.kind == "delta"}
    expected = {n for n in weighted_outputs(model, inputs) if not n.endswith(IN_PROJECTIONS)}
    assert deltas == expected, f"{spec.name}: δ rows {deltas}"
    assert sum(r.kind == "input" for r in report.rows) == floating(inputs), spec.name
    # the caller's model is as it was: weights, running statistics, modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), spec.name
    assert all(m.training == (mode == "train") for m in model.modules()), spec.name


# --- the trace: δ of every weighted module, by qualified name, in its output's shape ------

WEIGHTED = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Embedding,
)


def weighted_outputs(model: nn.Module, inputs: tuple[Tensor, ...]) -> dict[str, tuple[int, ...]]:
    """Qualified name → output shape of every weighted module the forward calls, by forward
    hooks on a copy of the model: Linear, Conv, ConvTranspose, Embedding, and for each
    nn.MultiheadAttention its projections q_proj, k_proj, v_proj ((L, N, E), (S, N, E) as
    torch projects them, sequence first) and out_proj ((L·N, E))."""
    twin = copy.deepcopy(model)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    mha = {m: name for name, m in twin.named_modules() if isinstance(m, nn.MultiheadAttention)}
    inside_mha = {f"{name}.out_proj" for name in mha.values()}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
            if isinstance(module, nn.MultiheadAttention):
                q = kwargs.get("query", args[0] if args else None)
                k = kwargs.get("key", args[1] if len(args) > 1 else None)
                if module.batch_first:
                    q, k = q.transpose(0, 1), k.transpose(0, 1)
                (L, N, E), S = q.shape, k.shape[0]
                shapes[f"{name}.q_proj"] = (L, N, E)
                shapes[f"{name}.k_proj"] = (S, N, E)
                shapes[f"{name}.v_proj"] = (S, N, E)
                shapes[f"{name}.out_proj"] = (L * N, E)
            else:
                shapes[name] = tuple(output.shape)

        return hook

    for name, m in twin.named_modules():
        if (isinstance(m, WEIGHTED) and name not in inside_mha) or m in mha:
            handles.append(m.register_forward_hook(record(name), with_kwargs=True))
    twin(*inputs)  # (grad enabled: the Transformer layers' inference fast path skips modules)
    for h in handles:
        h.remove()
    return shapes


TRACED = [pytest.param(m, id=m.name) for m in MODELS]


@pytest.mark.parametrize("spec", TRACED)
def test_trace_reports_delta_of_every_weighted_module(spec: Model) -> None:
    model, inputs, target = build(spec, spec.modes[0])
    x = inputs if len(inputs) > 1 else inputs[0]
    trace = torch_ref.manual_trace(model, spec.loss, x, target, input_grads=True)
    expected = weighted_outputs(model, inputs)
    assert set(trace.deltas) == set(expected), spec.name
    shapes = {name: tuple(d.shape) for name, d in trace.deltas.items()}
    assert shapes == expected, spec.name
    assert all(d.abs().sum() > 0 for d in trace.deltas.values()), spec.name
    grads = trace.input_grads if isinstance(trace.input_grads, tuple) else (trace.input_grads,)
    for x_k, g in zip(inputs, grads, strict=True):
        assert (g is None) == (not x_k.is_floating_point()), spec.name
        assert g is None or g.shape == x_k.shape, spec.name


# --- nn.MultiheadAttention's q/k/v projections: their δ against autograd, here -----------

#: compare_gradients has no autograd probe for these δ (they are slices of one packed
#: projection inside F.multi_head_attention_forward; only out_proj is probed), so its report
#: has no rows for them: the test below takes their reference δ itself.
IN_PROJECTIONS = (".q_proj", ".k_proj", ".v_proj")

ATTENTION = [
    pytest.param(m, id=m.name) for m in MODELS if "vit" in m.name or "transformer" in m.name
]


def attention_deltas(
    spec: Model, model: nn.Module, inputs: tuple[Tensor, ...], target: Tensor
) -> dict[str, Tensor]:
    """δ of each nn.MultiheadAttention's q/k/v and out projections by torch.autograd on a copy
    of the user's model: torch.nn.functional.linear, which F.multi_head_attention_forward
    calls for its projections, is wrapped for the call to keep their outputs; q, k and v are
    slices of the packed projection (self-attention: one (L, N, 3E) output; cross-attention:
    q, then k and v from one (S, N, 2E) output)."""
    twin = copy.deepcopy(model)
    outputs: dict[str, list[Tensor]] = {}
    current: list[str | None] = [None]
    original = F.linear

    def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        out = original(input, weight, bias)
        if current[0] is not None:
            out.retain_grad()
            outputs[current[0]].append(out)
        return out

    def enter(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            current[0] = name
            outputs[name] = []

        return hook

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        current[0] = None

    handles = []
    for name, m in twin.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            handles.append(m.register_forward_pre_hook(enter(name)))
            handles.append(m.register_forward_hook(leave))
    F.linear = linear
    try:
        loss = spec.loss(twin(*inputs), target)
    finally:
        F.linear = original
        for h in handles:
            h.remove()
    loss.backward()
    deltas = {}
    for name, outs in outputs.items():
        grads = [o.grad for o in outs]
        E = grads[-1].shape[-1]
        if len(grads) == 2:  # self-attention: (L, N, 3E), then out_proj
            q, k, v = grads[0].split(E, dim=-1)
        else:  # cross-attention: (L, N, E), (S, N, 2E), then out_proj
            q, (k, v) = grads[0], grads[1].split(E, dim=-1)
        deltas |= {f"{name}.q_proj": q, f"{name}.k_proj": k, f"{name}.v_proj": v}
        deltas[f"{name}.out_proj"] = grads[-1]
    return deltas


@pytest.mark.parametrize("spec", ATTENTION)
def test_attention_projection_deltas_match_autograd(spec: Model) -> None:
    """The trace's δ of <attn>.q_proj/k_proj/v_proj/out_proj against autograd's, at rtol 1e-9."""
    model, inputs, target = build(spec, spec.modes[0])
    x = inputs if len(inputs) > 1 else inputs[0]
    trace = torch_ref.manual_trace(model, spec.loss, x, target)
    want = attention_deltas(spec, model, inputs, target)
    assert want and sum(n.endswith(IN_PROJECTIONS) for n in want) == 3 * sum(
        isinstance(m, nn.MultiheadAttention) for m in model.modules()
    ), spec.name
    for name, w in want.items():
        got = trace.deltas[name]
        assert got.shape == w.shape, f"{spec.name}: {name} {tuple(got.shape)} vs {tuple(w.shape)}"
        bound = TOL["atol"] + TOL["rtol"] * float(w.abs().max())
        err = float((got - w).abs().max())
        assert err <= bound, f"{spec.name}: δ of {name} differs by {err:.3e} > {bound:.3e}"
        assert float(w.abs().max()) > 0, f"{spec.name}: δ of {name} is zero"


# --- random layers in training mode: no reference gradient, so refused --------------------


RANDOM = [
    pytest.param(
        lambda: ConvNeXt(stochastic_depth_prob=0.5),
        id="torchvision-stochastic-depth",
    ),
    pytest.param(lambda: ConvNeXtOriginal(drop_path=0.5), id="timm-drop-path"),
    pytest.param(lambda: SwinTiny(drop_path=0.5), id="swin-drop-path"),
    pytest.param(lambda: efficientnet_tiny(0.2, 0.0, dropout_inplace=False), id="dropout"),
]


@pytest.mark.parametrize("make", RANDOM)
def test_random_layers_in_training_mode_are_refused(make: Callable[[], nn.Module]) -> None:
    torch.manual_seed(0)
    model = make().double().train()
    x = torch.randn(IMG[0].shape, dtype=torch.float64)
    target = torch.randint(0, 10, (IMG[0].shape[0],))
    rng = torch.get_rng_state()
    with pytest.raises((ValueError, torch_ref.UnsupportedModuleError)):
        torch_ref.compare_gradients(model, CE, x, target, **TOL)
    assert torch.equal(rng, torch.get_rng_state())


def test_dropout_in_gpt_training_mode_is_refused() -> None:
    model = LogitsFlat(GPT(GPTConfig(dropout=0.1))).double().train()
    idx, targets = torch.randint(0, 11, (2, 6)), torch.randint(0, 11, (12,))
    with pytest.raises(ValueError, match=r"'lm\.transformer\.drop' \(Dropout\).*random"):
        torch_ref.compare_gradients(model, CE, idx, targets, **TOL)


# --- tied weights: one parameter, the gradient of both uses -------------------------------


def test_tied_embedding_gradient_is_the_sum_of_both_uses() -> None:
    """nanoGPT ties wte and lm_head: one parameter (named once), whose gradient is the sum of
    the embedding's and the output layer's, as for two untied copies of the same values."""
    torch.manual_seed(0)
    tied = LogitsFlat(GPT(GPTConfig())).double().eval()
    idx, targets = torch.randint(0, 11, (2, 6)), torch.randint(0, 11, (12,))
    names = [n for n, _ in tied.named_parameters()]
    assert "lm.transformer.wte.weight" in names and "lm.lm_head.weight" not in names
    grads = torch_ref.manual_gradients(tied, CE, idx, targets)
    untied = copy.deepcopy(tied)
    untied.lm.lm_head.weight = nn.Parameter(tied.lm.lm_head.weight.detach().clone())
    parts = torch_ref.manual_gradients(untied, CE, idx, targets)
    both = parts["lm.transformer.wte.weight"] + parts["lm.lm_head.weight"]
    assert torch.allclose(grads["lm.transformer.wte.weight"], both, rtol=1e-12, atol=1e-15)
    assert parts["lm.transformer.wte.weight"].abs().max() > 0
    assert parts["lm.lm_head.weight"].abs().max() > 0


# --- size checks in the forward, evaluated on the input shapes ---------------------------


def test_size_checks_fail_naming_the_line() -> None:
    """torchvision's torch._assert(h == self.image_size, ...) and nanoGPT's
    `assert t <= self.config.block_size` fail on a misfit input as a ValueError naming them."""
    vit = VisionTransformer().double().eval()
    with pytest.raises(ValueError, match=r"_process_input.*Wrong image height! Expected 8"):
        torch_ref.manual_gradients(vit, CE, torch.randn(2, 3, 12, 12), torch.tensor([1, 2]))
    gpt = LogitsFlat(GPT(GPTConfig())).double().eval()
    idx, targets = torch.randint(0, 11, (2, 9)), torch.randint(0, 11, (18,))
    with pytest.raises(ValueError, match=r"Cannot forward sequence of length 9, block size is"):
        torch_ref.manual_gradients(gpt, CE, idx, targets)
