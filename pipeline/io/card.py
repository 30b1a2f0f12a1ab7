"""The Hugging Face dataset card (``README.md`` with YAML front matter) written beside the shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.funnel import COLUMNS, Funnel
from pipeline.io.dropped import describe_dropped
from pipeline.io.shards import atomic_write_bytes

# licence of each seed dataset we know (HF licence identifiers)
SEED_LICENSES = {"gsm8k": "mit", "math": "mit", "svamp": "mit", "asdiv": "cc-by-nc-4.0"}
# licences of data a stage mixes into rows, by the stage parameter that names it (persona banks: our own
# occupations bank is Apache-2.0 like the code; the Persona Hub sample is CC BY-NC-SA 4.0)
BANK_LICENSES = {"occupations": "apache-2.0", "personahub": "cc-by-nc-sa-4.0",
                 "planetmath": "cc-by-sa-3.0"}  # concept bank (mathsmith): the PlanetMath sample, CC BY-SA 3.0
# most restrictive first: the card inherits the most restrictive licence of what went in
RESTRICTIVENESS = ["other", "cc-by-nc-sa-4.0", "cc-by-nc-4.0", "cc-by-sa-4.0", "cc-by-sa-3.0", "cc-by-4.0",
                   "apache-2.0", "mit"]

CITATIONS = {
    "mathsmith": "Zhan et al. 2025, MathSmith: Towards Extremely Hard Mathematical Reasoning by Forging Synthetic "
    "Problems with a Reinforced Policy, arXiv:2508.05592",
    "seed": "Cobbe et al. 2021, Training Verifiers to Solve Math Word Problems (GSM8K), arXiv:2110.14168; "
    "Hendrycks et al. 2021, Measuring Mathematical Problem Solving With the MATH Dataset, arXiv:2103.03874",
    "symbolic": "Mirzadeh et al. 2024, GSM-Symbolic, arXiv:2410.05229",
    "entity_swap": "Karim et al. 2025, Lost in Cultural Translation, arXiv:2503.18018",
    "persona": "Ge et al. 2024, Scaling Synthetic Data Creation with 1,000,000,000 Personas (PersonaHub), "
    "arXiv:2406.20094; Luo et al. 2024, PersonaMath, arXiv:2410.01504",
    "llm2llm": "Lee et al. 2024, LLM2LLM: Boosting LLMs with Novel Iterative Data Enhancement, arXiv:2403.15042",
    "fobar": "Yu et al. 2023, MetaMath (FOBAR backward questions), arXiv:2309.12284",
    "evolve": "Li et al. 2023, MuggleMath, arXiv:2310.05506; Luo et al. 2023, WizardMath (Evol-Instruct), "
    "arXiv:2308.09583; Yu et al. 2023, MetaMath, arXiv:2309.12284",
}


# per-round counters left out of the rounds table (model accounting: in the funnel already)
_ROUND_SKIP = ("seconds", "requests", "cache_hits", "tokens_in", "tokens_out", "llm_seconds", "tokens_per_s", "rejected")


def rounds_table(rounds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per round of each rounds group: the models that changed, the round's stage counters (``X_correct``
    / ``X_total`` pairs also as ``X_accuracy``), rows made, rows kept in the final dataset, why it stopped."""
    table = []
    for group, entries in rounds.items():
        for entry in entries:
            row: dict[str, Any] = {"group": group, "round": entry["round"]}
            for stage, roles in (entry.get("models") or {}).items():
                for role, model in roles.items():
                    row[f"{stage}.{role}"] = model
            for stage, counters in (entry.get("funnel") or {}).items():
                for key, value in counters.items():
                    if key in _ROUND_SKIP or key.startswith("rejected:"):
                        continue
                    row[f"{stage}.{key}"] = int(value) if float(value).is_integer() else round(value, 3)
                    if key.endswith("_total") and value:
                        correct = counters.get(key.removesuffix("_total") + "_correct", 0)
                        row[f"{stage}.{key.removesuffix('_total')}_accuracy"] = round(correct / value, 4)
            row.update(rows=entry.get("rows", 0), kept=entry.get("kept", ""), stopped=entry.get("stopped") or "")
            table.append(row)
    return table


