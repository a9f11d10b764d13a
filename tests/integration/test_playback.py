"""HLS, DASH and GetClip, read by ffprobe/ffmpeg through the URLs boto3's
kinesis-video-archived-media client hands out."""

import datetime as dt
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import FIXTURES, BIN, decode_errors, ffprobe, mp4_top_boxes


def push(server, name, fixture="av.mp4"):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName=name, DataRetentionInHours=24)
    _, acks, _ = server.put(name, FIXTURES / fixture)
    assert [a for a in acks if a["EventType"] == "PERSISTED"]
    return server.client("kinesis-video-archived-media")


def server_range(server, name):
    """A SERVER_TIMESTAMP range that covers everything pushed so far."""
    am = server.client("kinesis-video-archived-media")
    frags = am.list_fragments(StreamName=name)["Fragments"]
    start = min(f["ServerTimestamp"] for f in frags) - dt.timedelta(seconds=1)
    end = max(f["ServerTimestamp"] for f in frags)
    return {"StartTimestamp": start, "EndTimestamp": end}, frags


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def status_of(url, headers=None):
    try:
        return get(url, headers)[0]
    except urllib.error.HTTPError as e:
        return e.code


def probe_duration(url):
    info = ffprobe(url)
    return float(info["format"]["duration"]), sorted(s["codec_name"] for s in info["streams"])


def test_hls_on_demand_plays_in_ffprobe_and_copies_with_ffmpeg(server, tmp_path):
    am = push(server, "hls-cam")
    rng, frags = server_range(server, "hls-cam")
    url = am.get_hls_streaming_session_url(
        StreamName="hls-cam",
        PlaybackMode="ON_DEMAND",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng},
    )["HLSStreamingSessionURL"]
    assert url.startswith(server.url + "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=")

    status, headers, master = get(url)
    assert status == 200
    assert headers["content-type"] == "application/vnd.apple.mpegurl"
    assert headers["access-control-allow-origin"] == "*"
    assert b'CODECS="avc1.' in master and b"mp4a.40.2" in master
    media_rel = [l for l in master.decode().splitlines() if l and not l.startswith("#")][0]
    media_url = urllib.parse.urljoin(url, media_rel)
    _, _, media = get(media_url)
    text = media.decode()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and "#EXT-X-ENDLIST" in text
    assert text.count("#EXTINF") == len(frags)

    duration, codecs = probe_duration(url)
    assert codecs == ["aac", "h264"]
    assert abs(duration - 4.0) <= 1.0, duration

    out = tmp_path / "copy.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", url, "-c", "copy", str(out)], check=True, timeout=60)
    rc, errors = decode_errors(out)
    assert rc == 0 and not errors.strip(), errors
    assert abs(float(ffprobe(out)["format"]["duration"]) - 4.0) <= 1.0

    # A fragment: immutable, ranged.
    seg_rel = [l for l in text.splitlines() if l.startswith("getMP4MediaFragment")][0]
    seg_url = urllib.parse.urljoin(media_url, seg_rel)
    status, headers, whole = get(seg_url)
    assert headers["cache-control"].endswith("immutable")
    assert mp4_top_boxes(whole)[0][0] == "moof"
    status, headers, part = get(seg_url, {"Range": "bytes=4-7"})
    assert (status, part, headers["content-range"]) == (206, b"moof", f"bytes 4-7/{len(whole)}")
    assert status_of(seg_url, {"Range": f"bytes={len(whole)}-"}) == 416


