"""SimilarityMatrix: CKA between the layers of one model, or of two models or checkpoints, as a heatmap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import traitlets

from ..analysis.matrices import RepresentationError
from ..analysis.representations import Representations
from ..analysis.similarity import cka_matrix
from ..charts import offline_chart
from ..pipeline.checks import check_epoch, keywords_checked, show
from ._base import HiddenWidget, names

__all__ = ["SimilarityMatrix"]


def _features(source: Any, epoch: int | None, side: str) -> dict[str, Any]:
    epoch = check_epoch(epoch, f"epoch_{side}", RepresentationError)
    if isinstance(source, Representations):
        return {layer: source.get(layer, epoch) for layer in source.layers}
    if isinstance(source, Mapping):
        if epoch is not None:
            raise RepresentationError(f"epoch_{side}={epoch} picks a recorded epoch of a Representations, but {side} "
                                      "is a dict of features, which has no epochs: drop epoch_" + side)
        return dict(source)
    raise RepresentationError(f"{side} must be {{layer: (N, features)}} or a Representations; got "
                              f"{type(source).__name__}")


class SimilarityMatrix(HiddenWidget):
    """Layer x layer CKA (Kornblith et al. 2019) of ``a`` against itself, or against ``b`` (another model, or the
    same model at another checkpoint: both must describe the same examples in the same order).

    ``a`` and ``b``: ``{layer: (N, features)}`` or :class:`~hiddenwidgets.Representations` (``epoch_a`` /
    ``epoch_b`` pick a recorded epoch; default the latest). ``kernel``: "linear" or "rbf"; ``debiased``: the
    unbiased HSIC estimator (better with few examples per feature).
    """

    _view_file = "similarity_matrix"

    title = traitlets.Unicode("CKA").tag(sync=True)
    description = traitlets.Unicode("").tag(sync=True)
    rows = traitlets.List(traitlets.Unicode()).tag(sync=True)
    cols = traitlets.List(traitlets.Unicode()).tag(sync=True)
    row_title = traitlets.Unicode("").tag(sync=True)
    col_title = traitlets.Unicode("").tag(sync=True)
    values = traitlets.List(traitlets.List(), help="values[i][j] = CKA(row i, column j) (read-only).").tag(sync=True)

    def _describe(self) -> str:
        return (f"CKA similarity (Kornblith et al. 2019) of {len(self.rows)} × {len(self.cols)} layers "
                f"({names(self.rows, 3)} against {names(self.cols, 3)})")

    @keywords_checked
    def __init__(self, a: Any, b: Any = None, *, kernel: str = "linear", debiased: bool = False,
                 epoch_a: int | None = None, epoch_b: int | None = None, names: tuple[str, str] = ("", ""),
                 title: str | None = None):
        if isinstance(names, str) or not isinstance(names, (tuple, list)) or len(names) != 2 or \
                not all(isinstance(x, str) for x in names):
            raise RepresentationError(f"names must be two strings (a's name, b's name); got {show(names)}: e.g. "
                                      "names=('before', 'after')")
        if b is None and epoch_b is not None:
            raise RepresentationError("epoch_b is for b, which is not given: drop epoch_b, or pass b")
        left = _features(a, epoch_a, "a")
        right = None if b is None else _features(b, epoch_b, "b")
        rows, cols, matrix = cka_matrix(left, right, kernel=kernel, debiased=debiased)
        self.matrix = matrix
        kind = f"{'debiased ' if debiased else ''}{kernel} CKA"
        super().__init__(
            title=title or (f"{kind}: {names[0] or 'A'} vs {names[1] or 'B'}" if b is not None else kind),
            description=f"{len(next(iter(left.values())))} examples; 1 = the same up to rotation and scale",
            rows=rows, cols=cols, row_title=names[0] or "layer", col_title=names[1] or "layer",
            values=[[None if v != v else round(float(v), 6) for v in row] for row in matrix.tolist()])

    @offline_chart
    def to_altair(self):
        """The matrix as an Altair heatmap."""
        import altair as alt

        rows = [{"row": r, "col": c, "cka": v} for r, line in zip(self.rows, self.values, strict=True)
                for c, v in zip(self.cols, line, strict=True)]
        return alt.Chart(alt.Data(values=rows)).mark_rect().encode(
            x=alt.X("col:N", sort=self.cols, title=self.col_title), y=alt.Y("row:N", sort=self.rows,
                                                                             title=self.row_title),
            color=alt.Color("cka:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis")),
            tooltip=["row:N", "col:N", "cka:Q"]).properties(title=self.title)
