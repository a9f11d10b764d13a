"""moto 5's own test files for SQS, Kinesis, Kinesis Video and Firehose, run in moto's server
mode against the real binary (a fresh server per test; tests/moto/kinescope_plugin.py).

Every test must pass, except those in tests/moto/expected_failures.txt, each listed with
the reason its expectation is moto's and not AWS's, or what Kinescope does not offer. A
listed test that starts passing fails this run too, so the list stays true. The counts
are written to target/test-artifacts/moto-summary.txt."""

import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from conftest import BIN, ROOT

MOTO_TESTS = ROOT / ".venv" / "moto-tests"
EXPECTED = ROOT / "tests" / "moto" / "expected_failures.txt"
FILES = [
    "tests/test_sqs/test_sqs.py",
    "tests/test_sqs/test_sqs_message_attributes.py",
    "tests/test_sqs/test_sqs_multiaccount.py",
    "tests/test_kinesis/test_kinesis.py",
    "tests/test_kinesis/test_kinesis_boto3.py",
    "tests/test_kinesis/test_kinesis_encryption.py",
    "tests/test_kinesis/test_kinesis_monitoring.py",
    "tests/test_kinesis/test_kinesis_resource_policy.py",
    "tests/test_kinesis/test_kinesis_stream_consumers.py",
    "tests/test_kinesis/test_kinesis_stream_limits.py",
    "tests/test_kinesisvideo/test_kinesisvideo.py",
    "tests/test_firehose/test_firehose.py",
    "tests/test_firehose/test_firehose_destination_types.py",
    "tests/test_firehose/test_firehose_encryption.py",
    "tests/test_firehose/test_firehose_integration.py",
    "tests/test_firehose/test_firehose_put.py",
    "tests/test_firehose/test_firehose_tags.py",
    "tests/test_firehose/test_http_destinations.py",
    "tests/test_kinesisvideoarchivedmedia/test_kinesisvideoarchivedmedia.py",
]


def expected_failures():
    """Test id → reason, from the list (`id  # reason` lines)."""
    out = {}
    for line in EXPECTED.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        test, _, reason = line.partition("#")
        assert reason.strip(), f"{test.strip()} is listed without a reason"
        out[test.strip()] = reason.strip()
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_moto_suites_pass_except_the_documented_differences(tmp_path):
    assert (MOTO_TESTS / ".version").exists(), "scripts/setup test fetches moto's test files"
    port = free_port()
    junit = tmp_path / "moto.xml"
    env = dict(os.environ)
    env.update({
        "TEST_SERVER_MODE": "true",
        "TEST_SERVER_MODE_ENDPOINT": f"http://127.0.0.1:{port}",
        "MOTO_CALL_RESET_API": "false",
        "KINESCOPE_MOTO_PORT": str(port),
        "KINESCOPE_BIN": BIN,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "moto"), str(MOTO_TESTS)]),
    })
    # A test waiting for something the server does not do fails after 30 s instead of
    # stalling the run (botocore would otherwise retry and long-poll for minutes).
    cmd = [sys.executable, "-m", "pytest", "-p", "kinescope_plugin", "-q", "-p", "no:cacheprovider",
           "--timeout", "30", "--durations", "15",
           f"--junitxml={junit}", "-o", "junit_family=xunit1", *FILES]
    run = subprocess.run(cmd, cwd=MOTO_TESTS, env=env, capture_output=True, text=True, timeout=1800)
    assert junit.exists(), run.stdout[-3000:] + run.stderr[-3000:]

    results = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        file = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
        test_id = f"{file.removeprefix('tests/')}::{case.get('name')}"
        if case.find("skipped") is not None:
            results[test_id] = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            results[test_id] = "failed"
        else:
            results[test_id] = "passed"
    expected = expected_failures()
    unexpected = sorted(t for t, r in results.items() if r == "failed" and t not in expected)
    now_passing = sorted(t for t, r in results.items() if r == "passed" and t in expected)
    stale = sorted(t for t in expected if t not in results)

    by_service = Counter()
    for t, r in results.items():
        by_service[(t.split("/")[0], r)] += 1
    lines = [f"moto {(MOTO_TESTS / '.version').read_text().strip()} test files against Kinescope"]
    for service in sorted({s for s, _ in by_service}):
        p, f, s = (by_service[(service, k)] for k in ("passed", "failed", "skipped"))
        lines.append(f"  {service}: {p} passed, {f} failed (all listed with reasons), {s} skipped by moto in server mode")
    summary = "\n".join(lines)
    artifacts = ROOT / "target" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "moto-summary.txt").write_text(summary + "\n")
    print(summary)

    details = run.stdout[-6000:]
    assert not unexpected, f"moto tests failing that are not listed:\n" + "\n".join(unexpected) + "\n\n" + details
    assert not now_passing, "listed moto tests that pass now (take them off the list):\n" + "\n".join(now_passing)
    assert not stale, "listed moto tests that did not run:\n" + "\n".join(stale)
