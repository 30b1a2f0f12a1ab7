"""Entity swaps: consistent, same-gender substitution; numbers and answers untouched."""

from __future__ import annotations

import re

from pipeline.funnel import Funnel
from pipeline.paths import DATA_DIR
from pipeline.records import make_record
from pipeline.stages import StageContext
from pipeline.stages.entity_swap import Params, load_lists, run


def _seed(question: str, solution: str, answer: str) -> dict:
    return make_record(question=question, solution=solution, answer=answer, method="seed",
                       verification={"status": "gold", "method": "gold"})


def test_consistent_same_gender_swap():
    seed = _seed(
        "Mary has 3 apples and John has 4. Mary gives John 1 apple. How many apples does Mary have?",
        "Mary had 3 and gave John 1, so Mary has 3-1=<<3-1=2>>2.\n#### 2",
        "2",
    )
    funnel = Funnel()
    out = run([seed], Params(variants_per_seed=3), StageContext(stage="entity_swap", funnel=funnel))
    assert len(out) == 3
    lists = load_lists(Params(), DATA_DIR)
    for rec in out:
        mapping = __import__("json").loads(rec["method_params"])["mapping"]
        assert set(mapping) == {"Mary", "John"}
        assert mapping["Mary"] in lists["female"] and mapping["John"] in lists["male"]
        assert "Mary" not in rec["question"] and "John" not in rec["solution"]
        assert rec["question"].count(mapping["Mary"]) == 3 and rec["solution"].count(mapping["Mary"]) == 2
        assert re.findall(r"\d+", rec["question"]) == re.findall(r"\d+", seed["question"])
        assert rec["answer"] == "2" and rec["verification"]["method"] == "inherited"
    assert len({r["question"] for r in out}) == 3


def test_no_known_entities_is_counted():
    funnel = Funnel()
    out = run([_seed("A box has 3 pens. How many?", "#### 3", "3")], Params(), StageContext(stage="e", funnel=funnel))
    assert out == [] and funnel.reasons("e") == {"no_entities": 1}


def test_cities_optional():
    seed = _seed("Ravi drove from Paris to Rome, 1400 km. How far?", "#### 1400", "1400")
    out = run([seed], Params(entities=["names", "cities"]), StageContext(stage="e"))
    assert "Paris" not in out[0]["question"] and "Rome" not in out[0]["question"]
    assert "1400" in out[0]["question"]
