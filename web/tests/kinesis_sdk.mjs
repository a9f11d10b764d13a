// The AWS SDK for JavaScript v3 Kinesis client with its defaults (it speaks HTTP/2 to
// Kinesis: NodeHttp2Handler) and nothing but an endpoint override: create a stream,
// put and read records, subscribe to a shard (an HTTP/2 event stream), delete. Prints
// one JSON object of what it saw; tests/integration/test_http2.py asserts on it.
//
//   node web/tests/kinesis_sdk.mjs ENDPOINT REGION KEY SECRET
// An https:// endpoint's certificate comes in through NODE_EXTRA_CA_CERTS.
import {
  KinesisClient, CreateStreamCommand, DescribeStreamCommand, PutRecordCommand, GetShardIteratorCommand,
  GetRecordsCommand, ListShardsCommand, RegisterStreamConsumerCommand, DescribeStreamConsumerCommand,
  SubscribeToShardCommand, DeleteStreamCommand,
} from '@aws-sdk/client-kinesis';

const [endpoint, region, accessKeyId, secretAccessKey] = process.argv.slice(2);
const client = new KinesisClient({ endpoint, region, credentials: { accessKeyId, secretAccessKey } });
const out = { handler: client.config.requestHandler?.constructor?.name };
const StreamName = 'js-sdk';

async function until(f, what) {
  const end = Date.now() + 20000;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

try {
  await client.send(new CreateStreamCommand({ StreamName, ShardCount: 1 }));
  const arn = await until(async () => {
    const d = await client.send(new DescribeStreamCommand({ StreamName }));
    return d.StreamDescription.StreamStatus === 'ACTIVE' && d.StreamDescription.StreamARN;
  }, 'the stream');
  const put = await client.send(new PutRecordCommand({ StreamName, PartitionKey: 'k', Data: Buffer.from('hello') }));
  out.sequence = put.SequenceNumber;
  const { Shards } = await client.send(new ListShardsCommand({ StreamName }));
  const ShardId = Shards[0].ShardId;
  const it = await client.send(new GetShardIteratorCommand({ StreamName, ShardId, ShardIteratorType: 'TRIM_HORIZON' }));
  const got = await client.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator }));
  out.records = got.Records.map((r) => Buffer.from(r.Data).toString());

  const { Consumer } = await client.send(new RegisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: 'js' }));
  await until(async () => {
    const d = await client.send(new DescribeStreamConsumerCommand({ ConsumerARN: Consumer.ConsumerARN }));
    return d.ConsumerDescription.ConsumerStatus === 'ACTIVE';
  }, 'the consumer');
  const sub = await client.send(new SubscribeToShardCommand({
    ConsumerARN: Consumer.ConsumerARN, ShardId, StartingPosition: { Type: 'TRIM_HORIZON' },
  }));
  out.subscribed = [];
  for await (const event of sub.EventStream) {
    if (event.SubscribeToShardEvent) {
      for (const r of event.SubscribeToShardEvent.Records) out.subscribed.push(Buffer.from(r.Data).toString());
      if (out.subscribed.length) break;
    }
  }
  await client.send(new DeleteStreamCommand({ StreamName, EnforceConsumerDeletion: true }));
  out.ok = true;
} catch (e) {
  out.error = `${e.name}: ${e.message}`;
} finally {
  client.destroy();
}
console.log(JSON.stringify(out));
