"""The stage core: model roles, samples asked = samples got, multi-turn continuation on the real engine, rounds
that resume after a kill, solution-level dedup, dispositions, plugins by entry point, and an honest card."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import stages as stage_registry
from pipeline.batches import batch_key
from pipeline.build import run_build
from pipeline.llm import ChatRequest, ModelConfig, ModelPool
from pipeline.recipe import RecipeError, parse_recipe
from tests.fixtures.scripted_openai import ScriptedOpenAIServer

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SRC = REPO / "tests" / "fixtures" / "core_plugin" / "mathaug_core_test_stages.py"
ENTRY_POINTS = {
    "two_roles": "TwoRoles",
    "add_solution": "AddSolution",
    "shorten": "Shorten",
    "grow": "Grow",
    "scratch": "Scratch",
}


def install_plugin(site: Path) -> Path:
    """A real installed distribution (dist-info with entry_points.txt) on a path of its own."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(PLUGIN_SRC, site / PLUGIN_SRC.name)
    info = site / "mathaug_core_test_stages-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mathaug-core-test-stages\nVersion: 0.1\n")
    lines = [f"{name} = mathaug_core_test_stages:{obj}" for name, obj in ENTRY_POINTS.items()]
    (info / "entry_points.txt").write_text("[mathaug.stages]\n" + "\n".join(lines) + "\n")
    return site


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = install_plugin(tmp_path_factory.mktemp("plugin_site"))
    sys.path.insert(0, str(site))
    stage_registry._plugins.cache_clear()
    stage_registry.get_stage.cache_clear()
    yield site
    sys.path.remove(str(site))
    sys.modules.pop("mathaug_core_test_stages", None)
    stage_registry._plugins.cache_clear()
    stage_registry.get_stage.cache_clear()


SEEDS_JSONL = [
    {"question": "Ann has 3 apples and buys 4 more. How many apples?", "answer": "7",
     "solution": "3 + 4 = <<3+4=7>>7 apples. \\boxed{7}"},
    {"question": "Bob has 10 pens and gives away 4. How many are left?", "answer": "6",
     "solution": "10 - 4 = <<10-4=6>>6 pens. \\boxed{6}"},
]  # fmt: skip


def write_seeds(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in SEEDS_JSONL))
    return path


def recipe_text(seeds: Path, stages: list[Any], extra: dict[str, Any] | None = None,
                models: dict[str, Any] | None = None) -> str:
    recipe = {
        "name": "core",
        "seeds": [{"format": "jsonl", "path": str(seeds),
                   "fields": {"question": "question", "answer": "answer", "solution": "solution"}}],
        "models": models or {},
        "stages": stages,
        "batch_size": 1,
        "decontaminate": {"enabled": False},
        **(extra or {}),
    }
    return yaml.safe_dump(recipe, sort_keys=False)


def rows_of(out: Path) -> list[dict[str, Any]]:
    return pq.read_table(out / "data").to_pylist()


# -- roles ------------------------------------------------------------------------------------------------------


def solver(body: dict[str, Any], i: int) -> str:
    """Solves the two seed questions (the build's verify gate re-checks every kept solution)."""
    return "3 + 4 = 7, so \\boxed{7}" if "apples" in body["messages"][-1]["content"] else "10 - 4 = 6: \\boxed{6}"


