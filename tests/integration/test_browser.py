"""The watch page and the players in a real browser: headless Debian Chromium driven by
Playwright (web/tests/play.mjs). Screenshots land in target/test-artifacts/."""

import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, FIXTURES, ROOT

ARTIFACTS = ROOT / "target" / "test-artifacts"
PLAY = ROOT / "web" / "tests" / "play.mjs"


@pytest.fixture(scope="module", autouse=True)
def browser_tools():
    missing = [p for p in (Path("/usr/bin/chromium"), ROOT / "web" / "node_modules" / "playwright-core") if not p.exists()]
    assert not missing, f"run scripts/setup test first; missing: {missing}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


def play(url, name, click=None, advance=1.0, timeout=40, keys=None, timeline=False, overlay=False, sample=0):
    """Runs the page in Chromium until playback advances; returns play.mjs's report."""
    args = ["node", str(PLAY), "--url", url, "--screenshot", str(ARTIFACTS / f"{name}.png"),
            "--advance", str(advance), "--timeout", str(timeout)]
    if click:
        args += ["--click", click]
    if keys:
        args += ["--keys", f"{keys[0]}:{keys[1]}"]
    if timeline:
        args += ["--timeline", "1"]
    if overlay:
        args += ["--overlay", "1"]
    if sample:
        args += ["--sample", str(sample)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 60, cwd=ROOT / "web")
    report = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {"stderr": p.stderr}
    assert p.returncode == 0 and report.get("ok"), json.dumps(report, indent=1)[:4000]
    return report


def recorded(server, name):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName=name, DataRetentionInHours=24)
    server.put(name, FIXTURES / "av.mp4")
    time.sleep(1)  # the page's SERVER_TIMESTAMP range ends a moment before "now"
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("player", ["hls", "dash"])
def test_on_demand_plays_in_the_page(server, player):
    since = recorded(server, f"vod-{player}")
    report = play(f"{server.url}/?stream=vod-{player}&player={player}&mode=ON_DEMAND&from={since}&autoplay=1",
                  f"on-demand-{player}")
    assert report["final"]["status"] == "playing"


def test_mpeg_ts_hls_plays_in_hls_js(server):
    since = recorded(server, "vod-ts")
    report = play(f"{server.url}/?stream=vod-ts&player=hls&mode=ON_DEMAND&from={since}&autoplay=1&container=MPEG_TS",
                  "on-demand-ts")
    assert report["final"]["status"] == "playing"


def test_the_page_lists_streams_and_plays_the_one_clicked(server):
    since = recorded(server, "lobby")
    recorded(server, "garage")
    report = play(f"{server.url}/?player=hls&mode=ON_DEMAND&from={since}", "list-click", click="garage")
    assert report["final"]["status"] == "playing"
    # Beside the session URL, the stream's RTSP URL to copy.
    assert report["rtspUrl"] == f"{server.rtsp_url}/garage"


def test_with_access_keys_the_page_signs_in_and_plays(signed_server):
    """Keys configured (as any deployment past loopback has them): the page asks for one,
    signs its requests with SigV4 in the browser, lists the streams and plays."""
    since = recorded(signed_server, "signed-cam")
    report = play(f"{signed_server.url}/?player=hls&mode=ON_DEMAND&from={since}", "signed-in",
                  click="signed-cam", keys=signed_server.keys)
    assert report["final"]["status"] == "playing"
    assert any("signed-cam" in row for row in report["rows"])


def test_the_timeline_shows_what_was_recorded_and_plays_from_a_click(server):
    """ListFragments drawn as a bar of recorded ranges; clicking one plays from there. The
    page starts at a time with nothing recorded (its first play fails), so only the click
    can start playback."""
    recorded(server, "timeline-cam")
    empty = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = play(f"{server.url}/?stream=timeline-cam&player=hls&mode=ON_DEMAND&from={empty}&autoplay=1",
                  "timeline", timeline=True)
    assert report["timelineRanges"] >= 1
    assert report["final"]["status"] == "playing"


