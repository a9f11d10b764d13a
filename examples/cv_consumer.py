#!/usr/bin/env python3
"""Follow a camera through Kinescope without touching a video codec.

Fragment events arrive in a queue (the stream's notification destination); for each
fragment the consumer fetches frames with GetImages (PNG, small), runs a simple motion
detector with numpy (the difference from the previous frame), and writes what it found
into a Kinesis data stream, one record per detection. With `--frames-from s3` it lets
image generation write the frames into a bucket instead and reads each one its IMAGE
event points at (`s3://BUCKET/KEY`) through S3's API, as a program on another machine
would:

    {"streamName": "cam1", "frameTimestampMs": 1700000000200, "label": "motion",
     "score": 0.031, "x": 0.12, "y": 0.40, "w": 0.30, "h": 0.22}

(x, y, w, h are fractions of the picture's width and height.) A delivery stream that
reads that data stream can archive the detections, as Parquet for instance.

    python examples/cv_consumer.py --endpoint http://127.0.0.1:4566 --stream cam1 \\
        --queue cam1-events --detections cam1-detections --set-up

With --set-up it creates the queue and the data stream if they are missing and points
the video stream's notifications at the queue (and, with `--frames-from s3`, its image
generation at `--bucket`). Messages are deleted only after their
detections are written: a consumer that dies is given them again (at least once).
Only boto3, numpy and Pillow are needed.
"""

import argparse
import base64
import io
import json
import sys
import time

import boto3
import numpy as np
from PIL import Image


def clients(endpoint, region):
    session = boto3.session.Session(region_name=region)
    make = lambda service: session.client(service, endpoint_url=endpoint)  # noqa: E731
    return make("sqs"), make("kinesis"), make("kinesisvideo"), make("s3")


def set_up_images(kv, stream, bucket, interval_ms, width):
    """Image generation writes a PNG every `interval_ms` into `bucket` and sends an IMAGE
    event for each."""
    kv.update_image_generation_configuration(StreamName=stream, ImageGenerationConfiguration={
        "Status": "ENABLED", "ImageSelectorType": "PRODUCER_TIMESTAMP",
        "DestinationConfig": {"Uri": f"s3://{bucket}/cams", "DestinationRegion": kv.meta.region_name},
        "SamplingInterval": interval_ms, "Format": "PNG", "WidthPixels": width})


def s3_frame(s3, event):
    """(timestamp ms, grayscale array) of the frame an IMAGE event points at."""
    bucket, key = event["uri"].removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return event["imageTimestampMs"], np.asarray(Image.open(io.BytesIO(body)).convert("L"))


def set_up(sqs, kinesis, kv, stream, queue, detections):
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    try:
        kinesis.create_stream(StreamName=detections, ShardCount=1)
    except kinesis.exceptions.ResourceInUseException:
        pass
    kinesis.get_waiter("stream_exists").wait(StreamName=detections, WaiterConfig={"Delay": 1})
    kv.update_notification_configuration(
        StreamName=stream, NotificationConfiguration={"Status": "ENABLED", "DestinationConfig": {"Uri": arn}}
    )
    return url


def motion(previous, current, threshold, min_area):
    """The box around the pixels that changed by more than `threshold` (0-255), as
    fractions of the picture, and the share of pixels that changed; None if too few did."""
    changed = np.abs(current.astype(np.int16) - previous.astype(np.int16)) > threshold
    score = float(changed.mean())
    if score < min_area:
        return None
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    h, w = changed.shape
    return {
        "score": round(score, 4),
        "x": round(cols[0] / w, 4),
        "y": round(rows[0] / h, 4),
        "w": round((cols[-1] + 1 - cols[0]) / w, 4),
        "h": round((rows[-1] + 1 - rows[0]) / h, 4),
    }


