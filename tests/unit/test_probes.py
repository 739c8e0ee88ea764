from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hiddenwidgets.analysis import probes
from hiddenwidgets.analysis.matrices import RepresentationError
from hiddenwidgets.analysis.probes import ProbeResult, linear_probe, probe_layers


def blobs(n_per_class: int, classes: int, dim: int, gap: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs (unit noise) centred at ``gap`` times the first ``classes`` basis vectors."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = rng.standard_normal((len(y), dim))
    x[np.arange(len(y)), y] += gap
    return x, y


def typed(types: int, per_type: int, dim: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Examples of ``types`` types: a random embedding per type plus noise; the group (type id) of each example."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((types, dim))
    groups = np.repeat(np.arange(types), per_type)
    return emb[groups] + noise * rng.standard_normal((len(groups), dim)), groups


def binomial_tolerance(p: float, n: int, sigmas: float = 4.0) -> float:
    """``sigmas`` binomial standard deviations of an accuracy measured on ``n`` examples with success rate ``p``."""
    return sigmas * math.sqrt(p * (1.0 - p) / n)


# --- accuracy---


def test_separable_blobs_give_perfect_held_out_accuracy():
    x, y = blobs(100, 4, 20, gap=12.0)  # centres 17 apart, unit noise: linearly separable with a wide margin
    r = linear_probe(x, y, control=False)
    assert (r.accuracy, r.train_accuracy) == (1.0, 1.0)
    assert (r.n_train, r.n_test, r.classes) == (300, 100, 4)
    assert r.chance == pytest.approx(0.25)
    assert r.control_accuracy is None and r.selectivity is None


def test_labels_independent_of_features_give_chance():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 20))
    y = rng.integers(0, 2, 2000)
    r = linear_probe(x, y, control=False)
    # Test labels are independent of the predictions (which depend on the test features and the training set
    # only), so the number right is binomial-like with p = 1/2 (hypergeometric given the stratified class counts,
    # whose variance is smaller): 4 standard deviations on 500 test examples is 0.089.
    assert r.n_test == 500
    tol = binomial_tolerance(0.5, r.n_test)
    assert abs(r.accuracy - 0.5) < tol
    assert abs(r.chance - 0.5) < 0.02  # balanced labels: the majority class is about half the test set
    assert r.train_accuracy > r.accuracy  # 20 features on 1500 examples fit a little noise


