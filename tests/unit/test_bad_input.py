"""Bad input to the public API is refused at the boundary, with a message that names the parameter.

A table-driven sweep (issue 11, item 8): each case is a call with one bad argument, the exception it must raise
and a regular expression its message must match (the parameter's name, and mostly the bad value). The cases
cover, per parameter: wrong types (a string for a number, a float or a bool for a count), zero and negative
counts, NaN and inf, empty inputs, mismatched lengths, wrong dimensionality, complex tensors (whose imaginary part
would be dropped), non-whole float labels, out-of-range indices, unknown keyword arguments (named, with the valid
ones) and unknown string choices (listed, with the closest one suggested).

After the table: the decisions the sweep pins (whole-number float labels are accepted exactly; a layer name given
as a string is one layer; a probe over very many classes is refused unless asked for, reports progress and can be
cancelled).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import traitlets
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.analysis.interventions import InterventionError, intervene
from hiddenwidgets.analysis.matrices import RepresentationError
from hiddenwidgets.analysis.probes import ProbeResult, linear_probe, probe_layers
from hiddenwidgets.analysis.representations import nearest, pool
from hiddenwidgets.analysis.similarity import MinibatchCKA, cka, cka_matrix
from hiddenwidgets.methods import AttributionError
from hiddenwidgets.pipeline.concepts import ConceptError
from hiddenwidgets.pipeline.recorder import log_spaced_epochs

N = 12
G = torch.Generator().manual_seed(0)
X = torch.randn(N, 4, generator=G)
Y = torch.arange(N) % 3
F = torch.randn(N, 5, generator=G)  # a layer's features
NAN = float("nan")
INF = float("inf")


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(fc1=nn.Linear(4, 8), act=nn.ReLU(), fc2=nn.Linear(8, 3))).eval()


class ToComplex(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.complex(x, -x)


def complex_model() -> nn.Module:
    return nn.Sequential(OrderedDict(fc=nn.Linear(4, 4), cplx=ToComplex()))


MODEL = mlp()
COMPLEX = torch.complex(F, F)


def reps() -> hw.Representations:
    r = hw.Representations(n=N)
    r.add({"fc1": F, "fc2": F[:, :3] * 2}, epoch=0)
    return r


def recorder(**kw):
    return hw.RepresentationRecorder(MODEL, ["fc1"], X, **kw)


def info_recorder(labels=Y, **kw):
    kw.setdefault("epochs", [0, 1])
    return hw.InformationRecorder(MODEL, ["fc1"], X, labels, **kw)


def plane(labels=Y, **kw):
    kw.setdefault("epochs", [0, 1])
    return hw.InformationPlane(MODEL, ["fc1"], X, labels, **kw)


def projector(**kw):
    return hw.Projector({"fc1": F, "fc2": F[:, :3] * 2}, Y, **kw)


def result(r_: float = 0.5) -> ProbeResult:
    return ProbeResult("a", r_, 0.6, 0.3, 0.2, 0.25, 30, 10, 4, epoch=1)


def intervention():
    return intervene(MODEL, X, "fc1", torch.ones(8))


def explorer(**kw):
    kw.setdefault("selected", ["saliency"])
    kw.setdefault("metrics", False)
    return hw.AttributionExplorer(MODEL, kw.pop("inputs", X[:4]), **kw)


def setting(make, **values):
    """Make a widget, set its traits (the bad value must raise here), close it either way."""
    w = make()
    try:
        for name, value in values.items():
            setattr(w, name, value)
    finally:
        w.close()


def call(obj_factory, method, *args, **kw):
    obj = obj_factory()
    try:
        return getattr(obj, method)(*args, **kw)
    finally:
        if hasattr(obj, "close"):
            obj.close()


R, IE, AE, TE, VE, TYPE = RepresentationError, InterventionError, AttributionError, traitlets.TraitError, \
    ValueError, TypeError

CASES = [
    # ---- hw.layer_features ---------------------------------------------------------------------------------------
    ("layer_features/batch_size=0", lambda: hw.layer_features(MODEL, X, ["fc1"], batch_size=0), R,
     r"batch_size.*\b0\b"),
    ("layer_features/batch_size=-1", lambda: hw.layer_features(MODEL, X, ["fc1"], batch_size=-1), R, r"batch_size.*-1"),
    ("layer_features/batch_size=2.0", lambda: hw.layer_features(MODEL, X, ["fc1"], batch_size=2.0), R,
     r"batch_size.*2\.0"),
    ("layer_features/batch_size=True", lambda: hw.layer_features(MODEL, X, ["fc1"], batch_size=True), R,
     r"batch_size.*True"),
    ("layer_features/batch_size='8'", lambda: hw.layer_features(MODEL, X, ["fc1"], batch_size="8"), R,
     r"batch_size.*'8'"),
    ("layer_features/inputs empty", lambda: hw.layer_features(MODEL, X[:0], ["fc1"]), R, r"inputs.*\b0\b.*example"),
    ("layer_features/inputs list", lambda: hw.layer_features(MODEL, X.tolist(), ["fc1"]), R, r"inputs must be"),
    ("layer_features/inputs {}", lambda: hw.layer_features(MODEL, {}, ["fc1"]), R, r"inputs.*empty"),
    ("layer_features/inputs mapping lengths",
     lambda: hw.layer_features(MODEL, {"a": X, "b": X[:3]}, ["fc1"]), R, r"different numbers of examples"),
    ("layer_features/inputs complex", lambda: hw.layer_features(MODEL, torch.complex(X, X), ["fc1"]), R,
     r"inputs.*complex"),
    ("layer_features/pool='avg'", lambda: hw.layer_features(MODEL, X, ["fc1"], pool="avg"), R,
     r"pool must be one of 'mean'.*got 'avg'"),
    ("layer_features/pool='meen'", lambda: hw.layer_features(MODEL, X, ["fc1"], pool="meen"), R,
     r"pool.*did you mean 'mean'"),
    ("layer_features/pool=3", lambda: hw.layer_features(MODEL, X, ["fc1"], pool=3), R, r"pool.*3"),
    ("layer_features/calls='middle'", lambda: hw.layer_features(MODEL, X, ["fc1"], calls="middle"), R,
     r"calls.*'middle'"),
    ("layer_features/calls=1.0", lambda: hw.layer_features(MODEL, X, ["fc1"], calls=1.0), R, r"calls.*1\.0"),
    ("layer_features/calls=True", lambda: hw.layer_features(MODEL, X, ["fc1"], calls=True), R, r"calls.*True"),
    ("layer_features/eval_mode='no'", lambda: hw.layer_features(MODEL, X, ["fc1"], eval_mode="no"), R,
     r"eval_mode.*'no'"),
    ("layer_features/forward=5", lambda: hw.layer_features(MODEL, X, ["fc1"], forward=5), R, r"forward.*callable"),
    ("layer_features/units='sideways'", lambda: hw.layer_features(MODEL, X, ["fc1"], units="sideways"), R,
     r"units.*'sideways'"),
    ("layer_features/unknown keyword", lambda: hw.layer_features(MODEL, X, ["fc1"], bach_size=4), TYPE,
     r"bach_size.*batch_size"),
    ("layer_features/model not a module", lambda: hw.layer_features(lambda x: x, X, ["fc1"]), TYPE,
     r"model must be a torch\.nn\.Module"),
    ("layer_features/complex layer output", lambda: hw.layer_features(complex_model(), X, ["cplx"]), R,
     r"'cplx'.*complex"),
    ("layer_features/unknown layer", lambda: hw.layer_features(MODEL, X, ["fc3"]), hw.LayerError,
     r"'fc3'.*Closest names:.*'fc1'"),
    ("layer_features/no layers", lambda: hw.layer_features(MODEL, X, []), VE, r"layers is empty"),
    # ---- hw.representations.pool -----------------------------------------------------------------------------------
    ("pool/how='avg'", lambda: pool(torch.zeros(2, 3, 4), "avg"), R, r"pool.*'avg'"),
    ("pool/how='maxx'", lambda: pool(torch.zeros(2, 3, 4), "maxx"), R, r"did you mean 'max'"),
    ("pool/axis=1.5", lambda: pool(torch.zeros(2, 3, 4), "mean", axis=1.5), R, r"axis.*1\.5"),
    ("pool/axis=5", lambda: pool(torch.zeros(2, 3, 4), "mean", axis=5), R, r"axis.*5"),
    ("pool/complex", lambda: pool(torch.zeros(2, 3, 4, dtype=torch.complex64)), R, r"complex"),
    ("pool/not a tensor", lambda: pool([[1.0, 2.0]]), R, r"tensor"),
    # ---- hw.project ------------------------------------------------------------------------------------------------
    ("project/dims=0", lambda: hw.project(F, dims=0), R, r"dims.*\b0\b"),
    ("project/dims=-1", lambda: hw.project(F, dims=-1), R, r"dims.*-1"),
    ("project/dims=2.0", lambda: hw.project(F, dims=2.0), R, r"dims.*2\.0"),
    ("project/dims=True", lambda: hw.project(F, dims=True), R, r"dims.*True"),
    ("project/dims='2'", lambda: hw.project(F, dims="2"), R, r"dims.*'2'"),
    ("project/dims > features", lambda: hw.project(F, dims=6), R, r"5 feature.*6-D"),
    ("project/method='pcaa'", lambda: hw.project(F, "pcaa"), R, r"'pcaa'.*did you mean 'pca'"),
    ("project/method=None", lambda: hw.project(F, None), R, r"method.*None"),
    ("project/seed=-1", lambda: hw.project(F, seed=-1), R, r"seed.*-1"),
    ("project/seed=1.5", lambda: hw.project(F, seed=1.5), R, r"seed.*1\.5"),
    ("project/seed='0'", lambda: hw.project(F, seed="0"), R, r"seed.*'0'"),
    ("project/complex", lambda: hw.project(COMPLEX), R, r"features.*complex"),
    ("project/empty", lambda: hw.project(F[:0]), R, r"features.*at least 2 examples; got 0"),
    ("project/1-D", lambda: hw.project(F[:, 0]), R, r"features must have shape \(examples, features\)"),
    ("project/strings", lambda: hw.project([["a", "b"], ["c", "d"]]), R, r"features.*numbers"),
    ("project/NaN", lambda: hw.project(F.index_fill(0, torch.tensor([3]), NAN)), R, r"features has NaN"),
    ("project/inf", lambda: hw.project(F.index_fill(0, torch.tensor([3]), INF)), R, r"features has NaN or inf"),
    ("project/options with pca", lambda: hw.project(F, "pca", perplexity=5), TYPE,
     r"'pca'.*takes no options.*'perplexity'"),
    # ---- hw.representations.nearest --------------------------------------------------------------------------------
    ("nearest/k=-1", lambda: nearest(F, 0, k=-1), R, r"\bk\b.*-1"),
    ("nearest/k=0", lambda: nearest(F, 0, k=0), R, r"\bk\b.*\b0\b"),
    ("nearest/k=1.5", lambda: nearest(F, 0, k=1.5), R, r"\bk\b.*1\.5"),
    ("nearest/k=True", lambda: nearest(F, 0, k=True), R, r"\bk\b.*True"),
    ("nearest/k='3'", lambda: nearest(F, 0, k="3"), R, r"\bk\b.*'3'"),
    ("nearest/k=N", lambda: nearest(F, 0, k=N), R, rf"k={N}.*{N - 1}"),
    ("nearest/index=2.0", lambda: nearest(F, 2.0), R, r"index.*2\.0"),
    ("nearest/index=-1", lambda: nearest(F, -1), R, r"index.*-1.*out of range"),
    ("nearest/index=N", lambda: nearest(F, N), R, rf"index.*{N}.*out of range"),
    ("nearest/index=True", lambda: nearest(F, True), R, r"index.*True"),
    ("nearest/index='0'", lambda: nearest(F, "0"), R, r"index.*'0'"),
    ("nearest/metric='cos'", lambda: nearest(F, 0, metric="cos"), R, r"metric.*'cos'.*did you mean 'cosine'"),
    ("nearest/NaN tensor", lambda: nearest(F.index_fill(0, torch.tensor([1]), NAN), 0), R, r"features has NaN"),
    ("nearest/complex tensor", lambda: nearest(COMPLEX, 0), R, r"features.*complex"),
    ("nearest/unknown keyword", lambda: nearest(F, 0, kk=3), TYPE, r"kk.*\bk\b"),
    # ---- hw.Representations ----------------------------------------------------------------------------------------
    ("Representations/n=0", lambda: hw.Representations(n=0), R, r"\bn\b.*\b0\b"),
    ("Representations/n=-3", lambda: hw.Representations(n=-3), R, r"\bn\b.*-3"),
    ("Representations/n=2.0", lambda: hw.Representations(n=2.0), R, r"\bn\b.*2\.0"),
    ("Representations/n=True", lambda: hw.Representations(n=True), R, r"\bn\b.*True"),
    ("Representations/unknown keyword", lambda: hw.Representations(size=3), TYPE, r"size.*\bn\b"),
    ("Representations.add/not a mapping", lambda: hw.Representations().add([F]), R, r"features.*dict"),
    ("Representations.add/epoch=1.5", lambda: hw.Representations().add({"a": F}, epoch=1.5), R, r"epoch.*1\.5"),
    ("Representations.add/epoch=True", lambda: hw.Representations().add({"a": F}, epoch=True), R, r"epoch.*True"),
    ("Representations.add/epoch='1'", lambda: hw.Representations().add({"a": F}, epoch="1"), R, r"epoch.*'1'"),
    ("Representations.add/epoch=-1", lambda: hw.Representations().add({"a": F}, epoch=-1), R, r"epoch.*-1"),
    ("Representations.add/{}", lambda: hw.Representations().add({}), R, r"no layers given"),
    ("Representations.add/layer name 1", lambda: hw.Representations().add({1: F}), R, r"layer name.*1"),
    ("Representations.add/complex", lambda: hw.Representations().add({"a": COMPLEX}), R, r"'a'.*complex"),
    ("Representations.add/one example", lambda: hw.Representations().add({"a": F[:1]}), R, r"at least 2"),
    ("Representations.add/mismatch", lambda: reps().add({"fc1": F[:5]}), R, r"has 5 examples but this set has 12"),
    ("Representations.get/close name", lambda: reps().get("fc"), R, r"'fc'.*did you mean 'fc\d'"),
    ("Representations.get/epoch=1.5", lambda: reps().get("fc1", 1.5), R, r"epoch.*1\.5"),
    ("Representations.get/epoch=3", lambda: reps().get("fc1", 3), R, r"epoch 3.*epochs: \[0\]"),
    ("Representations.from_features/tensor", lambda: hw.Representations.from_features(F), R, r"features.*dict"),
    # ---- hw.RepresentationRecorder ---------------------------------------------------------------------------------
    ("RepresentationRecorder/batch_size=0", lambda: recorder(batch_size=0), R, r"batch_size.*\b0\b"),
    ("RepresentationRecorder/batch_size=2.0", lambda: recorder(batch_size=2.0), R, r"batch_size.*2\.0"),
    ("RepresentationRecorder/epochs=[0, 1.5]", lambda: recorder(epochs=[0, 1.5]), R, r"epochs.*1\.5"),
    ("RepresentationRecorder/epochs=5", lambda: recorder(epochs=5), R, r"epochs.*range\(5\)"),
    ("RepresentationRecorder/epochs=[-1]", lambda: recorder(epochs=[-1]), R, r"epochs.*-1"),
    ("RepresentationRecorder/epochs=[True]", lambda: recorder(epochs=[True]), R, r"epochs.*True"),
    ("RepresentationRecorder/pool='tokens'", lambda: recorder(pool="tokens"), R, r"one row per example"),
    ("RepresentationRecorder/pool='avg'", lambda: recorder(pool="avg"), R, r"pool.*'avg'"),
    ("RepresentationRecorder/inputs empty", lambda: hw.RepresentationRecorder(MODEL, ["fc1"], X[:0]), R,
     r"inputs.*\b0\b.*example"),
    ("RepresentationRecorder/unknown layer", lambda: hw.RepresentationRecorder(MODEL, ["fc"], X), hw.LayerError,
     r"'fc'"),
    ("RepresentationRecorder/unknown keyword", lambda: recorder(epoch=[0]), TYPE, r"epoch.*epochs"),
    ("RepresentationRecorder.end_epoch/1.5", lambda: recorder().end_epoch(1.5), R, r"epoch.*1\.5"),
    ("RepresentationRecorder.end_epoch/'2'", lambda: recorder().end_epoch("2"), R, r"epoch.*'2'"),
    ("RepresentationRecorder.end_epoch/-1", lambda: recorder().end_epoch(-1), R, r"epoch.*-1"),
    # ---- linear_probe, probe_layers, hw.probe ---------------------------------------------------------------------
    ("linear_probe/labels non-whole floats", lambda: linear_probe(F, Y + 0.5), R, r"labels.*0\.5.*whole"),
    ("linear_probe/labels complex", lambda: linear_probe(F, torch.complex(Y.float(), Y.float())), R,
     r"labels.*complex"),
    ("linear_probe/labels NaN", lambda: linear_probe(F, np.where(Y.numpy() == 0, NAN, 1.0)), R, r"labels.*NaN"),
    ("linear_probe/labels 2-D", lambda: linear_probe(F, np.zeros((N, 2))), R, r"labels must be one value per"),
    ("linear_probe/labels length", lambda: linear_probe(F, Y[:-1]), R, r"labels has 11 entries but there are 12"),
    ("linear_probe/no examples", lambda: linear_probe(F[:0], Y[:0]), R, r"at least 2 examples; got 0"),
    ("linear_probe/test_fraction='0.2'", lambda: linear_probe(F, Y, test_fraction="0.2"), R,
     r"test_fraction.*'0\.2'"),
    ("linear_probe/test_fraction=True", lambda: linear_probe(F, Y, test_fraction=True), R, r"test_fraction.*True"),
    ("linear_probe/test_fraction=nan", lambda: linear_probe(F, Y, test_fraction=NAN), R, r"test_fraction.*nan"),
    ("linear_probe/l2='x'", lambda: linear_probe(F, Y, l2="x"), R, r"l2.*'x'"),
    ("linear_probe/l2=inf", lambda: linear_probe(F, Y, l2=INF), R, r"l2.*inf"),
    ("linear_probe/l2=True", lambda: linear_probe(F, Y, l2=True), R, r"l2.*True"),
    ("linear_probe/max_iter=10.0", lambda: linear_probe(F, Y, max_iter=10.0), R, r"max_iter.*10\.0"),
    ("linear_probe/max_iter=True", lambda: linear_probe(F, Y, max_iter=True), R, r"max_iter.*True"),
    ("linear_probe/seed=1.5", lambda: linear_probe(F, Y, seed=1.5), R, r"seed.*1\.5"),
    ("linear_probe/control='yes'", lambda: linear_probe(F, Y, control="yes"), R, r"control.*'yes'"),
    ("linear_probe/epoch=1.5", lambda: linear_probe(F, Y, epoch=1.5), R, r"epoch.*1\.5"),
    ("linear_probe/epoch='3'", lambda: linear_probe(F, Y, epoch="3"), R, r"epoch.*'3'"),
    ("linear_probe/layer=5", lambda: linear_probe(F, Y, layer=5), R, r"layer.*5"),
    ("linear_probe/groups non-whole floats", lambda: linear_probe(F, Y, groups=np.arange(N) / 2 + 0.25), R,
     r"groups.*whole"),
    ("linear_probe/groups complex", lambda: linear_probe(F, Y, groups=np.arange(N) * 1j), R, r"groups.*complex"),
    ("linear_probe/groups length", lambda: linear_probe(F, Y, groups=[0, 1]), R, r"groups has 2 entries"),
    ("linear_probe/device='bogus'", lambda: linear_probe(F, Y, device="bogus"), R, r"device.*'bogus'"),
    ("linear_probe/features complex", lambda: linear_probe(COMPLEX, Y), R, r"features.*complex"),
    ("linear_probe/unknown keyword", lambda: linear_probe(F, Y, tst_fraction=0.3), TYPE,
     r"tst_fraction.*test_fraction"),
    ("linear_probe/max_classes=0", lambda: linear_probe(F, Y, max_classes=0), R, r"max_classes.*\b0\b"),
    ("linear_probe/max_classes='x'", lambda: linear_probe(F, Y, max_classes="x"), R, r"max_classes.*'x'"),
    ("linear_probe/progress=5", lambda: linear_probe(F, Y, progress=5), R, r"progress.*callable"),
    ("linear_probe/too many classes",
     lambda: linear_probe(torch.randn(2200, 4, generator=G), np.arange(2200) // 2), R,
     r"1100 classes.*max_classes=1000"),
    ("probe_layers/unknown keyword", lambda: probe_layers({"a": F}, Y, test_size=0.3), TYPE,
     r"test_size.*test_fraction"),
    ("probe_layers/layer=", lambda: probe_layers({"a": F}, Y, layer="b"), TYPE, r"layer.*names each result"),
    ("probe_layers/not a dict", lambda: probe_layers([F], Y), R, r"features must be a non-empty dict"),
    ("probe_layers/lengths", lambda: probe_layers({"a": F, "b": F[:-2]}, Y), R, r"same examples"),
    ("hw.probe/unknown option", lambda: hw.probe({"a": F}, Y, controll=False), TYPE, r"controll.*control"),
    ("hw.probe/no layers", lambda: hw.probe(MODEL, X, Y), R, r"name the layers"),
    ("hw.probe/no labels", lambda: hw.probe(MODEL, X, layers=["fc1"]), R, r"needs labels"),
    ("hw.probe/source=5", lambda: hw.probe(5, Y), R, r"probe takes a model"),
    ("hw.probe/batch_size=0", lambda: hw.probe(MODEL, X, Y, layers=["fc1"], batch_size=0), R, r"batch_size.*\b0\b"),
    ("hw.probe/pool='avg'", lambda: hw.probe(MODEL, X, Y, layers=["fc1"], pool="avg"), R, r"pool.*'avg'"),
    ("hw.probe/unknown layer of reps", lambda: hw.probe(reps(), Y, layers=["fc"]), R, r"'fc'.*did you mean"),
    ("hw.probe/labels non-whole", lambda: hw.probe(reps(), Y + 0.5), R, r"labels.*whole"),
    # ---- similarity ------------------------------------------------------------------------------------------------
    ("cka/kernel='rbff'", lambda: cka(F, F, kernel="rbff"), R, r"kernel.*'rbff'.*did you mean 'rbf'"),
    ("cka/debiased='yes'", lambda: cka(F, F, debiased="yes"), R, r"debiased.*'yes'"),
    ("cka/sigma=0", lambda: cka(F, F, kernel="rbf", sigma=0), R, r"sigma.*\b0\b"),
    ("cka/sigma=nan", lambda: cka(F, F, kernel="rbf", sigma=NAN), R, r"sigma.*nan"),
    ("cka/sigma=True", lambda: cka(F, F, kernel="rbf", sigma=True), R, r"sigma.*True"),
    ("cka/sigma='1'", lambda: cka(F, F, kernel="rbf", sigma="1"), R, r"sigma.*'1'"),
    ("cka/X complex", lambda: cka(COMPLEX, F), R, r"X.*complex"),
    ("cka/X empty", lambda: cka(F[:0], F[:0]), R, r"X needs at least 2 examples; got 0"),
    ("cka/mismatch", lambda: cka(F, F[:5]), R, r"X has 12 examples and Y has 5"),
    ("cka/unknown keyword", lambda: cka(F, F, unbiased=True), TYPE, r"unbiased.*debiased"),
    ("cka_matrix/list", lambda: cka_matrix([F]), R, r"non-empty dict"),
    ("cka_matrix/debiased=1", lambda: cka_matrix({"a": F}, debiased=1), R, r"debiased.*1"),
    ("cka_matrix/kernel='Linear'", lambda: cka_matrix({"a": F}, kernel="Linear"), R,
     r"kernel.*'Linear'.*did you mean 'linear'"),
    ("cka_matrix/layer complex", lambda: cka_matrix({"a": COMPLEX}), R, r"'a'.*complex"),
    ("cka_matrix/unknown keyword", lambda: cka_matrix({"a": F}, kernal="rbf"), TYPE, r"kernal.*kernel"),
    ("MinibatchCKA/kernel='lin'", lambda: MinibatchCKA(kernel="lin"), R, r"kernel.*'lin'"),
    ("MinibatchCKA/sigma=-1", lambda: MinibatchCKA(kernel="rbf", sigma=-1), R, r"sigma.*-1"),
    ("MinibatchCKA/unknown keyword", lambda: MinibatchCKA(debiased=True), TYPE, r"debiased.*kernel"),
    ("MinibatchCKA.update/complex", lambda: MinibatchCKA().update(COMPLEX, F), R, r"xs.*complex"),
    ("MinibatchCKA.update/empty", lambda: MinibatchCKA().update(F[:0], F[:0]), R, r"at least 2 examples; got 0"),
    ("MinibatchCKA.update/3 examples", lambda: MinibatchCKA().update(F[:3], F[:3]), R, r"at least 4 examples"),
    # ---- interventions.intervene -----------------------------------------------------------------------------------
    ("intervene/mode='projet'", lambda: intervene(MODEL, X, "fc1", torch.ones(8), mode="projet"), IE,
     r"mode.*'projet'.*did you mean 'project'"),
    ("intervene/pool='max'", lambda: intervene(MODEL, X, "fc1", torch.ones(8), pool="max"), IE,
     r"pool must be one of 'flatten', 'mean'; got 'max'"),
    ("intervene/value=True", lambda: intervene(MODEL, X, "fc1", torch.ones(8), mode="clamp", value=True), IE,
     r"value.*True"),
    ("intervene/value='1.5'", lambda: intervene(MODEL, X, "fc1", torch.ones(8), mode="clamp", value="1.5"), IE,
     r"value.*'1\.5'"),
    ("intervene/value=nan", lambda: intervene(MODEL, X, "fc1", torch.ones(8), mode="clamp", value=NAN), IE,
     r"value.*nan"),
    ("intervene/value=1+2j", lambda: intervene(MODEL, X, "fc1", torch.ones(8), mode="clamp", value=1 + 2j), IE,
     r"value.*1\+2j"),
    ("intervene/batch_size=0", lambda: intervene(MODEL, X, "fc1", torch.ones(8), batch_size=0), IE,
     r"batch_size.*\b0\b"),
    ("intervene/batch_size=1.0", lambda: intervene(MODEL, X, "fc1", torch.ones(8), batch_size=1.0), IE,
     r"batch_size.*1\.0"),
    ("intervene/target=1.5", lambda: intervene(MODEL, X, "fc1", torch.ones(8), target=1.5), IE, r"target.*1\.5"),
    ("intervene/target=9", lambda: intervene(MODEL, X, "fc1", torch.ones(8), target=9), IE, r"target 9"),
    ("intervene/target list length", lambda: intervene(MODEL, X, "fc1", torch.ones(8), target=[0, 1]), IE,
     r"2 targets for 12 inputs"),
    ("intervene/inputs empty", lambda: intervene(MODEL, X[:0], "fc1", torch.ones(8)), IE, r"inputs.*at least one"),
    ("intervene/inputs complex", lambda: intervene(MODEL, torch.complex(X, X), "fc1", torch.ones(8)), IE,
     r"inputs.*complex"),
    ("intervene/reference empty",
     lambda: intervene(MODEL, X, "fc1", torch.ones(8), mode="clamp", reference=X[:0]), IE, r"reference.*at least"),
    ("intervene/direction complex", lambda: intervene(MODEL, X, "fc1", torch.ones(8) * (1 + 1j)), IE,
     r"direction.*complex"),
    ("intervene/direction zero", lambda: intervene(MODEL, X, "fc1", torch.zeros(8)), IE, r"direction.*zero vector"),
    ("intervene/direction size", lambda: intervene(MODEL, X, "fc1", torch.ones(3)), IE, r"direction has 3 entries"),
    ("intervene/layer=3", lambda: intervene(MODEL, X, 3, torch.ones(8)), IE, r"layer.*3"),
    ("intervene/unknown keyword", lambda: intervene(MODEL, X, "fc1", torch.ones(8), modes="clamp"), TYPE,
     r"modes.*mode"),
    # ---- hw.InformationRecorder -------------------------------------------------------------------------------------
    ("InformationRecorder/labels non-whole floats", lambda: info_recorder(Y + 0.5), VE, r"labels.*0\.5.*whole"),
    ("InformationRecorder/labels complex", lambda: info_recorder(torch.complex(Y.float(), Y.float())), VE,
     r"labels.*complex"),
    ("InformationRecorder/labels NaN", lambda: info_recorder(np.where(Y.numpy() == 0, NAN, 1.0)), VE,
     r"labels.*NaN"),
    ("InformationRecorder/labels strings", lambda: info_recorder(np.array(list("abc") * 4)), VE,
     r"labels.*integer class ids"),
    ("InformationRecorder/labels length", lambda: info_recorder(Y[:-1]), VE, r"11 entries for 12 inputs"),
    ("InformationRecorder/labels 2-D", lambda: info_recorder(np.ones((N, 2))), VE, r"labels.*\(12, 2\)"),
    ("InformationRecorder/inputs empty", lambda: hw.InformationRecorder(MODEL, ["fc1"], X[:0], Y[:0], epochs=[0]),
     VE, r"inputs.*\b0\b.*example"),
    ("InformationRecorder/inputs complex",
     lambda: hw.InformationRecorder(MODEL, ["fc1"], torch.complex(X, X), Y, epochs=[0]), VE, r"inputs.*complex"),
    ("InformationRecorder/epochs=[0, 2.5]", lambda: info_recorder(epochs=[0, 2.5]), VE, r"epochs.*2\.5"),
    ("InformationRecorder/epochs=3", lambda: info_recorder(epochs=3), VE, r"epochs.*range\(3\)"),
    ("InformationRecorder/epochs=[-1]", lambda: info_recorder(epochs=[-1]), VE, r"epochs.*-1"),
    ("RepresentationRecorder/epochs=[]", lambda: recorder(epochs=[]), R, r"epochs.*empty"),
    ("InformationRecorder/n_epochs=0", lambda: info_recorder(epochs=None, n_epochs=0), VE, r"n_epochs.*\b0\b"),
    ("InformationRecorder/n_epochs=2.5", lambda: info_recorder(epochs=None, n_epochs=2.5), VE, r"n_epochs.*2\.5"),
    ("InformationRecorder/n_epochs=True", lambda: info_recorder(epochs=None, n_epochs=True), VE,
     r"n_epochs.*True"),
    ("InformationRecorder/n_epochs='10'", lambda: info_recorder(epochs=None, n_epochs="10"), VE,
     r"n_epochs.*'10'"),
    ("InformationRecorder/no schedule", lambda: info_recorder(epochs=None), TYPE, r"n_epochs=N"),
    ("InformationRecorder/epochs and n_epochs", lambda: info_recorder(epochs=[0], n_epochs=10), TYPE,
     r"epochs.*n_epochs.*not both"),
    ("InformationRecorder/points=0", lambda: info_recorder(epochs=None, n_epochs=10, points=0), VE,
     r"points.*\b0\b"),
    ("InformationRecorder/points=2.5", lambda: info_recorder(epochs=None, n_epochs=10, points=2.5), VE,
     r"points.*2\.5"),
    ("InformationRecorder/points with epochs", lambda: info_recorder(epochs=[0], points=10), TYPE,
     r"n_epochs.*not both: points=10"),
    ("InformationRecorder/batch_size=0", lambda: info_recorder(batch_size=0), VE, r"batch_size.*\b0\b"),
    ("InformationRecorder/batch_size=2.0", lambda: info_recorder(batch_size=2.0), VE, r"batch_size.*2\.0"),
    ("InformationRecorder/gradients='yes'", lambda: info_recorder(gradients="yes"), VE, r"gradients.*'yes'"),
    ("InformationRecorder/unknown keyword", lambda: info_recorder(n_epoch=3), TYPE, r"n_epoch.*n_epochs"),
    ("InformationRecorder.end_epoch/1.5", lambda: info_recorder().end_epoch(1.5), VE, r"epoch.*1\.5"),
    ("InformationRecorder.end_epoch/-2", lambda: info_recorder().end_epoch(-2), VE, r"epoch.*-2"),
    ("log_spaced_epochs/points=0", lambda: log_spaced_epochs(10, 0), VE, r"points.*\b0\b"),
    ("log_spaced_epochs/n_epochs=2.5", lambda: log_spaced_epochs(2.5), VE, r"n_epochs.*2\.5"),
    # ---- hw.InformationPlane ---------------------------------------------------------------------------------------
    ("InformationPlane/estimator='binnned'", lambda: plane(estimator="binnned"), TE,
     r"estimator.*'binnned'.*did you mean 'binned'"),
    ("InformationPlane/n_bins=1", lambda: plane(n_bins=1), TE, r"n_bins.*\b1\b"),
    ("InformationPlane/n_bins=2.5", lambda: plane(n_bins=2.5), TE, r"n_bins.*2\.5"),
    ("InformationPlane/n_bins=True", lambda: plane(n_bins=True), TE, r"n_bins.*True"),
    ("InformationPlane/n_bins='30'", lambda: plane(n_bins="30"), TE, r"n_bins.*'30'"),
    ("InformationPlane/noise_variance=0", lambda: plane(noise_variance=0), TE, r"noise_variance.*\b0\b"),
    ("InformationPlane/noise_variance=-1", lambda: plane(noise_variance=-1.0), TE, r"noise_variance.*-1"),
    ("InformationPlane/noise_variance=nan", lambda: plane(noise_variance=NAN), TE, r"noise_variance.*nan"),
    ("InformationPlane/value_range=(1, -1)", lambda: plane(value_range=(1, -1)), TE, r"value_range.*\(1, -1\)"),
    ("InformationPlane/value_range='obs'", lambda: plane(value_range="obs"), TE,
     r"value_range.*'obs'.*did you mean 'observed'"),
    ("InformationPlane/value_range=(0, nan)", lambda: plane(value_range=(0, NAN)), TE, r"value_range.*nan"),
    ("InformationPlane/value_range=(0, 1, 2)", lambda: plane(value_range=(0, 1, 2)), TE, r"value_range.*\(0, 1, 2\)"),
    ("InformationPlane/estimator_samples=0", lambda: plane(estimator_samples=0), TE, r"estimator_samples.*\b0\b"),
    ("InformationPlane/estimator_samples=10.5", lambda: plane(estimator_samples=10.5), TE,
     r"estimator_samples.*10\.5"),
    ("InformationPlane/estimator_samples='100'", lambda: plane(estimator_samples="100"), TE,
     r"estimator_samples.*'100'"),
    ("InformationPlane/title=5", lambda: plane(title=5), TE, r"title"),
    ("InformationPlane/labels non-whole", lambda: plane(Y + 0.5), VE, r"labels.*whole"),
    ("InformationPlane/unknown option", lambda: plane(bins=10), TYPE, r"bins.*n_bins"),
    ("InformationPlane.n_bins=1", lambda: setting(plane, n_bins=1), TE, r"n_bins.*\b1\b"),
    ("InformationPlane.noise_variance=-1", lambda: setting(plane, noise_variance=-1.0), TE, r"noise_variance.*-1"),
    ("InformationPlane.estimator='kde'", lambda: setting(plane, estimator="kde"), TE,
     r"estimator.*'kde'.*did you mean"),
    ("InformationPlane.value_range=(2, 1)", lambda: setting(plane, value_range=(2, 1)), TE, r"value_range.*\(2, 1\)"),
    # ---- hw.Projector ----------------------------------------------------------------------------------------------
    ("Projector/k=0", lambda: projector(k=0), R, r"\bk\b.*\b0\b"),
    ("Projector/k=-1", lambda: projector(k=-1), R, r"\bk\b.*-1"),
    ("Projector/k=1.5", lambda: projector(k=1.5), R, r"\bk\b.*1\.5"),
    ("Projector/k=True", lambda: projector(k=True), R, r"\bk\b.*True"),
    ("Projector/metric='cos'", lambda: projector(metric="cos"), R, r"metric.*'cos'.*did you mean 'cosine'"),
    ("Projector/method='pcaa'", lambda: projector(method="pcaa"), R, r"'pcaa'.*did you mean 'pca'"),
    ("Projector/layer='fc'", lambda: projector(layer="fc"), R, r"layer.*'fc'.*did you mean"),
    ("Projector/labels non-whole", lambda: hw.Projector({"a": F}, Y + 0.5), R, r"labels.*whole.*colors"),
    ("Projector/labels complex", lambda: hw.Projector({"a": F}, torch.complex(Y.float(), Y.float())), R,
     r"labels.*complex"),
    ("Projector/labels length", lambda: hw.Projector({"a": F}, Y[:-1]), R, r"labels has 11 entries"),
    ("Projector/colors list", lambda: projector(colors=[1, 2]), R, r"colors.*dict"),
    ("Projector/colors complex", lambda: projector(colors={"c": np.arange(N) * 1j}), R, r"colors\['c'\].*complex"),
    ("Projector/class_names='abc'", lambda: projector(class_names="abc"), R, r"class_names.*list"),
    ("Projector/feature_names='ab'", lambda: projector(examples=torch.zeros(N, 2), feature_names="ab"), R,
     r"feature_names.*list"),
    ("Projector/static_budget=-1", lambda: projector(static_budget=-1), R, r"static_budget.*-1"),
    ("Projector/static_budget=1.5", lambda: projector(static_budget=1.5), R, r"static_budget.*1\.5"),
    ("Projector/representations={}", lambda: hw.Projector({}), R, r"no layers given"),
    ("Projector/representations tensor", lambda: hw.Projector(F), R, r"representations.*dict"),
    ("Projector/examples length", lambda: projector(examples=["a"] * 3), R, r"examples has 3 entries"),
    ("Projector/unknown keyword", lambda: projector(neighbours=4), TYPE, r"neighbours.*\bk\b"),
    ("Projector.k=0", lambda: setting(projector, k=0), TE, r"\bk\b.*\b0\b"),
    ("Projector.epoch=7", lambda: setting(projector, epoch=7), TE, r"epoch.*7"),
    ("Projector.color_by='nope'", lambda: setting(projector, color_by="nope"), TE, r"color_by.*'nope'"),
    ("Projector.method='umapp'", lambda: setting(projector, method="umapp"), TE, r"method.*'umapp'"),
    ("Projector.layer='fc'", lambda: setting(projector, layer="fc"), TE, r"'fc'.*did you mean"),
    ("Projector.select/floats", lambda: call(projector, "select", [1.5]), R, r"indices.*1\.5"),
    ("Projector.select/bools", lambda: call(projector, "select", [True] * N), R, r"indices.*bool"),
    ("Projector.select/out of range", lambda: call(projector, "select", [99]), R, r"99.*out of range"),
    ("Projector.neighbours/index=1.5", lambda: call(projector, "neighbours", 1.5), R, r"index.*1\.5"),
    ("Projector.neighbours/k=0", lambda: call(projector, "neighbours", 0, k=0), R, r"\bk\b.*\b0\b"),
    # ---- hw.ProbeChart ---------------------------------------------------------------------------------------------
    ("ProbeChart/results=5", lambda: hw.ProbeChart(5), R, r"results.*int"),
    ("ProbeChart/results of dicts", lambda: hw.ProbeChart([{"layer": "a"}]), R, r"ProbeResult"),
    ("ProbeChart/title=5", lambda: hw.ProbeChart([], title=5), TE, r"title"),
    ("ProbeChart.add(None)", lambda: hw.ProbeChart().add(None), R, r"results.*None"),
    ("ProbeChart/unknown keyword", lambda: hw.ProbeChart([], titel="x"), TYPE, r"titel.*title"),
    # ---- hw.SimilarityMatrix ---------------------------------------------------------------------------------------
    ("SimilarityMatrix/kernel='rbff'", lambda: hw.SimilarityMatrix({"a": F}, kernel="rbff"), R,
     r"kernel.*did you mean 'rbf'"),
    ("SimilarityMatrix/debiased='yes'", lambda: hw.SimilarityMatrix({"a": F}, debiased="yes"), R, r"debiased"),
    ("SimilarityMatrix/names=('a',)", lambda: hw.SimilarityMatrix({"a": F}, names=("a",)), R, r"names.*\('a',\)"),
    ("SimilarityMatrix/names='AB'", lambda: hw.SimilarityMatrix({"a": F}, names="AB"), R, r"names.*'AB'"),
    ("SimilarityMatrix/epoch_a with a dict", lambda: hw.SimilarityMatrix({"a": F}, epoch_a=1), R,
     r"epoch_a.*Representations"),
    ("SimilarityMatrix/epoch_a=1.5", lambda: hw.SimilarityMatrix(reps(), epoch_a=1.5), R, r"epoch.*1\.5"),
    ("SimilarityMatrix/a=5", lambda: hw.SimilarityMatrix(5), R, r"\ba\b must be"),
    ("SimilarityMatrix/unknown keyword", lambda: hw.SimilarityMatrix({"a": F}, epoch=1), TYPE,
     r"epoch.*epoch_a"),
    # ---- hw.ConceptScores ------------------------------------------------------------------------------------------
    ("ConceptScores/record without keys", lambda: hw.ConceptScores([{"foo": 1}]), ConceptError,
     r"record.*concept.*layer.*target"),
    ("ConceptScores/results=5", lambda: hw.ConceptScores(5), ConceptError, r"TCAV results"),
    ("ConceptScores/class_names='ab'", lambda: hw.ConceptScores([], class_names="ab"), ConceptError,
     r"class_names.*list"),
    ("ConceptScores/unknown keyword", lambda: hw.ConceptScores([], names=["a"]), TYPE, r"names.*class_names"),
    # ---- hw.InterventionView ---------------------------------------------------------------------------------------
    ("InterventionView/results=5", lambda: hw.InterventionView(5), IE, r"InterventionView takes"),
    ("InterventionView/{}", lambda: hw.InterventionView({}), IE, r"InterventionView takes"),
    ("InterventionView/class_names='ab'", lambda: hw.InterventionView(intervention(), class_names="ab"), IE,
     r"class_names.*list"),
    ("InterventionView/examples length", lambda: hw.InterventionView(intervention(), ["a"]), R,
     r"examples has 1 entries"),
    ("InterventionView/unknown keyword", lambda: hw.InterventionView(intervention(), titel="x"), TYPE,
     r"titel.*title"),
    # ---- hw.AttributionExplorer (constructor arguments) ------------------------------------------------------------
    ("AttributionExplorer/inputs empty", lambda: explorer(inputs=X[:0]), AE, r"inputs.*\b0\b"),
    ("AttributionExplorer/inputs complex", lambda: explorer(inputs=torch.complex(X[:4], X[:4])), AE,
     r"inputs.*complex"),
    ("AttributionExplorer/labels non-whole", lambda: explorer(labels=[0.5, 1, 2, 0]), AE, r"labels.*0\.5"),
    ("AttributionExplorer/labels length", lambda: explorer(labels=[0, 1]), AE, r"labels has 2 entries.*4 inputs"),
    ("AttributionExplorer/labels out of range", lambda: explorer(labels=[0, 1, 7, 0]), AE,
     r"labels.*7.*3 classes"),
    ("AttributionExplorer/class_names='ab'", lambda: explorer(class_names="ab"), AE, r"class_names.*list"),
    ("AttributionExplorer/methods='saliency'", lambda: explorer(methods="saliency"), AE, r"methods.*list"),
    ("AttributionExplorer/selected='saliency'", lambda: explorer(selected="saliency"), AE, r"selected.*list"),
    ("AttributionExplorer/methods=['salency']", lambda: explorer(methods=["salency"]), AE,
     r"'salency'.*did you mean 'saliency'"),
    ("AttributionExplorer/metrics='deletion'", lambda: explorer(metrics="deletion"), AE, r"metrics.*'deletion'"),
    ("AttributionExplorer/layer='fc'", lambda: explorer(layer="fc"), AE, r"layer.*'fc'"),
    ("AttributionExplorer/feature_names='abcd'", lambda: explorer(feature_names="abcd"), AE,
     r"feature_names.*list"),
    ("AttributionExplorer/unknown keyword", lambda: explorer(method=["saliency"]), TYPE, r"method.*methods"),
    # ---- hw.save_html ----------------------------------------------------------------------------------------------
    ("save_html/path=5", lambda: hw.save_html(hw.ProbeChart(), 5), TYPE, r"path.*5"),
    ("save_html/path=''", lambda: hw.save_html(hw.ProbeChart(), ""), VE, r"path.*''"),
    ("save_html/path is a folder", lambda: hw.save_html(hw.ProbeChart(), "."), IsADirectoryError,
     r"path.*folder"),
    ("save_html/missing folder", lambda: hw.save_html(hw.ProbeChart(), "/nonexistent-hw/x.html"),
     FileNotFoundError, r"nonexistent-hw.*does not exist"),
    ("save_html/widget=5", lambda: hw.save_html(5, "/tmp/x.html"), TYPE, r"widget.*int"),
    ("save_html/title=5", lambda: hw.save_html(hw.ProbeChart(), "/tmp/hw-bad-input.html", title=5), TYPE,
     r"title.*5"),
    ("save_html/unknown keyword", lambda: hw.save_html(hw.ProbeChart(), "/tmp/x.html", titel="x"), TYPE,
     r"titel.*title"),
    # ---- hw.datasets -----------------------------------------------------------------------------------------------
    ("shapes/n=0", lambda: hw.datasets.shapes(0), VE, r"\bn\b.*\b0\b"),
    ("shapes/n=2.0", lambda: hw.datasets.shapes(2.0), VE, r"\bn\b.*2\.0"),
    ("shapes/size=4", lambda: hw.datasets.shapes(2, 4), VE, r"size.*\b4\b"),
    ("shapes/seed=-1", lambda: hw.datasets.shapes(2, seed=-1), VE, r"seed.*-1"),
    ("shapes/max_objects=True", lambda: hw.datasets.shapes(2, max_objects=True), VE, r"max_objects.*True"),
    ("shapes/unknown keyword", lambda: hw.datasets.shapes(2, objects=1), TYPE, r"objects.*max_objects"),
    ("Shapes.batches/batch_size=0", lambda: list(hw.datasets.shapes(2, 8).batches(0)), VE, r"batch_size.*\b0\b"),
    ("Shapes.batches/batch_size=-1", lambda: list(hw.datasets.shapes(2, 8).batches(-1)), VE, r"batch_size.*-1"),
    ("Shapes.masks/start=1.5", lambda: hw.datasets.shapes(2, 8).masks(1.5), VE, r"start.*1\.5"),
    ("Shapes.masks/stop='x'", lambda: hw.datasets.shapes(2, 8).masks(0, "x"), VE, r"stop.*'x'"),
]


def _close(obj):
    if hasattr(obj, "close"):
        obj.close()


@pytest.mark.parametrize(("fn", "exc", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_the_parameter_named(fn, exc, match):
    with pytest.raises(exc, match=match) as info:
        _close(fn())
    text = str(info.value)
    assert len(text) < 2000, "a message stays readable: long values are shortened"


# ---- the decisions the sweep pins --------------------------------------------------------------------------------
def test_whole_number_float_labels_are_the_same_classes_as_ints():
    x = torch.randn(60, 4, generator=torch.Generator().manual_seed(1))
    y = torch.arange(60) % 3
    as_int = linear_probe(x, y, seed=3)
    assert linear_probe(x, y.double(), seed=3) == as_int
    assert linear_probe(x, y.numpy().astype(np.float32), seed=3) == as_int
    rec = hw.InformationRecorder(MODEL, ["fc1"], X, Y.float(), epochs=[0])
    assert rec.labels.dtype == np.int64 and rec.labels.tolist() == Y.tolist()


def test_counts_accept_numpy_and_0d_integer_tensors_but_not_whole_floats():
    from hiddenwidgets.pipeline.checks import check_int

    assert check_int(np.int64(3), "k", minimum=1) == 3 and check_int(torch.tensor(3), "k", minimum=1) == 3
    with pytest.raises(ValueError, match=r"k must be an int; got float 3\.0 \(pass int\(3\.0\)"):
        check_int(3.0, "k")
    with pytest.raises(ValueError, match="k must be an int; got Tensor"):
        check_int(torch.tensor(3.0), "k")


def test_one_layer_name_as_a_string_is_one_layer():
    assert hw.probe(MODEL, X, Y, layers="fc1", control=False) == hw.probe(MODEL, X, Y, layers=["fc1"], control=False)
    assert [r.layer for r in hw.probe(reps(), Y, layers="fc2", control=False)] == ["fc2"]


def test_probe_chart_takes_one_result_or_a_list():
    chart = hw.ProbeChart(result(0.5))
    chart.add(result(0.7))
    assert [r["accuracy"] for r in chart.records] == [0.7]


def test_probe_progress_counts_to_the_total_and_can_cancel():
    from hiddenwidgets.analysis.probes import ProbeCancelled

    x = torch.randn(60, 4, generator=torch.Generator().manual_seed(1))
    y = torch.arange(60) % 3
    seen = []
    with_progress = linear_probe(x, y, progress=lambda done, total: seen.append((done, total)))
    assert with_progress == linear_probe(x, y)  # watching does not change the result
    totals = {t for _, t in seen}
    assert totals == {2 * 250}  # two fits (probe, control) of at most 200 * 5 // 4 evaluations
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == 500 and 250 in done  # each fit ends at its share
    calls = []
    with pytest.raises(ProbeCancelled, match="after 3 of at most 500"):
        linear_probe(x, y, progress=lambda done, total: calls.append(done) or done < 3)
    assert calls == [1, 2, 3]


def test_probe_over_recorded_epochs_reports_one_progress_count():
    r = hw.Representations(n=N)
    r.add({"a": F}, epoch=0)
    r.add({"a": F * 2}, epoch=1)
    seen = []
    hw.probe(r, Y, control=False, progress=lambda done, total: seen.append((done, total)))
    assert {t for _, t in seen} == {2 * 250} and seen[-1] == (500, 500)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_many_classes_run_when_asked_for():
    x = torch.randn(2200, 4, generator=torch.Generator().manual_seed(2))
    result_ = linear_probe(x, np.arange(2200) // 2, max_classes=None, max_iter=2, control=False)
    assert result_.classes == 1100 and result_.n_test == 550  # a quarter held out; every class keeps 1 to train


def test_gradient_statistics_alone_need_no_scheduled_epochs():
    rec = hw.InformationRecorder(MODEL, ["fc1"], X, Y, epochs=[])
    assert rec.schedule == [] and rec.end_epoch() is None


def test_projector_default_neighbours_are_capped_but_an_explicit_k_is_not():
    p = hw.Projector({"a": F[:5]}, k=8)
    try:
        idx, _ = p.neighbours(0)
        assert len(idx) == 4  # the widget's k=8 shown as all 4 other points
        with pytest.raises(RepresentationError, match="k=8 neighbours asked for, but example 0 has only 4 others"):
            p.neighbours(0, k=8)
    finally:
        p.close()


def test_information_plane_value_range_is_checked_and_applied():
    p = plane(epochs=[0])
    try:
        p.end_epoch()
        fixed = p.estimates()["I_XT"]
        p.value_range = "observed"
        assert p.value_range == "observed" and p._key() == ("binned", 30, "observed")
        assert p.estimates()["I_XT"].shape == fixed.shape
        with pytest.raises(traitlets.TraitError, match="value_range"):
            p.value_range = (0, math.inf)
        assert p.value_range == "observed"  # a refused value leaves the old one
    finally:
        p.close()


def tally() -> dict[str, int]:
    """How many cases give a clear error with the hiddenwidgets on the path: run this file as a script, e.g.
    ``PYTHONPATH=<an older checkout> python tests/unit/test_bad_input.py`` for the figure before a change."""
    import re
    import warnings

    counts = {"clear": 0, "accepted silently": 0, "another exception type": 0, "message misses the parameter": 0}
    for _, fn, exc, match in CASES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _close(fn())
            counts["accepted silently"] += 1
        except Exception as err:  # the tally sorts every outcome
            kind = ("clear" if re.search(match, str(err)) else "message misses the parameter") \
                if isinstance(err, exc) else "another exception type"
            counts[kind] += 1
    return counts


if __name__ == "__main__":
    print({**tally(), "cases": len(CASES)})
