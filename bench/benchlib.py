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
