"""Independent audit of the `symbolic` stage against hand-labelled GSM8K test problems.

Why: the stage's own check recomputes its own chain, so it cannot see an operand linked to the wrong quantity.
This audit never looks at the stage's chain. ``bench/data/symbolic_audit_set.txt`` names every number of each
question and gives the answer as an expression over those names, written from the question text. For each
variant the stage emits, the audit reads the variant's numbers from the variant's *question text* by position,
evaluates the hand-written expression and compares it with the variant's answer. It also checks that the words
did not change (articles aside), that numbers the story fixes ("_") kept their value, and the story conditions
of the label (part <= whole, ages, hours in a day), counted separately as implausible stories.

Before the audit trusts a label, the label's expression must reproduce GSM8K's gold answer on the original
numbers. ``--before REF`` runs the same audit on the stage as committed at REF (default: the last version 1).

Run: .venv/bin/python bench/symbolic_audit.py [--variants 10] [--before b15ec0a] [--show 5]
Needs ../shared/data/gsm8k/test.jsonl; exits cleanly without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from pipeline.funnel import Funnel
from pipeline.io.seeds import SeedSpec, load_seeds
from pipeline.paths import ROOT
from pipeline.stages import StageContext

TEST = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
LABELS = ROOT / "bench" / "data" / "symbolic_audit_set.txt"
BEFORE_REF = "b15ec0a"  # the last commit with symbolic VERSION 1
# the audit's own reading of numbers in text: deliberately not the stage's pattern
TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")


@dataclass
class Label:
    test_index: int
    names: list[str]
    answer: str
    conditions: list[str]
    failure_class: str

    @property
    def gold_error(self) -> bool:
        """GSM8K's gold contradicts the question: variants inherit the error, which is no linking error."""
        return self.failure_class.startswith("gold error")


def load_labels(path: Path = LABELS) -> list[Label]:
    labels = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        index, names, answer, conditions, failure_class = (part.strip() for part in line.split("|"))
        labels.append(
            Label(int(index), names.split(), answer, [c.strip() for c in conditions.split(";") if c.strip()],
                  failure_class)
        )
    return labels


def numbers_in(text: str) -> list[Fraction]:
    return [Fraction(tok.rstrip(",").replace(",", "")) for tok in TOKEN.findall(text)]


def skeleton(text: str) -> str:
    """The question's words with numbers masked and articles unified, which a variant must keep."""
    return re.sub(r"\b[Aa]n?\b", "a", TOKEN.sub("#", text))


def evaluate(expression: str, env: dict[str, Fraction]) -> Fraction:
    value = eval(expression, {"__builtins__": {}, "Fraction": Fraction}, env)  # noqa: S307 - our own labels
    return Fraction(value)


def bind(label: Label, values: list[Fraction]) -> dict[str, Fraction]:
    if len(values) != len(label.names):
        raise ValueError(f"{len(values)} numbers for {len(label.names)} names")
    return {name: v for name, v in zip(label.names, values) if name != "_"}


@dataclass
class Verdict:
    wrong_answer: bool
    implausible: list[str]
    detail: str


def judge(label: Label, original: str, variant_question: str, variant_answer: str) -> Verdict:
    """Compare a variant's answer with the label's own solution of the variant's question."""
    if skeleton(variant_question) != skeleton(original):
        return Verdict(True, [], "words changed")
    old, new = numbers_in(original), numbers_in(variant_question)
    fixed_changed = [n for n, a, b in zip(label.names, old, new) if n == "_" and a != b]
    if fixed_changed:
        return Verdict(True, [], "a number the story fixes changed")
    env = bind(label, new)
    try:
        expected = evaluate(label.answer, env)
    except ZeroDivisionError:
        return Verdict(True, [], "division by zero in the label's solution")
    got = Fraction(variant_answer.replace(",", ""))
    env["answer"] = expected
    broken = [c for c in label.conditions if not eval(c, {"__builtins__": {}, "Fraction": Fraction}, env)]  # noqa: S307
    if expected.denominator != 1 and all(v.denominator == 1 for v in numbers_in(original)):
        broken.append("non-integer answer")
    return Verdict(expected != got, broken, f"label says {expected}, stage says {got}")


