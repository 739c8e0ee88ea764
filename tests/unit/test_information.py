from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import hiddenwidgets as hw
from hiddenwidgets.analysis import information as info

H_Y_12BIT = 0.99916  # H(Y) of the 12-bit task, from its 2118 ones among 4096 labels


def twelve_bit():
    x, y = hw.datasets.twelve_bit_task()
    return x.numpy(), y.numpy()


def test_entropy_of_the_12_bit_labels_matches_the_dataset_readme():
    x, y = twelve_bit()
    assert x.shape == (4096, 12) and (x[5] == [0] * 9 + [1, 0, 1]).all()  # row r is r in binary
    assert info.entropy_bits(np.bincount(y)) == pytest.approx(H_Y_12BIT, abs=5e-6)


def test_t_equal_x_gives_h_x_and_i_x_y():
    x, y = twelve_bit()
    with pytest.warns(info.InformationWarning, match="saturated"):  # T = X is the saturated case by definition
        i_xt, i_ty = info.binned_mi(x, y, value_range=(0.0, 1.0), inputs=x)
    assert i_xt == pytest.approx(12.0)
    assert i_ty == pytest.approx(H_Y_12BIT, abs=5e-6)  # Y is a function of X: I(X;Y) = H(Y)


def test_constant_t_gives_zero_and_zero():
    _, y = twelve_bit()
    assert info.binned_mi(np.full((4096, 3), 0.2), y) == (0.0, 0.0)
    upper = info.kde_mi(np.zeros((64, 3)), y[:64])
    assert upper == pytest.approx((0.0, 0.0), abs=1e-12)


def test_a_hand_computed_case():
    # edges -1, 0, 1: -0.9 and -0.8 share a bin, 0.5 and 0.9 share the next -> H(T) = 1 bit.
    # labels 0, 1, 1, 1: H(Y) = 0.8113; joint cells (b1,0), (b1,1), (b2,1) x2 -> H(T,Y) = 1.5 bits.
    t = torch.tensor([[-0.9], [-0.8], [0.5], [0.9]])
    i_xt, i_ty = info.binned_mi(t, torch.tensor([0, 1, 1, 1]), n_bins=3)
    h_y = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert i_xt == pytest.approx(1.0)
    assert i_ty == pytest.approx(1.0 + h_y - 1.5)


def test_bounds_hold_on_a_random_tanh_network_over_the_12_bit_task():
    x, y = twelve_bit()
    torch.manual_seed(0)
    h = torch.from_numpy(x)
    for width in (10, 7, 5, 4, 3, 2):
        h = torch.tanh(torch.nn.Linear(h.shape[1], width)(h)).detach()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", info.InformationWarning)
            i_xt, i_ty = info.binned_mi(h, y)
        assert 0 <= i_xt <= 12 + 1e-9 and 0 <= i_ty <= H_Y_12BIT + 1e-6
        assert i_ty <= i_xt + 1e-9


def test_kde_bounds_by_hand_and_ordering():
    # two far-apart points: the mixture is two separate bumps -> both bounds give log2(2) = 1 bit
    far = np.array([[0.0], [10.0]])
    assert info.kde_mi(far, [0, 1])[0] == pytest.approx(1.0)
    assert info.kde_mi(far, [0, 1], bound="lower")[0] == pytest.approx(1.0)
    # three points on a line, s = 0.5: evaluate the formulas directly
    t = np.array([[0.0], [1.0], [3.0]])
    d2 = (t - t.T) ** 2
    s = 0.5
    upper = -np.mean(np.log(np.mean(np.exp(-d2 / (2 * s)), axis=1))) / math.log(2)
    lower = -np.mean(np.log(np.mean(np.exp(-d2 / (8 * s)), axis=1))) / math.log(2)
    assert info.kde_mi(t, [0, 0, 1], noise_variance=s)[0] == pytest.approx(upper)
    assert info.kde_mi(t, [0, 0, 1], noise_variance=s, bound="lower")[0] == pytest.approx(lower)
    assert lower < upper
    # I(T;Y) = H(T) - sum_y p(y) H(T|y): class 1 alone has zero entropy, class 0 has the pair's
    pair = -np.mean(np.log(np.mean(np.exp(-d2[:2, :2] / (2 * s)), axis=1))) / math.log(2)
    assert info.kde_mi(t, [0, 0, 1], noise_variance=s)[1] == pytest.approx(upper - 2 / 3 * pair)


def test_sample_propagation_approaches_the_mixture_information():
    far = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [50.0, 50.0]])
    i_xt, i_ty = info.sample_propagation_mi(far, [0, 0, 1, 1], noise_variance=1.0, samples=256)
    assert i_xt == pytest.approx(2.0, abs=1e-6) and i_ty == pytest.approx(1.0, abs=1e-6)
    same = np.zeros((8, 3))
    assert info.sample_propagation_mi(same, [0] * 4 + [1] * 4, samples=64)[0] < 0.05


def test_bad_input_gets_clear_errors_and_warnings():
    x, y = twelve_bit()
    with pytest.raises(ValueError, match="4095 entries for 4096 samples"):
        info.binned_mi(x, y[:-1])
    with pytest.raises(TypeError, match="labels must be integer class ids"):
        info.binned_mi(x, y + 0.5)
    continuous = np.random.default_rng(0).normal(size=(100, 4))
    with pytest.raises(ValueError, match=r"continuous.*kde_mi.*sample_propagation_mi"):
        info.binned_mi(np.tanh(continuous), np.zeros(100, dtype=int), inputs=continuous)
    rows = np.array([[-3.0, 0.1], [0.2, 2.0], [0.3, 5.0], [0.0, 0.0]] * 2)  # 4 patterns, 8 samples: not saturated
    with pytest.warns(info.InformationWarning, match="6 of 16 activations lie outside value_range"):
        info.binned_mi(rows, [0, 1, 0, 1] * 2)
    with pytest.warns(info.InformationWarning, match="4096 distinct binned patterns for 4096 samples"):
        info.binned_mi(x, y, value_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="'observed' or 'adaptive'"):
        info.binned_mi(x, y, value_range="auto")


def test_unbounded_activations_use_the_observed_or_adaptive_range():
    rng = np.random.default_rng(1)
    relu = np.maximum(rng.normal(size=(512, 3)) * 5, 0)
    labels = rng.integers(0, 2, 512)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no clipping warning: the range comes from the data
        observed = info.binned_mi(relu, labels, value_range="observed")
        adaptive = info.binned_mi(relu, labels, value_range="adaptive")
    assert 0 < observed[0] <= 9 and 0 < adaptive[0] <= 9