def test_teacher_and_student_roles_reach_key_and_provenance(plugin: Path, tmp_path: Path) -> None:
    with (
        ScriptedOpenAIServer(solver, model="big") as teacher,
        ScriptedOpenAIServer(solver, model="small") as student,
    ):
        models = {
            "big": {"backend": "openai", "base_url": teacher.base_url, "model": "big"},
            "small": {"backend": "openai", "base_url": student.base_url, "model": "small"},
        }
        stages = [{"method": "two_roles", "models": {"teacher": "big", "student": "small"}}]
        no_near = {"dedup": {"near": {"enabled": False}}}  # "(taught)" rows are near-copies of their seeds
        recipe = parse_recipe(recipe_text(write_seeds(tmp_path / "s.jsonl"), stages, no_near, models=models))
        result = run_build(recipe, tmp_path / "out")
        taught = [r for r in rows_of(tmp_path / "out") if r["method"] == "two_roles"]
        assert len(taught) == 2 and len(teacher.received) == 2 and len(student.received) == 2
        roles = json.loads(taught[0]["generator"]["roles"])
        assert roles["teacher"]["model"] == "big" and roles["student"]["model"] == "small"
        assert taught[0]["generator"]["model"] == "big"  # the stage's first role is its main model
        assert result.funnel.get("two_roles", "requests") == 4

        # swapping the student is a different batch: it is recomputed, never silently reused
        stage = recipe.stages[0]
        ids = ["a", "b"]
        roles_map = stage.role_models(recipe.models)
        other = {**recipe.models, "small": recipe.models["small"].model_copy(update={"model": "other"})}
        assert batch_key(stage, 0, ids, recipe.models, roles_map) != batch_key(stage, 0, ids, other, roles_map)
        # a throughput knob is not
        faster = {**recipe.models, "small": recipe.models["small"].model_copy(update={"max_concurrency": 3})}
        assert batch_key(stage, 0, ids, recipe.models, roles_map) == batch_key(stage, 0, ids, faster, roles_map)


def test_roles_are_validated_with_their_line(plugin: Path, tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "s.jsonl")
    server = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}
    models = {"a": {**server, "model": "a"}, "b": {**server, "model": "b"}}
    with pytest.raises(RecipeError, match=r"stages\.0\.models: .*role 'teacher' of 'two_roles' is not mapped"):
        parse_recipe(recipe_text(seeds, [{"method": "two_roles"}], models=models))
    with pytest.raises(RecipeError, match=r"stages\.0\.models\.student: 'c' is not defined"):
        parse_recipe(recipe_text(seeds, [{"method": "two_roles", "models": {"teacher": "a", "student": "c"}}],
                                 models=models))
    with pytest.raises(RecipeError, match="not roles of 'two_roles'"):
        parse_recipe(recipe_text(seeds, [{"method": "two_roles", "models": {"teacher": "a", "judge": "b"}}],
                                 models=models))
    # one model plays every role
    recipe = parse_recipe(recipe_text(seeds, [{"method": "two_roles"}], models={"a": models["a"]}))
    assert recipe.stages[0].role_models(recipe.models) == {"teacher": "a", "student": "a"}


def test_output_changing_engine_options_are_in_the_identity() -> None:
    base = ModelConfig(backend="vllm", model="m")
    assert base.identity() != base.model_copy(update={"seed": 1}).identity()
    assert base.identity() != base.model_copy(update={"extra_engine_args": {"quantization": "fp8"}}).identity()
    assert base.identity() == base.model_copy(update={"gpu_memory_utilization": 0.5, "keep_loaded": True}).identity()
    served = ModelConfig(backend="openai", model="m", base_url="http://a/v1")
    assert served.identity() != served.model_copy(update={"base_url": "http://b/v1"}).identity()
    assert served.identity() == served.model_copy(update={"request_timeout_s": 5, "max_concurrency": 2}).identity()


# -- samples asked are samples got --------------------------------------------------------------------------------


