"""Colour maths for the visual regression suite (tests/e2e/test_visual.py, benchmarks/visual_audit.py).

Plain Python (no numpy needed), so the browser tests, the benchmark and the unit tests share one copy:

- sRGB <-> linear RGB <-> CIE XYZ (D65) <-> CIELAB (IEC 61966-2-1; CIE 15:2004)
- WCAG 2.x relative luminance and contrast ratio (W3C, WCAG 2.2, "contrast ratio" / "relative luminance")
- CIEDE2000 colour difference (CIE 142-2001, as written out in Sharma, Wu & Dalal, "The CIEDE2000 colour-difference
  formula: implementation notes, supplementary test data, and mathematical observations", Color Res. Appl. 30(1),
  2005, eqs. 1-17)
- simulation of protanopia / deuteranopia / tritanopia (Machado, Oliveira & Fernandes, "A physiologically-based
  model for simulation of color vision deficiency", IEEE TVCG 15(6), 2009; their precomputed matrices for severity
  1.0, applied to *linear* RGB as the paper does)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from itertools import combinations
from pathlib import Path

RGB = tuple[float, float, float]

# Machado et al. 2009, Table/supplement: severity 1.0 (dichromacy), rows map linear (R, G, B) to simulated linear RGB
MACHADO_2009 = {
    "protanopia": ((0.152286, 1.052583, -0.204868),
                   (0.114503, 0.786281, 0.099216),
                   (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968),
                     (0.280085, 0.672501, 0.047413),
                     (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779),
                   (-0.078411, 0.930809, 0.147602),
                   (0.004733, 0.691367, 0.303900)),
}

# sRGB (IEC 61966-2-1) primaries, D65 white, linear RGB -> XYZ (Y of white = 1)
_RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
_D65 = (0.95047, 1.0, 1.08883)


def parse_hex(text: str) -> RGB:
    """'#rgb' or '#rrggbb' -> (r, g, b) in 0-255."""
    h = text.strip().lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    if not re.fullmatch(r"[0-9a-fA-F]{6}", h):
        raise ValueError(f"not a hex colour: {text!r} (expected '#rrggbb')")
    return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))


def to_hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{max(0, min(255, round(c))):02x}" for c in rgb)


def srgb_to_linear(c: float) -> float:
    """One sRGB channel in 0-1 to linear light (IEC 61966-2-1)."""
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def linear_to_srgb(c: float) -> float:
    c = min(1.0, max(0.0, c))
    return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055


def linear_rgb(rgb: Sequence[float]) -> RGB:
    """(r, g, b) in 0-255 -> linear RGB in 0-1."""
    return tuple(srgb_to_linear(c / 255) for c in rgb)  # type: ignore[return-value]


def relative_luminance(rgb: Sequence[float]) -> float:
    """WCAG 2.x relative luminance of an sRGB colour (0-255 channels). WCAG writes the threshold as 0.03928 (an
    older draft of sRGB); it and 0.04045 give the same result for every 8-bit value."""
    r, g, b = (c / 255 for c in rgb)
    lin = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast_ratio(fg: Sequence[float], bg: Sequence[float]) -> float:
    """WCAG contrast ratio (L1 + 0.05) / (L2 + 0.05), L1 the lighter; 1 to 21."""
    a, b = relative_luminance(fg), relative_luminance(bg)
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)


def composite(fg: Sequence[float], alpha: float, bg: Sequence[float]) -> RGB:
    """``fg`` with opacity ``alpha`` over an opaque ``bg`` (0-255 channels, as browsers blend: in sRGB values)."""
    return tuple(alpha * f + (1 - alpha) * b for f, b in zip(fg, bg, strict=True))  # type: ignore[return-value]


def srgb_to_lab(rgb: Sequence[float]) -> RGB:
    """sRGB (0-255) -> CIELAB (D65 white), CIE 15:2004."""
    lin = linear_rgb(rgb)
    xyz = [sum(m * c for m, c in zip(row, lin, strict=True)) for row in _RGB_TO_XYZ]
    eps, kappa = 216 / 24389, 24389 / 27

    def f(t: float) -> float:
        return t ** (1 / 3) if t > eps else (kappa * t + 16) / 116

    fx, fy, fz = (f(v / w) for v, w in zip(xyz, _D65, strict=True))
    return (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))


def ciede2000(lab1: Sequence[float], lab2: Sequence[float], kl: float = 1, kc: float = 1, kh: float = 1) -> float:
    """CIEDE2000 colour difference ΔE00 between two CIELAB colours (Sharma, Wu & Dalal 2005, eqs. 1-17)."""
    l1, a1, b1 = lab1
    l2, a2, b2 = lab2
    c_bar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_bar ** 7 / (c_bar ** 7 + 25 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)

    def hue(b: float, ap: float) -> float:
        return 0.0 if b == 0 and ap == 0 else math.degrees(math.atan2(b, ap)) % 360

    h1p, h2p = hue(b1, a1p), hue(b2, a2p)
    dl = l2 - l1
    dc = c2p - c1p
    if c1p * c2p == 0:
        dh = 0.0
    else:
        dh = h2p - h1p
        if dh > 180:
            dh -= 360
        elif dh < -180:
            dh += 360
    dH = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dh / 2))
    l_bar = (l1 + l2) / 2
    cp_bar = (c1p + c2p) / 2
    if c1p * c2p == 0:
        hp_bar = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        hp_bar = (h1p + h2p) / 2
    elif h1p + h2p < 360:
        hp_bar = (h1p + h2p + 360) / 2
    else:
        hp_bar = (h1p + h2p - 360) / 2
    t = (1 - 0.17 * math.cos(math.radians(hp_bar - 30)) + 0.24 * math.cos(math.radians(2 * hp_bar))
         + 0.32 * math.cos(math.radians(3 * hp_bar + 6)) - 0.20 * math.cos(math.radians(4 * hp_bar - 63)))
    d_theta = 30 * math.exp(-(((hp_bar - 275) / 25) ** 2))
    rc = 2 * math.sqrt(cp_bar ** 7 / (cp_bar ** 7 + 25 ** 7))
    sl = 1 + 0.015 * (l_bar - 50) ** 2 / math.sqrt(20 + (l_bar - 50) ** 2)
    sc = 1 + 0.045 * cp_bar
    sh = 1 + 0.015 * cp_bar * t
    rt = -math.sin(math.radians(2 * d_theta)) * rc
    x, y, z = dl / (kl * sl), dc / (kc * sc), dH / (kh * sh)
    return math.sqrt(x * x + y * y + z * z + rt * y * z)


def delta_e(rgb1: Sequence[float], rgb2: Sequence[float]) -> float:
    """CIEDE2000 between two sRGB colours (0-255)."""
    return ciede2000(srgb_to_lab(rgb1), srgb_to_lab(rgb2))


def simulate_cvd(rgb: Sequence[float], kind: str) -> RGB:
    """How an sRGB colour (0-255) looks to a dichromat, by Machado et al. (2009), severity 1.0: the matrix is
    applied in linear RGB, the result clipped to the gamut and encoded back to sRGB (0-255, not rounded)."""
    if kind == "normal":
        return tuple(float(c) for c in rgb)  # type: ignore[return-value]
    if kind not in MACHADO_2009:
        raise ValueError(f"kind must be 'normal' or one of {sorted(MACHADO_2009)}; got {kind!r}")
    lin = linear_rgb(rgb)
    out = [sum(m * c for m, c in zip(row, lin, strict=True)) for row in MACHADO_2009[kind]]
    return tuple(255 * linear_to_srgb(c) for c in out)  # type: ignore[return-value]


def min_pairwise_delta_e(colours: Iterable[Sequence[float]], kind: str = "normal") -> tuple[float, int, int]:
    """The smallest CIEDE2000 between any two colours as seen under ``kind``; returns (ΔE, i, j)."""
    sim = [simulate_cvd(c, kind) for c in colours]
    if len(sim) < 2:
        raise ValueError("need at least two colours")
    return min((delta_e(sim[i], sim[j]), i, j) for i, j in combinations(range(len(sim)), 2))


# --- the package's categorical palette, read from its JavaScript source ------------------------------------------

def categorical_palette(repo: Path) -> tuple[list[str], str]:
    """The hex colours of the views' categorical palette and where they came from: ``CATEGORICAL`` in
    js/lib/palette.js if that file exists (the shared visual system), else ``PALETTE`` in js/lib/scatter.js (what
    the projector and concept scores used before it)."""
    for rel, name in (("js/lib/palette.js", "CATEGORICAL"), ("js/lib/scatter.js", "PALETTE")):
        path = repo / rel
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        m = re.search(rf"export\s+const\s+{name}\b[^=]*=\s*(?:Object\.freeze\()?\[(.*?)\]", text, re.S)
        if not m:
            if rel.endswith("palette.js"):
                raise ValueError(f"{path} has no `export const {name} = [...]` array of hex strings")
            continue
        body = re.sub(r"//[^\n]*", "", m.group(1))
        colours = re.findall(r"[\"'](#[0-9a-fA-F]{6}|#[0-9a-fA-F]{3})[\"']", body)
        if not colours:
            raise ValueError(f"{path}: {name} holds no '#rrggbb' strings")
        return colours, f"{rel}:{name}"
    raise FileNotFoundError(f"no categorical palette found in {repo}/js/lib (palette.js CATEGORICAL or scatter.js "
                            "PALETTE)")
