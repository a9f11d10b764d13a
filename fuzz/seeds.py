#!/usr/bin/env python3
"""Seed inputs for the fuzz targets that need a well-formed start (scripts/fuzz runs
this): an RTSP publisher's and a viewer's whole session for `rtsp_session`, one
request per protocol and service for `api_requests` (the first byte picks the route),
and a KPL aggregate for `kinesis_wire`."""

import json
import struct
import sys
from pathlib import Path

corpus = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "corpus")


def write(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def rtsp(method, uri, cseq, extra=b"", body=b""):
    head = b"%s %s RTSP/1.0\r\nCSeq: %d\r\n" % (method, uri, cseq) + extra
    if body:
        head += b"Content-Type: application/sdp\r\nContent-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


SDP = (b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=fuzz\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       b"a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkDxWhAAAADAEAAAAwDxYuS,aMuMsg==\r\n"
       b"a=control:streamid=0\r\n"
       b"m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:streamid=1\r\n")
URI = b"rtsp://127.0.0.1/fuzzcam"

record = rtsp(b"ANNOUNCE", URI, 1, body=SDP)
record += rtsp(b"SETUP", URI + b"/streamid=0", 2, b"Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n")
record += rtsp(b"SETUP", URI + b"/streamid=1", 3,
               b"Transport: RTP/AVP/TCP;unicast;interleaved=2-3;mode=record\r\nSession: x\r\n")
record += rtsp(b"RECORD", URI, 4, b"Session: x\r\n")
for i in range(20):
    nal = b"\x65" + bytes([i]) * 40 if i % 10 == 0 else b"\x41" + bytes([i]) * 30
    video = struct.pack(">BBHII", 0x80, 0x80 | 96, i, i * 3000, 1234) + nal
    record += b"$\x00" + struct.pack(">H", len(video)) + video
    audio = struct.pack(">BBHII", 0x80, 97, i, i * 960, 5678) + b"\xfc" + b"\x00" * 20
    record += b"$\x02" + struct.pack(">H", len(audio)) + audio
record += rtsp(b"TEARDOWN", URI, 5, b"Session: x\r\n")
write("rtsp_session", "record", b"\x04" + record)
play = (rtsp(b"OPTIONS", URI, 1) + rtsp(b"DESCRIBE", URI, 2, b"Accept: application/sdp\r\n")
        + rtsp(b"SETUP", URI + b"/streamid=0", 3, b"Transport: RTP/AVP;unicast;client_port=5000-5001\r\n")
        + rtsp(b"PLAY", URI, 4, b"Session: x\r\n"))
write("rtsp_session", "play", b"\x02" + play)

# api_requests: low 3 bits of the first byte pick the protocol, the rest the operation.
queue_url = "http://kinescope.test/123456789012/q"
seeds = {
    "kinesis_create": (1 | 2 << 3, json.dumps({"StreamName": "f", "ShardCount": 1}).encode()),
    "kinesis_put": (1 | 1 << 3, json.dumps({"StreamName": "f", "Data": "aGk=", "PartitionKey": "p"}).encode()),
    # {"Records": [{"Data": h'6869', "PartitionKey": "p"}], "StreamName": "f"} in CBOR.
    "kinesis_cbor": (0, bytes.fromhex("a2675265636f72647381a2644461746142686969506172746974696f6e4b657961706a53747265616d4e616d656166")),
    "sqs_create": (2, json.dumps({"QueueName": "q"}).encode()),
    "sqs_send": (2 | 1 << 3, json.dumps({"QueueUrl": queue_url, "Entries": [{"Id": "a", "MessageBody": "hi"}]}).encode()),
    "query_send": (3, b"Action=SendMessage&QueueUrl=http%3A%2F%2Fkinescope.test%2F123456789012%2Fq&MessageBody=hi"),
    "kvs_create": (5, json.dumps({"StreamName": "s"}).encode()),
    "kvs_list": (5 | 1 << 3, json.dumps({"StreamName": "s", "FragmentSelector": {
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": 0, "EndTimestamp": 1e9}}}).encode()),
    "playback": (6, b"SessionToken=abc&FragmentNumber=1"),
}
for name, (pick, body) in seeds.items():
    write("api_requests", name, bytes([pick]) + body)


# kinesis_wire: a KPL aggregate's protobuf body (the target adds the magic and digest).
def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def length_field(number, data):
    return varint((number << 3) | 2) + varint(len(data)) + data


def kpl_record(data):
    return varint(1 << 3) + varint(0) + length_field(3, data)


write("kinesis_wire", "kpl-aggregate",
      length_field(1, b"cam") + length_field(3, kpl_record(b'{"box":1}')) + length_field(3, kpl_record(b"two")))
