"""The fuzz suite: a fixed-seed campaign of hostile calls (see campaign.py), run in subprocess batches
so that a crash or a hang is reported with the call that caused it. ``--fuzz-calls N`` (or
``RSNORM_FUZZ_CALLS``) sets the budget, ``--fuzz-seed`` the seed; CI runs the default 20,000."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import PYTHON

CAMPAIGN = Path(__file__).with_name("campaign.py")
BATCH = 2500
# A batch of 2,500 small calls takes a few seconds; a hang stops at this limit.
BATCH_TIMEOUT_S = 300


def test_fuzz_campaign_finds_nothing(fuzz_calls: int, fuzz_seed: int, tmp_path: Path) -> None:
    findings: list[str] = []
    for start in range(0, fuzz_calls, BATCH):
        calls = min(BATCH, fuzz_calls - start)
        progress = tmp_path / "in_flight"
        command = [*PYTHON, str(CAMPAIGN), "--seed", str(fuzz_seed), "--start", str(start)]
        command += ["--calls", str(calls), "--progress", str(progress)]
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=BATCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            findings.append(f"hang: batch from call {start}; call in flight {progress.read_text()}")
            continue
        findings += [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode != 0:
            call = progress.read_text() if progress.exists() else "?"
            findings.append(f"crash (exit {out.returncode}) at call {call}: {out.stderr[-2000:]}")
    report = "\n".join(findings[:20])
    replay = f"replay one: python {CAMPAIGN} --seed {fuzz_seed} --start CALL --calls 1 --show"
    message = f"{len(findings)} findings in {fuzz_calls} calls ({replay}):\n{report}"
    assert not findings, message
