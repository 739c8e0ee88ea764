"""Image parameterisations, after Olah, Mordvintsev & Schubert (2017), *Feature Visualization*, Distill, and
Mordvintsev et al. (2018), *Differentiable Image Parameterizations*, Distill.

An image is not optimised pixel by pixel but through a parameterisation that makes natural-looking images easier
to reach:

1. **Spatial**: ``z`` (B, C, H, W) is either the pixels themselves (:class:`PixelImage`) or the inverse real FFT
   of a spectrum scaled by 1/f (:class:`FourierImage`): ``z = irfft2(scale ⊙ spectrum, norm="ortho")`` with
   ``scale[k, l] = 1 / max(f[k, l], 1 / max(H, W)) ** decay_power`` (``f`` the frequency of bin (k, l) in
   cycles per pixel), divided by its root mean square so that a learning rate means about the same for both.
   Gradient steps then change low frequencies as much as high ones, instead of mostly high ones.
2. **Colour**: ``x = sigmoid(M z)`` per pixel, where ``M`` (:class:`ColorDecorrelation`) is the square root of
   the colour covariance (``U sqrt(Λ)`` from ``cov = U Λ Uᵀ``), scaled so its largest column has norm 1. ``z``'s
   channels are then decorrelated colours. ``M`` comes from the user's data, or for RGB without data the ImageNet
   matrix Lucid publishes; other channel counts without data use the identity.
3. The sigmoid keeps pixels in (0, 1). The user's normalisation comes after (``visualize(normalize=...)``).

Inputs that are not images (``shape`` other than (C, H, W)) are optimised as raw tensors (:class:`VectorInput`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._common import FeatureVisualizationError

__all__ = ["IMAGENET_COLOR_SQRT", "ColorDecorrelation", "FourierImage", "PixelImage", "VectorInput",
           "fourier_frequencies", "fourier_scale"]

# sqrt of ImageNet's RGB covariance (U sqrt(S)), as published with Lucid (lucid/optvis/param/color.py)
IMAGENET_COLOR_SQRT = ((0.26, 0.09, 0.02),
                       (0.27, 0.00, -0.05),
                       (0.27, -0.09, 0.03))
EPS = 1e-4  # images are clamped to [EPS, 1 - EPS] before the inverse sigmoid


class ColorDecorrelation:
    """A per-pixel linear map between decorrelated colour ``z`` and colour ``x = M z`` (and back, ``z = M⁻¹ x``).

    ``matrix`` is (C, C) float64, ``source`` says where it came from ("imagenet", "data", "identity", "given").
    """

    def __init__(self, matrix: Any, source: str = "given"):
        m = torch.as_tensor(matrix, dtype=torch.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise FeatureVisualizationError(f"a colour matrix must be square (C, C); got shape {tuple(m.shape)}")
        if not torch.isfinite(m).all():
            raise FeatureVisualizationError("the colour matrix has NaN or inf entries")
        if abs(float(torch.linalg.det(m))) < 1e-12:
            raise FeatureVisualizationError("the colour matrix is singular, so decorrelation could not be inverted; "
                                            "pass an invertible matrix, or decorrelate=False")
        self.matrix = m
        self.inverse_matrix = torch.linalg.inv(m)
        self.source = source
        self._cache: dict[tuple[Any, Any], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def imagenet(cls) -> ColorDecorrelation:
        """Lucid's ImageNet RGB matrix, scaled so its largest column has norm 1."""
        m = torch.tensor(IMAGENET_COLOR_SQRT, dtype=torch.float64)
        return cls(m / m.norm(dim=0).max(), "imagenet")

    @classmethod
    def identity(cls, channels: int) -> ColorDecorrelation:
        return cls(torch.eye(channels, dtype=torch.float64), "identity")

    @classmethod
    def from_data(cls, images: Any, max_pixels: int = 1_000_000) -> ColorDecorrelation:
        """From the colour covariance of ``images`` (N, C, H, W): ``U sqrt(Λ)``, largest column norm 1.
        Eigenvalues below 1e-4 of the largest are raised to it, so the map stays invertible. At most
        ``max_pixels`` pixels are used (every k-th, k fixed)."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise FeatureVisualizationError(f"color_data must be a tensor of images (N, C, H, W); got {shape}")
        c = images.shape[1]
        px = images.detach().to("cpu", torch.float64).transpose(0, 1).reshape(c, -1)
        step = max(1, px.shape[1] // max_pixels)
        px = px[:, ::step]
        if px.shape[1] < 2:
            raise FeatureVisualizationError("color_data needs at least 2 pixels")
        if not torch.isfinite(px).all():
            raise FeatureVisualizationError("color_data has NaN or inf values")
        cov = torch.cov(px).reshape(c, c)
        evals, evecs = torch.linalg.eigh(cov)
        top = float(evals.max())
        if top <= 0:
            raise FeatureVisualizationError("color_data has no colour variation (every pixel the same); pass other "
                                            "images or decorrelate=False")
        evals = evals.clamp(min=1e-4 * top)
        m = evecs * evals.sqrt()[None, :]
        return cls(m / m.norm(dim=0).max(), "data")

    @property
    def channels(self) -> int:
        return self.matrix.shape[0]

    def _mats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = (self.matrix.to(like.device, like.dtype),
                                self.inverse_matrix.to(like.device, like.dtype))
        return self._cache[key]

    def correlate(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) decorrelated colours -> colours: ``x[:, c] = Σ_d M[c, d] z[:, d]``."""
        return torch.einsum("cd,ndhw->nchw", self._mats(z)[0], z)

    def decorrelate(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse map: ``z = M⁻¹ x`` per pixel."""
        return torch.einsum("cd,ndhw->nchw", self._mats(x)[1], x)

    def __repr__(self) -> str:
        return f"ColorDecorrelation({self.source}, {self.channels} channels)"


def fourier_frequencies(height: int, width: int) -> torch.Tensor:
    """(H, W // 2 + 1) float64: the frequency, in cycles per pixel, of each bin of ``torch.fft.rfft2``."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


_SCALES: dict[tuple[int, int, float], torch.Tensor] = {}


def fourier_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """(H, W // 2 + 1) float64: ``1 / max(f, 1 / max(H, W)) ** decay_power``, divided by its root mean square."""
    key = (height, width, float(decay_power))
    if key not in _SCALES:
        f = fourier_frequencies(height, width)
        s = 1.0 / f.clamp(min=1.0 / max(height, width)) ** decay_power
        _SCALES[key] = s / s.pow(2).mean().sqrt()
    return _SCALES[key]


class _Parameterization:
    """``params`` (leaf tensors the optimiser updates) and ``decode()``, which builds the images from them."""

    kind = "?"

    def __init__(self, shape: tuple[int, ...], decorrelation: ColorDecorrelation | None):
        self.shape = shape
        self.decorrelation = decorrelation
        self.params: list[torch.Tensor] = []

    def spatial(self) -> torch.Tensor:
        raise NotImplementedError

    def _set_spatial(self, z: torch.Tensor) -> None:
        raise NotImplementedError

    def decode(self) -> torch.Tensor:
        """The images, (B, C, H, W) in (0, 1)."""
        z = self.spatial()
        if self.decorrelation is not None:
            z = self.decorrelation.correlate(z)
        return torch.sigmoid(z)

    def initialize(self, images: torch.Tensor) -> None:
        """Set the parameters so that :meth:`decode` gives ``images`` (clamped to [1e-4, 1 - 1e-4])."""
        x = images.detach().to(self.params[0].device, self.params[0].dtype).clamp(EPS, 1 - EPS)
        z = torch.logit(x)
        if self.decorrelation is not None:
            z = self.decorrelation.decorrelate(z)
        with torch.no_grad():
            self._set_spatial(z)


class PixelImage(_Parameterization):
    """The pre-sigmoid, decorrelated pixels themselves are the parameters."""

    kind = "pixel"

    def __init__(self, shape: tuple[int, int, int, int], *, generator: torch.Generator, device: Any = "cpu",
                 dtype: torch.dtype = torch.float32, sd: float = 0.01,
                 decorrelation: ColorDecorrelation | None = None):
        super().__init__(shape, decorrelation)
        init = torch.randn(shape, generator=generator, dtype=torch.float64) * sd
        self.pixels = init.to(device, dtype).requires_grad_(True)
        self.params = [self.pixels]

    def spatial(self) -> torch.Tensor:
        return self.pixels

    def _set_spatial(self, z: torch.Tensor) -> None:
        self.pixels.copy_(z)


class FourierImage(_Parameterization):
    """A spectrum (B, C, H, W // 2 + 1, 2) (real and imaginary parts) is the parameter; the image is
    ``irfft2(scale ⊙ spectrum, s=(H, W), norm="ortho")`` with :func:`fourier_scale`."""

    kind = "fourier"

    def __init__(self, shape: tuple[int, int, int, int], *, generator: torch.Generator, device: Any = "cpu",
                 dtype: torch.dtype = torch.float32, sd: float = 0.01, decay_power: float = 1.0,
                 decorrelation: ColorDecorrelation | None = None):
        super().__init__(shape, decorrelation)
        b, c, h, w = shape
        self.height, self.width = h, w
        self.scale = fourier_scale(h, w, decay_power).to(device, dtype)
        init = torch.randn((b, c, h, w // 2 + 1, 2), generator=generator, dtype=torch.float64) * sd
        self.spectrum = init.to(device, dtype).requires_grad_(True)
        self.params = [self.spectrum]

    def spatial(self) -> torch.Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale
        return torch.fft.irfft2(spec, s=(self.height, self.width), norm="ortho")

    def _set_spatial(self, z: torch.Tensor) -> None:
        spec = torch.fft.rfft2(z, norm="ortho") / self.scale
        self.spectrum.copy_(torch.view_as_real(spec))


class VectorInput(_Parameterization):
    """Inputs that are not images ((D,), (T, D)...): the raw tensor is the parameter, no sigmoid, no colours."""

    kind = "vector"

    def __init__(self, shape: tuple[int, ...], *, generator: torch.Generator, device: Any = "cpu",
                 dtype: torch.dtype = torch.float32, sd: float = 0.01):
        super().__init__(shape, None)
        self.values = (torch.randn(shape, generator=generator, dtype=torch.float64) * sd).to(device, dtype)
        self.values.requires_grad_(True)
        self.params = [self.values]

    def decode(self) -> torch.Tensor:
        return self.values

    def initialize(self, images: torch.Tensor) -> None:
        with torch.no_grad():
            self.values.copy_(images.detach().to(self.values.device, self.values.dtype))


PARAMS = ("fourier", "pixel")


def make_parameterization(kind: str, shape: tuple[int, ...], *, generator: torch.Generator, device: Any,
                          dtype: torch.dtype, decorrelation: ColorDecorrelation | None, sd: float = 0.01,
                          decay_power: float = 1.0) -> _Parameterization:
    if len(shape) != 4:
        return VectorInput(shape, generator=generator, device=device, dtype=dtype, sd=sd)
    if kind == "fourier":
        return FourierImage(shape, generator=generator, device=device, dtype=dtype, sd=sd, decay_power=decay_power,
                            decorrelation=decorrelation)
    if kind == "pixel":
        return PixelImage(shape, generator=generator, device=device, dtype=dtype, sd=sd, decorrelation=decorrelation)
    raise FeatureVisualizationError(f"param must be one of {PARAMS}; got {kind!r}")


def resolve_decorrelation(decorrelate: Any, color_data: Any, channels: int) -> ColorDecorrelation | None:
    """``decorrelate``: True (from ``color_data`` if given, else ImageNet's for RGB, else the identity), False,
    or a :class:`ColorDecorrelation`."""
    if isinstance(decorrelate, ColorDecorrelation):
        if decorrelate.channels != channels:
            raise FeatureVisualizationError(f"the colour decorrelation is for {decorrelate.channels} channels but the "
                                            f"images have {channels}")
        return decorrelate
    if decorrelate is False:
        if color_data is not None:
            raise FeatureVisualizationError("color_data is only used to decorrelate colours; drop it or pass "
                                            "decorrelate=True")
        return None
    if decorrelate is not True:
        raise FeatureVisualizationError(f"decorrelate must be True, False or a ColorDecorrelation; got {decorrelate!r}")
    if color_data is not None:
        d = ColorDecorrelation.from_data(color_data)
        if d.channels != channels:
            raise FeatureVisualizationError(f"color_data has {d.channels} channels but the images have {channels}")
        return d
    if channels == 3:
        return ColorDecorrelation.imagenet()
    return None if channels == 1 else ColorDecorrelation.identity(channels)


def _check_size(h: int, w: int) -> None:
    if h < 2 or w < 2 or not (math.isfinite(h) and math.isfinite(w)):
        raise FeatureVisualizationError(f"images must be at least 2×2; got {h}×{w}")
