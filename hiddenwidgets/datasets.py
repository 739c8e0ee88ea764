"""Small data sets that ship with the package, so examples and tests run anywhere, offline."""

from __future__ import annotations

from pathlib import Path

import torch

from .pipeline.checks import check_int, keywords_checked

DATA = Path(__file__).resolve().parent / "data"

__all__ = ["Shapes", "labelled_sentences", "shapes", "twelve_bit_task"]


def twelve_bit_task() -> tuple[torch.Tensor, torch.Tensor]:
    """The 12-bit task of Shwartz-Ziv & Tishby (2017): all 4096 binary patterns and their binary labels.

    Returns ``(X, y)``: ``X`` float32 (4096, 12), row r is r in binary, most significant bit first; ``y`` int64
    (4096,) with 2118 ones, so H(Y) = 0.99916 bits. From the paper's public code (``data/var_u.mat``).
    """
    from scipy.io import loadmat

    d = loadmat(DATA / "var_u.mat")
    return torch.tensor(d["F"], dtype=torch.float32), torch.tensor(d["y"].reshape(-1), dtype=torch.int64)


def labelled_sentences() -> list[dict]:
    """160 short English sentences written for hiddenwidgets' probing examples, 40 per topic (sport, food,
    weather, technology), each a dict with ``text``, ``topic``, ``words`` (whitespace split, no punctuation) and
    ``pos`` (a coarse part-of-speech tag per word: NOUN, VERB, ADJ, ADV, DET, ADP, PRON, CONJ, NUM, AUX, PART).
    Words such as run, play, light, fast, cook, rain and watch occur with two or more tags. The tagging
    conventions are in the file's ``description`` (``hiddenwidgets/data/sentences.json``)."""
    import json

    return json.loads((DATA / "sentences.json").read_text(encoding="utf-8"))["sentences"]


# ------------------------------------------------------------------------------------------------------------------
# procedural images with concept masks (for feature visualisation and network dissection)
SHAPE_COLOURS = {"red": (0.90, 0.12, 0.10), "green": (0.12, 0.75, 0.15), "blue": (0.12, 0.22, 0.90),
                 "yellow": (0.92, 0.85, 0.10)}
SHAPE_KINDS = ("circle", "square", "triangle")
SHAPE_TEXTURES = ("solid", "stripes", "dots", "checker")
SHAPE_CONCEPTS = (*SHAPE_COLOURS, *SHAPE_KINDS, *SHAPE_TEXTURES, "background")
_FAMILIES = ((0, len(SHAPE_COLOURS)), (1, len(SHAPE_KINDS)), (2, len(SHAPE_TEXTURES)))


