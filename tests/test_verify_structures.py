"""answers_match on structured answers: ±, sets vs tuples, intervals, equations, matrices, choices, text."""

from __future__ import annotations

import pytest

from pipeline.verify import answers_match

T, F = True, False


def check(given: str, gold: str, expected: bool) -> None:
    assert answers_match(given, gold) is expected, (given, gold)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        (r"\pm 2", "2, -2", T),
        ("-2, 2", r"\pm 2", T),
        ("2", r"\pm 2", F),
        (r"\pm 2021", "2021", F),
        (r"1+\sqrt{19}, 1-\sqrt{19}", r"1 \pm \sqrt{19}", T),
        (r"1+\sqrt{19}", r"1 \pm \sqrt{19}", F),
        (r"3 \pm \sqrt{8}", r"3 \pm 2 \sqrt{2}", T),
        (r"x = \pm 3", r"\pm 3", T),
        (r"\mp 4", r"\pm 4", T),
        (r"-2, 1+\sqrt5, 1-\sqrt5", r"\{1\pm\sqrt{5},-2\}", T),
        (r"1+\sqrt5, 1-\sqrt5", r"\{1\pm\sqrt{5},-2\}", F),
    ],
)
def test_plus_minus(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("7, 5, 3", "3, 5, 7", T),
        ("3, 5", "3, 5, 7", F),
        ("3, 5, 7, 9", "3, 5, 7", F),
        (r"\{3, 5, 7\}", "3, 5, 7", T),
        ("x=3, x=5, x=7", "3,5,7", T),
        (r"x = 3 \text{ or } x = 5", "3, 5", T),
        (r"x \in \{3, 5\}", "3, 5", T),
        ("(-29, 15)", "(15,-29)", F),
        ("15, -29", "(15,-29)", T),
        ("(1,-16,43,-4)", "(1,-16,-4,43)", F),
        ("x=1, y=2", "(1,2)", T),
        ("x=2, y=1", "(1,2)", F),
        ("(x, y) = (1, 2)", "(1,2)", T),
        ("(3,4), (1,2)", "(1,2), (3,4)", T),
        ("(1,2), (4,3)", "(1,2), (3,4)", F),
        ("n=2,3,4", "n=1,2,3", F),
    ],
)
def test_sets_are_unordered_tuples_are_ordered(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        (r"(3,\infty) \cup (-\infty,2)", r"(-\infty, 2) \cup (3, \infty)", T),
        (r"x < 2 \text{ or } x > 3", r"(-\infty, 2) \cup (3, \infty)", T),
        (r"(-\infty, 2] \cup [3, \infty)", r"(-\infty, 2) \cup (3, \infty)", F),
        ("[2,5]", r"x \in [2,5]", T),
        (r"x \in [2,5]", "[2,5]", T),
        (r"2 \le x \le 5", "[2,5]", T),
        (r"2 < x \le 5", "[2,5]", F),
        ("(2,5)", "[2,5]", F),
        ("x > 2", r"(2,\infty)", T),
        (r"x \ge 2", r"(2, \infty)", F),
        (r"(-\infty,\infty)", r"\mathbb{R}", T),
        (r"(-\infty,\infty)", r"\text{all real numbers}", T),
        ("(0,36)", r"(0,9) \cup (9,36)", F),
        (r"x \neq 0", r"(-\infty,0)\cup (0,\infty)", T),
        (r"(-\infty, -1) \cup (1, \infty)", "|x| > 1", T),
        ("(-1,1)", "|x| < 1", T),
        ("[-1,1]", "|x| < 1", F),
        ("(1, 3)", r"\{x \mid 1 < x < 3\}", T),
        (r"x > 1 \text{ and } x < 3", "(1,3)", T),
        (r"[0,7)", r"\{-1\} \cup [0,7)", F),
        (r"(-\infty, 2] \cup (2, 5)", r"(-\infty, 5)", T),
    ],
)
def test_intervals_and_inequalities(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("2x - y + 3 = 0", "y = 2x + 3", T),
        ("y = 2x - 3", "y = 2x + 3", F),
        ("x = 5", "5", T),
        ("5", "x = 5", T),
        ("y = 5", "x = 5", F),
        ("-5x + 7y - 11z - 4 = 0", "5x - 7y + 11z + 4 = 0", T),
        ("5x - 7y + 11z - 4 = 0", "5x - 7y + 11z + 4 = 0", F),
        ("x - y = 2", "x + y = 2", F),
        ("x^2 + y^2 = 4", "x^2 + y^2 = 1", F),
        ("3y = -10", r"y = -\frac{10}{3}", T),
        ("x = 2+3 = 5", "5", T),
        ("(x-1)^2 + (y+2)^2 = 9", "x^2 - 2x + y^2 + 4y - 4 = 0", T),
        ("f(x) = 2x + 1", "2x+1", T),
    ],
)
def test_equations(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        (
            r"\begin{bmatrix} -1 & 0 \\ 0 & -1 \end{bmatrix}",
            r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}",
            T,
        ),
        (
            r"\begin{pmatrix} 0 & -1 \\ -1 & 0 \end{pmatrix}",
            r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}",
            F,
        ),
        ("(-1/3, 2/3, 5/3)", r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", T),
        ("(2/3, -1/3, 5/3)", r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", F),
        (r"\begin{pmatrix} 0.2 \\ -3.6 \end{pmatrix}", r"\begin{pmatrix} 1/5 \\ -18/5 \end{pmatrix}", T),
        (r"\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", F),
        ("2", r"\begin{pmatrix} 2 & 0 \\ 0 & 2 \end{pmatrix}", F),
        (r"\langle -18, -49, 96 \rangle", r"\begin{pmatrix} -18 \\ -49 \\ 96 \end{pmatrix}", T),
    ],
)
def test_matrices_and_vectors(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("C", r"\text{(C)}", T),
        (r"\textbf{(C)}", r"\text{(C)}", T),
        (r"(C) 5\sqrt{2}", r"\text{(C)}", T),
        ("Option C", "(C)", T),
        ("(c)", "C", T),
        ("B", r"\text{(C)}", F),
        (r"\textbf{(B)}", r"\text{(C)}", F),
        ("A,E,B", r"\text{A,B,E}", T),
        ("A, B", r"\text{A,B,E}", F),
        (r"(A) \frac{1}{2}", r"\text{(B)}", F),
    ],
)
def test_multiple_choice(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("Evelyn", r"\text{Evelyn}", T),
        ("Navin", r"\text{Evelyn}", F),
        (r"\text{an ellipse}", r"\text{ellipse}", T),
        ("odd", r"\text{even}", F),
        ("4:30 PM", r"\text{4:30 p.m.}", T),
        ("4:30 AM", r"\text{4:30 p.m.}", F),
        (r"\text{does not exist}", "DNE", T),
        ("none", "0", F),
        ("five", "5", T),
    ],
)
def test_text_answers(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        (r"\frac12", r"\frac{1}{2}", T),
        (r"\frac 34", "0.75", T),
        (r"\frac9{19}", r"\frac{9}{19}", T),
        (r"\sqrt(2)", "4", F),
        (r"\sqrt(2)", r"\sqrt{2}", T),
        (r"\sqrt2", r"\sqrt{2}", T),
        (r"\frac{1}{2", "0.5", T),
        (r"\frac{1}{2}}", r"\frac12", T),
        (r"\frac12", "12", F),
        ("sqrt(3)/2", r"\frac{\sqrt{3}}{2}", T),
        ("1/2*pi", r"\frac{\pi}{2}", T),
        (r"\left\{1,2\right\}", r"\{1,2\}", T),
        ("\\{1,2\\", r"\{1,2\}", T),
    ],
)
def test_malformed_latex(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)


@pytest.mark.parametrize(
    ("given", "gold", "expected"),
    [
        ("3x + x^3 - 6", "x^3+3x-6", T),
        ("(a+2)(b+5)", "(a+5)(b+2)", F),
        (r"\frac{x^2-1}{x-1}", "x+1", T),
        (r"\sin^2 x + \cos^2 x", "1", T),
        (r"\sin 2x", r"2 \sin x \cos x", T),
        (r"\sin x^2", r"\sin^2 x", F),
        (r"\frac{\cos x}{\sin x}", r"\cot x", T),
        ("x/y", "y/x", F),
    ],
)
def test_symbolic_expressions(given: str, gold: str, expected: bool) -> None:
    check(given, gold, expected)
