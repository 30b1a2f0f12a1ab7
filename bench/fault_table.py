"""The fault table (issue 10): each expected failure of `mathaug build`, tried for real through the CLI.

For each fault: the time from starting `mathaug build` to its exit (wall, and the CLI's own CPU time: on a shared
machine wall time mostly measures the load), the exit code, the one error line, and the data lost: files of the
user's workspace (their own files, and a finished run with their files beside and inside its `data/`) that
differ, appeared or vanished. It must be none.

    python bench/fault_table.py            # prints the table (markdown)
    python bench/fault_table.py --append   # and appends it to bench/RESULTS.md

The read-only and full-disk faults mount small tmpfs file systems: they need root (skipped otherwise).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.faults import FAULTS, Outcome, can_mount, make_workspace, run_fault  # noqa: E402

SECTION = "## fault table (issue 10)"


def shorten(line: str) -> str:
    """Scratch paths as names: WS (the user's workspace), TMPFS (a small mounted disk)."""
    line = re.sub(r"/\S*?/mathaug-faults-[^/]+/workspace", "WS", line)
    return re.sub(r"/\S*?/mathaug-tmpfs-[^/\s]+", "TMPFS", line)


def table(outcomes: list[Outcome]) -> str:
    rows = ["| fault | time to error (wall / CPU) | exit | data lost | after the fix | the error line |",
            "|---|---|---|---|---|---|"]
    for o in outcomes:
        line = o.lines[0].removeprefix("error: ") if len(o.lines) == 1 else f"{len(o.lines)} error lines"
        line = shorten(line).replace("|", "\\|")
        lost = "none" if not o.changed else ", ".join(o.changed[:5])
        fixed = "—" if o.rerun_returncode is None else ("rerun resumes, exit 0" if o.rerun_returncode == 0
                                                         else f"rerun exit {o.rerun_returncode}")
        rows.append(
            f"| {o.fault} | {o.seconds:.1f} s / {o.cpu_seconds:.1f} s | {o.returncode} | {lost} | {fixed} | `{line}` |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--append", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    mount = can_mount()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="mathaug-faults-") as scratch:
        home = Path(scratch) / "prefect-home"
        home.mkdir()
        workspace = make_workspace(Path(scratch), home)
        for fault in FAULTS:
            if fault.needs_mount and not mount:
                print(f"skipped (needs root for tmpfs): {fault.name}", file=sys.stderr)
                continue
            outcome = run_fault(fault, workspace, home)
            print(f"{fault.name}: {outcome.seconds:.1f} s, exit {outcome.returncode}", file=sys.stderr)
            outcomes.append(outcome)
    load = os.getloadavg()[0]
    text = (
        f"{SECTION}\n\n"
        f"`python bench/fault_table.py` on {datetime.now(timezone.utc):%Y-%m-%d}: {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the end (other work shared the cores). Each fault "
        "runs the real `mathaug build` (without `--direct`, so through Prefect where it gets that far; the full "
        "disk run uses `--direct`) against a workspace holding the user's own files and a finished run with their "
        "files beside and inside `data/` (WS in the lines below; TMPFS is a small tmpfs mounted for the fault). "
        "*Data lost* lists every file there that changed, appeared or vanished. Wall time is mostly waiting for a "
        "core; the CPU time is the CLI's own (about 1.5 s of it is importing the CLI and its command modules).\n\n"
        + table(outcomes) + "\n"
    )
    print(text)
    if args.append:
        results = ROOT / "bench" / "RESULTS.md"
        results.write_text(results.read_text().rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    main()