class Shapes:
    """Procedural images of coloured, textured shapes with a mask per concept (see :func:`shapes`).

    ``images`` (N, 3, H, W) float32 in [0, 1]; ``objects`` (N, H, W) uint8, which object each pixel shows (0 the
    background, 1 the first object drawn, 2 the second, drawn over it); ``attributes`` (N, 2, 3) int64, each
    object's (colour, shape, texture) ids (-1 where an image has one object); ``concepts``: the concept names;
    ``labels`` (N, K) bool: the concepts visible in each image (image-level labels).
    """

    def __init__(self, images: torch.Tensor, objects: torch.Tensor, attributes: torch.Tensor):
        self.images = images
        self.objects = objects
        self.attributes = attributes
        self.concepts = list(SHAPE_CONCEPTS)
        visible = torch.stack([(objects == j).flatten(1).any(1) for j in range(attributes.shape[1] + 1)], 1)
        labels = torch.zeros((len(images), len(self.concepts)), dtype=torch.bool)
        offset = 0
        for family, count in _FAMILIES:
            for value in range(count):
                labels[:, offset + value] = ((attributes[..., family] == value) & visible[:, 1:]).any(1)
            offset += count
        labels[:, -1] = visible[:, 0]
        self.labels = labels

    def _bound(self, value: int | None, name: str) -> int | None:
        """A slice bound: an int or None (as in Python slicing, bounds past the end are allowed)."""
        return None if value is None else check_int(value, name, hint="an example index, as in a slice")

    def __len__(self) -> int:
        return len(self.images)

    def masks(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """(n, K, H, W) bool pixel masks of examples ``start:stop``, one channel per name in ``concepts``: a
        colour, shape or texture concept covers its object's visible pixels; "background" the rest."""
        start, stop = self._bound(start, "start"), self._bound(stop, "stop")
        obj = self.objects[start:stop].long()
        n = len(obj)
        attr = torch.cat([torch.full((n, 1, 3), -1, dtype=torch.int64), self.attributes[start:stop]], dim=1)
        per_pixel = attr[torch.arange(n)[:, None, None], obj]  # (n, H, W, 3)
        out = [per_pixel[..., family] == value for family, count in _FAMILIES for value in range(count)]
        out.append(obj == 0)
        return torch.stack(out, dim=1)

    def batches(self, batch_size: int = 64):
        """(images, masks) batches in order, masks built per batch (all masks at once would take N·K·H·W bytes)."""
        batch_size = check_int(batch_size, "batch_size", minimum=1, hint="try 64 (images per batch)")
        return self._batches(batch_size)

    def _batches(self, batch_size: int):
        for s in range(0, len(self), batch_size):
            yield self.images[s:s + batch_size], self.masks(s, s + batch_size)


@keywords_checked
def shapes(n: int = 1000, size: int = 64, *, seed: int = 0, max_objects: int = 2) -> Shapes:
    """``n`` procedural ``size``×``size`` RGB images of shapes, with concept masks, for network dissection and
    feature-visualisation examples that need no download (made here for hiddenwidgets).

    Each image has a grey background (level 0.35–0.65, pixel noise σ = 0.03) and 1 to ``max_objects`` objects,
    each a circle, square or triangle (radius 15–28% of the size, centre in the middle half) in red, green, blue or
    yellow (brightness 85–100%), filled solid or with stripes (random angle), dots or a checkerboard (period about
    an eighth of the size; the pattern's dark parts at 35% of the colour). Deterministic for a ``seed`` (its own
    ``torch.Generator``). 10,000 64×64 images took 2.1 s with two threads and 5.6–6.6 s with one on a shared,
    busy 2-core machine (``benchmarks/feature_visualization.py``); masks are built per batch by
    :meth:`Shapes.masks`, so the set costs its images plus one byte per pixel.
    """
    n = check_int(n, "n", minimum=1, hint="try 1000 (the number of images)")
    size = check_int(size, "size", minimum=8, hint="try 64 (the image side in pixels)")
    max_objects = check_int(max_objects, "max_objects", minimum=1, hint="try 2 (objects per image at most)")
    seed = check_int(seed, "seed", minimum=0)
    g = torch.Generator().manual_seed(seed)
    images = torch.empty((n, 3, size, size), dtype=torch.float32)
    objects = torch.zeros((n, size, size), dtype=torch.uint8)
    attributes = torch.full((n, max_objects, 3), -1, dtype=torch.int64)
    palette = torch.tensor(list(SHAPE_COLOURS.values()), dtype=torch.float32)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    for s in range(0, n, 500):
        m = min(500, n - s)
        count = torch.randint(1, max_objects + 1, (m,), generator=g)
        grey = 0.35 + 0.3 * torch.rand((m, 1, 1), generator=g)
        base = grey + 0.03 * torch.randn((m, size, size), generator=g)
        img = base[:, None].repeat(1, 3, 1, 1)
        which = objects[s:s + m]
        for j in range(max_objects):
            colour = torch.randint(len(SHAPE_COLOURS), (m,), generator=g)
            kind = torch.randint(len(SHAPE_KINDS), (m,), generator=g)
            texture = torch.randint(len(SHAPE_TEXTURES), (m,), generator=g)
            u = torch.rand((m, 6), generator=g)
            drawn = torch.nonzero(count > j).flatten()
            attributes[s + drawn, j] = torch.stack([colour, kind, texture], 1)[drawn]
            cy, cx = (0.25 + 0.5 * u[:, 0]) * size, (0.25 + 0.5 * u[:, 1]) * size
            r = (0.15 + 0.13 * u[:, 2]) * size
            angle = u[:, 3] * torch.pi
            period = size / 8 * (0.8 + 0.4 * u[:, 4])
            bright = 0.85 + 0.15 * u[:, 5]
            for k in range(len(SHAPE_KINDS)):
                for t in range(len(SHAPE_TEXTURES)):
                    idx = drawn[(kind[drawn] == k) & (texture[drawn] == t)]
                    if len(idx) == 0:
                        continue
                    dy = coords[None, :, None] - cy[idx, None, None]
                    dx = coords[None, None, :] - cx[idx, None, None]
                    rr = r[idx, None, None]
                    if k == 0:
                        inside = dx * dx + dy * dy <= rr * rr
                    elif k == 1:
                        inside = torch.maximum(dx.abs(), dy.abs()) <= 0.85 * rr
                    else:
                        inside = (dy >= -rr) & (dy <= 0.75 * rr) & (dx.abs() <= 0.6 * (dy + rr))
                    p = period[idx, None, None]
                    if t == 0:
                        lit = None
                    elif t == 1:
                        a = angle[idx, None, None]
                        lit = torch.remainder((dx * torch.cos(a) + dy * torch.sin(a)) / p, 1.0) < 0.5
                    elif t == 2:
                        ox, oy = torch.remainder(dx, p) - p / 2, torch.remainder(dy, p) - p / 2
                        lit = ox * ox + oy * oy < (p / 3) ** 2
                    else:
                        lit = torch.remainder(torch.floor(dx / p) + torch.floor(dy / p), 2) == 0
                    shade = bright[idx, None, None].expand(-1, size, size)
                    if lit is not None:
                        shade = torch.where(lit, shade, 0.35 * shade)
                    fill = palette[colour[idx]][:, :, None, None] * shade[:, None]
                    img[idx] = torch.where(inside[:, None], fill, img[idx])
                    which[idx] = torch.where(inside, j + 1, which[idx]).to(torch.uint8)
        images[s:s + m] = img.clamp_(0, 1)
    return Shapes(images, objects, attributes)