def test_hls_in_mpeg_ts_plays_with_clean_continuity_and_pcr(server, tmp_path):
    am = push(server, "ts-cam")
    rng, frags = server_range(server, "ts-cam")
    url = am.get_hls_streaming_session_url(
        StreamName="ts-cam", PlaybackMode="ON_DEMAND", ContainerFormat="MPEG_TS",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng},
    )["HLSStreamingSessionURL"]
    _, _, master = get(url)
    media_url = urllib.parse.urljoin(url, [l for l in master.decode().splitlines() if l and not l.startswith("#")][0])
    text = get(media_url)[2].decode()
    assert "#EXT-X-MAP" not in text and text.count("getTSFragment.ts") == len(frags), text
    seg_url = urllib.parse.urljoin(media_url, [l for l in text.splitlines() if l.startswith("getTSFragment")][0])
    status, headers, seg = get(seg_url)
    assert status == 200 and headers["content-type"] == "video/mp2t"
    assert len(seg) % 188 == 0 and seg[0] == 0x47

    # ffprobe reads the playlist as MPEG-TS segments: the codecs and the duration.
    duration, codecs = probe_duration(url)
    assert codecs == ["aac", "h264"]
    assert abs(duration - 4.0) <= 1.0, duration
    # Every segment, decoded with ffmpeg's report: no continuity-counter or PCR
    # complaints, no decode errors.
    report = tmp_path / "ts-report.log"
    p = subprocess.run(["ffmpeg", "-v", "error", "-report", "-i", url, "-f", "null", "-"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "FFREPORT": f"file={report}:level=32"})
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr
    log = report.read_text()
    complaints = ("continuity check failed", "pes packet size mismatch", "non monotonic", "corrupt", "pcr")
    assert not [c for c in complaints if c in log.lower()], log[-3000:]
    assert "frame=  100" in log, "every video frame decoded"
    # A copy into MP4 keeps every frame.
    out = tmp_path / "ts-copy.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", url, "-c", "copy", str(out)], check=True, timeout=60)
    streams = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json",
         str(out)], capture_output=True, text=True, check=True).stdout)["streams"]
    assert ("h264", "100") in [(s["codec_name"], s["nb_read_frames"]) for s in streams], streams


def test_dash_on_demand_has_one_adaptation_set_per_track_and_plays(server, tmp_path):
    am = push(server, "dash-cam")
    rng, _ = server_range(server, "dash-cam")
    url = am.get_dash_streaming_session_url(
        StreamName="dash-cam",
        PlaybackMode="ON_DEMAND",
        DisplayFragmentNumber="ALWAYS",
        DASHFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng},
    )["DASHStreamingSessionURL"]
    status, headers, mpd = get(url)
    assert headers["content-type"] == "application/dash+xml"
    text = mpd.decode()
    assert text.count("<AdaptationSet") == 2, text
    assert 'type="static"' in text and "kvs:fn=" in text
    duration, codecs = probe_duration(url)
    assert codecs == ["aac", "h264"]
    assert abs(duration - 4.0) <= 1.0, duration
    out = tmp_path / "dash.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", url, "-c", "copy", str(out)], check=True, timeout=60)
    rc, errors = decode_errors(out)
    assert rc == 0 and not errors.strip(), errors


def test_get_clip_is_a_progressive_mp4_of_the_range(server, tmp_path):
    am = push(server, "clip-cam")
    rng, frags = server_range(server, "clip-cam")
    resp = am.get_clip(
        StreamName="clip-cam",
        ClipFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng},
    )
    assert resp["ContentType"] == "video/mp4"
    data = resp["Payload"].read()
    assert [b[0] for b in mp4_top_boxes(data)] == ["ftyp", "moov", "mdat"]
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(data)
    info = ffprobe(clip)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]
    assert abs(float(info["format"]["duration"]) - 4.0) <= 1.0
    rc, errors = decode_errors(clip)
    assert rc == 0 and not errors.strip(), errors

    # Two of the four fragments, by producer time.
    frags.sort(key=lambda f: f["ProducerTimestamp"])
    two = {"StartTimestamp": frags[1]["ProducerTimestamp"], "EndTimestamp": frags[2]["ProducerTimestamp"]}
    data = am.get_clip(
        StreamName="clip-cam",
        ClipFragmentSelector={"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": two},
    )["Payload"].read()
    clip.write_bytes(data)
    assert abs(float(ffprobe(clip)["format"]["duration"]) - 2.0) <= 1.0


