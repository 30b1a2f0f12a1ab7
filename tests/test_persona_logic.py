"""Persona stage logic with a scripted teacher (OpenAI protocol on loopback): which rewrites are kept, the
reflection pass, PersonaHub mode, determinism, and that editing one template re-sends only its requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.funnel import Funnel
from pipeline.llm import ModelConfig, ModelPool, cache_stats
from pipeline.records import make_record
from pipeline.stages import StageContext, get_stage
from pipeline.stages.persona import Params, clean_problem, load_personas, numbers_in, run
from pipeline.verify import answers_match, extract_answer
from tests.fixtures.scripted_openai import ScriptedOpenAIServer

SEEDS = {
    "Ann has 3 apples and buys 4 more. How many apples does she have?": "7",
    "HARD: Bob has 10 pens and gives away 4. How many pens are left?": "6",
    "NOANS: Cy packs 12 eggs into boxes of 6. How many boxes?": "2",
    "SPLIT: Di reads 5 pages a day for 3 days. How many pages?": "15",
    "DROP: Ed walks 2 km a day for 7 days. How far does he walk?": "14",
}


# what the scripted teacher writes for each seed: the same quantities told another way (a verbatim copy of the
# seed with a persona in front is a near-copy, which the question gates reject)
REWRITES = {
    "Ann has 3 apples and buys 4 more. How many apples does she have?":
        "During a shift, Ann gets 3 apples from a colleague and then purchases 4 additional apples at the canteen. "
        "What is her apple count now?",
    "HARD: Bob has 10 pens and gives away 4. How many pens are left?":
        "HARD: Bob starts the working day with 10 pens and hands 4 of them to coworkers. How many pens does he still "
        "have?",
    "NOANS: Cy packs 12 eggs into boxes of 6. How many boxes?":
        "NOANS: At the farm shop, Cy arranges 12 eggs in cartons that hold 6 each. How many cartons does he fill?",
    "SPLIT: Di reads 5 pages a day for 3 days. How many pages?":
        "SPLIT: Di studies 5 pages of the manual daily over 3 days before her exam. What total number of pages is "
        "that?",
}


def seed_of(text: str) -> str:
    """The seed a rewrite or a seed text comes from (its tag, or its apples)."""
    for seed in SEEDS:
        tag = seed.split(":", 1)[0] if ":" in seed else "apple"
        if tag in text:
            return seed
    raise KeyError(text)


def teacher(body: dict[str, Any], i: int) -> str:
    """Deterministic stand-in for a teacher model, keyed on the shipped templates' wording. Its solutions reason
    in words before their box, as real ones do (the solution gates reject a bare box)."""
    user = body["messages"][-1]["content"]
    if user.startswith("Persona:"):
        persona = user.split("\n", 1)[0].removeprefix("Persona: ")
        question = user.split("Original problem:\n", 1)[1].split("\n\nRewrite the problem", 1)[0]
        if question.startswith("DROP"):
            return f"Rewritten problem: For {persona}: Ed walks some distance every day. How far does he walk?"
        return f"Rewritten problem: For {persona}: {REWRITES[question]}"
    if user.startswith("Create a math problem"):
        persona = user.split("\n\n", 2)[1]
        if "gambler" in persona:
            return "Math problem: SPLIT: a gambler rolls 2 dice 3 times. What is the total?"
        return f"Math problem: {persona} stacks 12 boxes of 3 items. How many items?"
    if user.startswith("Problem:"):  # reflection: told the answer is wrong, never what it should be
        question = user.split("Problem:\n", 1)[1].split("\n\nA solution", 1)[0]
        gold = SEEDS[seed_of(question)]
        return f"Looking again at each step, the earlier total was wrong; recomputing gives {gold}. \\boxed{{{gold}}}"
    question = user.split("\n\n", 1)[1]
    base = seed_of(question) if question.startswith("For ") else question
    if "SPLIT" in base:
        return f"Estimating the pages instead of counting them exactly gives {100 + i}. \\boxed{{{100 + i}}}"
    if "NOANS" in base:
        return "I am not sure how to finish this."
    if "12 boxes of 3" in base:
        return "There are 12 boxes with 3 items in each, so 12 * 3 = 36 items in total. \\boxed{36}"
    gold = SEEDS[base]
    if base.startswith("HARD"):
        return f"Counting what is left after the gift, the total comes to {int(gold) + 1}. \\boxed{{{int(gold) + 1}}}"
    return f"Combining the quantities of the problem step by step, the total is {gold}. \\boxed{{{gold}}}"


def seeds(with_gold: bool = True) -> list[dict[str, Any]]:
    rows = [
        make_record(
            question=q,
            solution=None,
            answer=a if with_gold else None,
            method="seed",
            source={"dataset": "test", "split": "train", "seed_id": f"seeds:{i}"},
            verification={"status": "gold", "method": "gold"},
        )
        for i, (q, a) in enumerate(SEEDS.items())
    ]
    return rows


@pytest.fixture
def teacher_server() -> Any:
    with ScriptedOpenAIServer(responder=teacher) as server:
        yield server


def _run(server: ScriptedOpenAIServer, records: list[dict[str, Any]], cache: Path | None, **params: Any):
    funnel = Funnel()
    cfg = ModelConfig(backend="openai", model=server.model, base_url=server.base_url, retry_backoff_s=0.05)
    with ModelPool({"teacher": cfg}, cache) as pool:
        ctx = StageContext(
            stage="persona", seed=0, funnel=funnel, model=lambda n: pool.client(n, "persona", funnel)
        )
        rows = run(records, Params(**params), ctx)
    return rows, funnel


def test_registry_and_params() -> None:
    assert get_stage("persona").NAME == "persona"
    with pytest.raises(ValueError, match="min_agree"):
        Params(samples=4, min_agree=5)
    with pytest.raises(ValueError, match="min_agree"):
        Params(min_agree=1.5)
    with pytest.raises(ValueError, match="extra"):
        Params(sample=4)  # type: ignore[call-arg]
    dumped = Params().model_dump()
    assert set(dumped["template_hashes"]) == {"rewrite", "solve", "reflect", "synthesize"}
    assert Params(**dumped) == Params()  # a dumped Params validates again


def test_persona_banks(tmp_path: Path) -> None:
    from pipeline.paths import DATA_DIR

    occ = load_personas(["occupations"], DATA_DIR)
    groups = {json.loads(line)["isco_group"] for line in (DATA_DIR / "personas/occupations.jsonl").open()}
    assert len(occ) == 110 and groups == {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "X"}
    hub = load_personas(["personahub"], DATA_DIR)
    assert len(hub) == 1000 and (DATA_DIR / "personas/LICENSE.personahub").is_file()
    own = tmp_path / "mine.txt"
    own.write_text("a baker\n\na baker\na pilot\n")
    assert load_personas([str(own)], DATA_DIR) == ["a baker", "a pilot"]
    with pytest.raises(FileNotFoundError, match="occupations"):
        load_personas(["nope.jsonl"], DATA_DIR)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_personas([str(bad)], DATA_DIR)


def test_helpers() -> None:
    assert numbers_in("Pay $1,200 for 3.5 kg and 12 more") == {"1200", "3.5", "12"}
    assert clean_problem("**Rewritten problem:** A nurse has 3 vials.") == "A nurse has 3 vials."
    assert clean_problem("Math problem: Find x.") == "Find x."


def test_rewrite_mode_keeps_verified_and_reflects(
    teacher_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    records = seeds()
    records.append(make_record(question="No gold here: 1 + 1?", solution=None, answer=None, method="seed"))
    rows, funnel = _run(teacher_server, records, tmp_path / "c.sqlite", personas_per_seed=2, samples=4)

    by_seed: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_seed.setdefault(row["parent_ids"][0], []).append(row)
    ids = {r["question"].split(":")[0]: r["id"] for r in records}
    easy, hard, split = (
        by_seed[ids["Ann has 3 apples and buys 4 more. How many apples does she have?"]],
        by_seed[ids["HARD"]],
        by_seed[ids["SPLIT"]],
    )
    assert len(rows) == 6 and len(easy) == len(hard) == len(split) == 2
    for row in rows:
        assert row["method"] == "persona" and row["persona"] and row["question"].startswith("For ")
        assert row["answer"] == SEEDS[seed_of(row["question"])]  # the seed's gold answer
        assert answers_match(extract_answer(row["solution"]), row["answer"])  # passes the build's verify gate
        gen = row["generator"]
        assert gen["model"] == "scripted" and gen["tokens_in"] > 0 and gen["tokens_out"] > 0
        assert json.loads(gen["sampling"])["solve"]["n"] == 4 and len(gen["template_hash"]) == 64
        assert json.loads(row["method_params"])["template_hashes"]["solve"]
    assert {r["verification"]["method"] for r in easy} == {"majority"}
    assert all(r["verification"]["votes"] == 4 and r["verification"]["samples"] == 4 for r in easy)
    assert easy[0]["generator"]["template"] == "persona/rewrite.v1+persona/solve.v1"
    for row in hard + split:
        ver = row["verification"]
        # reflection never saw the gold: reaching it is an independent check, and says so
        assert ver["method"] == "reflection_blind" and ver["status"] == "verified" and ver["votes"] == 2
        assert row["generator"]["template"].endswith("+persona/reflect.v2")
    assert "agreed answer '7' matches gold '7' (4/4 asked agree; 4 received, 4 answered)" == easy[0]["verification"]["detail"]
    assert "!= gold '6'" in hard[0]["verification"]["detail"]

    assert funnel.reasons("persona") == {"no_gold": 1, "no_majority": 2, "rewrite_lost_quantities": 2}
    assert funnel.get("persona", "in") == 6 and funnel.get("persona", "generated") == 6
    assert funnel.get("persona", "malformed:rewrite_lost_quantities") == 4  # first ask + one re-ask each
    assert funnel.get("persona", "malformed:solve_no_answer") == 16
    # 10 rewrites + 2 re-asks; 8 solves + 2 re-asks (NOANS); 4 reflections (HARD, SPLIT)
    assert funnel.get("persona", "requests") == 12 + 10 + 4 == len(teacher_server.received)


def test_same_draws_and_zero_requests_on_rerun(teacher_server: ScriptedOpenAIServer, tmp_path: Path) -> None:
    first, _ = _run(teacher_server, seeds(), tmp_path / "c.sqlite", personas_per_seed=3, samples=3)
    sent = len(teacher_server.received)
    second, funnel = _run(teacher_server, seeds(), tmp_path / "c.sqlite", personas_per_seed=3, samples=3)
    assert len(teacher_server.received) == sent and funnel.get("persona", "requests") == 0
    assert funnel.get("persona", "cache_hits") > 0
    assert [r["id"] for r in first] == [r["id"] for r in second]
    assert [r["persona"] for r in first] == [r["persona"] for r in second]
    # a fresh cache asks the same requests (seeds from ctx.rng) and gets the same rows
    third, _ = _run(teacher_server, seeds(), tmp_path / "other.sqlite", personas_per_seed=3, samples=3)
    assert [r["id"] for r in third] == [r["id"] for r in first]


def test_editing_one_template_resends_only_its_requests(
    teacher_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    from pipeline.paths import PROMPTS_DIR

    cache = tmp_path / "c.sqlite"
    _run(teacher_server, seeds(), cache, samples=2, reflection=False)
    solve = tmp_path / "solve.v2.yaml"
    text = (PROMPTS_DIR / "persona/solve.v1.yaml").read_text()
    solve.write_text(text.replace("careful mathematics teacher", "patient mathematics teacher"))
    before = len(teacher_server.received)
    rows, funnel = _run(
        teacher_server, seeds(), cache, samples=2, reflection=False, templates={"solve": str(solve)}
    )
    bodies = teacher_server.received[before:]
    assert bodies and all("patient mathematics teacher" in b["messages"][0]["content"] for b in bodies)
    assert funnel.get("persona", "cache_hits") == 12  # the 10 rewrites and their 2 re-asks
    assert rows and all(r["generator"]["template"] == "persona/rewrite.v1+solve.v2" for r in rows)
    stats = cache_stats(cache)["stages"]["persona"]
    assert stats["hits"] == 12 and stats["miss_reasons"] == {"template": stats["misses"]}


def test_keep_failed_rows(teacher_server: ScriptedOpenAIServer, tmp_path: Path) -> None:
    rows, funnel = _run(teacher_server, seeds(), None, samples=2, reflection=False, keep_failed=True)
    failed = [r for r in rows if r["verification"]["status"] == "failed"]
    # HARD (wrong answer), SPLIT and NOANS (no majority) are kept as failed rows; DROP never had a rewrite
    assert len(rows) == 8 and len(failed) == 6
    assert {r["verification"]["method"] for r in failed} == {"majority"}
    assert funnel.reasons("persona") == {"rewrite_lost_quantities": 2}


def test_persona_hub_mode(teacher_server: ScriptedOpenAIServer, tmp_path: Path) -> None:
    bank = tmp_path / "people.jsonl"
    bank.write_text('{"persona": "a gambler"}\n{"persona": "a warehouse clerk"}\n')
    rows, funnel = _run(
        teacher_server,
        seeds()[:2],
        None,
        mode="persona_hub",
        personas=[str(bank)],
        personas_per_seed=2,
        samples=4,
        min_agree=3,
    )
    assert len(rows) == 2 and funnel.reasons("persona") == {"no_agreement": 2}
    for row in rows:
        assert row["persona"] == "a warehouse clerk" and row["parent_ids"] == []
        assert row["question"] == "a warehouse clerk stacks 12 boxes of 3 items. How many items?"
        assert row["answer"] == "36" and row["source"]["dataset"] == "persona_hub"
        ver = row["verification"]
        assert ver == {
            "status": "verified",
            "method": "majority",
            "votes": 4,
            "samples": 4,
            "detail": "pseudo-gold '36' (min_agree=3; no gold) (4/4 asked agree; 4 received, 4 answered)",
        }
        assert row["generator"]["template"] == "persona/synthesize.v1+persona/solve.v1"


def test_a_rewrite_must_show_its_persona() -> None:
    """Real case (Qwen2.5-Coder-0.5B): the "rewrite" paraphrased the seed and never mentioned the persona."""
    from pipeline.stages.persona import persona_visible

    seed = ("John orders food for a massive restaurant.  He orders 1000 pounds of beef for $8 per pound.  He also "
            "orders twice that much chicken at $3 per pound.  How much did everything cost?")
    paraphrase = ("John orders food for a massive restaurant. He orders 1000 pounds of beef for $8 per pound, and also "
                  "orders twice as much chicken at $3 per pound. How much did everything cost?")
    persona = "A beekeeper who manages hives and sells honey at farmers' markets"
    assert not persona_visible(paraphrase, persona, seed)
    assert persona_visible("The beekeeper John orders food for the honey market's restaurant: 1000 pounds of beef ...",
                           persona, seed)
    # a persona word the seed already has does not count as showing the persona
    assert not persona_visible(seed, "a restaurant owner", seed)
