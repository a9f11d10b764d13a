"""WHIP (RFC 9725): Chromium's fake camera and microphone published through the publish
page (web/tests/whip.mjs) into a stream; the recording is fragments like any other —
listed with boto3, cut by GetClip into H.264 + Opus that ffmpeg decodes, played in
hls.js, and watched live over WHEP. Bad offers get clear errors."""

import datetime as dt
import json
import re
import subprocess
import threading
import urllib.error
import urllib.request

from conftest import ROOT, recent_clip, wait_for

WHIP = ROOT / "web" / "tests" / "whip.mjs"


def publish(server, stream, seconds=6, audio=False, source=None, keep=False, token=None):
    args = ["node", str(WHIP), "--url", server.url, "--stream", stream, "--seconds", str(seconds)]
    if token:
        args += ["--token", token]
    if audio:
        args += ["--audio", "1"]
    if source:
        args += ["--source", source]
    if keep:
        args += ["--keep", "1"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 90, cwd=ROOT / "web")
    report = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {"stderr": p.stderr}
    assert p.returncode == 0 and report.get("ok"), json.dumps(report, indent=1)[:3000]
    return report


def post(server, stream, body, content_type="application/sdp", method="POST", path=None):
    url = server.url + (path or f"/v1/streams/{stream}/whip")
    req = urllib.request.Request(url, data=body.encode() if body is not None else None, method=method,
                                 headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def offer(codec="H264/90000"):
    """An offer as a browser makes one (the ICE and DTLS lines are what the server
    checks; no peer answers them)."""
    return "\r\n".join([
        "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 102", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=mid:0", "a=sendonly",
        "a=rtcp-mux", f"a=rtpmap:102 {codec}", "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f", ""])


def test_a_browser_camera_and_microphone_publish_into_a_stream(server):
    server.client("kinesisvideo").create_stream(StreamName="webcam", DataRetentionInHours=24)
    report = publish(server, "webcam", seconds=7, audio=True)
    assert report["state"]["stats"]["audioPackets"] > 0
    print(f"\npublished {report['state']['stats']['framesEncoded']} frames "
          f"({report['state']['stats']['encoder']}), {report['state']['stats']['audioPackets']} audio packets")
    assert report["stopped"] == "stopped"
    am = server.client("kinesis-video-archived-media")
    # The session's last fragment is stored when DELETE ends it.
    frags = wait_for(lambda: len(am.list_fragments(StreamName="webcam")["Fragments"]) >= 3 and
                     am.list_fragments(StreamName="webcam")["Fragments"], timeout=15, what="fragments")
    # A keyframe is asked for every 2 s: whole fragments of about that length.
    lengths = sorted(int(f["FragmentLengthInMilliseconds"]) for f in frags)
    assert any(1800 <= n <= 2200 for n in lengths), lengths
    streams = recent_clip(server, "webcam", "webcam.mp4")
    assert streams["h264"]["width"] == 640 and streams["h264"]["height"] == 360, streams
    assert "opus" in streams, streams
    now = dt.datetime.now(dt.timezone.utc)

    # The metrics saw the publisher connect and its packets arrive.
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert 'kinescope_webrtc_connections_total{role="whip",outcome="connected"} 1' in metrics, metrics[-3000:]
    rtp_in = re.search(r"^kinescope_webrtc_rtp_in_total (\d+)", metrics, re.M)
    assert rtp_in and int(rtp_in.group(1)) > 100, metrics[-3000:]

    from test_browser import play
    since = (now - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    played = play(f"{server.url}/?stream=webcam&player=hls&mode=ON_DEMAND&from={since}&autoplay=1", "whip-hls")
    assert played["final"]["status"] == "playing"


def test_whip_to_whep_while_publishing(server):
    """A page's clock canvas published over WHIP, watched over WHEP from the live bus;
    the glass-to-glass delay read back from the frames is printed. Then a camera with a
    microphone: the WHEP viewer gets its Opus audio too, passed through."""
    server.client("kinesisvideo").create_stream(StreamName="clock", DataRetentionInHours=24)
    publisher = threading.Thread(target=publish, args=(server, "clock"), kwargs={"seconds": 25, "source": "clock"})
    publisher.start()
    try:
        am = server.client("kinesis-video-archived-media")
        wait_for(lambda: am.list_fragments(StreamName="clock")["Fragments"], timeout=30, what="a fragment")
        p = subprocess.run(["node", "tests/whep.mjs", "--url", server.url, "--stream", "clock", "--sample", "5",
                            "--clock", "1"], capture_output=True, text=True, timeout=90, cwd=ROOT / "web")
        report = json.loads(p.stdout.strip().splitlines()[-1])
        assert p.returncode == 0 and report["ok"], report
        glass = sorted(d["glass"] for d in report["delays"] if d.get("glass") is not None)
        assert glass, report["delays"]
        print(f"\nWHIP → WHEP glass to glass: p50 {glass[len(glass) // 2]} ms over {len(glass)} frames")
        assert report["audioPackets"] == 0, "the clock canvas has no audio"
    finally:
        publisher.join()
    server.client("kinesisvideo").create_stream(StreamName="talk", DataRetentionInHours=24)
    publisher = threading.Thread(target=publish, args=(server, "talk"), kwargs={"seconds": 20, "audio": True})
    publisher.start()
    try:
        am = server.client("kinesis-video-archived-media")
        wait_for(lambda: am.list_fragments(StreamName="talk")["Fragments"], timeout=30, what="a fragment")
        p = subprocess.run(["node", "tests/whep.mjs", "--url", server.url, "--stream", "talk", "--sample", "2"],
                           capture_output=True, text=True, timeout=90, cwd=ROOT / "web")
        report = json.loads(p.stdout.strip().splitlines()[-1])
        assert p.returncode == 0 and report["ok"], report
        assert report["audioPackets"] > 20, report
        print(f"WHEP with Opus: {report['framesDecoded']} frames and {report['audioPackets']} audio packets")
    finally:
        publisher.join()


def test_bad_whip_requests_get_clear_errors(server):
    server.client("kinesisvideo").create_stream(StreamName="cam", DataRetentionInHours=24)
    status, _, body = post(server, "cam", "this is not SDP")
    assert status == 400 and json.loads(body)["__type"] == "InvalidArgumentException"
    status, _, body = post(server, "cam", offer("VP8/90000"))
    assert status == 400 and b"neither H.264 video nor Opus audio" in body
    status, _, body = post(server, "cam", offer(), content_type="text/plain")
    assert status == 415
    status, _, body = post(server, "cam", "v=0\r\n" + "a=x\r\n" * 20_000)
    assert status == 400 and b"at most" in body
    status, _, body = post(server, "nope", offer())
    assert status == 404 and json.loads(body)["__type"] == "ResourceNotFoundException"
    # A newer publisher replaces an older one that has not connected.
    status, headers, answer = post(server, "cam", offer())
    assert status == 201 and headers["Content-Type"] == "application/sdp" and answer.startswith(b"v=0")
    first = headers["Location"]
    status, headers, _ = post(server, "cam", offer())
    assert status == 201 and headers["Location"] != first
    wait_for(lambda: post(server, None, None, method="DELETE", path=first)[0] == 404, timeout=10,
             what="the older session to end")
    status, _, _ = post(server, None, "a=candidate", content_type="application/trickle-ice-sdpfrag", method="PATCH",
                        path=headers["Location"])
    assert status == 405
    assert post(server, None, None, method="DELETE", path=headers["Location"])[0] == 200
    assert post(server, None, None, method="DELETE", path="/v1/whip/unknown")[0] == 404
    # The server still takes a real publisher.
    publish(server, "cam", seconds=3)


def test_nat_settings_shape_the_candidates_and_a_browser_still_publishes(data_dir):
    """--webrtc-udp-ports keeps every peer connection's socket in the range, and
    --webrtc-public-ip is advertised as a server-reflexive candidate beside the host one
    (what a server behind a 1:1 NAT needs); a real publisher still connects."""
    from conftest import Server, free_port
    low = free_port()
    s = Server(data_dir, extra_args=["--webrtc-udp-ports", f"{low}-{low + 20}",
                                     "--webrtc-public-ip", "203.0.113.7"]).start()
    try:
        s.client("kinesisvideo").create_stream(StreamName="cam", DataRetentionInHours=24)
        status, _, answer = post(s, "cam", offer())
        assert status == 201, answer
        candidates = re.findall(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ (\w+)", answer.decode())
        assert ("127.0.0.1", "host") in [(ip, kind) for ip, _, kind in candidates], candidates
        assert ("203.0.113.7", "srflx") in [(ip, kind) for ip, _, kind in candidates], candidates
        assert all(low <= int(port) <= low + 20 for _, port, _ in candidates), candidates
        report = publish(s, "cam", seconds=3)
        assert report["state"]["stats"]["framesEncoded"] > 0
    finally:
        s.stop()
    # A range that is not one refuses to start.
    import subprocess as sp
    from conftest import BIN
    p = sp.run([BIN, "serve", "--data-dir", str(data_dir), "--http", "127.0.0.1:0", "--webrtc-udp-ports", "9-3"],
               capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 and "LOW-HIGH" in p.stderr, p.stderr[-500:]


def signed_post(server, path, body=b""):
    """A SigV4-signed POST to one of Kinescope's own endpoints (service kinesisvideo)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="POST", url=server.url + path, data=body, headers={"content-type": "application/json"})
    SigV4Auth(Credentials(*server.keys), "kinesisvideo", "us-east-1").add_auth(req)
    r = urllib.request.Request(req.url, data=body, method="POST", headers=dict(req.headers))
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def bearer(server, path, token, body=None, method="POST", content_type="application/sdp"):
    req = urllib.request.Request(server.url + path, data=body.encode() if body is not None else None, method=method,
                                 headers={"content-type": content_type, "authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_a_publishing_token_lets_a_client_without_sigv4_publish(signed_server):
    """With access keys configured, a WHIP client that cannot sign (OBS) publishes with a
    stream-scoped bearer token minted by a signed request; the token opens WHIP for that
    stream only."""
    s = signed_server
    kv = s.client("kinesisvideo")
    kv.create_stream(StreamName="obs", DataRetentionInHours=24)
    kv.create_stream(StreamName="other", DataRetentionInHours=24)
    status, minted = signed_post(s, "/v1/streams/obs/whip-token", b'{"ExpiresInSeconds": 3600}')
    assert status == 200 and minted["WhipUrl"].endswith("/v1/streams/obs/whip"), minted
    token = minted["Token"]
    # Unsigned and without a token: refused; the token elsewhere: refused.
    assert post(s, "obs", offer())[0] == 403
    status, _, body = bearer(s, "/v1/streams/other/whip", token, offer())
    assert status == 403 and b"for stream 'obs'" in body
    status, _, body = bearer(s, "/listStreams", token, "{}", content_type="application/json")
    assert status == 403 and b"WHIP publishing only" in body
    status, _, body = bearer(s, "/v1/streams/obs/whip", token[:-3] + "AAA", offer())
    assert status == 403 and json.loads(body)["__type"] == "AccessDeniedException"
    assert signed_post(s, "/v1/streams/obs/whip-token", b'{"ExpiresInSeconds": 5}')[0] == 400
    assert signed_post(s, "/v1/streams/nope/whip-token")[0] == 404
    # The minting endpoint itself wants a signature, not a token.
    assert bearer(s, "/v1/streams/obs/whip-token", token, "{}", content_type="application/json")[0] == 403
    # A real publisher with the token (the publish page sends it as Bearer).
    report = publish(s, "obs", seconds=4, token=token)
    assert report["stopped"] == "stopped"
    am = s.client("kinesis-video-archived-media")
    assert wait_for(lambda: am.list_fragments(StreamName="obs")["Fragments"], timeout=15, what="fragments")
    # A stream deleted and created again does not take the old tokens.
    kv.delete_stream(StreamARN=kv.describe_stream(StreamName="obs")["StreamInfo"]["StreamARN"])
    kv.create_stream(StreamName="obs", DataRetentionInHours=24)
    status, _, body = bearer(s, "/v1/streams/obs/whip", token, offer())
    assert status == 403 and b"earlier stream" in body