def test_server_that_ignores_n_still_gives_n_samples(tmp_path: Path) -> None:
    def answer(body: dict[str, Any], i: int) -> str:
        return f"sample with seed {body.get('seed')}"

    with ScriptedOpenAIServer(responder=answer, ignore_n=True) as server:
        cfg = ModelConfig(backend="openai", model=server.model, base_url=server.base_url)
        request = ChatRequest(messages=[{"role": "user", "content": "q"}], n=4, seed=12345, slot="q")
        with ModelPool({"m": cfg}, tmp_path / "cache.sqlite") as pool:
            client = pool.client("m", "stage")
            (comp,) = client.complete([request])
        assert len(comp.texts) == 4 and comp.filled == 3
        assert len(set(comp.texts)) == 4  # the fillers carry their own seeds: four different samples
        assert len(server.received) == 4 and all(b.get("n", 1) in (1, 4) for b in server.received)
        assert client.usage["samples_filled"] == 3
        with ModelPool({"m": cfg}, tmp_path / "cache.sqlite") as pool:  # a rerun asks nothing
            (again,) = pool.client("m", "stage").complete([request])
        assert again.texts == comp.texts and len(server.received) == 4


def test_a_server_that_honours_n_gets_no_fillers(tmp_path: Path) -> None:
    with ScriptedOpenAIServer() as server:
        cfg = ModelConfig(backend="openai", model=server.model, base_url=server.base_url)
        with ModelPool({"m": cfg}) as pool:
            (comp,) = pool.client("m", "s").complete(
                [ChatRequest(messages=[{"role": "user", "content": "q"}], n=3, seed=7)]
            )
        assert len(comp.texts) == 3 and comp.filled == 0 and len(server.received) == 1


# -- multi-turn on the real engine ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_turns_continued_after_a_stop_string_on_the_vllm_engine(
    tiny_vllm_models: dict[str, Any], tiny_model_dir: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    vocab = [t for t in tokenizer.get_vocab() if t.isalpha() and len(t) > 3][:200]
    pool = ModelPool(tiny_vllm_models)
    client = pool.client("teacher", "tool")
    user = [{"role": "user", "content": "Compute 6*7 with python."}]
    first = ChatRequest(messages=user, n=1, temperature=1.0, max_tokens=64, seed=3, stop=vocab)
    (turn1,) = client.complete([first])
    assert turn1.ok and turn1.finish_reasons[0] in ("stop", "length")
    prefix = turn1.texts[0] + "\n```output\n42\n```\n"
    messages = [*user, {"role": "assistant", "content": prefix}]
    second = ChatRequest(messages=messages, n=1, max_tokens=16, seed=4, continue_final=True)
    (turn2,) = client.complete([second])
    assert turn2.ok and turn2.completion_tokens > 0
    # the engine continued the same assistant message: its prompt is the conversation rendered without a new
    # generation prompt (with one, the count would differ by the assistant header's tokens)
    def n_tokens(**how: bool) -> int:
        ids = tokenizer.apply_chat_template(messages, tokenize=True, **how)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)

    continued = n_tokens(continue_final_message=True, add_generation_prompt=False)
    assert turn2.prompt_tokens == continued != n_tokens(add_generation_prompt=True)
    pool.close()


# -- rounds --------------------------------------------------------------------------------------------------------


def rounds_recipe(seeds: Path, marker: Path | None, max_rounds: int = 3) -> str:
    grow = {"method": "grow", "from": ["seeds", "grow"], **({"params": {"kill_marker": str(marker)}} if marker else {})}
    rounds = {"name": "loop", "max_rounds": max_rounds, "until": {"no_new_rows": True}}
    return recipe_text(seeds, [{"rounds": rounds, "stages": [grow]}])