def load_stage(ref: str | None):
    """The stage module now, or as committed at ``ref`` (loaded from ``git show``)."""
    if ref is None:
        import pipeline.stages.symbolic as module

        return module
    source = subprocess.run(
        ["git", "show", f"{ref}:pipeline/stages/symbolic.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"symbolic_{ref}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"symbolic_{ref}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def audit(stage, labels: list[Label], seeds_by_index: dict[int, dict], variants: int, show: int) -> dict:
    seeds = [seeds_by_index[lab.test_index] for lab in labels]
    funnel = Funnel()
    out = stage.run(seeds, stage.Params(variants_per_seed=variants), StageContext(stage="symbolic", funnel=funnel))
    label_of = {seeds_by_index[lab.test_index]["id"]: lab for lab in labels}
    wrong, implausible, inherited, per_problem = [], [], [], Counter()
    for rec in out:
        label = label_of[rec["parent_ids"][0]]
        verdict = judge(label, seeds_by_index[label.test_index]["question"], rec["question"], rec["answer"])
        per_problem[label.test_index] += 1
        if label.gold_error:
            inherited.append((label, rec, verdict))
        elif verdict.wrong_answer:
            wrong.append((label, rec, verdict))
        if verdict.implausible:
            implausible.append((label, rec, verdict))
    templated = int(funnel.get("symbolic", "templated"))
    audited = len(out) - len(inherited)
    print(f"  problems templated: {templated} / {len(labels)}; with variants: {len(per_problem)}; "
          f"variants: {len(out)}")
    print(f"  wrong answers (label's solution of the variant's question != variant's answer): {len(wrong)} / "
          f"{audited} = {len(wrong) / max(audited, 1):.1%} of variants, in "
          f"{len({lab.test_index for lab, _, _ in wrong})} problems")
    print(f"  implausible stories (label's story conditions broken): {len(implausible)} / {len(out)} = "
          f"{len(implausible) / max(len(out), 1):.1%}, in {len({lab.test_index for lab, _, _ in implausible})} "
          "problems")
    print(f"  variants of problems whose GSM8K gold is wrong (not counted above): {len(inherited)}, "
          f"{sum(v.wrong_answer for _, _, v in inherited)} of them inherit the wrong gold")
    for lab in labels:
        if lab.failure_class and not lab.gold_error:
            state = f"{per_problem[lab.test_index]} variants" if per_problem[lab.test_index] else "rejected"
            bad = sum(1 for w, _, _ in wrong if w.test_index == lab.test_index)
            odd = sum(1 for w, _, _ in implausible if w.test_index == lab.test_index)
            print(f"    test {lab.test_index} ({lab.failure_class}): {state}, {bad} wrong, {odd} implausible")
    for title, rows in (("wrong", wrong), ("implausible", implausible)):
        for lab, rec, verdict in rows[:show]:
            print(f"    {title} test {lab.test_index}: {verdict.detail} {verdict.implausible}\n"
                  f"      {rec['question'][:240]}")
    return {"variants": audited, "wrong": len(wrong), "implausible": len(implausible), "templated": templated}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", type=int, default=10, help="variants per problem")
    ap.add_argument("--before", default=BEFORE_REF, help="git ref of the stage to compare with ('' to skip)")
    ap.add_argument("--show", type=int, default=5, help="examples of each failure to print")
    args = ap.parse_args()
    if not TEST.exists():
        print(f"skipped: {TEST} not present (the audit needs GSM8K test)")
        return
    labels = load_labels()
    rows = [json.loads(line) for line in TEST.read_text().splitlines() if line.strip()]
    seeds = load_seeds(SeedSpec(format="gsm8k", path=str(TEST)))
    by_question = {s["question"]: s for s in seeds}
    seeds_by_index = {i: by_question[r["question"].strip()] if r["question"].strip() in by_question
                      else by_question[r["question"]] for i, r in enumerate(rows)}

    # a label is trusted only if it reproduces GSM8K's gold answer on the original numbers
    bad_labels = []
    for lab in labels:
        if lab.gold_error:
            continue
        gold = Fraction(rows[lab.test_index]["answer"].split("####")[-1].strip().replace(",", ""))
        try:
            mine = evaluate(lab.answer, bind(lab, numbers_in(rows[lab.test_index]["question"])))
        except Exception as exc:  # noqa: BLE001 - report any label error
            mine = f"error {exc}"
        if mine != gold:
            bad_labels.append((lab.test_index, mine, gold))
    classes = sorted({lab.failure_class for lab in labels if lab.failure_class and not lab.gold_error})
    gold_errors = sum(lab.gold_error for lab in labels)
    print(f"labelled set: {len(labels)} GSM8K test problems ({len(classes)} quoted failure labels); "
          f"labels reproducing GSM8K gold: {len(labels) - gold_errors - len(bad_labels)} / "
          f"{len(labels) - gold_errors} (+{gold_errors} whose gold contradicts the question)")
    for index, mine, gold in bad_labels:
        print(f"  label error test {index}: label gives {mine}, gold {gold}")
    if bad_labels:
        sys.exit(1)
    print(f"current stage (VERSION {load_stage(None).VERSION}), {args.variants} variants per problem:")
    audit(load_stage(None), labels, seeds_by_index, args.variants, args.show)
    if args.before:
        before = load_stage(args.before)
        print(f"stage at {args.before} (VERSION {before.VERSION}), {args.variants} variants per problem:")
        audit(before, labels, seeds_by_index, args.variants, args.show)


if __name__ == "__main__":
    main()
