"""Encoder and decoder blocks, shared by every latent.

Plain nn.Modules that know nothing of Lightning, Hydra or W&B. An encoder maps images
(B, C, H, W) to a flat vector of latent parameters (B, out_features); a decoder maps a flat
latent code (B, in_features) to Bernoulli logits over pixels (B, C, H, W). The latent decides
out_features and in_features (vae/latents/), the data decides image_shape (C, H, W), so the same
block serves every model and dataset.

Defaults follow Jang et al.'s notebook: 784-512-256 ReLU encoder, mirrored decoder, and no
activation on the latent parameters (a ReLU there would clip the logits at 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vae.errors import require, require_positive_int

MNIST_SHAPE = (1, 28, 28)


ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.3),  # the slope of the ARM and DisARM benchmarks
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def _mlp(sizes: Sequence[int], activation: str = "relu") -> list[nn.Module]:
    """Linear layers between consecutive sizes, the activation between them and none after the last."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return layers


def check_sizes(name: str, sizes: Sequence[int], allow_none: bool = False) -> None:
    allowed = (
        "must list hidden sizes (an empty list: a linear map)"
        if allow_none
        else "must list at least one size"
    )
    require(allow_none or len(sizes) > 0, name, list(sizes), allowed)
    for size in sizes:
        require_positive_int(name, size)


def check_activation(activation: str) -> None:
    require(activation in ACTIVATIONS, "activation", activation, f"one of {', '.join(ACTIVATIONS)}")


class MLP(nn.Sequential):
    """Linear layers between consecutive sizes, the activation between them, none after the last
    (sizes of two: a linear map); inputs (*batch, sizes[0]) -> (*batch, sizes[-1])."""

    def __init__(self, sizes: Sequence[int], activation: str = "relu") -> None:
        check_sizes("sizes", sizes)
        check_activation(activation)
        super().__init__(*_mlp(sizes, activation))


class Center(nn.Module):
    """x - mean, the mean image a buffer (set from the training data by adapt_to_data)."""

    def __init__(self, image_shape: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(tuple(image_shape)))

    def forward(self, x: Tensor) -> Tensor:
        return x - self.mean


def _check_halvable_twice(image_shape: Sequence[int]) -> None:
    c, h, w = image_shape
    ok = h % 4 == 0 and w % 4 == 0
    require(ok, "image_shape", list(image_shape), "the conv blocks need a height and width divisible by 4")


class MLPEncoder(nn.Sequential):
    """(B, C, H, W) images -> (B, out_features) latent parameters.

    hidden_sizes: [] for a linear map; activation: between the layers; center_input: subtract the
    training images' mean (set by adapt_to_data), as the ARM and DisARM benchmarks do.
    """

    def __init__(
        self,
        out_features: int,
        hidden_sizes: Sequence[int] = (512, 256),
        image_shape: Sequence[int] = MNIST_SHAPE,
        activation: str = "relu",
        center_input: bool = False,
    ) -> None:
        check_sizes("hidden_sizes", hidden_sizes, allow_none=True)
        check_activation(activation)
        c, h, w = image_shape
        centre = [Center(image_shape)] if center_input else []
        super().__init__(*centre, nn.Flatten(), *_mlp([c * h * w, *hidden_sizes, out_features], activation))
        self.wants_data_mean = center_input

    def adapt_to_data(self, mean_image: Tensor) -> None:
        """Centre the inputs on the training images' mean (C, H, W), if center_input."""
        if self.wants_data_mean:
            self[0].mean.copy_(mean_image)


class MLPDecoder(nn.Module):
    """(B, in_features) latent code -> (B, C, H, W) Bernoulli logits."""

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (256, 512),
        image_shape: Sequence[int] = MNIST_SHAPE,
        activation: str = "relu",
        output_bias_from_data: bool = False,
    ) -> None:
        """output_bias_from_data: start the output layer's bias at logit(mean pixel) of the
        training images (set by adapt_to_data), as the ARM and DisARM benchmarks do."""
        super().__init__()
        check_sizes("hidden_sizes", hidden_sizes, allow_none=True)
        check_activation(activation)
        self.image_shape = tuple(image_shape)
        c, h, w = self.image_shape
        self.net = nn.Sequential(*_mlp([in_features, *hidden_sizes, c * h * w], activation))
        self.wants_data_mean = output_bias_from_data

    def adapt_to_data(self, mean_image: Tensor) -> None:
        if self.wants_data_mean:
            probs = mean_image.flatten().clamp(1e-3, 1 - 1e-3)
            self.net[-1].bias.data.copy_(torch.log(probs) - torch.log1p(-probs))

    def forward(self, code: Tensor) -> Tensor:
        return self.net(code).view(-1, *self.image_shape)  # (B, C, H, W)


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (28 -> 14 -> 7), then an MLP head to the latent parameters."""

    def __init__(
        self,
        out_features: int,
        channels: Sequence[int] = (32, 64),
        hidden_size: int = 256,
        image_shape: Sequence[int] = MNIST_SHAPE,
    ) -> None:
        super().__init__()
        check_sizes("channels", channels)
        require_positive_int("hidden_size", hidden_size)
        _check_halvable_twice(image_shape)
        c, h, w = image_shape
        c1, c2 = channels
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1),  # (B, c1, H/2, W/2)
            nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),  # (B, c2, H/4, W/4)
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c2 * (h // 4) * (w // 4), hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, out_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """The ConvEncoder mirrored with transposed convolutions (7 -> 14 -> 28)."""

    def __init__(
        self,
        in_features: int,
        channels: Sequence[int] = (64, 32),
        hidden_size: int = 256,
        image_shape: Sequence[int] = MNIST_SHAPE,
    ) -> None:
        super().__init__()
        check_sizes("channels", channels)
        require_positive_int("hidden_size", hidden_size)
        _check_halvable_twice(image_shape)
        c, h, w = image_shape
        c1, c2 = channels
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, c1 * (h // 4) * (w // 4)),
            nn.ReLU(),
            nn.Unflatten(1, (c1, h // 4, w // 4)),  # (B, c1, H/4, W/4)
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1),  # (B, c2, H/2, W/2)
            nn.ReLU(),
            nn.ConvTranspose2d(c2, c, 4, stride=2, padding=1),  # (B, C, H, W) logits
        )

    def forward(self, code: Tensor) -> Tensor:
        return self.net(code)
