"""cot_length: DAP tiers and C3oT compression with a scripted teacher (real HTTP), token counts from a real
tokenizer, length-aware selection in the build, and the shipped recipe on the tiny model's engine."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.build import run_build
from pipeline.funnel import Funnel
from pipeline.llm import ModelConfig, ModelPool
from pipeline.paths import RECIPES_DIR
from pipeline.recipe import parse_recipe
from pipeline.records import make_record
from pipeline.stages import StageContext
from pipeline.stages.cot_length import Params, TokenizerMissing, run, tier_of

LONG = ("First, we note that Ann starts with 3 apples. Then, she buys 4 more apples at the market. To find the "
        "total, we add the apples she had to the apples she bought: 3 + 4 = 7. Therefore Ann has 7 apples. "
        "\\boxed{7}")
PROBLEMS = {
    "EASY: Ann has 3 apples and buys 4 more. How many apples?": ("7", LONG),
    "HARD: Bob has 10 pens and gives away 4. How many are left?": ("6", "10 - 4 = 6 pens are left. \\boxed{6}"),
    "PASTE: Cy packs 12 eggs into boxes of 6. How many boxes?": ("2", "12 / 6 = 2 boxes. \\boxed{2}"),
    "WRONG: Di reads 5 pages a day for 3 days. How many pages?": ("15", "5 * 3 = 15 pages. \\boxed{15}"),
}


def teacher(body: dict[str, Any], i: int) -> str:
    user = body["messages"][-1]["content"]
    question = user.split("Problem:\n", 1)[1].split("\n", 1)[0]
    kind = question.split(":", 1)[0]
    gold = PROBLEMS[question][0]
    if "Rewrite the solution above as briefly" in user:  # compress
        return f"3 + 4 = 7 apples. \\boxed{{{gold}}}" if kind == "EASY" else f"So it is {gold}. \\boxed{{{gold}}}"
    if kind == "PASTE":  # reasons to one value, boxes the answer it was shown
        return "Complexity: simple\nAnalysis: 12 eggs in boxes of 6.\nSolution: 12 * 6 = 72. \\boxed{2}"
    if kind == "WRONG":
        return "Complexity: simple\nAnalysis: pages per day times days.\nSolution: 5 + 3 = 8 pages. \\boxed{8}"
    tier = "moderate" if kind == "HARD" else "simple"
    return (f"Complexity: {tier}\nAnalysis: we combine the two quantities.\nApproach: one operation.\n"
            f"Summary: one step.\nSolution: the result of the one operation is {gold}. \\boxed{{{gold}}}")


def seeds() -> list[dict[str, Any]]:
    return [make_record(question=q, solution=s, answer=a, method="seed", difficulty=None,
                        source={"dataset": "t", "split": "train", "seed_id": f"t:{i}"},
                        verification={"status": "gold", "method": "gold"})
            for i, (q, (a, s)) in enumerate(PROBLEMS.items())]


def scripted(server: Any, responder: Any) -> Any:
    server.responder = responder
    return server


def run_stage(server: Any, tokenizer: Path, **params: Any):
    funnel = Funnel()
    rejected: list[tuple[str, dict[str, Any]]] = []
    cfg = ModelConfig(backend="openai", model=server.model, base_url=server.base_url)
    with ModelPool({"teacher": cfg}) as pool:
        ctx = StageContext(stage="cot_length", funnel=funnel, model=lambda n: pool.client(n, "cot_length", funnel),
                           roles={"teacher": "teacher", "solver": "teacher"},
                           on_reject=lambda c, reason, d: rejected.append((reason, c)))
        rows = run(seeds(), Params(tokenizer=str(tokenizer), **params), ctx)
    return rows, funnel, rejected


def test_dap_tiers_and_rejections(scripted_server: Any, tiny_model_dir: Path) -> None:
    server = scripted(scripted_server, teacher)
    rows, funnel, rejected = run_stage(server, tiny_model_dir)
    by = {r["question"].split(":")[0]: r for r in rows}
    assert set(by) == {"EASY", "HARD"}
    assert by["EASY"]["difficulty"] == "simple" and by["HARD"]["difficulty"] == "moderate"
    assert by["EASY"]["parent_ids"] == [seeds()[0]["id"]]  # names the solution it was made from
    meta = json.loads(by["EASY"]["method_params"])
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))  # counted by the model's own tokenizer
    assert meta["tokens_before"] == len(tok.encode(LONG, add_special_tokens=False).ids)
    assert meta["tokens_after"] == len(tok.encode(by["EASY"]["solution"], add_special_tokens=False).ids) > 0
    assert meta["tier"] == "simple"
    assert by["EASY"]["verification"]["method"] == "gold_shown+gates"
    reasons = {c["question"].split(":")[0]: reason for reason, c in rejected}
    assert reasons == {"PASTE": "answer_contradicts_work", "WRONG": "wrong_answer"}
    assert "Reference" not in server.received[0]["messages"][0]["content"]
    assert "A correct but long solution" in server.received[0]["messages"][-1]["content"]
    assert funnel.get("cot_length", "generated") == 2


def test_compress_with_condition_tags(scripted_server: Any, tiny_model_dir: Path) -> None:
    rows, _, _ = run_stage(scripted(scripted_server, teacher), tiny_model_dir, mode="compress", condition_tags=True)
    easy = next(r for r in rows if r["question"].startswith("EASY"))
    meta = json.loads(easy["method_params"])
    assert meta["condition"] == "short" and meta["tokens_after"] < meta["tokens_before"] / 3
    assert easy["messages"][0] == {"role": "system", "content": "condition: short"}


def test_confirmation_by_a_solver_that_is_not_shown_the_answer(scripted_server: Any, tiny_model_dir: Path) -> None:
    def solver(body: dict[str, Any], i: int) -> str:
        user = body["messages"][-1]["content"]
        if "Solve the following problem" in user:
            return "Working it out, the total is 7. \\boxed{7}"  # right for EASY only
        return teacher(body, i)

    server = scripted(scripted_server, solver)
    rows, _, rejected = run_stage(server, tiny_model_dir, confirm_samples=3, min_agree=2)
    assert [r["question"].split(":")[0] for r in rows] == ["EASY"]
    assert rows[0]["verification"]["method"] == "gold_shown+gates+solver"
    assert ("unconfirmed", "HARD") in {(r, c["question"].split(":")[0]) for r, c in rejected}
    solves = [b for b in server.received if "Solve the following problem" in b["messages"][-1]["content"]]
    assert solves and all("6" not in b["messages"][-1]["content"].split("How many")[1] for b in solves)


def test_a_missing_tokenizer_is_a_clear_error(scripted_server: Any, tmp_path: Path) -> None:
    with pytest.raises(TokenizerMissing, match="tokenizer.json"):
        run_stage(scripted(scripted_server, teacher), tmp_path / "no-model")


def test_without_a_tokenizer_file_the_servers_tokenize_endpoint_counts(tiny_server: Any, tiny_model_dir: Path) -> None:
    """An OpenAI-compatible server (vLLM's, here) with no local tokenizer: lengths come from its /tokenize."""
    from tokenizers import Tokenizer

    from pipeline.stages.cot_length import token_counter

    cfg = ModelConfig(backend="openai", model=tiny_server.served_name, base_url=tiny_server.base_url)
    with ModelPool({"teacher": cfg}) as pool:
        count = token_counter(Params(), pool.client("teacher", "cot_length", Funnel()))
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    for text in (LONG, "Complexity: simple\nSolution: 3 + 4 = 7. \\boxed{7}"):
        assert count(text) == len(tok.encode(text, add_special_tokens=False).ids) > 5


def test_tier_parsing() -> None:
    assert tier_of("Complexity: Highly Complex\n...") == "highly complex"
    assert tier_of("**Complexity:** moderate") == "moderate"
    assert tier_of("Let me think.") is None


def test_length_aware_selection_in_the_build(tmp_path: Path) -> None:
    """Three verified solutions of one question: `shorter` keeps the shortest, `near_target` the one nearest
    the tier's target; the others are dropped naming the kept one."""
    words = {n: " ".join(["step"] * n) + " so \\boxed{7}" for n in (10, 150, 400)}
    rows = [{"question": "Q: Ann has 3 apples and buys 4 more. How many?", "solution": s, "answer": "7",
             "difficulty": "moderate"} for s in words.values()]
    seeds_file = tmp_path / "s.jsonl"
    seeds_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for rule, kept_words in (("shorter", 10), ("near_target", 150)):
        recipe = parse_recipe(yaml.safe_dump({
            "name": "sel", "seeds": [{"format": "jsonl", "path": str(seeds_file),
                                      "fields": {"question": "question", "answer": "answer", "solution": "solution",
                                                 "difficulty": "difficulty"}}],
            "dedup": {"max_solutions_per_question": 1, "prefer": [rule]}, "decontaminate": {"enabled": False},
        }))
        out = tmp_path / rule
        run_build(recipe, out)
        (kept,) = pq.read_table(out / "data").to_pylist()
        assert kept["solution"] == words[kept_words]
        dropped = pq.read_table(out / "dropped").to_pylist()
        assert len(dropped) == 2 and {d["duplicate_of"] for d in dropped} == {kept["id"]}


@pytest.mark.slow
def test_recipe_end_to_end_on_the_vllm_engine(tiny_vllm_models: dict, tiny_model_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {"MATHAUG_BACKEND": "vllm", "MATHAUG_MODEL": str(tiny_model_dir),
                       "MATHAUG_MAX_MODEL_LEN": "2048", "MATHAUG_ENFORCE_EAGER": "true",
                       "MATHAUG_MAX_TOKENS": "48"}.items():
        monkeypatch.setenv(key, value)
    recipe = parse_recipe((RECIPES_DIR / "cot_length.yaml").read_text(), "cot_length.yaml", RECIPES_DIR)
    out = tmp_path / "out"
    result = run_build(recipe, out, limit=4)
    f = result.funnel
    assert f.get("cot_length", "in") == 4 and f.get("cot_length", "generated") == 0  # garbage keeps nothing
    assert sum(f.reasons("cot_length").values()) == 4 and f.get("cot_length", "tokens_out") > 0
    rows = pq.read_table(out / "data").to_pylist()
    assert {r["method"] for r in rows} == {"seed"}  # the seeds' own solutions stand
    dropped = pq.read_table(out / "dropped").to_pylist()
    assert {d["dropped_by"] for d in dropped} >= {"stage:cot_length"}
    assert all(re.search(r"tokens", d["drop_detail"] or "") or d["drop_detail"] for d in dropped)
    again = run_build(recipe, out, limit=4, fresh=True)
    assert again.funnel.get("cot_length", "requests") == 0
