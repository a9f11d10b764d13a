// The AWS SDK for JavaScript v3 S3 client with its defaults (flexible checksums: a
// CRC32 in a header for a buffer body; a stream body goes aws-chunked,
// STREAMING-UNSIGNED-PAYLOAD-TRAILER with the CRC32 in a trailer) and an endpoint
// override, path-style: create a bucket, put both ways, read back (whole and a range),
// list, head, delete. Prints one JSON object of what it saw; tests/integration/test_s3.py
// asserts on it.
//
//   node web/tests/s3_sdk.mjs ENDPOINT REGION KEY SECRET
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadObjectCommand,
  ListObjectsV2Command, DeleteObjectCommand,
} from '@aws-sdk/client-s3';

const [endpoint, region, accessKeyId, secretAccessKey] = process.argv.slice(2);
const client = new S3Client({ endpoint, region, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
const Bucket = 'js-sdk';
const out = {};
const md5 = (b) => createHash('md5').update(b).digest('hex');

try {
  await client.send(new CreateBucketCommand({ Bucket }));
  // 3 MiB of varied bytes, sent twice: as a buffer and as a stream in 64 KiB pieces.
  const data = Buffer.alloc(3 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 11)) & 0xff;
  const whole = await client.send(new PutObjectCommand({ Bucket, Key: 'buffer.bin', Body: data }));
  out.bufferChecksum = whole.ChecksumCRC32;
  const pieces = [];
  for (let i = 0; i < data.length; i += 65536) pieces.push(data.subarray(i, i + 65536));
  const streamed = await client.send(new PutObjectCommand({
    Bucket, Key: 'dir/streamed.bin', Body: Readable.from(pieces), ContentLength: data.length,
  }));
  out.streamChecksum = streamed.ChecksumCRC32;
  const got = await client.send(new GetObjectCommand({ Bucket, Key: 'dir/streamed.bin' }));
  const bytes = Buffer.from(await got.Body.transformToByteArray());
  out.streamedIntact = md5(bytes) === md5(data);
  const range = await client.send(new GetObjectCommand({ Bucket, Key: 'buffer.bin', Range: 'bytes=100-199' }));
  out.rangeIntact = Buffer.from(await range.Body.transformToByteArray()).equals(data.subarray(100, 200));
  const head = await client.send(new HeadObjectCommand({ Bucket, Key: 'buffer.bin' }));
  out.headLength = head.ContentLength;
  const list = await client.send(new ListObjectsV2Command({ Bucket }));
  out.keys = (list.Contents || []).map((o) => o.Key);
  await client.send(new DeleteObjectCommand({ Bucket, Key: 'buffer.bin' }));
  const after = await client.send(new ListObjectsV2Command({ Bucket }));
  out.keysAfterDelete = (after.Contents || []).map((o) => o.Key);
  out.ok = true;
} catch (e) {
  out.error = `${e.name}: ${e.message}`;
}
console.log(JSON.stringify(out));
