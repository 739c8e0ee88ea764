"""Charts display and save without a network: an SVG rendered by vl-convert beside the spec, files without a browser."""

from __future__ import annotations

import json
import re

import pytest

import hiddenwidgets as hw
from hiddenwidgets.analysis.probes import ProbeResult

pytest.importorskip("vl_convert")


@pytest.fixture(scope="module")
def chart():
    results = [ProbeResult("conv1", 0.62, 0.7, 0.31, 0.31, 0.1, 30, 10, 4, epoch=1),
               ProbeResult("fc1", 0.91, 0.95, 0.35, 0.56, 0.1, 30, 10, 4, epoch=1)]
    return hw.ProbeChart(results, title="probes of <b>layers</b>").to_altair()


def test_a_views_chart_displays_as_svg_beside_its_spec(chart):
    bundle = chart._repr_mimebundle_()
    specs = [k for k in bundle if k.startswith("application/vnd.vegalite")]
    assert specs and bundle[specs[0]] == chart.to_dict()
    svg = bundle["image/svg+xml"]
    assert svg.lstrip().startswith("<svg") and "</svg>" in svg
    # the SVG draws the data: both layer names on the axis, the title as text (escaped, not markup)
    assert "conv1" in svg and "fc1" in svg
    assert "probes of &lt;b&gt;layers&lt;/b&gt;" in svg
    assert not re.search(r"https?://(?!www\.w3\.org)", svg)  # nothing to fetch (w3.org is the SVG namespace)


def test_composed_charts_become_offline_through_offline(chart):
    composed = chart | chart
    assert "image/svg+xml" not in (composed._repr_mimebundle_() or {})  # Altair's own display: a CDN page
    same = hw.charts.offline(composed)
    assert same is composed and "image/svg+xml" in composed._repr_mimebundle_()
    assert composed.to_dict()["hconcat"]  # still an ordinary Altair chart
    with pytest.raises(TypeError, match="expected an Altair chart"):
        hw.charts.offline({"mark": "point"})


def test_save_chart_writes_every_format_offline(chart, tmp_path):
    svg = hw.save_chart(chart, tmp_path / "c.svg").read_text()
    assert svg.lstrip().startswith("<svg") and "fc1" in svg
    png = hw.save_chart(chart, tmp_path / "c.png", scale=2).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png[16:20], "big")
    small = hw.save_chart(chart, tmp_path / "small.png").read_bytes()
    assert width == 2 * int.from_bytes(small[16:20], "big")  # scale doubles the pixels
    assert hw.save_chart(chart, tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-"
    html = hw.save_chart(chart, tmp_path / "c.html").read_text()
    assert "<script" in html and not re.search(r"<script[^>]+src=", html)  # Vega inlined, no CDN script
    assert json.loads(hw.save_chart(chart, tmp_path / "c.json").read_text()) == chart.to_dict()


def test_save_chart_refuses_what_it_cannot_write(chart, tmp_path):
    with pytest.raises(ValueError, match=r"writes \.svg, \.png, \.pdf, \.html, \.json"):
        hw.save_chart(chart, tmp_path / "c.gif")
    with pytest.raises(ValueError, match="scale must be a positive number"):
        hw.save_chart(chart, tmp_path / "c.png", scale=0)
    with pytest.raises(TypeError, match="expected an Altair chart"):
        hw.save_chart("not a chart", tmp_path / "c.svg")