def test_session_and_clip_errors(server):
    am = push(server, "err-cam")
    kv = server.client("kinesisvideo")
    now = dt.datetime.now(dt.timezone.utc)

    def code(call, **kw):
        with pytest.raises(ClientError) as e:
            call(**kw)
        return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]

    hls = am.get_hls_streaming_session_url
    # Checked by the server too, not only by botocore's validation.
    unchecked = server.client("kinesis-video-archived-media", parameter_validation=False)
    assert code(hls, StreamName="nope") == ("ResourceNotFoundException", 404)
    assert code(unchecked.get_hls_streaming_session_url, StreamName="err-cam", Expires=100) == ("InvalidArgumentException", 400)
    assert code(hls, StreamName="err-cam", PlaybackMode="ON_DEMAND") == ("InvalidArgumentException", 400)
    assert code(unchecked.get_hls_streaming_session_url, StreamName="err-cam", ContainerFormat="MPEG2") == (
        "InvalidArgumentException", 400)
    backwards = {"StartTimestamp": now, "EndTimestamp": now - dt.timedelta(minutes=1)}
    sel = {"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": backwards}
    assert code(hls, StreamName="err-cam", PlaybackMode="ON_DEMAND", HLSFragmentSelector=sel)[0] == "InvalidArgumentException"
    empty = {"StartTimestamp": now - dt.timedelta(days=3), "EndTimestamp": now - dt.timedelta(days=2)}
    sel = {"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": empty}
    assert code(hls, StreamName="err-cam", PlaybackMode="ON_DEMAND", HLSFragmentSelector=sel) == ("ResourceNotFoundException", 404)
    too_long = {"StartTimestamp": now - dt.timedelta(days=3), "EndTimestamp": now - dt.timedelta(hours=1)}
    sel = {"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": too_long}
    assert code(hls, StreamName="err-cam", PlaybackMode="ON_DEMAND", HLSFragmentSelector=sel)[0] == "InvalidArgumentException"
    assert code(am.get_clip, StreamName="err-cam", ClipFragmentSelector={
        "FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": empty}) == ("ResourceNotFoundException", 404)
    kv.create_stream(StreamName="no-retention", DataRetentionInHours=0)
    assert code(hls, StreamName="no-retention")[0] == "NoDataRetentionException"
    kv.create_stream(StreamName="silent", DataRetentionInHours=1)
    assert code(hls, StreamName="silent") == ("ResourceNotFoundException", 404)


def test_tokens_are_checked_and_segment_urls_bounded(server):
    am = push(server, "tok-cam")
    url = am.get_hls_streaming_session_url(StreamName="tok-cam", PlaybackMode="LIVE")["HLSStreamingSessionURL"]
    assert status_of(url) == 200
    base, token = url.split("SessionToken=")
    payload, sig = token.split(".")
    forged = base + "SessionToken=" + payload + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
    assert status_of(forged) == 403
    assert status_of(base + "SessionToken=garbage") == 403
    assert status_of(base.rstrip("?")) == 400
    seg = server.url + "/hls/v1/getMP4MediaFragment.mp4?SessionToken=" + token
    assert status_of(seg + "&FragmentNumber=999999") == 404
    assert status_of(seg + "&FragmentNumber=abc") == 400
    # A DASH token does not open HLS URLs.
    dash = am.get_dash_streaming_session_url(StreamName="tok-cam")["DASHStreamingSessionURL"]
    dash_token = dash.split("SessionToken=")[1]
    assert status_of(server.url + "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=" + dash_token) == 403
    # Deleting the stream ends its sessions.
    kv = server.client("kinesisvideo")
    kv.delete_stream(StreamARN=kv.describe_stream(StreamName="tok-cam")["StreamInfo"]["StreamARN"])
    assert status_of(url) == 404


def test_live_playlist_grows_while_a_producer_pushes_in_real_time(server):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="live-cam", DataRetentionInHours=24)
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "12",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
         "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", "-"],
        stdout=subprocess.PIPE,
    )
    put = subprocess.Popen([BIN, "put", "--endpoint", server.url, "--stream", "live-cam", "-"],
                           stdin=ffmpeg.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        am = server.client("kinesis-video-archived-media")
        url = None
        for _ in range(100):
            try:
                url = am.get_hls_streaming_session_url(StreamName="live-cam")["HLSStreamingSessionURL"]
                break
            except ClientError:
                time.sleep(0.2)
        assert url, "no live session once fragments arrived"
        master = get(url)[2].decode()
        media_url = urllib.parse.urljoin(url, [l for l in master.splitlines() if l and not l.startswith("#")][0])
        seen = []
        for _ in range(8):
            status, headers, body = get(media_url)
            text = body.decode()
            assert headers["cache-control"] == "no-cache"
            assert "#EXT-X-ENDLIST" not in text
            seq = int([l for l in text.splitlines() if l.startswith("#EXT-X-MEDIA-SEQUENCE")][0].split(":")[1]) \
                if "#EXT-X-MEDIA-SEQUENCE" in text else 0
            last = [l for l in text.splitlines() if l.startswith("getMP4MediaFragment")][-1]
            seen.append((seq, last))
            time.sleep(1)
        newest = [s[1] for s in seen]
        assert len(set(newest)) >= 4, f"live playlist did not advance: {seen}"
        assert [s[0] for s in seen] == sorted(s[0] for s in seen)
    finally:
        ffmpeg.kill()
        put.kill()
        ffmpeg.wait()
        put.wait()


def media_playlist_of(url):
    master = get(url)[2].decode()
    media_url = urllib.parse.urljoin(url, [l for l in master.splitlines() if l and not l.startswith("#")][0])
    return media_url, get(media_url)[2].decode()


def test_a_second_producer_session_is_a_discontinuity_with_its_own_init(server, tmp_path):
    am = push(server, "two-sessions")
    time.sleep(0.3)
    server.put("two-sessions", FIXTURES / "video_only.mp4")  # another init: no audio track
    rng, frags = server_range(server, "two-sessions")
    url = am.get_hls_streaming_session_url(
        StreamName="two-sessions",
        PlaybackMode="ON_DEMAND",
        DiscontinuityMode="ON_DISCONTINUITY",
        DisplayFragmentTimestamp="ALWAYS",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng},
    )["HLSStreamingSessionURL"]
    _, text = media_playlist_of(url)
    assert text.count("#EXT-X-MAP:") == 2, text
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1, text
    assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == len(frags)
    # Both sessions play back, one after the other.
    out = tmp_path / "both.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", url, "-c", "copy", str(out)], check=True, timeout=60)
    assert float(ffprobe(out)["format"]["duration"]) >= 5.0

    # DASH starts a new period where the init segment changes.
    dash = am.get_dash_streaming_session_url(
        StreamName="two-sessions",
        PlaybackMode="ON_DEMAND",
        DASHFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng},
    )["DASHStreamingSessionURL"]
    mpd = get(dash)[2].decode()
    assert mpd.count("<Period") == 2, mpd


