"""Low-Latency HLS on a live RTSP camera (ffmpeg in real time): the playlist's parts and
server control, blocking reloads and preload hints, parts served from memory and from
the store, the errors, and hls.js in low-latency mode in Chromium with its delay
measured. Sessions ask for it with Kinescope's `LowLatency` extension of
GetHLSStreamingSessionURL, added to boto3's request the way the README shows."""

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

from conftest import wait_for

PART_RE = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"(,INDEPENDENT=YES)?')


def low_latency(client):
    """Adds `"LowLatency": true` to GetHLSStreamingSessionURL's body before it is signed
    (boto3 validates parameters against the AWS model, which does not have it)."""

    def add(params, **_):
        body = json.loads(params["body"] or b"{}")
        body["LowLatency"] = True
        params["body"] = json.dumps(body).encode()

    client.meta.events.register("before-call.kinesis-video-archived-media.GetHLSStreamingSessionURL", add)
    return client


def get(url, timeout=30):
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - t0


@pytest.fixture
def camera(server):
    """A stream fed by an RTSP camera in real time: 25 fps, 1 s GOPs, no B-frames."""
    server.client("kinesisvideo").create_stream(StreamName="cam", DataRetentionInHours=24)
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "120",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-keyint_min", "25",
         "-sc_threshold", "0", "-f", "rtsp", "-rtsp_transport", "tcp", f"{server.rtsp_url}/cam"],
        stderr=subprocess.PIPE,
    )
    am = server.client("kinesis-video-archived-media")
    wait_for(lambda: len(am.list_fragments(StreamName="cam")["Fragments"]) >= 6, timeout=40, what="six fragments")
    yield server
    ffmpeg.kill()
    ffmpeg.wait()


def session_urls(server):
    am = low_latency(server.client("kinesis-video-archived-media"))
    master = am.get_hls_streaming_session_url(StreamName="cam", PlaybackMode="LIVE")["HLSStreamingSessionURL"]
    base = master.rsplit("/", 1)[0] + "/"
    return master.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist"), base


def last_msn(text):
    seq = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    return seq + text.count("#EXTINF") - 1


def test_the_playlist_lists_parts_of_the_fragment_being_received(camera):
    media, base = session_urls(camera)
    status, body, _ = get(media)
    assert status == 200
    text = body.decode()
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600" in text, text
    assert "#EXT-X-PART-INF:PART-TARGET=0.200" in text
    parts = PART_RE.findall(text)
    # Parts for the last segments (five 200 ms chunks per 1 s GOP), the first of each
    # independent, and the segment being received after the last #EXTINF.
    assert len(parts) >= 10, text
    assert all(abs(float(d) - 0.2) < 0.001 for d, _, _ in parts), parts
    first_parts = [u for _, u, ind in parts if ind]
    assert first_parts and all(u.endswith("&PartNumber=0") for u in first_parts)
    hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text)
    assert hint and text.rstrip().endswith(hint.group(0)), text[-400:]

    # A stored segment is its parts end to end: from memory for the newest, cut from
    # the stored fragment for one whose parts left memory.
    segments = re.findall(r"#EXTINF:[\d.]+,\n(\S+)", text)
    newest = segments[-1]
    number = re.search(r"FragmentNumber=(\d+)", newest).group(1)
    whole = get(base + newest)[1]
    pieces = [get(base + u)[1] for _, u, _ in parts if f"FragmentNumber={number}&" in u]
    assert len(pieces) == 5 and b"".join(pieces) == whole
    oldest = re.search(r"FragmentNumber=(\d+)", segments[0]).group(1)
    stored_whole = get(base + segments[0])[1]
    token = re.search(r"SessionToken=([^&]+)", segments[0]).group(1)
    stored_parts = []
    for i in range(8):
        status, data, _ = get(f"{base}getMP4MediaPart.mp4?SessionToken={token}&FragmentNumber={oldest}&PartNumber={i}")
        if status != 200:
            assert status == 404 and b"has no part" in data, data
            break
        stored_parts.append(data)
    assert len(stored_parts) == 5 and b"".join(stored_parts) == stored_whole

    # A part decodes after the init segment.
    init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)
    with open(camera.data_dir / "part.mp4", "wb") as f:
        f.write(get(base + init_uri)[1] + pieces[0] + pieces[1])
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames",
                            "-of", "csv=p=0", str(camera.data_dir / "part.mp4")], capture_output=True, text=True)
    assert probe.stdout.strip() == "10", probe