def test_accuracy_and_optimum_match_scikit_learn_on_digits():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x, y = load_digits(return_X_y=True)
    l2 = 1e-3
    r = linear_probe(x, y, l2=l2, control=False, seed=3)
    assert r.classes == 10 and r.n_train + r.n_test == len(y)

    # The same split and standardisation, through the private steps linear_probe uses.
    task = probes._make_task(y, len(y), None, False, 0.25, 3)
    z = probes._standardise(torch.as_tensor(x, dtype=torch.float64), task.train)
    z_tr, z_te = z[task.train], z[task.test]
    y_tr, y_te = task.y[task.train], task.y[task.test]
    n = len(y_tr)
    # scikit-learn minimises C * sum_i loss_i + ||W||^2 / 2; divided by C * n that is mean loss + ||W||^2 / (2 C n),
    # ours is mean loss + l2 / 2 * ||W||^2, so C = 1 / (l2 * n). Neither penalises the intercept.
    with threadpool_limits(1):  # BLAS threads fighting over 2 busy cores make this 30x slower
        clf = LogisticRegression(C=1.0 / (l2 * n), max_iter=2000, tol=1e-8).fit(z_tr.numpy(), y_tr)
    assert sklearn.__version__ and clf.coef_.shape == (10, z.shape[1])  # multinomial, one row per class
    assert abs(r.accuracy - clf.score(z_te.numpy(), y_te)) <= 0.02

    def objective(w, b) -> float:
        w, b = torch.as_tensor(w, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        loss = torch.nn.functional.cross_entropy(z_tr @ w.T + b, torch.as_tensor(y_tr))
        return float(loss + 0.5 * l2 * (w * w).sum())

    w, b = probes._fit_logistic(z_tr.float(), torch.as_tensor(y_tr), 10, l2, 200)
    ours, theirs = objective(w, b), objective(clf.coef_, clf.intercept_)
    assert ours <= theirs * (1 + 1e-4)  # float32 L-BFGS reaches scikit-learn's float64 optimum
    assert np.abs(w.double().numpy() - clf.coef_).max() < 0.02 * np.abs(clf.coef_).max()


# --- control task---


def test_control_task_is_memorised_when_types_repeat():
    # 30 types in 64 dimensions: any labelling of the 30 type embeddings is linearly separable, so a probe can learn
    # the control labels by memorising types, and does so on held-out tokens of the same types.
    x, groups = typed(30, 20, 64, noise=0.3)
    y = groups % 3
    r = linear_probe(x, y, groups=groups)
    assert r.chance < 0.4
    assert r.accuracy == 1.0
    assert r.control_accuracy > 0.9
    assert r.selectivity == r.accuracy - r.control_accuracy


def test_control_task_is_at_chance_without_groups():
    x, groups = typed(30, 40, 64, noise=0.3)
    y = groups % 3  # 400 examples of each class: the control labels are drawn uniformly
    r = linear_probe(x, y)  # every example its own type: a held-out control label was never seen in training
    assert r.accuracy == 1.0
    # The held-out control labels are independent draws with p = 1/3 each, independent of the predictions, so
    # the number right is Binomial(300, 1/3): 4 standard deviations is 0.109.
    assert r.n_test == 300
    assert abs(r.control_accuracy - 1 / 3) < binomial_tolerance(1 / 3, r.n_test)
    assert r.selectivity == r.accuracy - r.control_accuracy


def test_selectivity_is_high_when_the_label_is_linear_and_types_do_not_fit():
    # 60 types in 6 dimensions: the true label (sign of the first coordinate) is linear, but an arbitrary labelling
    # of 60 points in 6-D is not, so the control task is learnt only partly.
    x, groups = typed(60, 10, 6, noise=0.1, seed=2)
    y = np.where(x[:, 0] > 0, "pos", "neg")
    r = linear_probe(x, y, groups=groups)
    assert r.accuracy > 0.95
    assert r.control_accuracy < 0.75
    assert r.selectivity > 0.2


def test_control_labels_are_one_per_type_and_follow_the_label_distribution():
    rng = np.random.default_rng(0)
    y = (rng.random(6000) < 0.2).astype(np.int64)  # about 20% ones
    groups = rng.integers(0, 2000, 6000)
    ctrl = probes._control_labels(y, groups, 2, seed=5)
    for g in np.unique(groups)[:200]:
        assert len(set(ctrl[groups == g])) == 1  # fixed per type
    per_type = np.array([ctrl[groups == g][0] for g in np.unique(groups)])
    # 2000 types drawn with p = mean(y) ~ 0.2: 4 standard deviations is 0.036
    assert abs(per_type.mean() - y.mean()) < binomial_tolerance(y.mean(), len(per_type))
    assert (probes._control_labels(y, groups, 2, seed=5) == ctrl).all()
    assert (probes._control_labels(y, groups, 2, seed=6) != ctrl).any()


def test_groups_with_mixed_labels_are_fine_and_must_match_the_examples():
    x, y = blobs(30, 3, 5, gap=4.0)
    groups = np.arange(len(y)) % 7  # every group holds all three classes
    r = linear_probe(x, y, groups=groups)
    assert 0.0 <= r.control_accuracy <= 1.0
    with pytest.raises(RepresentationError, match="groups has 5 entries but there are 90 examples"):
        linear_probe(x, y, groups=groups[:5])


# --- split, determinism, labels, chance---


def test_split_is_stratified_and_deterministic():
    y = np.repeat(np.arange(5), [40, 20, 10, 6, 2])
    train, test = probes._stratified_split(y, 0.25, seed=0)
    assert len(test) == round(0.25 * len(y)) and len(train) + len(test) == len(y)
    assert not set(train) & set(test)
    counts, test_counts = np.bincount(y), np.bincount(y[test], minlength=5)
    assert (np.abs(test_counts - 0.25 * counts) <= 1).all()  # proportional to class size
    assert (np.bincount(y[train], minlength=5) >= 1).all()  # every class trained on
    again = probes._stratified_split(y, 0.25, seed=0)
    assert (again[0] == train).all() and (again[1] == test).all()
    other = probes._stratified_split(y, 0.25, seed=1)
    assert (np.bincount(y[other[1]], minlength=5) == test_counts).all() and (other[1] != test).any()


def test_same_seed_gives_the_same_result_and_seeds_change_the_split():
    x, y = blobs(40, 3, 10, gap=1.5)  # overlapping: the held-out accuracy depends on which examples are held out
    a, b = linear_probe(x, y, seed=7), linear_probe(x, y, seed=7)
    assert a == b
    others = {linear_probe(x, y, seed=s).accuracy for s in range(4)}
    assert len(others) > 1


def test_string_labels_give_the_same_result_as_their_sorted_ids():
    x, y = blobs(30, 3, 6, gap=2.0)
    names = np.array(["ant", "bee", "cat"])[y]
    as_strings, as_ints = linear_probe(list(x), list(names)), linear_probe(torch.as_tensor(x), torch.as_tensor(y))
    assert as_strings == as_ints
    assert as_strings.classes == 3


def test_chance_is_the_majority_training_class_on_the_test_set():
    x = np.random.default_rng(0).standard_normal((12, 3))
    y = ["a"] * 8 + ["b"] * 4
    r = linear_probe(x, y, test_fraction=0.25, control=False)
    # test: 2 of the 8 a's and 1 of the 4 b's; training: 6 a's and 3 b's, so predict "a": right on 2 of 3
    assert (r.n_train, r.n_test) == (9, 3)
    assert r.chance == pytest.approx(2 / 3)
    y_b = ["a"] * 4 + ["b"] * 8
    assert linear_probe(x, y_b, control=False).chance == pytest.approx(2 / 3)


# --- awkward representations---


def test_one_informative_feature_is_a_valid_probe():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = (y * 5.0 + rng.standard_normal(300))[:, None]  # ordered classes on one axis: softmax separates them
    r = linear_probe(x, y)
    assert r.accuracy > 0.95 and r.classes == 3


def test_a_constant_representation_gives_chance_without_error():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    for x in (np.full((100, 1), 3.7), np.full((100, 8), 0.1)):  # 0.1 has round-off in its mean but no spread
        r = linear_probe(x, y, seed=1)
        # test 13 / 7 / 5 of the classes (largest remainder), training 37 / 23 / 15: the probe predicts class 0
        assert r.accuracy == r.chance == pytest.approx(13 / 25) and r.train_accuracy == pytest.approx(37 / 75)
        assert r.control_accuracy is not None


def test_constant_features_are_ignored_next_to_informative_ones():
    x, y = blobs(40, 2, 3, gap=8.0)
    with_constant = np.hstack([x, np.full((len(y), 2), -1.0)])
    assert linear_probe(with_constant, y) == linear_probe(x, y)


# --- bad input---


def test_labels_of_the_wrong_length_name_both_lengths():
    x, y = blobs(10, 2, 3, gap=3.0)
    with pytest.raises(RepresentationError, match=r"19 entries.*20 examples"):
        linear_probe(x, y[:-1])


def test_nan_features_are_refused():
    x, y = blobs(10, 2, 3, gap=3.0)
    x[4, 1] = np.nan
    with pytest.raises(RepresentationError, match="NaN"):
        linear_probe(x, y)
    with pytest.raises(RepresentationError, match="shape"):
        linear_probe(x[:, 0], y)


def test_one_class_is_refused():
    x = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(RepresentationError, match=r"at least 2 label classes; got 1 \(every label is 'dog'\)"):
        linear_probe(x, ["dog"] * 10)


def test_a_class_with_one_example_is_named():
    x = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(RepresentationError, match=r"class 'bird' \(1 example\).*drop those examples"):
        linear_probe(x, ["dog"] * 5 + ["cat"] * 4 + ["bird"])


def test_bad_settings_are_refused():
    x, y = blobs(10, 2, 3, gap=3.0)
    for kw, match in [({"test_fraction": 1.0}, "test_fraction"), ({"test_fraction": 0}, "test_fraction"),
                      ({"l2": -1.0}, "l2"), ({"l2": float("nan")}, "l2"), ({"max_iter": 0}, "max_iter"),
                      ({"seed": -1}, "seed"), ({"device": "bogus"}, "device")]:
        with pytest.raises(RepresentationError, match=match):
            linear_probe(x, y, **kw)
    with pytest.raises(RepresentationError, match="NaN"):
        linear_probe(x, np.where(y == 0, 0.0, np.nan))


# --- several layers, results---


def test_probe_layers_share_one_split_and_keep_dict_order():
    x, y = blobs(30, 3, 8, gap=3.0)
    rng = np.random.default_rng(1)
    layers = {"noise": rng.standard_normal((90, 4)), "fc1": x, "fc2": torch.as_tensor(x[:, :2])}
    results = probe_layers(layers, y, seed=2, epoch=5, control=False)
    assert [r.layer for r in results] == ["noise", "fc1", "fc2"]
    assert len({(r.n_train, r.n_test, r.chance) for r in results}) == 1
    for r, (name, feats) in zip(results, layers.items(), strict=True):
        assert r == linear_probe(feats, y, seed=2, epoch=5, control=False, layer=name)
    assert results[1].accuracy > results[0].accuracy


def test_probe_layers_refuses_mismatched_or_missing_layers():
    x, y = blobs(10, 2, 3, gap=3.0)
    with pytest.raises(RepresentationError, match="same examples"):
        probe_layers({"a": x, "b": x[:-2]}, y)
    with pytest.raises(RepresentationError, match="empty dict"):
        probe_layers({}, y)
    with pytest.raises(TypeError, match="layer="):
        probe_layers({"a": x}, y, layer="b")
    with pytest.raises(TypeError, match="unexpected keyword argument 'test_size'"):
        probe_layers({"a": x}, y, test_size=0.3)
    with pytest.raises(RepresentationError, match="layer 'a'"):
        probe_layers({"a": x[:, :, None]}, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_result():
    x, y = blobs(100, 4, 20, gap=2.0)
    cpu, cuda = linear_probe(x, y, groups=np.arange(400) % 50), linear_probe(x, y, groups=np.arange(400) % 50,
                                                                             device="cuda")
    assert (cuda.n_train, cuda.n_test, cuda.chance) == (cpu.n_train, cpu.n_test, cpu.chance)
    assert abs(cuda.accuracy - cpu.accuracy) <= 0.02 and abs(cuda.control_accuracy - cpu.control_accuracy) <= 0.02


def test_result_is_json_ready():
    x, y = blobs(10, 2, 3, gap=3.0)
    r = linear_probe(x, y, layer="fc", epoch=3, device="cpu")
    d = r.to_dict()
    assert list(d) == ["layer", "accuracy", "train_accuracy", "control_accuracy", "selectivity", "chance", "n_train",
                       "n_test", "classes", "epoch"]
    assert json.loads(json.dumps(d)) == d and d["layer"] == "fc" and d["epoch"] == 3
    assert isinstance(r, ProbeResult)
    with pytest.raises(AttributeError):
        r.accuracy = 0.0  # frozen
