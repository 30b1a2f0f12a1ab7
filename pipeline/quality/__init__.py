"""Quality gates every generating stage runs on its candidates (issue 13).

A real model produced rows that passed every check and were still unusable: a "question" carrying its own
worked solution, a rewrite that states its answer or drops "three years younger", a solution boxing two
answers, a box the working contradicts. These gates name such defects. They are pure and fast (no model, no
sympy): a stage calls them on every candidate and records the first reason as the rejection.

- `question_problems(question, source=, answer=, keeps_quantities=)` -> reasons (`QUESTION_REASONS`)
- `solution_problems(solution, question=, prompt=, final_answer=, answer_shown=)` -> reasons (`SOLUTION_REASONS`);
  pass the rendered prompt of a reflection as `prompt=`, so a copy of the wrong solution it was shown is an echo;
  `answer_shown=True` when the prompt gave the answer (its working must reach it: `answer_not_derived`)
- `votes(answers, target, asked)` -> (asked, received, agreeing); `agreement(answers, asked, min_agree)`;
  `sample_answers(texts, asked)`: each sample's final answer, padded with None to the samples asked;
  `guessable(answer)`: a yes/no or true/false answer, on which agreement is no evidence
- `false_equations(solution, var, value)`: the equations that mention `var` and are false at its known value
  (backward questions: x is the masked number)
- `numbers_in(text)`: the numbers a rewrite must keep, digits and words ("three" -> "3")
"""

from __future__ import annotations

from .equations import false_equations
from .numbers import Quantity, number_value, numbers_in, quantities, values_in
from .questions import QUESTION_REASONS, question_problems
from .solutions import SOLUTION_REASONS, same_answer, solution_problems
from .votes import agreement, guessable, sample_answers, votes

__all__ = [
    "QUESTION_REASONS",
    "SOLUTION_REASONS",
    "Quantity",
    "agreement",
    "false_equations",
    "guessable",
    "number_value",
    "numbers_in",
    "quantities",
    "question_problems",
    "same_answer",
    "sample_answers",
    "solution_problems",
    "values_in",
    "votes",
]