def test_blocking_reloads_and_preload_hints_wait_for_the_part(camera):
    media, base = session_urls(camera)
    text = get(media)[1].decode()
    hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text).group(1)
    number, part = map(int, re.search(r"FragmentNumber=(\d+)&PartNumber=(\d+)", hint).groups())
    # Segment numbers are fragment numbers shifted by the window's start.
    last_fragment = int(re.findall(r"FragmentNumber=(\d+)\n", text)[-1])
    wanted_msn = last_msn(text) + number - last_fragment
    # The hinted part and a reload blocked on it, at once: both answer when it arrives.
    results = {}

    def fetch(key, url):
        results[key] = get(url)

    threads = [threading.Thread(target=fetch, args=("part", base + hint)),
               threading.Thread(target=fetch, args=("reload", f"{media}&_HLS_msn={wanted_msn}&_HLS_part={part}"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status, data, part_s = results["part"]
    assert status == 200 and data[4:8] == b"moof", (status, data[:100])
    status, body, reload_s = results["reload"]
    assert status == 200, body
    reloaded = body.decode()
    assert f"FragmentNumber={number}&PartNumber={part}\"" in reloaded, reloaded[-600:]
    print(f"\npreload hint answered in {part_s * 1000:.0f} ms, the blocked reload in {reload_s * 1000:.0f} ms "
          f"(difference {abs(reload_s - part_s) * 1000:.0f} ms; a part lasts 200 ms)")

    # Asking for a whole segment waits until it is complete.
    text = get(media)[1].decode()
    msn = last_msn(text)
    status, body, waited = get(f"{media}&_HLS_msn={msn + 1}")
    assert status == 200 and last_msn(body.decode()) >= msn + 1
    print(f"a reload blocked on the next segment answered after {waited * 1000:.0f} ms")
    # The metrics count what waited (on a cluster, the writer's: a follower's /metrics
    # is its own).
    metrics = get(f"{getattr(camera, 'writer', camera).url}/metrics")[1].decode()
    reloads = re.findall(r'kinescope_ll_hls_requests_total\{request="reload",outcome="(\w+)"\} (\d+)', metrics)
    assert dict(reloads).get("waited") or dict(reloads).get("immediate"), metrics[-2000:]
    assert re.search(r'kinescope_ll_hls_requests_total\{request="part",outcome="(memory|waited)"\} [1-9]', metrics)


def test_bad_low_latency_requests_get_clear_errors(camera):
    media, base = session_urls(camera)
    text = get(media)[1].decode()
    msn = last_msn(text)
    status, body, _ = get(f"{media}&_HLS_msn={msn + 5}")
    assert status == 400 and json.loads(body)["__type"] == "InvalidArgumentException"
    assert b"more than two segments" in body
    status, body, _ = get(f"{media}&_HLS_part=1")
    assert status == 400 and b"_HLS_part needs _HLS_msn" in body
    status, body, _ = get(f"{media}&_HLS_msn=abc")
    assert status == 400
    # Parts belong to low-latency sessions; LowLatency to LIVE HLS.
    am = camera.client("kinesis-video-archived-media")
    plain = am.get_hls_streaming_session_url(StreamName="cam", PlaybackMode="LIVE")["HLSStreamingSessionURL"]
    plain_text = get(plain.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist"))[1].decode()
    assert "#EXT-X-PART" not in plain_text and "SERVER-CONTROL" not in plain_text
    token = re.search(r"SessionToken=([^&]+)", plain).group(1)
    status, body, _ = get(f"{base}getMP4MediaPart.mp4?SessionToken={token}&FragmentNumber=1&PartNumber=0")
    assert status == 404 and b"LowLatency sessions only" in body
    ll = low_latency(camera.client("kinesis-video-archived-media"))
    now = time.time()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ll.get_hls_streaming_session_url(
            StreamName="cam", PlaybackMode="ON_DEMAND",
            HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP",
                                 "TimestampRange": {"StartTimestamp": now - 60, "EndTimestamp": now - 1}})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert "LIVE" in e.value.response["Error"]["Message"]
    # Parts are CMAF chunks: a low-latency session is fragmented MP4.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ll.get_hls_streaming_session_url(StreamName="cam", PlaybackMode="LIVE", ContainerFormat="MPEG_TS")
    assert "FRAGMENTED_MP4" in e.value.response["Error"]["Message"]
    # A part that will never come (a fragment far ahead) is not waited for.
    ll_token = re.search(r"SessionToken=([^&]+)", media).group(1)
    status, body, _ = get(f"{base}getMP4MediaPart.mp4?SessionToken={ll_token}&FragmentNumber=999999&PartNumber=0")
    assert status == 404 and b"not part of this session" in body


def test_hls_js_in_low_latency_mode_plays_the_camera(camera):
    from test_browser import play
    report = play(f"{camera.url}/?stream=cam&player=hls&mode=LIVE&autoplay=1", "ll-hls", advance=2.0, sample=4)
    assert report["final"]["status"] == "playing"
    measured = sorted(d["measured"] for d in report["delays"] if d["measured"] is not None)
    estimate = sorted(d["estimate"] for d in report["delays"] if d["estimate"])
    assert measured and all(m > 0 for m in measured), report["delays"]
    print(f"\nLL-HLS live delay in Chromium: measured p50 {measured[len(measured) // 2]:.2f} s, "
          f"hls.js estimate p50 {estimate[len(estimate) // 2] if estimate else float('nan'):.2f} s")
