"""FOBAR over GSM8K train: the share of problems it can invert, and an independent recomputation audit.

    .venv/bin/python bench/fobar_audit.py [--train /work/shared/data/gsm8k/train.jsonl] [--sample 15]

Runs the `fobar` stage with every usable number masked (MetaMath masks all of them) and then checks every row
WITHOUT the stage's own code path (no symbolic.evaluate, no sympy field):

1. unmask: the backward question with x replaced by the row's answer is the seed question again (up to thousands
   commas and the article the mask fixed), and the forward answer it states is the seed's `####` gold;
2. forward chain: the seed's own `<<a*b=c>>` annotations re-evaluated with Python's `fractions` + `ast` end in
   that gold (the question x = answer restores is the one whose chain gives the stated answer);
3. the worked solution: its equation line "f(x) = A", parsed by `ast` and evaluated in `fractions`, holds at x =
   answer and fails at x = answer + 1 (the answer depends on x; linear, so x is unique); every "lhs = rhs" step
   line is an identity at three random rational points, and every solving line holds at x = answer.

It prints the figures as markdown for bench/RESULTS.md and writes a random sample of rows (question and answer)
to bench/data/fobar_hand_sample_new.md for solving by hand (--write-sample).
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import sys
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.funnel import Funnel  # noqa: E402
from pipeline.quality import false_equations  # noqa: E402
from pipeline.records import make_record  # noqa: E402
from pipeline.stages import StageContext  # noqa: E402
from pipeline.stages.fobar import Params, run  # noqa: E402

OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
       ast.Div: lambda a, b: a / b}


def evaluate(text: str, x: Fraction | None = None) -> Fraction:
    """``text`` (numbers, x, + - * / **, parentheses) in exact rationals; our own evaluator, not the stage's."""
    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return ev(node.left) ** int(ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(str(node.value))
        if isinstance(node, ast.Name) and len(node.id) == 1 and x is not None:
            return x
        raise ValueError(f"unexpected {ast.dump(node)[:60]}")

    return ev(ast.parse(text.replace(",", "").replace("$", "").strip(), mode="eval"))


def plain(text: str) -> str:
    """Numbers by value ("$5.50", "$.5", "1,000" as 5.5, 0.5, 1000) and "an" as "a" (the mask fixes articles)."""
    number = r"\d[\d,]*\d(?:\.\d+)?|\d(?:\.\d+)?|\.\d+"  # "1,000", "1000,000"; not the comma of "$600, how"
    text = re.sub(number, lambda m: str(Fraction(m.group(0).replace(",", ""))), text)
    return re.sub(r"\b([Aa])n\b", r"\1", text)


def audit_row(row: dict, seed_question: str, seed_solution: str, rng: random.Random) -> str | None:
    """The first check the row fails, or None."""
    question, ask = row["question"].split("\n")
    value = Fraction(row["answer"])
    forward = re.fullmatch(r"If we know the answer to the above question is (\S+), what is the value of unknown "
                           r"variable ([a-z])\?", ask)
    gold = seed_solution.rsplit("####", 1)[1].strip().replace(",", "")
    if not forward or Fraction(forward.group(1)) != Fraction(gold):
        return "stated_forward_answer"
    var = forward.group(2)
    if plain(re.sub(rf"(?<![\w']){var}(?![\w'])", row["answer"], question)) != plain(seed_question):
        return "unmask"
    last = None
    for expr, result in re.findall(r"<<([^=<>]*)=([^<>]*)>>", seed_solution):
        got = evaluate(expr.replace("x", "*").replace("×", "*").replace("÷", "/"))
        if got != Fraction(result.replace("$", "").replace(",", "")):
            return "seed_chain"
        last = got
    if last != Fraction(gold):
        return "seed_chain_end"
    lines = row["solution"].split("\n")
    eq = next(i for i, line in enumerate(lines) if line.startswith("The answer to the question is")) + 1
    lhs, rhs = lines[eq].rsplit(" = ", 1)
    if evaluate(lhs, value) != evaluate(rhs) or evaluate(lhs, value + 1) == evaluate(rhs):
        return "equation"
    points = [Fraction(rng.randint(2, 97), rng.randint(1, 9)) for _ in range(3)]
    for line in lines[1 : eq - 1]:
        if " = " not in line:
            continue
        left, right = line.rsplit(" = ", 1)
        for point in points:
            try:
                if evaluate(left, point) != evaluate(right, point):
                    return "step_identity"
            except ZeroDivisionError:  # the point is a pole of this step (24 / x at x = 0): another point decides
                continue
    for line in lines[eq + 1 :]:
        if ": " in line and " = " in line:
            left, right = line.split(": ", 1)[1].rsplit(" = ", 1)
            if evaluate(left, value) != evaluate(right, value):
                return "solving_line"
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", default="/work/shared/data/gsm8k/train.jsonl")
    ap.add_argument("--sample", type=int, default=15)
    ap.add_argument("--write-sample", action="store_true",
                    help="write a fresh sample to bench/data/fobar_hand_sample_new.md (fobar_hand_sample.md holds the "
                    "one solved by hand, with verdicts)")
    args = ap.parse_args()
    seeds, problems = [], {}
    for i, line in enumerate(Path(args.train).read_text().splitlines()):
        r = json.loads(line)
        rec = make_record(question=r["question"], solution=r["answer"], answer=r["answer"].rsplit("####", 1)[1].strip(),
                          method="seed", source={"dataset": "gsm8k", "split": "train", "seed_id": f"train:{i}"})
        seeds.append(rec)
        problems[rec["id"]] = (r["question"], r["answer"])
    funnel = Funnel()
    started = time.process_time()
    rows = run(seeds, Params(questions_per_seed=50), StageContext(stage="fobar", seed=0, funnel=funnel))
    cpu = time.process_time() - started
    inverted = len({r["parent_ids"][0] for r in rows})
    rng = random.Random(0)
    failures = Counter()
    for row in rows:
        failure = audit_row(row, *problems[row["parent_ids"][0]], rng)
        if failure:
            failures[failure] += 1
    reasons = funnel.reasons("fobar")
    seed_reasons = {k: v for k, v in reasons.items() if k not in ("answer_independent_of_masked_number",
                                                                   "nonlinear_in_masked_number", "inverse_mismatch",
                                                                   "sympy_timeout", "sympy_error")}
    print(f"| GSM8K train problems | {len(seeds):,} |")
    print(f"| linked by symbolic's strict linking (templated) | {int(funnel.get('fobar', 'templated')):,} "
          f"({funnel.get('fobar', 'templated') / len(seeds):.1%}) |")
    print(f"| problems with at least one backward question (inverted) | {inverted:,} ({inverted / len(seeds):.1%}) |")
    print(f"| backward questions (every usable number masked) | {len(rows):,} |")
    print(f"| masks rejected: answer independent / non-linear / mismatch | "
          f"{reasons.get('answer_independent_of_masked_number', 0)} / {reasons.get('nonlinear_in_masked_number', 0)}"
          f" / {reasons.get('inverse_mismatch', 0)} |")
    print(f"| audit failures (independent recomputation) | {sum(failures.values())} {dict(failures)} |")
    print(f"| stage CPU (main process; sympy in the worker) | {cpu:.1f} s |")
    # the check evolve runs on a solver's FOBAR/SV solution (x known), here on these exact worked solutions: a flag
    # would be a false reject of a right solution
    flagged = sum(bool(false_equations(r["solution"], "x", r["answer"])) for r in rows)
    print(f"| worked solutions flagged by `pipeline.quality.false_equations` (false rejects) | {flagged} of {len(rows):,} |")
    mutated = caught = 0  # sensitivity: the same solutions with the stated answer A written as A + 1 in "= A"
    for r in rows:
        forward = problems[r["parent_ids"][0]][1].rsplit("####", 1)[1].strip().replace(",", "")
        wrong = re.sub(rf"= {re.escape(forward)}$", f"= {Fraction(forward) + 1}", r["solution"], flags=re.M)
        if wrong != r["solution"]:
            mutated += 1
            caught += bool(false_equations(wrong, "x", r["answer"]))
    print(f"| the same with A written as A + 1 after '=' (a wrong step), flagged | {caught} of {mutated:,} |")
    print("\nproblems not linked, by symbolic's reason:", dict(Counter(seed_reasons).most_common(8)))
    if not args.write_sample:
        return
    sample = random.Random(0).sample(rows, min(args.sample, len(rows)))
    out = ROOT / "bench" / "data" / "fobar_hand_sample_new.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# FOBAR rows for solving by hand (bench/fobar_audit.py, random.Random(0))\n\n" + "\n".join(
        f"## {i + 1}\n\n{r['question']}\n\nrow answer: **{r['answer']}**\n" for i, r in enumerate(sample)))
    print(f"\nhand-check sample: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
