"""answers_match on scalar answers, one test per category: (given, gold, same object?)."""

from __future__ import annotations

import pytest

from pipeline.verify import answers_match

T, F = True, False


def check(given: str, gold: str, expected: bool) -> None:
    assert answers_match(given, gold) is expected, (given, gold)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("1,000", "1000", T),
        ("1000", r"1,\!000", T),
        ("10 000", "10000", T),
        (r"10\,000", "10000", T),
        ("1 000 000", "1000000", T),
        ("007", "7", T),
        ("7.0", "7", T),
        ("7.00", "7", T),
        ("+5", "5", T),
        ("70", "7", F),
        ("11,111,111,100", r"11,\! 111,\! 111,\! 100", T),
        ("1,2", "12", F),
        ("2.024", "2024", F),
        ("-0", "0", T),
        (r"\textbf{12}", "12", T),
        ("x=12", "12", T),
        ("12 = x", "12", T),
        ("2, 500", "2500", F),
    ],
)
def test_integers(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("\u22125", "-5", T),
        ("- 5", "-5", T),
        ("(-5)", "-5", T),
        ("5", "-5", F),
        ("-5", "5", F),
        (r"\frac{1}{-2}", r"-\frac12", T),
        ("-(-3)", "3", T),
        ("-3", "-(-3)", F),
        (r"\frac{-3}{-4}", "0.75", T),
        ("x=4", "-4", F),
    ],
)
def test_negatives(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("0.5", r"\frac{1}{2}", T),
        (r"\frac{1}{2}", "0.5", T),
        ("0.333", r"\frac{1}{3}", F),
        (r"0.\overline{3}", r"\frac{1}{3}", T),
        (r"0.1\overline{6}", r"\frac{1}{6}", T),
        (r"0.\overline{142857}", r"\frac{1}{7}", T),
        (r"0.\overline{3}", "0.3", F),
        (r"0.333\ldots", r"\frac13", T),
        ("0.1666...", r"\frac16", T),
        ("0.(3)", "1/3", T),
        (r"0.\overline{9}", "1", T),
        (r"\frac{4}{6}", r"\frac{2}{3}", T),
        ("0.9", r"\frac{9}{100}", F),
        ("0.12345", r"\dfrac{2469}{20,\!000}", T),
        ("3.14...", r"\frac{157}{50}", T),
    ],
)
def test_fractions_and_decimals(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        (r"2\frac{1}{2}", r"\frac{5}{2}", T),
        (r"2\frac{1}{2}", "1", F),
        ("2 1/2", "5/2", T),
        (r"137 \frac{1}{2}", "137.5", T),
        (r"-2\frac14", "-2.25", T),
        (r"3\frac{2}{3}", "2", F),
        (r"4\frac{1}{2} \text{ hours}", "4.5", T),
        (r"33\frac{1}{3}\%", r"\frac{1}{3}", T),
        (r"2\frac{\sqrt{3}}{3}", r"\frac{2\sqrt3}{3}", T),
    ],
)
def test_mixed_numbers(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("5", r"5\%", T),
        (r"5\%", "5", T),
        ("0.05", r"5\%", T),
        (r"5\%", "0.05", T),
        ("0.05", "5", F),
        (r"50\%", r"\frac{1}{2}", T),
        ("25 percent", r"25\%", T),
        (r"2.5\%", r"25\%", F),
        (r"0.1\%", r"10\%", F),
    ],
)
def test_percent(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        (r"\$18.90", "18.90", T),
        ("18.9", r"\$18.90", T),
        ("$18.90", r"\$18.90", T),
        ("18.90 dollars", r"\$18.90", T),
        ("32348", r"\$32,\!348", T),
        (r"\$32,349", r"\$32,\!348", F),
        ("106 cents", r"\$1.06", T),
        ("1.06 cents", r"\$1.06", F),
        ("\u20ac15", "15", T),
        ("42 USD", "42", T),
    ],
)
def test_money(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("15", r"15\mbox{ cm}^2", T),
        ("864 square inches", r"864 \mbox{ inches}^2", T),
        ("865", r"864 \mbox{ inches}^2", F),
        ("2 hours", r"120 \text{ minutes}", T),
        ("2 minutes", r"120 \text{ minutes}", F),
        ("120", r"2\text{ hours}", F),
        ("150 cm", "1.5 m", T),
        ("15 cm", "1.5 m", F),
        (r"14 \text{ right triangles}", "14", T),
        (r"3 \text{ hours and } 20 \text{ minutes}", r"200 \text{ minutes}", T),
        ("5 m", "5", T),
        ("60 km/h", "60", T),
    ],
)
def test_units_and_text_wrappers(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        (r"1.5 \times 10^{3}", "1500", T),
        ("1.5e3", "1500", T),
        ("1.5E+3", "1500", T),
        ("1.5 x 10^3", "1500", T),
        (r"6.72 \times 10^{-5}", "0.0000672", T),
        (r"6.7 \times 10^{-5}", "0.0000672", F),
        (r"3 \times 10^{-8}", r"3 \times 10^8", F),
        ("1e-3", "0.01", F),
    ],
)
def test_scientific_notation(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        (r"2\sqrt{5}", r"\sqrt{20}", T),
        (r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}", T),
        (r"\sqrt[3]{16}", r"2\sqrt[3]{2}", T),
        (r"\sqrt[3]{16}", r"2\sqrt{2}", F),
        (r"\sqrt{5+2\sqrt{6}}", r"\sqrt{2}+\sqrt{3}", T),
        ("1.414", r"\sqrt{2}", F),
        (r"\sqrt{12}+\sqrt{27}", r"5\sqrt{3}", T),
        (r"\sqrt{12}+\sqrt{27}", r"\sqrt{39}", F),
        ("2^{1/2}", r"\sqrt{2}", T),
        (r"\sqrt{10^{100}+1}", "10^{50}", F),
    ],
)
def test_radicals(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        (r"2\pi+18", r"18+2\pi", T),
        ("6.28", r"2\pi", F),
        ("3.14", r"\pi", F),
        (r"\frac{22}{7}", r"\pi", F),
        (r"3.14159", r"\pi", F),
        (r"0.45\pi", r"\dfrac{9\pi}{20}", T),
        (r"\pi(6)^2", r"36\pi", T),
        ("113.1", r"36\pi", F),
        (r"29-10\pi", r"10\pi - 29", F),
    ],
)
def test_pi_expressions(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("1024", "2^{10}", T),
        ("(-2)^{49}", "-2^{49}", T),
        ("(-2)^{50}", "-2^{50}", F),
        ("8^{2/3}", "4", T),
        ("2^{100}", "1267650600228229401496703205377", F),
        ("10^{100}+1", "10^{100}", F),
        (r"e^{i\pi}", "-1", T),
        ("64", "2^{2^3}", F),
        (r"\log_2 8", "3", T),
        (r"\log 100", "2", T),
        (r"\ln(e^3)", "3", T),
    ],
)
def test_exponents_and_logs(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("5!", "120", T),
        ("6!", "120", F),
        (r"\frac{1}{2004!}", r"\frac{1}{2006!}", F),
        (r"2006 \cdot 2005", r"\frac{2006!}{2004!}", T),
        (r"2006 \cdot 2004", r"\frac{2006!}{2004!}", F),
        ("100! + 1", "100!", F),
        ("1000! + 1", "1000!", F),
        (r"\frac{1}{1000!}", "0", F),
        (r"{8 \choose 2}", "28", T),
        (r"\frac{10!}{3!7!}", r"\binom{10}{3}", T),
        ("30!", "265252859812191058636308480000001", F),
    ],
)
def test_factorials_exact_beyond_floating_point(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("7i - 2", "-2 + 7i", T),
        ("-2 - 7i", "-2 + 7i", F),
        (r"\frac{7+i}{5}", r"\frac{7}{5} + \frac{1}{5} i", T),
        ("1.4 + 0.2i", r"\frac{7}{5} + \frac{1}{5} i", T),
        (r"\sqrt{-4}", "2i", T),
        (r"\frac{1+i}{1-i}", "i", T),
        (r"\sqrt{2}e^{i\pi/4}", "1+i", T),
        (r"\sqrt{2}e^{i\pi/4}", "1-i", F),
        ("|3+4i|", "5", T),
        (r"2+3\mathrm{i}", "2+3i", T),
    ],
)
def test_complex_numbers(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("4210", "4210_{5}", T),
        ("4201_5", "4210_{5}", F),
        ("560", "4210_{5}", F),
        ("1011", "1011_2", T),
        ("101_{2}", "5", T),
        ("FF_{16}", "255", T),
        ("10A_{12}", "10A_{12}", T),
        ("10B_{12}", "10A_{12}", F),
    ],
)
def test_number_bases(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("90", r"90^\circ", T),
        ("90\u00b0", r"90^\circ", T),
        ("90 degrees", r"90^\circ", T),
        ("45^o", "45", T),
        (r"\frac{\pi}{2}", r"90^\circ", T),
        (r"30^\circ", r"\frac{\pi}{6}", T),
        (r"\frac{\pi}{3}", r"30^\circ", F),
        (r"2-\sqrt{3}", r"\tan 15^\circ", T),
        (r"2\sin 15^\circ", r"2\cos 15^{\circ}", F),
        (r"\frac{990}{7}", r"\frac{990}{7}^\circ", T),
        ("180", r"\pi", F),
    ],
)
def test_degrees(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)
