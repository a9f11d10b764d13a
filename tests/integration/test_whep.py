"""WHEP: a browser watches a live stream over WebRTC (headless Chromium as the WHEP
client, web/tests/whep.mjs), and the endpoint's refusals."""

import json
import subprocess
import time
import urllib.error
import urllib.request

from conftest import BIN, ROOT, wait_for

WHEP = ROOT / "web" / "tests" / "whep.mjs"
ARTIFACTS = ROOT / "target" / "test-artifacts"


def live_camera(server, name):
    """ffmpeg in real time (H.264 without B-frames, 1 s GOP) piped into PutMedia."""
    server.client("kinesisvideo").create_stream(StreamName=name, DataRetentionInHours=24)
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "120",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-g", "25",
         "-keyint_min", "25", "-sc_threshold", "0",
         "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", "-"],
        stdout=subprocess.PIPE,
    )
    put = subprocess.Popen([BIN, "put", "--endpoint", server.url, "--stream", name, "-"],
                           stdin=ffmpeg.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    am = server.client("kinesis-video-archived-media")
    wait_for(lambda: len(am.list_fragments(StreamName=name)["Fragments"]) >= 2, timeout=30, what="live fragments")
    return ffmpeg, put


def rtsp_camera(server, name):
    """ffmpeg in real time publishing over RTSP (H.264 without B-frames, 1 s GOP)."""
    server.client("kinesisvideo").create_stream(StreamName=name, DataRetentionInHours=24)
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "120",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-g", "25",
         "-keyint_min", "25", "-sc_threshold", "0", "-f", "rtsp", "-rtsp_transport", "tcp",
         f"{server.rtsp_url}/{name}"],
    )
    am = server.client("kinesis-video-archived-media")
    wait_for(lambda: len(am.list_fragments(StreamName=name)["Fragments"]) >= 1, timeout=30, what="RTSP fragments")
    return ffmpeg


def watch(server, name, shot):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["node", str(WHEP), "--url", server.url, "--stream", name,
                        "--screenshot", str(ARTIFACTS / shot)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT / "web")
    report = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {"stderr": p.stderr}
    assert p.returncode == 0 and report["ok"], json.dumps(report, indent=1)[:3000]
    return report


def viewers(server):
    """kinescope_webrtc_viewers_total by source, from /metrics."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("kinescope_webrtc_viewers_total{"):
            source = line.split('source="')[1].split('"')[0]
            out[source] = float(line.rsplit(" ", 1)[1])
    return out


def test_an_rtsp_camera_is_watched_over_whep_frame_by_frame(server):
    """A live source puts its frames on the stream's bus: the WHEP viewer gets them as
    they arrive, not a GOP later with the fragment."""
    ffmpeg = rtsp_camera(server, "whep-rtsp")
    try:
        report = watch(server, "whep-rtsp", "whep-rtsp.png")
        assert (report["width"], report["height"]) == (320, 240) and report["framesDecoded"] > 10
        assert viewers(server) == {"live_bus": 1.0}
    finally:
        ffmpeg.kill()
        ffmpeg.wait()


def request(url, method, body=b"", content_type="application/sdp"):
    req = urllib.request.Request(url, method=method, data=body, headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_browser_watches_a_live_stream_over_whep(server):
    ffmpeg, put = live_camera(server, "whep-cam")
    try:
        report = watch(server, "whep-cam", "whep.png")
        assert report["type"].startswith("application/sdp") and report["location"].startswith("/v1/whep/")
        # PutMedia producers have no frame bus: the stored fragments are sent.
        assert viewers(server) == {"fragments": 1.0}
        assert (report["width"], report["height"]) == (320, 240) and report["framesDecoded"] > 10
        assert report["deleted"] == 200
    finally:
        ffmpeg.kill()
        put.kill()
        ffmpeg.wait()
        put.wait()


def test_whep_refusals(server):
    server.client("kinesisvideo").create_stream(StreamName="whep-empty", DataRetentionInHours=24)
    offer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    status, body = request(f"{server.url}/v1/streams/whep-nope/whep", "POST", offer)
    assert status == 404 and json.loads(body)["__type"].endswith("ResourceNotFoundException")
    status, _ = request(f"{server.url}/v1/streams/whep-empty/whep", "POST", offer, content_type="text/plain")
    assert status == 415
    status, body = request(f"{server.url}/v1/streams/whep-empty/whep", "POST", offer)
    assert status == 400 and b"H.264" in body  # nothing recorded yet
    status, _ = request(f"{server.url}/v1/streams/whep-empty/whep", "POST", b"x" * (65 * 1024))
    assert status in (400, 413)
    status, _ = request(f"{server.url}/v1/whep/0123", "DELETE")
    assert status == 404
    status, _ = request(f"{server.url}/v1/whep/0123", "PATCH", b"a=candidate:1", "application/trickle-ice-sdpfrag")
    assert status == 405
