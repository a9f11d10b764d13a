"""Helpers the HTTP benchmark scripts share: loopback ports and waiting for a server."""
import socket
import time


def free_port():
    """A 127.0.0.1 port free right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_up(url, probe, attempts=300):
    """Calls probe() until it stops raising (0.1 s apart)."""
    for _ in range(attempts):
        try:
            probe()
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_kinescope(work):
    """The release binary serving on a fresh loopback port with its data under `work`;
    returns (process, URL)."""
    import subprocess
    from pathlib import Path
    port = free_port()
    binary = Path(__file__).resolve().parents[1] / "target" / "release" / "kinescope"
    proc = subprocess.Popen([str(binary), "serve", "--data-dir", str(Path(work) / "data"),
                             "--http", f"127.0.0.1:{port}", "--rtsp", "127.0.0.1:0"], stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def start_moto():
    """moto's server (from the venv running this script) on a fresh loopback port;
    returns (process, URL)."""
    import subprocess
    import sys
    from pathlib import Path
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def stop_all(procs):
    for p in procs:
        p.terminate()
        p.wait(10)
