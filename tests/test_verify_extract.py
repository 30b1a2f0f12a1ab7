"""extract_answer / grade over realistic full model outputs: what counts as a committed final answer."""

from __future__ import annotations

import pytest

from pipeline.verify import extract_answer, grade

COMMITTED = [
    # boxes: last one wins, nested braces, \boxed 5, \fbox
    (r"So the result is \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
    (r"First $\boxed{5}$, then finally \boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}"),
    (
        r"\boxed{\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}}",
        r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
    ),
    (r"The answer is \boxed 5.", "5"),
    (r"Hence \fbox{12}.", "12"),
    ("**Final Answer**\n\\[\n\\boxed{(2, 5]}\n\\]", "(2, 5]"),
    (r"Thus $a+b = \boxed{13}$.", "13"),
    # phrases, GSM8K, Minerva
    ("She has 5 apples. The answer is 5.", "5"),
    ("Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72", "72"),
    ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", r"\frac{3}{4}"),
    ("Each box holds 6 pens.\nThe answer is: 18", "18"),
    ("**Answer:** 25", "25"),
    ("Answer: (C)", "(C)"),
    ("Hence, option (C) is correct.", "(C)"),
    ("The final answer is:\n\n$$\\frac{1}{2}$$", r"\frac{1}{2}"),
    ("Answer: The total is 5.", "5"),
    # revisions: the latest commitment wins over an earlier box
    ("So \\boxed{12}. Wait, I misread: we need 2k, so the answer is 14.", "14"),
    ("<think>So the answer is 5. Wait, it asks for double.</think>\nThe answer is $\\boxed{10}$.", "10"),
    (
        "Therefore the answer is $\\boxed{2}$. \n\nHowever, with negative values allowed, the answer is -2.",
        "-2",
    ),
    # text after the answer: units, footnotes, trailing period, justification
    ("The answer is 18 dollars.", "18 dollars"),
    ("Thus the answer is $3.5$ hours.", "3.5 hours"),
    ("The answer is 42.[1]\n\n[1] See above.", "42"),
    ("The answer is 7, since each friend gets one.", "7"),
    ("The answer is $12.", "12"),
    ("\\boxed{5}\n\nNote that the answer is reasonable because it is positive.", "5"),
    ("\\boxed{5}\n\nTo verify: if the answer is 5 then 2*5 = 10.", "5"),
    # code blocks: the printed output
    ("```python\nprint(6*7)\n```\n```output\n42\n```\n", "42"),
    ("```python\nx = sum(range(10))\nprint(x)\n```\n```\n45\n```\nSo the sum is 45.", "45"),
    # other languages
    ("Donc la réponse est 12.", "12"),
    ("La respuesta es $7$.", "7"),
    ("Die Antwort lautet 8.", "8"),
    ("La risposta è 8.", "8"),
    ("A resposta é 8.", "8"),
    ("所以答案是 15。", "15"),
    ("答案是：15", "15"),
    ("答えは 8 です。", "8"),
    ("정답은 8입니다.", "8"),
    ("Ответ: 9", "9"),
    ("Jadi, jawabannya adalah 25.", "25"),
    # several boxes listing solutions
    ("The solutions are $x = \\boxed{2}$ and $x = \\boxed{3}$.", "2, 3"),
]

NO_ANSWER = [
    "The answer is either 3 or 5.",
    "The answer is 12 or 13, I'm not sure.",
    "The answer is 5 (or possibly 6).",
    "I think the answer is 5, but it might be 6.",
    "So it's \\boxed{12} or \\boxed{13}.",
    "Let's compute. First 3 + 5 = 8. Then multiply by",
    "So we get \\boxed{\\frac{1}{2",
    "So \\boxed{12}. Hmm, wait, let me recompute: 3 × 5 =",
    "I computed many things but gave no final value.",
    "We get \\boxed{}.",
    "```python\nprint(x)\n```\n```output\nNameError: name 'x' is not defined\n```",
    "",
    "   \n ",
]


@pytest.mark.parametrize(("text", "expected"), COMMITTED)
def test_extracts_the_committed_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", NO_ANSWER)
def test_no_commitment_gives_none_never_a_guess(text: str) -> None:
    assert extract_answer(text) is None


def test_extract_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        extract_answer(None)  # type: ignore[arg-type]


GRADED = [
    ("Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips altogether.\n#### 72", "72", True),
    ("Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips altogether.\n#### 72", "73", False),
    ("In total he pays 3 * 360 = 1080 dollars. The answer is $1,080.", "1080", True),
    ("She makes 9 * 2 = 18 dollars.\n#### 18.00", "18", True),
    (
        "We find $k = \\boxed{12}$. Wait, the problem asks for $2k$, so the answer is $\\boxed{24}$.",
        "24",
        True,
    ),
    (
        "We find $k = \\boxed{12}$. Wait, the problem asks for $2k$, so the answer is $\\boxed{24}$.",
        "12",
        False,
    ),
    ("So the area is $\\boxed{15\\text{ cm}^2}$.", "15", True),
    ("Thus the probability is \\boxed{\\dfrac{1}{2}}.", "0.5", True),
    (
        "Final Answer: The final answer is $(-\\infty, 2] \\cup [3, \\infty)$. I hope it is correct.",
        r"(-\infty, 2) \cup (3, \infty)",
        False,
    ),
    ("Therefore $\\boxed{\\text{(C)}}$ is correct.", r"\text{(C)}", True),
    ("The answer is approximately 3.14.", r"\pi", False),
    ("The sum telescopes to $\\boxed{\\frac{1}{2004!}}$.", r"\frac{1}{2006!}", False),
    ("The roots are $x = \\boxed{2}$ and $x = \\boxed{3}$.", "3, 2", True),
    ("The roots are $x = \\boxed{2}$ and $x = \\boxed{3}$.", "2", False),
    ("It could be 4, or possibly 5, I am not sure.", "4", False),
]


@pytest.mark.parametrize(("output", "gold", "correct"), GRADED)
def test_grade_full_outputs(output: str, gold: str, correct: bool) -> None:
    verdict = grade(output, gold)
    assert verdict.correct is correct, verdict
    assert verdict.reason


def test_grade_reports_missing_answer() -> None:
    verdict = grade("no idea", "5")
    assert verdict == verdict.__class__(False, None, "no committed answer found")
