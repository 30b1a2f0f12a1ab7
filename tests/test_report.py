"""``mathaug report``: the figures it computes, its CLI, and its page rendered in headless Chromium."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.report_bench import synthesize_build
from pipeline.cli import app
from pipeline.io.shards import ShardWriter, read_records
from pipeline.records import FIELDS, make_record
from pipeline.report import report_page, scan_build, write_report
from pipeline.report.answers import classify_answer
from pipeline.report.scan import count_tokens
from pipeline.report.summary import compare_rows, summary_lines

DOCS = Path(__file__).resolve().parents[1] / "docs"
# MATHAUG_UPDATE_DOCS=1 copies the screenshots to docs/report_*.png (the README shows them)
UPDATE_DOCS = os.environ.get("MATHAUG_UPDATE_DOCS") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium); CI installs it"
)


def flat(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def persona_build(tmp_path_factory) -> Path:
    """A persona-like build (majority votes, MATH levels, model tokens, rounds, every answer type) written by the
    real writers: 1,200 rows in 3 shards."""
    out = tmp_path_factory.mktemp("persona") / "out"
    synthesize_build(out, 1_200, rows_per_shard=500, seed=3)
    return out


@pytest.fixture(scope="module")
def quickstart_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quickstart") / "out"
    result = CliRunner().invoke(app, ["build", "quickstart", "--out", str(out), "--direct"])
    assert result.exit_code == 0, result.output
    return out


def test_count_tokens_is_the_documented_regex() -> None:
    texts = ["", None, "a b", " x\\frac{1}{2}", "Total: 3+4 = <<3+4=7>>7 apples.", "x", "ab  cd\n ef.", " ", "q",
             "$1,234.50 each\t(tax)"]
    pattern = re.compile(r"\w+|[^\w\s]", re.ASCII)
    expected = [len(pattern.findall(t or "")) for t in texts]
    assert count_tokens(pa.array(texts, type=pa.string())).tolist() == expected
    # a slice shares its parent's buffers: offsets must be read from the slice's start
    assert count_tokens(pa.array(texts, type=pa.string()).slice(3, 4)).tolist() == expected[3:7]


@pytest.mark.parametrize(
    ("answer", "kind"),
    [("42", "integer"), ("-1,234", "integer"), ("\\boxed{12}", "integer"), ("$5", "integer"), ("3.14", "decimal"),
     ("1/2", "fraction"), ("-\\dfrac{3}{4}", "fraction"), ("(-\\infty, 3)", "interval"), ("[2,5)", "interval"),
     ("(3, 4)", "tuple"), ("1, 2, 3", "tuple"), ("2x+1", "expression"), ("\\sqrt{2}", "expression"),
     ("Monday", "text"), ("\\text{Tuesday}", "text"), ("", "none"), (None, "none")],
)
def test_answer_types(answer: str | None, kind: str) -> None:
    assert classify_answer(answer) == kind


def test_scan_counts_what_the_shards_hold(persona_build: Path) -> None:
    scan = scan_build(persona_build)
    rows = list(read_records(persona_build))
    by_method = Counter(r["method"] for r in rows)
    assert scan.rows == len(rows) == 1_200
    assert dict(scan.kept) == dict(by_method)
    assert {m: int(h.sum()) for m, h in scan.token_hist.items()} == dict(by_method)
    persona = [r for r in rows if r["method"] == "persona"]
    assert sum(n for (m, _, _), n in scan.agreement.items() if m == "persona") == len(persona)
    votes = Counter((r["verification"]["votes"], r["verification"]["samples"]) for r in persona)
    assert {(v, s): n for (m, v, s), n in scan.agreement.items() if m == "persona"} == dict(votes)
    assert sum(scan.difficulty.values()) == len(persona)  # only persona rows carry a level
    # rounds come from method_params here (the synthetic rows predate a round column)
    assert scan.round_source == "method_params" and sorted({r for r, _ in scan.rounds}) == [1, 2, 3]
    assert sum(scan.rounds.values()) == len(persona)
    assert sum(n for s, n in scan.cluster_sizes.items()) == len(rows)
    assert sum(scan.dropped.values()) == scan.manifest["dropped"]["rows"] > 0
    for method, samples in scan.samples.items():
        assert 1 <= len(samples) <= 10 and {s["method"] for s in samples} == {method}
        assert len({s["id"] for s in samples}) == len(samples)


def test_round_column_wins_over_method_params(tmp_path: Path) -> None:
    if "round" not in FIELDS:
        pytest.skip("the schema has no top-level round column yet")
    rows = [make_record(question=f"q{i}", solution="1 + 1 = 2", answer="2", method="persona", round=2,
                        method_params={"round": 9}) for i in range(5)]
    rows += [make_record(question=f"r{i}", solution="2", answer="2", method="persona", method_params={"round": 4})
             for i in range(3)]
    with ShardWriter(tmp_path, rows_per_shard=100) as writer:
        writer.write(rows)
    scan = scan_build(tmp_path)
    assert dict(scan.rounds) == {(2, "persona"): 5, (4, "persona"): 3}
    assert scan.round_source == "round"


def test_row_text_is_escaped_not_interpreted(tmp_path: Path) -> None:
    hostile = '</div><script>alert(1)</script><img src="https://example.com/x.png">'
    with ShardWriter(tmp_path, rows_per_shard=10) as writer:
        writer.write([make_record(question=hostile, solution=f"{hostile} so 2", answer="2", method="seed")])
    page = write_report(tmp_path).page.read_text()
    assert "<script" not in page and 'src="https://' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_samples_are_seeded_and_random(persona_build: Path) -> None:
    first = [s["id"] for s in scan_build(persona_build, seed=1).samples["persona"]]
    again = [s["id"] for s in scan_build(persona_build, seed=1).samples["persona"]]
    other = [s["id"] for s in scan_build(persona_build, seed=2).samples["persona"]]
    assert first == again and first != other and len(first) == 10


def test_report_command_writes_a_self_contained_page(persona_build: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(persona_build)])
    assert result.exit_code == 0, result.output
    assert "1,200 rows kept" in flat(result) and "rounds: 1, 2, 3" in flat(result)
    page = report_page(persona_build).read_text()
    pngs = sorted(p.stem for p in report_page(persona_build).parent.glob("*.png"))
    assert pngs == sorted(["funnel", "kept", "lengths", "difficulty", "answer_types", "clusters", "cost", "rounds"])
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == len(pngs) and all(src.startswith("data:image/png;base64,") for src in images)
    assert all(base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for src in images)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)  # nothing fetched from the network
    assert "<script" not in page
    # LaTeX and markup from rows are escaped, never interpreted
    assert "\\infty" in page or "\\frac" in page
    assert page.count('class="sample"') == sum(min(10, n) for n in scan_build(persona_build).kept.values())


def test_report_of_what_is_not_an_output_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    for target in (tmp_path / "missing", tmp_path):
        result = runner.invoke(app, ["report", str(target)])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    (tmp_path / "manifest.json").write_text("{not json")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not valid JSON" in flat(result)
    (tmp_path / "manifest.json").write_text('{"shards": [{"path": "data/train-00000.parquet"}]}')
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"x": [1]}), tmp_path / "data" / "train-00000.parquet")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a mathaug shard" in flat(result)


def test_compare_two_builds(persona_build: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synthesize_build(other, 600, rows_per_shard=600, seed=4)
    rows = {name: (a, b) for name, a, b, _ in compare_rows(scan_build(persona_build), scan_build(other))}
    assert rows["rows kept"] == ("1,200", "600")
    assert rows["rows: persona"] == ("720", "360")
    assert "yield: persona" in rows and "median tokens: persona" in rows
    result = CliRunner().invoke(app, ["report", str(persona_build), str(other)])
    assert result.exit_code == 0, result.output
    assert "rows: persona" in flat(result) and "720" in flat(result) and "360" in flat(result)
    assert not report_page(other).exists()  # comparing writes nothing


def test_quickstart_report_counts_entity_swaps_that_survive_dedup(quickstart_build: Path) -> None:
    report = write_report(quickstart_build)
    funnel = report.scan.funnel["entity_swap"]
    assert report.scan.kept["entity_swap"] == funnel["kept"] > 0
    lines = "\n".join(summary_lines(report.scan))
    assert f"entity swaps kept after dedup: {funnel['kept']:,} of {funnel['generated']:,}" in lines


# ---- the page in a real browser --------------------------------------------------------------------------------
CHECK_SCRIPT = """<script>
addEventListener("load", () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = `images=${imgs.length} broken=${JSON.stringify(broken)}`;
  document.body.appendChild(out);
});
</script>"""


def _chromium(url: str, *flags: str, height: int = 900) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
             f"--window-size=1400,{height}", "--enable-logging=stderr", "--v=0", *flags, url],
            capture_output=True, text=True, timeout=120, check=False,
        )


def _open_in_chromium(out_dir: Path, screenshot: Path) -> None:
    """Screenshot the page, then load a copy with an image check appended and read the check from the DOM."""
    page = report_page(out_dir)
    shot = _chromium(page.as_uri(), f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = _chromium(probe.as_uri(), "--dump-dom", "--virtual-time-budget=5000")
    probe.unlink()
    assert dom.returncode == 0, dom.stderr[-2000:]
    count = len(list(page.parent.glob("*.png")))
    assert f"images={count} broken=[]" in dom.stdout, dom.stdout[-500:]
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert not console_errors, console_errors
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape[:2] == (900, 1400) and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not blank


def _docs_screenshot(out_dir: Path, name: str, height: int) -> None:
    """A taller screenshot for the README (more plots in one image), only with MATHAUG_UPDATE_DOCS=1."""
    if UPDATE_DOCS:
        shot = _chromium(report_page(out_dir).as_uri(), f"--screenshot={DOCS / name}", height=height)
        assert shot.returncode == 0, shot.stderr[-2000:]


@pytest.mark.slow
@needs_chromium
def test_quickstart_report_renders_in_chromium(quickstart_build: Path, tmp_path: Path) -> None:
    write_report(quickstart_build)
    _open_in_chromium(quickstart_build, tmp_path / "quickstart.png")
    _docs_screenshot(quickstart_build, "report_quickstart.png", 1900)


@pytest.mark.slow
@needs_chromium
def test_persona_report_renders_in_chromium(persona_build: Path, tmp_path: Path) -> None:
    write_report(persona_build)
    _open_in_chromium(persona_build, tmp_path / "persona.png")
    _docs_screenshot(persona_build, "report_persona.png", 4200)


@pytest.mark.slow
def test_chromium_check_fails_on_a_broken_image(persona_build: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); CI installs it")
    copy = tmp_path / "broken"
    shutil.copytree(persona_build, copy, symlinks=True)
    write_report(copy)
    page = report_page(copy)
    page.write_text(page.read_text().replace("base64,iVBOR", "base64,AAAA", 1))
    with pytest.raises(AssertionError, match="broken"):
        _open_in_chromium(copy, tmp_path / "broken.png")


def test_prefect_artifact_markdown_has_the_key_figures(persona_build: Path, tmp_path: Path) -> None:
    from flows.artifacts import report_markdown

    markdown = report_markdown(persona_build)
    assert markdown is not None and markdown.startswith("# Quality report: 1,200 rows")
    assert "| persona | 720 |" in markdown and f"mathaug report {persona_build}" in markdown
    assert report_markdown(tmp_path) is None  # not an output: the build's other artifacts still show


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_flow_run_shows_the_report_figures_as_an_artifact(tmp_path: Path) -> None:
    from flows.artifacts import REPORT_KEY
    from flows.build import build_dataset
    from tests.fixtures.prefect import flow_run_artifacts, small_recipe

    state = build_dataset(str(small_recipe(tmp_path)), str(tmp_path / "flow"), limit=30, return_state=True)
    assert state.is_completed(), state
    artifacts = flow_run_artifacts(state.state_details.flow_run_id, expect={REPORT_KEY})
    markdown = artifacts[REPORT_KEY].data
    assert markdown.startswith(f"# Quality report: {state.result().rows:,} rows")
    assert f"mathaug report {tmp_path / 'flow'}" in markdown and "| symbolic |" in markdown
