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


def start_instant(work, body, content_type):
    """nginx answering every request, POST included, with `body` at once: a server that
    takes no time, for the ceiling a client can reach. Returns (process, URL)."""
    import subprocess
    from pathlib import Path
    import os
    root = Path(work) / "instant"
    (root / "html").mkdir(parents=True, exist_ok=True)
    (root / "html" / "answer").write_bytes(body)
    # nginx's workers run as an unprivileged user: they must reach the answer.
    for p in (Path(work), root, root / "html"):
        os.chmod(p, 0o755)
    os.chmod(root / "html" / "answer", 0o644)
    port = free_port()
    (root / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
error_log {root}/error.log;
pid {root}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_max_body_size 16m;
  client_body_buffer_size 16m;
  server {{
    listen 127.0.0.1:{port};
    root {root}/html;
    location / {{
      default_type {content_type};
      error_page 405 =200 /answer;
      try_files /answer =404;
    }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"