def test_live_plays_in_hls_and_dash_while_a_camera_pushes(server):
    server.client("kinesisvideo").create_stream(StreamName="live", DataRetentionInHours=24)
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "90",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
         "-c:a", "aac", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", "-"],
        stdout=subprocess.PIPE,
    )
    put = subprocess.Popen([BIN, "put", "--endpoint", server.url, "--stream", "live", "-"],
                           stdin=ffmpeg.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        am = server.client("kinesis-video-archived-media")
        # A few fragments first, so a player has a window to start in.
        deadline = time.time() + 30
        while time.time() < deadline and len(am.list_fragments(StreamName="live")["Fragments"]) < 4:
            time.sleep(0.5)
        for player in ("hls", "dash"):
            report = play(f"{server.url}/?stream=live&player={player}&mode=LIVE&autoplay=1", f"live-{player}",
                          advance=3.0, sample=2 if player == "hls" else 0)
            assert report["final"]["time"] > 0
            if player == "hls":
                # The page measures its delay against the fragments' arrival at the server.
                measured = [d["measured"] for d in report["delays"] if d["measured"] is not None]
                assert measured and all(m > 0 for m in measured), report["delays"]
    finally:
        ffmpeg.kill()
        put.kill()
        ffmpeg.wait()
        put.wait()


def test_a_pulled_ip_camera_plays_live_in_the_page(server):
    """IP camera (GStreamer's RTSP server) → pulled by Kinescope → LIVE HLS in Chromium,
    with the camera's status in the stream list."""
    from test_rtsp import HAVE_GST_PY, Camera, fragments, source, wait_until

    from conftest import free_port
    if not HAVE_GST_PY:
        pytest.skip("GStreamer's RTSP server for Python is not installed")
    port = free_port()
    cam = Camera(port, "porch").start()
    try:
        server.client("kinesisvideo").create_stream(StreamName="porch", DataRetentionInHours=24)
        assert source(server, "porch", "PUT", {"url": f"rtsp://127.0.0.1:{port}/porch"})[0] == 200
        assert wait_until(lambda: len(fragments(server, "porch")) >= 4, timeout=30)
        report = play(f"{server.url}/?stream=porch&player=hls&mode=LIVE&autoplay=1", "camera-live", advance=2.0)
        assert report["final"]["time"] > 0
        row = next(r for r in report["rows"] if r.startswith("porch"))
        assert "camera · 25 fps" in row or ("camera" in row and "fps" in row), row
    finally:
        cam.stop()


def test_detections_in_a_bound_data_stream_are_drawn_over_the_video(server):
    """Frame-event metadata back on the video: records a vision program wrote into a data
    stream, bound to the video stream, show as boxes over the frames they describe."""
    since = recorded(server, "overlay-cam")
    kinesis = server.client("kinesis")
    kinesis.create_stream(StreamName="overlay-meta", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="overlay-meta", WaiterConfig={"Delay": 1})
    arn = kinesis.describe_stream_summary(StreamName="overlay-meta")["StreamDescriptionSummary"]["StreamARN"]
    frags = server.client("kinesis-video-archived-media").list_fragments(StreamName="overlay-cam")["Fragments"]
    first = int(min(f["ProducerTimestamp"] for f in frags).timestamp() * 1000)
    detections = [{"streamName": "overlay-cam", "frameTimestampMs": first + k * 200, "label": "person",
                   "score": 0.9, "x": 0.25, "y": 0.2, "w": 0.5, "h": 0.6} for k in range(20)]
    # Noise the overlay must skip: another camera, and a record that is not JSON.
    kinesis.put_records(StreamName="overlay-meta", Records=[
        {"Data": json.dumps(d).encode(), "PartitionKey": "overlay-cam"} for d in detections] + [
        {"Data": json.dumps({**detections[0], "streamName": "other"}).encode(), "PartitionKey": "x"},
        {"Data": b"\xff", "PartitionKey": "x"}])

    import urllib.request
    req = urllib.request.Request(f"{server.url}/v1/streams/overlay-cam/metadata", method="PUT",
                                 data=json.dumps({"DataStreamARN": arn}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["DataStreamARN"] == arn
    with urllib.request.urlopen(f"{server.url}/v1/streams/overlay-cam/detections?start={first}&end={first + 4000}",
                                timeout=10) as r:
        got = json.loads(r.read())["Detections"]
    assert [d["frameTimestampMs"] for d in got] == [d["frameTimestampMs"] for d in detections]
    numbers = sorted((f["FragmentNumber"] for f in frags), key=int)
    # Each detection placed in the video: its fragment, and where in it.
    assert [(d["fragmentNumber"], d["fragmentOffsetMs"]) for d in got] == [
        (numbers[k // 5], (k % 5) * 200) for k in range(20)]

    report = play(f"{server.url}/?stream=overlay-cam&player=hls&mode=ON_DEMAND&from={since}&autoplay=1",
                  "detections-overlay", overlay=True)
    assert report["overlay"]["drawn"] == 1
    assert report["overlay"]["fragment"] in numbers and report["overlay"]["frameMs"] in (0, 200, 400, 600, 800)


def test_live_plays_over_webrtc_in_the_page(server):
    """The watch page's WebRTC player: WHEP from an RTSP camera's live bus, in Chromium."""
    server.client("kinesisvideo").create_stream(StreamName="rtc", DataRetentionInHours=24)
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "90",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
         "-f", "rtsp", "-rtsp_transport", "tcp", f"{server.rtsp_url}/rtc"])
    try:
        am = server.client("kinesis-video-archived-media")
        deadline = time.time() + 30
        while time.time() < deadline and not am.list_fragments(StreamName="rtc")["Fragments"]:
            time.sleep(0.5)
        report = play(f"{server.url}/?stream=rtc&player=whep&mode=LIVE&autoplay=1", "live-whep", advance=2.0)
        assert report["final"]["status"] == "playing"
        assert report["final"]["time"] > 0
    finally:
        ffmpeg.kill()
        ffmpeg.wait()
