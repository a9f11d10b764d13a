// The AWS SDK for Java 2.x Kinesis async client (Netty, HTTP/2: what the Kinesis Client
// Library uses) with its defaults and an endpoint override: create a stream, put, read,
// subscribe to a shard over HTTP/2, delete. Prints one line of key=value pairs;
// tests/integration/test_http2.py asserts on it.
//
//   java -cp JARS KinesisSdk ENDPOINT REGION KEY SECRET [trust-all]
// "trust-all" trusts the server's self-signed certificate (https:// endpoints only).
import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.SdkBytes;
import software.amazon.awssdk.http.SdkHttpConfigurationOption;
import software.amazon.awssdk.http.async.SdkAsyncHttpClient;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.model.*;
import software.amazon.awssdk.utils.AttributeMap;

public class KinesisSdk {
    public static void main(String[] args) throws Exception {
        String endpoint = args[0], region = args[1], key = args[2], secret = args[3];
        boolean trustAll = args.length > 4 && args[4].equals("trust-all");
        var builder = KinesisAsyncClient.builder()
                .endpointOverride(URI.create(endpoint))
                .region(Region.of(region))
                .credentialsProvider(StaticCredentialsProvider.create(AwsBasicCredentials.create(key, secret)));
        SdkAsyncHttpClient http = null;
        if (trustAll) {
            // The default client (HTTP/2 for Kinesis), told only to trust a self-signed certificate.
            http = NettyNioAsyncHttpClient.builder().protocol(software.amazon.awssdk.http.Protocol.HTTP2)
                    .buildWithDefaults(AttributeMap.builder()
                            .put(SdkHttpConfigurationOption.TRUST_ALL_CERTIFICATES, true).build());
            builder.httpClient(http);
        }
        List<String> out = new ArrayList<>();
        try (KinesisAsyncClient kinesis = builder.build()) {
            String name = "java-sdk";
            kinesis.createStream(r -> r.streamName(name).shardCount(1)).get(30, TimeUnit.SECONDS);
            String arn = null;
            for (int i = 0; i < 200 && arn == null; i++) {
                var d = kinesis.describeStream(r -> r.streamName(name)).get(30, TimeUnit.SECONDS).streamDescription();
                if (d.streamStatus() == StreamStatus.ACTIVE) arn = d.streamARN();
                else Thread.sleep(100);
            }
            kinesis.putRecord(r -> r.streamName(name).partitionKey("k").data(SdkBytes.fromUtf8String("hello")))
                    .get(30, TimeUnit.SECONDS);
            String shard = kinesis.listShards(r -> r.streamName(name)).get(30, TimeUnit.SECONDS).shards().get(0).shardId();
            String it = kinesis.getShardIterator(r -> r.streamName(name).shardId(shard)
                    .shardIteratorType(ShardIteratorType.TRIM_HORIZON)).get(30, TimeUnit.SECONDS).shardIterator();
            var records = kinesis.getRecords(r -> r.shardIterator(it)).get(30, TimeUnit.SECONDS).records();
            out.add("records=" + records.size() + ":" + (records.isEmpty() ? "" : records.get(0).data().asUtf8String()));
            final String streamArn = arn;
            String consumer = kinesis.registerStreamConsumer(r -> r.streamARN(streamArn).consumerName("java"))
                    .get(30, TimeUnit.SECONDS).consumer().consumerARN();
            for (int i = 0; i < 200; i++) {
                var c = kinesis.describeStreamConsumer(r -> r.consumerARN(consumer)).get(30, TimeUnit.SECONDS);
                if (c.consumerDescription().consumerStatus() == ConsumerStatus.ACTIVE) break;
                Thread.sleep(100);
            }
            List<String> subscribed = new ArrayList<>();
            CompletableFuture<Void> done = new CompletableFuture<>();
            var handler = SubscribeToShardResponseHandler.builder()
                    .onError(done::completeExceptionally)
                    .subscriber(SubscribeToShardResponseHandler.Visitor.builder().onSubscribeToShardEvent(e -> {
                        for (var r : e.records()) subscribed.add(r.data().asUtf8String());
                        if (!subscribed.isEmpty()) done.complete(null);
                    }).build())
                    .build();
            var call = kinesis.subscribeToShard(r -> r.consumerARN(consumer).shardId(shard)
                    .startingPosition(p -> p.type(ShardIteratorType.TRIM_HORIZON)), handler);
            done.get(30, TimeUnit.SECONDS);
            call.cancel(true);
            out.add("subscribed=" + String.join(",", subscribed));
            kinesis.deleteStream(r -> r.streamName(name).enforceConsumerDeletion(true)).get(30, TimeUnit.SECONDS);
            out.add("ok=true");
        } catch (Exception e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            out.add("error=" + cause.getClass().getSimpleName() + ": " + cause.getMessage());
        } finally {
            if (http != null) http.close();
        }
        System.out.println(String.join(" ", out));
        System.exit(0);
    }
}
