// The AWS SDK for Java 2.x sync clients with their defaults (Apache HTTP client; CBOR for
// Kinesis) and an endpoint override: STS (GetCallerIdentity, GetSessionToken,
// AssumeRole through StsAssumeRoleCredentialsProvider, as credential chains use it) and
// Kinesis signed with the role's temporary credentials. Prints one line of key=value
// pairs; tests/integration/test_http2.py asserts on it.
//
//   java -cp JARS SyncSdk ENDPOINT REGION KEY SECRET [trust-all]
// "trust-all" trusts the server's self-signed certificate (https:// endpoints only).
import java.net.URI;
import java.util.ArrayList;
import java.util.List;

import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.SdkBytes;
import software.amazon.awssdk.http.SdkHttpClient;
import software.amazon.awssdk.http.SdkHttpConfigurationOption;
import software.amazon.awssdk.http.apache.ApacheHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.kinesis.KinesisClient;
import software.amazon.awssdk.services.kinesis.model.ShardIteratorType;
import software.amazon.awssdk.services.kinesis.model.StreamStatus;
import software.amazon.awssdk.services.sts.StsClient;
import software.amazon.awssdk.services.sts.auth.StsAssumeRoleCredentialsProvider;
import software.amazon.awssdk.utils.AttributeMap;

public class SyncSdk {
    public static void main(String[] args) throws Exception {
        String endpoint = args[0], region = args[1], key = args[2], secret = args[3];
        boolean trustAll = args.length > 4 && args[4].equals("trust-all");
        SdkHttpClient http = trustAll
                ? ApacheHttpClient.builder().buildWithDefaults(AttributeMap.builder()
                        .put(SdkHttpConfigurationOption.TRUST_ALL_CERTIFICATES, true).build())
                : null;
        var keys = StaticCredentialsProvider.create(AwsBasicCredentials.create(key, secret));
        List<String> out = new ArrayList<>();
        var stsBuilder = StsClient.builder().endpointOverride(URI.create(endpoint)).region(Region.of(region))
                .credentialsProvider(keys);
        if (http != null) stsBuilder.httpClient(http);
        try (StsClient sts = stsBuilder.build()) {
            String account = sts.getCallerIdentity().account();
            out.add("account=" + account);
            var session = sts.getSessionToken(r -> r.durationSeconds(900)).credentials();
            out.add("session=" + session.accessKeyId().substring(0, 4));
            var role = StsAssumeRoleCredentialsProvider.builder().stsClient(sts)
                    .refreshRequest(r -> r.roleArn("arn:aws:iam::" + account + ":role/java-sdk").roleSessionName("java"))
                    .build();
            var kinesisBuilder = KinesisClient.builder().endpointOverride(URI.create(endpoint))
                    .region(Region.of(region)).credentialsProvider(role);
            if (http != null) kinesisBuilder.httpClient(http);
            try (KinesisClient kinesis = kinesisBuilder.build()) {
                String name = "java-sync";
                kinesis.createStream(r -> r.streamName(name).shardCount(1));
                for (int i = 0; i < 200; i++) {
                    var d = kinesis.describeStream(r -> r.streamName(name)).streamDescription();
                    if (d.streamStatus() == StreamStatus.ACTIVE) break;
                    Thread.sleep(100);
                }
                kinesis.putRecord(r -> r.streamName(name).partitionKey("k").data(SdkBytes.fromUtf8String("sync")));
                String shard = kinesis.listShards(r -> r.streamName(name)).shards().get(0).shardId();
                String it = kinesis.getShardIterator(r -> r.streamName(name).shardId(shard)
                        .shardIteratorType(ShardIteratorType.TRIM_HORIZON)).shardIterator();
                var records = kinesis.getRecords(r -> r.shardIterator(it)).records();
                out.add("records=" + records.size() + ":" + (records.isEmpty() ? "" : records.get(0).data().asUtf8String()));
                kinesis.deleteStream(r -> r.streamName(name));
            }
            role.close();
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
