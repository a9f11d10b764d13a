"""A pytest plugin for running moto's own test files against Kinescope: moto's tests in
server mode (TEST_SERVER_MODE=true) send every boto3 call to TEST_SERVER_MODE_ENDPOINT;
this plugin puts a fresh `kinescope serve` there before each test (on the one port the
runner chose), so no test sees another's queues or streams. Loaded with
`-p kinescope_plugin` by tests/integration/test_moto.py."""

import os
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

BIN = os.environ["KINESCOPE_BIN"]
PORT = int(os.environ["KINESCOPE_MOTO_PORT"])
ACCOUNT = "123456789012"  # moto's DEFAULT_ACCOUNT_ID, which its tests assert in ARNs


@pytest.fixture(autouse=True)
def kinescope_server(tmp_path):
    env = dict(os.environ)
    env["KINESCOPE_LOG"] = "warn"
    for k in ("KINESCOPE_ACCESS_KEY_ID", "KINESCOPE_SECRET_ACCESS_KEY"):
        env.pop(k, None)
    args = [BIN, "serve", "--data-dir", str(tmp_path / "data"), "--http", f"127.0.0.1:{PORT}",
            "--rtsp", "127.0.0.1:0", "--account-id", ACCOUNT, "--region", "us-east-1"]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    log = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("kinescope did not start:\n" + "".join(log))
        time.sleep(0.02)
    yield
    # The data directory is thrown away: no graceful shutdown needed.
    proc.send_signal(signal.SIGKILL)
    proc.wait()
