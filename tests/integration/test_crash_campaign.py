"""Two rounds of bench/crash_campaign.py: kill -9 at a random moment under mixed load
(PutMedia cameras, an RTSP publisher, SQS standard and FIFO sends, Kinesis puts), then
every acknowledged fragment, message and record must be there, whole, and FIFO
deduplication must have held. The README reports longer campaigns."""

import subprocess
import sys

from conftest import ROOT


def test_kill9_under_mixed_load_loses_nothing_acknowledged():
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "crash_campaign.py"), "2"], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = p.stdout.strip().splitlines()[-1]
    assert summary.endswith("losses: 0"), summary
    assert " 0 fragments" not in summary and " 0 standard" not in summary, summary