def frames(archived, event, interval_ms, width):
    """(timestamp ms, grayscale array) of each frame GetImages gives for the fragment."""
    start = event["producerStartTimestampMs"] / 1000
    end = event["producerEndTimestampMs"] / 1000
    pages = archived.get_paginator("get_images").paginate(
        StreamName=event["streamName"], ImageSelectorType="PRODUCER_TIMESTAMP",
        StartTimestamp=start, EndTimestamp=end, SamplingInterval=interval_ms, Format="PNG", WidthPixels=width,
    )
    for page in pages:
        for image in page["Images"]:
            if "ImageContent" not in image:
                continue  # NO_MEDIA or MEDIA_ERROR
            picture = Image.open(io.BytesIO(base64.b64decode(image["ImageContent"]))).convert("L")
            yield int(image["TimeStamp"].timestamp() * 1000), np.asarray(picture)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", default="http://127.0.0.1:4566")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--stream", required=True, help="the video stream to follow")
    p.add_argument("--queue", required=True, help="the queue its events arrive in")
    p.add_argument("--detections", required=True, help="the data stream detections are written to")
    p.add_argument("--set-up", action="store_true", help="create the queue and data stream, point notifications")
    p.add_argument("--interval-ms", type=int, default=200, help="frame sampling interval (>= 200)")
    p.add_argument("--width", type=int, default=160, help="frame width the detector works at")
    p.add_argument("--threshold", type=int, default=25, help="grey-level change that counts as motion")
    p.add_argument("--min-area", type=float, default=0.002, help="share of changed pixels that makes a detection")
    p.add_argument("--max-fragments", type=int, default=0, help="stop after this many fragments (0: never)")
    p.add_argument("--idle-exit", type=float, default=0, help="stop after this many seconds without events")
    p.add_argument("--frames-from", choices=("get-images", "s3"), default="get-images",
                   help="fetch frames with GetImages, or read those image generation writes through S3")
    p.add_argument("--bucket", default="frames", help="with --frames-from s3: where image generation writes")
    a = p.parse_args()

    sqs, kinesis, kv, s3 = clients(a.endpoint, a.region)
    endpoint = kv.get_data_endpoint(StreamName=a.stream, APIName="GET_IMAGES")["DataEndpoint"]
    archived = boto3.session.Session(region_name=a.region).client(
        "kinesis-video-archived-media", endpoint_url=endpoint)
    url = set_up(sqs, kinesis, kv, a.stream, a.queue, a.detections) if a.set_up else \
        sqs.get_queue_url(QueueName=a.queue)["QueueUrl"]
    if a.set_up and a.frames_from == "s3":
        set_up_images(kv, a.stream, a.bucket, a.interval_ms, a.width)

    previous, seen, last_event = None, 0, time.monotonic()
    # With --frames-from s3: the frames of IMAGE events read since the last FRAGMENT event.
    pending = []
    while not a.max_fragments or seen < a.max_fragments:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=5).get("Messages", [])
        if not messages:
            if a.idle_exit and time.monotonic() - last_event > a.idle_exit:
                break
            continue
        last_event = time.monotonic()
        for m in messages:
            event = json.loads(m["Body"])
            if a.frames_from == "s3" and event.get("type") == "IMAGE" and event.get("streamName") == a.stream:
                pending.append(s3_frame(s3, event))
            elif event.get("type") == "FRAGMENT" and event.get("streamName") == a.stream:
                found = []
                count = 0
                if a.frames_from == "s3":
                    pictures = sorted(pending, key=lambda f: f[0])
                else:
                    pictures = frames(archived, event, a.interval_ms, a.width)
                pending = []
                for ts, picture in pictures:
                    count += 1
                    if previous is not None and previous.shape == picture.shape:
                        box = motion(previous, picture, a.threshold, a.min_area)
                        if box:
                            found.append({"streamName": a.stream, "frameTimestampMs": ts, "label": "motion", **box})
                    previous = picture
                if found:
                    kinesis.put_records(StreamName=a.detections, Records=[
                        {"Data": json.dumps(d).encode(), "PartitionKey": a.stream} for d in found])
                seen += 1
                print(f"fragment {event['fragmentNumber']}: {count} frames, {len(found)} detections", flush=True)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
