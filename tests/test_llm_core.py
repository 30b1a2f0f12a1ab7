"""Model layer without a model: config validation, templates, request-cache keys, miss reasons, `cache stats`."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest
import typer
from typer.testing import CliRunner

from pipeline.llm import ChatRequest, Completion, ModelConfig, RequestCache, TemplateError, load_template
from pipeline.llm.cache import RequestKey, cache_stats
from pipeline.llm.commands import register

IDENTITY = {"model": "m", "revision": None}


def _req(content: str = "hi", **kw: object) -> ChatRequest:
    kw.setdefault("template", "t/x.v1")
    kw.setdefault("template_hash", "aaa")
    return ChatRequest(messages=[{"role": "user", "content": content}], **kw)  # type: ignore[arg-type]


def test_model_config_rejects_unknown_keys_and_missing_base_url() -> None:
    with pytest.raises(pydantic.ValidationError, match="extra"):
        ModelConfig(backend="vllm", model="m", tensor_paralel_size=2)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="base_url"):
        ModelConfig(backend="openai", model="m")
    cfg = ModelConfig(backend="openai", model="m", base_url="http://x/v1", api_key_env="MY_KEY")
    # the served name on another server can be another model: base_url is part of the identity
    assert "MY_KEY" in cfg.model_dump_json()
    assert cfg.identity() == {"model": "m", "revision": None, "base_url": "http://x/v1"}


def test_chat_request_validates() -> None:
    with pytest.raises(ValueError, match="at least one message"):
        ChatRequest(messages=[])
    with pytest.raises(ValueError, match="role"):
        ChatRequest(messages=[{"text": "x"}])
    with pytest.raises(ValueError, match="n must be"):
        _req(n=0)


def test_shipped_templates_render_and_hash(tmp_path: Path) -> None:
    tmpl = load_template("persona/solve.v1")
    msgs = tmpl.render(question="What is 2+2?")
    assert msgs[0]["role"] == "system" and msgs[-1]["content"].endswith("What is 2+2?")
    assert "\\boxed{answer}" in msgs[-1]["content"]
    with pytest.raises(TemplateError, match="question"):
        tmpl.render()
    with pytest.raises(TemplateError, match="known templates"):
        load_template("persona/nope.v9")
    own = tmp_path / "mine.v1.yaml"
    own.write_text("user: 'Q: {{ q }}'\n")
    first = load_template(str(own))
    own.write_text("user: 'Question: {{ q }}'\n")
    second = load_template(str(own))
    assert first.sha256 != second.sha256 and second.render(q="1")[0]["content"] == "Question: 1"
    own.write_text("usr: x\n")
    with pytest.raises(TemplateError, match="'user'"):
        load_template(str(own))


def test_key_covers_every_part() -> None:
    base = RequestKey.of(IDENTITY, _req())
    assert RequestKey.of(IDENTITY, _req()).key == base.key
    variants = {
        "seed": _req(seed=1),
        "n": _req(n=2),
        "temperature": _req(temperature=0.1),
        "top_p": _req(top_p=0.5),
        "max_tokens": _req(max_tokens=7),
        "stop": _req(stop=["x"]),
        "template hash": _req(template_hash="bbb"),
        "template name": _req(template="t/x.v2"),
        "messages": _req("other"),
    }
    for what, req in variants.items():
        assert RequestKey.of(IDENTITY, req).key != base.key, what
    assert RequestKey.of({"model": "m2", "revision": None}, _req()).key != base.key
    assert RequestKey.of(IDENTITY, _req(slot="anything")).key == base.key  # the slot only explains misses


def test_cache_roundtrip_and_miss_reasons(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    done = Completion(
        texts=["a", "b"], finish_reasons=["stop", "length"], prompt_tokens=3, completion_tokens=5
    )
    r1, r2 = _req("one", slot="s1"), _req("two", slot="s2")
    for r in (r1, r2):
        cache.put(RequestKey.of(IDENTITY, r), r, "st", done)
    cache.put(RequestKey.of(IDENTITY, _req("bad")), _req("bad"), "st", Completion.failed("boom"))
    cache.flush()
    got = cache.get_many([RequestKey.of(IDENTITY, r1).key, RequestKey.of(IDENTITY, _req("bad")).key])
    assert list(got) == [RequestKey.of(IDENTITY, r1).key]  # failures are never cached
    hit = got[RequestKey.of(IDENTITY, r1).key]
    assert hit.cached and hit.texts == ["a", "b"] and hit.finish_reasons == ["stop", "length"]

    def why(req: ChatRequest, identity: dict[str, object] = IDENTITY) -> str:
        return cache.explain_miss(RequestKey.of(identity, req), req.slot)

    assert why(_req("one changed", slot="s1")) == "messages"
    assert why(_req("one-v2", slot="s1", template_hash="new")) == "template"  # new template renders new text
    assert why(_req("one", slot="s1", seed=3)) == "sampling"
    assert why(_req("one", slot="s1"), {"model": "other", "revision": None}) == "model"
    assert why(_req("one", slot="s1", temperature=0.0), {"model": "o", "revision": None}) == "model+sampling"
    assert why(_req("never", slot="s9")) == "new"
    assert why(_req("two", seed=5)) == "sampling"  # no slot: nearest entry with the same messages
    cache.close()


def test_cache_stats_command(tmp_path: Path) -> None:
    out = tmp_path / "build"
    path = out / ".mathaug" / "llm_cache.sqlite"
    first = RequestCache(path)
    r = _req("q", slot="s")
    first.put(RequestKey.of(IDENTITY, r), r, "persona", Completion(["x"], ["stop"], 1, 1))
    first.count("persona", "miss:new")
    first.close()
    second = RequestCache(path)
    second.count("persona", "hit", 4)
    second.count("persona", "miss:template", 2)
    second.count("other", "miss:sampling", 1)
    second.close()

    report = cache_stats(path)
    assert report["entries"] == 1 and report["sessions"] == 2
    assert report["stages"]["persona"] == {"hits": 4, "misses": 2, "miss_reasons": {"template": 2}}
    assert cache_stats(path, session="all")["stages"]["persona"]["miss_reasons"] == {"new": 1, "template": 2}

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """mathaug"""

    register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["cache", "stats", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["stages"]["other"]["miss_reasons"] == {"sampling": 1}
    res = runner.invoke(app, ["cache", "stats", str(out)])
    assert res.exit_code == 0 and "template: 2" in res.output
    res = runner.invoke(app, ["cache", "stats", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no request cache" in res.output