def test_rounds_resume_after_a_kill_in_round_2(plugin: Path, tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "s.jsonl")
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(rounds_recipe(seeds, tmp_path / "killed-once"))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(REPO)])}
    cmd = [sys.executable, "-m", "pipeline.cli", "build", str(recipe_file), "--out", str(out), "--direct"]
    died = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert died.returncode == 137, died.stderr[-2000:]
    round1 = list((out / ".mathaug/stages/grow/r1").glob("*.parquet"))
    assert len(round1) == 2 and not list((out / ".mathaug/stages/grow/r2").glob("*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in round1}

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in round1} == before  # round 1 was loaded, not recomputed
    manifest = json.loads((out / "manifest.json").read_text())
    history = manifest["rounds"]["loop"]
    assert [h["round"] for h in history] == [1, 2, 3] and [h["rows"] for h in history] == [2, 2, 2]
    assert history[-1]["stopped"] == "max_rounds"
    grown = [r for r in rows_of(out) if r["method"] == "grow"]
    assert sorted(r["round"] for r in grown) == [1, 1, 2, 2, 3, 3]
    # only original seeds are grown, each round afresh: the round-2 input held round-1 rows, which were skipped
    assert history[1]["funnel"]["grow"]["in"] == 4 and history[1]["funnel"]["grow"]["generated"] == 2
    assert sum(h["kept"] for h in history) == len(grown) == 6


def test_rounds_stop_when_a_round_makes_nothing(plugin: Path, tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "s.jsonl")
    grow = {"method": "grow", "from": ["grow@last"], "from_first_round": ["seeds"]}
    stages = [{"rounds": {"name": "once", "max_rounds": 5}, "stages": [grow]}]
    result = run_build(parse_recipe(recipe_text(seeds, stages)), tmp_path / "out")
    history = result.manifest["rounds"]["once"]
    # round 1 grows the seeds; round 2 reads only round 1's rows (none is a seed) and makes nothing: stop
    assert [h["rows"] for h in history] == [2, 0] and history[-1]["stopped"] == "no new rows"


def test_rounds_recipe_errors(plugin: Path, tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "s.jsonl")
    with pytest.raises(RecipeError, match="from_first_round: only for stages inside rounds"):
        parse_recipe(recipe_text(seeds, [{"method": "grow", "from_first_round": ["seeds"]}]))
    with pytest.raises(RecipeError, match="only suffix is '@last'"):
        parse_recipe(recipe_text(seeds, [{"method": "grow", "from": ["seeds@first"]}]))


# -- solution-level dataset and dispositions ------------------------------------------------------------------------


def test_several_solutions_per_question_and_preferences(plugin: Path, tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "s.jsonl")
    stages = [{"method": "add_solution"}]
    both = run_build(parse_recipe(recipe_text(seeds, stages)), tmp_path / "both")
    rows = rows_of(tmp_path / "both")
    assert both.rows == 4 and len({r["question"] for r in rows}) == 2  # two solutions of each question
    assert all("<<" not in r["solution"] for r in rows)  # calculator annotations out of the SFT text ...
    seed_row = next(r for r in rows if r["method"] == "seed")
    assert "<<" in seed_row["solution_raw"] and "<<" not in seed_row["messages"][1]["content"]  # ... kept raw

    one = {"dedup": {"max_solutions_per_question": 1, "prefer": ["shorter"]}}
    run_build(parse_recipe(recipe_text(seeds, stages, extra=one)), tmp_path / "short")
    kept = rows_of(tmp_path / "short")
    assert [r["method"] for r in kept] == ["add_solution", "add_solution"]  # the shorter one wins over the seed
    dropped = pq.read_table(tmp_path / "short" / "dropped").to_pylist()
    assert {d["dropped_by"] for d in dropped} == {"exact_dedup"}
    assert {d["duplicate_of"] for d in dropped} == {r["id"] for r in kept}


def test_replace_and_intermediate_dispositions(plugin: Path, tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "s.jsonl")
    stages = [{"method": "scratch"}, {"method": "shorten", "from": ["seeds"]}]
    result = run_build(parse_recipe(recipe_text(seeds, stages)), tmp_path / "out")
    rows = rows_of(tmp_path / "out")
    assert sorted(r["method"] for r in rows) == ["shorten", "shorten"]  # no seed (replaced), no scratch row
    assert result.funnel.get("seed", "replaced") == 2
    dropped = pq.read_table(tmp_path / "out" / "dropped").to_pylist()
    replaced = [d for d in dropped if d["dropped_by"] == "replaced"]
    assert {d["method"] for d in replaced} == {"seed"}
    assert {d["duplicate_of"] for d in replaced} == {r["id"] for r in rows}  # provenance: who replaced it


def test_near_dedup_keeps_more_per_cluster_when_asked(tmp_path: Path) -> None:
    from pipeline.dedup import near_dedup
    from pipeline.records import make_record

    base = "Janet has 16 ducks that lay eggs every morning and she sells them at the market for 2 dollars each day"
    rows = [make_record(question=base.replace("Janet", name), solution="s", answer="1", method="entity_swap")
            for name in ("Janet", "Maria", "Aisha")]
    assert len(list(near_dedup(rows, threshold=0.5))) == 1
    assert len(list(near_dedup(rows, threshold=0.5, max_per_cluster=2))) == 2


# -- the card ---------------------------------------------------------------------------------------------------


def test_card_says_which_checks_ran_and_licences(tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "s.jsonl")
    run_build(parse_recipe(recipe_text(seeds, [], extra={"dedup": {"near": {"enabled": False}}})), tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "exact dedup" in card and "near dedup" not in card and "decontaminated" not in card
    assert "Kept rows per verification method: `gold` 2." in card
    assert "seeds: " in card and ": other" in card  # a user's own seed file: licence unknown, said so


# -- conversations that proceed on their own --------------------------------------------------------------------


def _turns(first_prompts: list[str], turns: int, tool_delay: dict[int, float]):  # noqa: ANN202
    """Requests and an on_done that continues each conversation ``turns`` times, its tool taking a while."""
    import time

    log: list[tuple[int, int]] = []
    seen: dict[int, int] = {}

    def request(tag: int, messages: list[dict[str, str]]) -> ChatRequest:
        return ChatRequest(messages=messages, n=1, max_tokens=8, seed=100 + tag, slot=f"c{tag}",
                           continue_final=messages[-1]["role"] == "assistant")

    def on_done(tag: int, completion: Any) -> ChatRequest | None:
        seen[tag] = seen.get(tag, 0) + 1
        log.append((tag, seen[tag]))
        assert completion.ok, completion.error
        if seen[tag] >= turns:
            return None
        time.sleep(tool_delay.get(tag, 0.0))  # "running the code"
        so_far = conversations[tag]
        text = so_far[-1]["content"] if so_far[-1]["role"] == "assistant" else ""
        conversations[tag] = [*so_far[:1], {"role": "assistant",
                                            "content": text + completion.texts[0] + f"\n```output\n{tag}\n```\n"}]
        return request(tag, conversations[tag])

    conversations = {i: [{"role": "user", "content": p}] for i, p in enumerate(first_prompts)}
    first = [request(i, conversations[i]) for i in range(len(first_prompts))]
    return first, on_done, log


def test_conversations_do_not_wait_for_each_other(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(delay_s=0.05, ignore_n=True) as server:
        cfg = ModelConfig(backend="openai", model=server.model, base_url=server.base_url)
        first, on_done, log = _turns(["slow tool", "quick a", "quick b"], turns=3, tool_delay={0: 1.0})
        with ModelPool({"m": cfg}, tmp_path / "c.sqlite") as pool:
            client = pool.client("m", "tir")
            client.converse(first, on_done, parallel=3)
        assert sorted(log) == [(t, k) for t in range(3) for k in (1, 2, 3)]
        # the quick conversations finished all their turns while the slow one was still in its first tool call
        assert log.index((1, 3)) < log.index((0, 2)) and log.index((2, 3)) < log.index((0, 2))
        assert client.usage["requests"] == 9 == len(server.received)
        assert server.received[-1].get("continue_final_message") is True  # vLLM/SGLang: continue that turn
        assert server.received[-1]["messages"][-1]["role"] == "assistant"  # a continued turn
        first, on_done, log = _turns(["slow tool", "quick a", "quick b"], turns=3, tool_delay={})
        with ModelPool({"m": cfg}, tmp_path / "c.sqlite") as pool:  # a rerun replays from the cache
            pool.client("m", "tir").converse(first, on_done)
        assert len(server.received) == 9 and len(log) == 9


def test_a_failing_turn_fails_the_call(tmp_path: Path) -> None:
    with ScriptedOpenAIServer() as server:
        cfg = ModelConfig(backend="openai", model=server.model, base_url=server.base_url)

        def on_done(tag: int, completion: Any) -> ChatRequest | None:
            raise RuntimeError(f"tool crashed in conversation {tag}")

        first = [ChatRequest(messages=[{"role": "user", "content": "q"}], n=1, seed=1)]
        with ModelPool({"m": cfg}) as pool, pytest.raises(RuntimeError, match="tool crashed in conversation 0"):
            pool.client("m", "tir").converse(first, on_done)


@pytest.mark.slow
def test_conversations_on_the_vllm_engine(tiny_vllm_models: dict[str, Any]) -> None:
    first, on_done, log = _turns([f"problem {i}" for i in range(6)], turns=3, tool_delay={0: 0.5})
    with ModelPool(tiny_vllm_models) as pool:
        client = pool.client("teacher", "tir")
        client.converse(first, on_done, parallel=4)
    assert sorted(log) == [(t, k) for t in range(6) for k in (1, 2, 3)]
    assert client.usage["requests"] == 18 and client.usage["tokens_out"] > 0
    assert log.index((5, 3)) < log.index((0, 3))  # conversation 0's slow tool did not hold the others back


def test_limited_keep_rule_matches_a_plain_reference() -> None:
    """The vectorised keep rule against the obvious loop, on random groups, subgroups, ranks and anchors."""
    import random

    import numpy as np

    from pipeline.dedup.keep import choose_keepers_limited

    def reference(labels, subs, unverified, stage, ids, dropped, limit, whole, anchors):  # noqa: ANN001, ANN202
        n = len(unverified)
        anchored_groups = set(labels[n:].tolist())
        order = sorted(range(n), key=lambda i: (labels[i], unverified[i], stage[i], ids[i], i))
        keep, taken = [False] * n, {}
        for i in order:
            g, s = int(labels[i]), int(subs[i])
            if g in anchored_groups:
                continue
            chosen = taken.setdefault(g, [])
            if s in chosen:
                keep[i] = keep[i] or whole
            elif len(chosen) < limit:
                chosen.append(s)
                keep[i] = True
        return keep

    rng = random.Random(7)
    for _ in range(200):
        n, anchors = rng.randint(1, 40), rng.choice([0, 0, 2])
        labels = np.array([rng.randint(0, 6) for _ in range(n + anchors)], dtype=np.int64)
        subs = np.array([rng.randint(0, 3) for _ in range(n)], dtype=np.int64)
        unverified = np.array([rng.randint(0, 1) for _ in range(n)], dtype=np.int8)
        stage = np.array([rng.randint(0, 2) for _ in range(n)], dtype=np.int32)
        ids = np.array([f"{rng.randint(0, 9)}".encode() for _ in range(n)], dtype=np.bytes_)
        dropped = np.array([rng.randint(0, 2) for _ in range(n)], dtype=np.int64)
        limit, whole = rng.randint(1, 3), rng.random() < 0.5
        keep, folded, keeper = choose_keepers_limited(labels, subs, unverified, stage, ids, dropped, limit=limit,
                                                      whole_subgroups=whole, anchors=anchors)
        assert keep.tolist() == reference(labels, subs, unverified, stage, ids, dropped, limit, whole, anchors)
        # every row is accounted for once: kept rows carry themselves and what folded into them
        counted = sum(int(folded[i]) + 1 for i in range(n) if keep[i])
        lost = sum(1 + int(dropped[i]) for i in range(n) if not keep[i] and keeper[i] < 0)
        assert counted + lost == int((1 + dropped).sum())
        assert all(keep[keeper[i]] and labels[keeper[i]] == labels[i] for i in range(n) if keeper[i] >= 0)