def rounds_markdown(rounds: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The rounds table as Markdown lines (empty when the recipe has no rounds)."""
    table = rounds_table(rounds)
    if not table:
        return []
    cols = list(dict.fromkeys(k for row in table for k in row))
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
            *("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |" for row in table)]


def input_licenses(recipe: Any) -> dict[str, str]:
    """Each input of the build (seed source, persona bank, concept bank) and the licence it brought."""
    found = {f"seeds: {s.name or s.path or s.format}": SEED_LICENSES.get((s.name or s.format).lower(), "other")
             for s in recipe.seeds}
    for stage in recipe.stages:
        for bank in stage.params.get("personas", ["occupations"] if stage.method == "persona" else []):
            found[f"{stage.stage_name}: persona bank {bank}"] = BANK_LICENSES.get(bank, "other")
        for bank in stage.params.get("concepts", ["planetmath"] if stage.method == "mathsmith" else []):
            found[f"{stage.stage_name}: concept bank {bank}"] = BANK_LICENSES.get(bank, "other")
    return found


def _license(recipe: Any, methods: list[str]) -> str:
    if recipe.output.license:
        return recipe.output.license
    found = set(input_licenses(recipe).values())
    return min(found, key=lambda lic: RESTRICTIVENESS.index(lic) if lic in RESTRICTIVENESS else 0)


def checks_that_ran(recipe: Any) -> list[str]:
    """What the build actually did to every kept row, from the recipe (not from what mathaug can do)."""
    checks = []
    if recipe.verify.consistency:
        checks.append("verified (each solution's final answer re-extracted and matched to `answer`"
                      + ("; failed rows kept with status 'failed'" if recipe.verify.keep_failed else "") + ")")
    elif not recipe.verify.keep_failed:
        checks.append("unverified rows dropped (rows made unverified are graded by extract-and-match)")
    if recipe.dedup.exact:
        checks.append(f"exact dedup (up to {recipe.dedup.max_solutions_per_question} distinct solutions per question)")
    if recipe.dedup.near.enabled:
        checks.append(f"near dedup (MinHash LSH, Jaccard >= {recipe.dedup.near.threshold:g}, "
                      f"{recipe.dedup.near.max_per_cluster} question(s) per cluster)")
    if recipe.decontaminate.enabled:
        semantic = getattr(recipe.decontaminate, "semantic", None)
        tiers = "13-gram and MinHash" + (" and semantic" if semantic is not None and semantic.enabled else "")
        checks.append(f"decontaminated ({tiers}) against {', '.join(recipe.decontaminate.benchmarks)}")
    return checks


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return label
    return "1M<n<10M"


def render_card(recipe: Any, manifest: dict[str, Any], funnel: Funnel, report: bool = False) -> str:
    methods = manifest.get("methods", [])
    split = manifest.get("split", "train")
    front = {
        "license": _license(recipe, methods),
        "language": ["en"],
        "task_categories": ["text-generation", "question-answering"],
        "tags": ["math", "synthetic", "sft", "mathaug", *methods],
        "size_categories": [_size_category(manifest.get("rows", 0))],
        "configs": [{"config_name": "default", "data_files": [{"split": split, "path": f"data/{split}-*.parquet"}]}],
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", ""]
    lines += [f"# {recipe.name}", ""]
    if recipe.description:
        lines += [recipe.description.strip(), ""]
    lines += [
        f"Built with mathaug {manifest.get('mathaug_version', '')}: "
        f"{manifest.get('rows', 0)} rows in {len(manifest.get('shards', []))} shard(s), run `{manifest.get('run_id')}`,"
        f" recipe hash `{manifest.get('recipe_hash')}`.",
        "",
        "## Checks that ran",
        "",
        *[f"- {check}" for check in checks_that_ran(recipe) or ["none: verification, dedup and decontamination "
                                                                 "were all turned off in the recipe"]],
        "",
        "Kept rows per verification method: "
        + (", ".join(f"`{k}` {v}" for k, v in sorted(manifest.get("verification_methods", {}).items())) or "none")
        + ".",
        "",
        "## Inputs and licences",
        "",
        *[f"- {name}: {lic}" for name, lic in input_licenses(recipe).items()],
        "",
        "## Load",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("parquet", data_dir="PATH/TO/THIS/DIR/data", split="train")',
        'print(ds[0]["messages"])  # chat-format SFT pairs',
        "```",
        "",
        "## Funnel",
        "",
    ]
    cols = ["stage", *[c for c in COLUMNS if any(r[c] for r in funnel.rows())]]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row in funnel.rows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    dropped = describe_dropped(manifest)
    if dropped:
        lines += ["", f"Rows removed by verification, dedup or decontamination are kept aside in `dropped/`: {dropped},"
                  " each with `dropped_by`, `drop_detail` and `duplicate_of`."]
    lines += ["", "Quality report (plots of the funnel, lengths, difficulty, answer types, duplicates, cost; sample rows): "
              + ("[`report/index.html`](report/index.html) (refresh it with `mathaug report OUT`)" if report
                 else "`mathaug report OUT` writes `report/index.html`")
              + "."]
    if manifest.get("rounds"):
        lines += ["", "## Rounds", "", "Per round: the models of roles that change between rounds, the round's "
                  "counters (accuracies from `X_correct`/`X_total`), rows made and rows kept in this dataset.", "",
                  *rounds_markdown(manifest["rounds"])]
    lines += ["", "## Methods", ""]
    for method in methods:
        lines.append(f"- `{method}`: {CITATIONS.get(method, 'see mathaug docs')}")
    lines += [
        "",
        "## Fields",
        "",
        "See `pipeline/records.py` in mathaug: `id` (content hash), `question`, `solution`, `answer`,"
        " `solution_raw` (the solution before calculator annotations were stripped), `messages`, `source`,"
        " `parent_ids`, `method`, `method_params`, `persona`, `concepts`, `difficulty`, `trajectory`,"
        " `verification`, `generator` (with `roles`: the model of each role), `dedup`, `round`, `run_id`,"
        " `created_at`.",
        "",
    ]
    return "\n".join(lines)


def write_card(out_dir: Path, recipe: Any, manifest: dict[str, Any], funnel: Funnel) -> Path:
    path = Path(out_dir) / "README.md"
    atomic_write_bytes(path, render_card(recipe, manifest, funnel).encode())
    return path
