"""Golden tests for the colour maths the visual regression suite relies on (tests/colour_science.py): CIEDE2000
against all 34 pairs of Sharma, Wu & Dalal (2005) Table 1, CIELAB and WCAG contrast against published values,
and the Machado et al. (2009) dichromacy simulation against the paper's matrices and its defining property."""

from __future__ import annotations

import math

import pytest

from ..colour_science import (
    MACHADO_2009,
    categorical_palette,
    ciede2000,
    contrast_ratio,
    delta_e,
    linear_rgb,
    min_pairwise_delta_e,
    parse_hex,
    simulate_cvd,
    srgb_to_lab,
)

# Sharma, Wu & Dalal, Color Res. Appl. 30(1) 2005, Table 1: L1 a1 b1, L2 a2 b2, ΔE00 (4 decimals)
SHARMA_2005 = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


@pytest.mark.parametrize("row", SHARMA_2005, ids=[f"pair{i + 1}" for i in range(len(SHARMA_2005))])
def test_ciede2000_matches_sharma_2005_table_1(row):
    lab1, lab2, expected = row[:3], row[3:6], row[6]
    assert ciede2000(lab1, lab2) == pytest.approx(expected, abs=5e-5)
    assert ciede2000(lab2, lab1) == pytest.approx(expected, abs=5e-5)  # the table lists both orders as equal


def test_cielab_of_srgb_primaries_and_white():
    # D65 CIELAB of sRGB primaries as published (e.g. Lindbloom's calculator, CIE 15:2004 formulas), 2 decimals
    assert srgb_to_lab((255, 255, 255)) == pytest.approx((100.0, 0.0, 0.0), abs=0.01)
    assert srgb_to_lab((0, 0, 0)) == pytest.approx((0.0, 0.0, 0.0), abs=0.01)
    assert srgb_to_lab((255, 0, 0)) == pytest.approx((53.24, 80.09, 67.20), abs=0.01)
    assert srgb_to_lab((0, 255, 0)) == pytest.approx((87.73, -86.18, 83.18), abs=0.01)
    assert srgb_to_lab((0, 0, 255)) == pytest.approx((32.30, 79.19, -107.86), abs=0.01)


def test_wcag_contrast_published_values():
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast_ratio((255, 255, 255), (255, 255, 255)) == pytest.approx(1.0)
    # #767676 on white is the lightest grey that passes AA (4.54:1); #777777 fails (4.48:1) - WebAIM's figures
    assert contrast_ratio(parse_hex("#767676"), (255, 255, 255)) == pytest.approx(4.54, abs=0.005)
    assert contrast_ratio(parse_hex("#777777"), (255, 255, 255)) == pytest.approx(4.48, abs=0.005)
    assert contrast_ratio((255, 255, 255), parse_hex("#777777")) == contrast_ratio(parse_hex("#777777"),
                                                                                   (255, 255, 255))


def test_machado_matrices_keep_white_and_greys():
    # every row sums to 1 (to the 6 decimals printed in the paper): achromatic colours are seen unchanged
    for kind, m in MACHADO_2009.items():
        for row in m:
            assert sum(row) == pytest.approx(1.0, abs=2e-6), kind
        for grey in (0, 60, 128, 200, 255):
            assert simulate_cvd((grey, grey, grey), kind) == pytest.approx((grey, grey, grey), abs=0.01)


def test_machado_deuteranopia_of_pure_red_by_hand():
    # linear red (1, 0, 0) -> first column of the matrix (0.367322, 0.280085, -0.011820); clipped to 0 and encoded:
    # 1.055 * 0.367322 ** (1/2.4) - 0.055 = 0.64006, 1.055 * 0.280085 ** (1/2.4) - 0.055 = 0.56581
    r, g, b = simulate_cvd((255, 0, 0), "deuteranopia")
    assert (r / 255, g / 255, b) == pytest.approx((0.64006, 0.56581, 0.0), abs=1e-4)


def _null_vector(m):
    # cross product of two rows: orthogonal to both; for a rank-2 matrix it spans the null space
    (a, b, c), (d, e, f) = m[0], m[1]
    v = (b * f - c * e, c * d - a * f, a * e - b * d)
    n = math.sqrt(sum(x * x for x in v))
    return tuple(x / n for x in v)


@pytest.mark.parametrize("kind", ["protanopia", "deuteranopia"])
def test_dichromat_confuses_colours_along_its_confusion_line(kind):
    # A dichromat's simulation projects linear RGB onto a plane: two colours that differ only along the matrix's
    # (near-)null direction look the same to them, though clearly different to a trichromat.
    m = MACHADO_2009[kind]
    v = _null_vector(m)
    residual = max(abs(sum(r * x for r, x in zip(row, v, strict=True))) for row in m)
    assert residual < 0.02, f"{kind} matrix is not close to rank 2 (|M v| = {residual})"
    base = (0.35, 0.35, 0.35)
    t = 0.12
    lin1 = tuple(c + t * x for c, x in zip(base, v, strict=True))
    lin2 = tuple(c - t * x for c, x in zip(base, v, strict=True))
    assert all(0 < c < 1 for c in lin1 + lin2)
    enc = [tuple(255 * (12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055) for c in lin)
           for lin in (lin1, lin2)]
    assert delta_e(*enc) > 10, "the two test colours should differ for normal vision"
    assert delta_e(simulate_cvd(enc[0], kind), simulate_cvd(enc[1], kind)) < 1.5


def test_known_confusions_of_tableau_10():
    # red #e15759 and green #59a14f of Tableau 10 are the classic deuteranope confusion: clearly apart for normal
    # vision, within ~1 ΔE00 when simulated
    red, green = parse_hex("#e15759"), parse_hex("#59a14f")
    assert delta_e(red, green) > 40
    assert delta_e(simulate_cvd(red, "deuteranopia"), simulate_cvd(green, "deuteranopia")) < 2
    d, i, j = min_pairwise_delta_e([red, green, (0, 0, 0)], "deuteranopia")
    assert (i, j) == (0, 1) and d < 2


def test_linear_rgb_and_unknown_kind():
    assert linear_rgb((255, 0, 128)) == pytest.approx((1.0, 0.0, 0.21586), abs=1e-5)
    with pytest.raises(ValueError, match="kind must be"):
        simulate_cvd((1, 2, 3), "achromatopsia")
    with pytest.raises(ValueError, match="not a hex colour"):
        parse_hex("#12345")


def test_categorical_palette_parser(tmp_path):
    lib = tmp_path / "js" / "lib"
    lib.mkdir(parents=True)
    (lib / "scatter.js").write_text('export const PALETTE = [\n  "#4e79a7", "#f28e2b", // two\n];\n')
    assert categorical_palette(tmp_path) == (["#4e79a7", "#f28e2b"], "js/lib/scatter.js:PALETTE")
    (lib / "palette.js").write_text("/** doc */\nexport const CATEGORICAL = Object.freeze([\n  '#000000', // k\n"
                                    "  '#ffffff',\n]);\n")
    assert categorical_palette(tmp_path) == (["#000000", "#ffffff"], "js/lib/palette.js:CATEGORICAL")
    (lib / "palette.js").write_text("export const OTHER = [];\n")
    with pytest.raises(ValueError, match="CATEGORICAL"):
        categorical_palette(tmp_path)