def test_live_replay_adds_fragments_as_time_passes(server):
    am = push(server, "replay-cam")
    rng, frags = server_range(server, "replay-cam")
    url = am.get_hls_streaming_session_url(
        StreamName="replay-cam",
        PlaybackMode="LIVE_REPLAY",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng},
    )["HLSStreamingSessionURL"]
    _, first = media_playlist_of(url)
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in first
    assert first.count("#EXTINF") < len(frags) and "#EXT-X-ENDLIST" not in first
    deadline = time.time() + 15
    while time.time() < deadline:
        _, text = media_playlist_of(url)
        if "#EXT-X-ENDLIST" in text:
            break
        time.sleep(0.5)
    assert "#EXT-X-ENDLIST" in text, text
    assert text.count("#EXTINF") == len(frags)


def test_players_can_fetch_from_another_origin(server):
    am = push(server, "cors-cam")
    url = am.get_hls_streaming_session_url(StreamName="cors-cam")["HLSStreamingSessionURL"]
    req = urllib.request.Request(url, method="OPTIONS", headers={
        "Origin": "http://elsewhere.test", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "GET" in r.headers["Access-Control-Allow-Methods"]
    req = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200 and r.read() == b""


def test_cors_origin_is_configurable(data_dir):
    from conftest import Server
    s = Server(data_dir, extra_args=["--cors-allow-origin", "https://viewer.example"]).start()
    try:
        am = push(s, "cors-conf")
        url = am.get_hls_streaming_session_url(StreamName="cors-conf")["HLSStreamingSessionURL"]
        assert get(url)[1]["access-control-allow-origin"] == "https://viewer.example"
    finally:
        s.stop()


def test_hevc_plays_through_hls_dash_and_clips(server, tmp_path):
    am = push(server, "hevc-cam", fixture="hevc.mp4")
    rng, _ = server_range(server, "hevc-cam")
    sel = {"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng}
    hls = am.get_hls_streaming_session_url(StreamName="hevc-cam", PlaybackMode="ON_DEMAND",
                                           HLSFragmentSelector=sel)["HLSStreamingSessionURL"]
    assert b'CODECS="hvc1.' in get(hls)[2]
    duration, codecs = probe_duration(hls)
    assert codecs == ["hevc"] and abs(duration - 2.0) <= 1.0
    dash = am.get_dash_streaming_session_url(StreamName="hevc-cam", PlaybackMode="ON_DEMAND",
                                             DASHFragmentSelector=sel)["DASHStreamingSessionURL"]
    assert probe_duration(dash)[1] == ["hevc"]
    clip = tmp_path / "hevc.mp4"
    clip.write_bytes(am.get_clip(StreamName="hevc-cam", ClipFragmentSelector=sel)["Payload"].read())
    rc, errors = decode_errors(clip)
    assert rc == 0 and not errors.strip(), errors
