"""Peak memory, measured in a fresh process each time (ru_maxrss): the MI estimators never build N x N matrices and
a monitored step allocates nothing the size of the activation."""

from __future__ import annotations

import sys

import pytest

from ..peak_memory import peak_of

MB = 2**20

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kilobytes is Linux's")


def test_mi_estimators_on_12000_samples_stay_within_a_few_hundred_megabytes():
    # an N x N float64 matrix alone is 1.15 GB here (20,000 samples took 9.2 GB and an OOM kill before)
    got = peak_of("""
        g = torch.Generator().manual_seed(0)
        t = torch.randn(12000, 10, generator=g, dtype=torch.float64)
        y = torch.randint(0, 2, (12000,), generator=g)
        out['kde'] = hw.information.kde_mi(t, y, noise_variance=0.1)
        out['sp'] = hw.information.sample_propagation_mi(t[:6000], y[:6000], samples=2)
    """)
    assert got["peak"] - got["base"] < 400 * MB, (got["peak"] - got["base"]) / MB
    assert 0 < got["kde"][0] <= 13.6  # log2 12000 = 13.55


def test_a_monitored_step_adds_no_copy_of_a_large_activation():
    code = """
        class Big(torch.nn.Module):
            def forward(self, x):  # 2.5e7 elements, 100 MB in float32, channels-last like a ConvNeXt block's
                return (x * 2.0).permute(0, 2, 3, 1)
        model = torch.nn.Sequential(Big())
        x = torch.randn(25, 10, 100, 1000)
        MONITOR
        model(x)  # warm-up: the activation's own memory, once, and the monitor's set-up
        STEP
        before = peak()
        for _ in range(3):
            model(x)
            STEP
        out['growth'] = peak() - before
    """
    plain = peak_of(code.replace("MONITOR", "").replace("STEP", ""))
    monitored = peak_of(code.replace("MONITOR", "monitor = hw.ActivationMonitor(model, ['0'], every=1, "
                                                "gradients=False)").replace("STEP", "monitor.step()"))
    extra = monitored["growth"] - plain["growth"]
    # reshaping the non-contiguous output to 1-D copied it (+100 MB); a float64 copy for the NaN check is +200 MB
    assert extra < 40 * MB, extra / MB
