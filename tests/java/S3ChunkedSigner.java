// The AWS SDK for Java 2.x's SigV4 signer (http-auth-aws's AwsV4HttpSigner, what its S3
// client signs with) making aws-chunked uploads as the S3 client sends them over
// plain HTTP: chunk encoding on, payload signing on, so every chunk is signed
// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), and with a CRC32 checksum in a signed trailer
// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER). The requests go out through the SDK's
// Apache HTTP client. (The S3 client's own jar is not in the bundle kclpy-ext ships,
// and Maven is out of reach; the signer and HTTP client are the ones it uses.)
// Each upload prints "NAME=STATUS"; with "tamper" the last byte of the payload is
// changed after signing.
//
//   java -cp JARS S3ChunkedSigner ENDPOINT REGION KEY SECRET BUCKET SIZE [tamper]
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.net.URI;

import software.amazon.awssdk.checksums.spi.ChecksumAlgorithm;
import software.amazon.awssdk.checksums.DefaultChecksumAlgorithm;
import software.amazon.awssdk.http.ContentStreamProvider;
import software.amazon.awssdk.http.HttpExecuteRequest;
import software.amazon.awssdk.http.HttpExecuteResponse;
import software.amazon.awssdk.http.SdkHttpClient;
import software.amazon.awssdk.http.SdkHttpMethod;
import software.amazon.awssdk.http.SdkHttpRequest;
import software.amazon.awssdk.http.apache.ApacheHttpClient;
import software.amazon.awssdk.http.auth.aws.signer.AwsV4FamilyHttpSigner;
import software.amazon.awssdk.http.auth.aws.signer.AwsV4HttpSigner;
import software.amazon.awssdk.http.auth.spi.signer.SignedRequest;
import software.amazon.awssdk.identity.spi.AwsCredentialsIdentity;

public class S3ChunkedSigner {
    public static void main(String[] args) throws Exception {
        String endpoint = args[0], region = args[1], key = args[2], secret = args[3], bucket = args[4];
        int size = Integer.parseInt(args[5]);
        boolean tamper = args.length > 6 && args[6].equals("tamper");
        byte[] data = new byte[size];
        for (int i = 0; i < size; i++) data[i] = (byte) (i * 31 + (i >> 9));
        AwsCredentialsIdentity creds = AwsCredentialsIdentity.create(key, secret);
        AwsV4HttpSigner signer = AwsV4HttpSigner.create();
        try (SdkHttpClient http = ApacheHttpClient.create()) {
            for (String name : new String[] {"signed", "signed-trailer"}) {
                ChecksumAlgorithm checksum = name.equals("signed-trailer") ? DefaultChecksumAlgorithm.CRC32 : null;
                SdkHttpRequest request = SdkHttpRequest.builder()
                        .uri(URI.create(endpoint + "/" + bucket + "/java/" + name + ".bin"))
                        .method(SdkHttpMethod.PUT)
                        .putHeader("Content-Length", Integer.toString(size))
                        .build();
                SignedRequest signed = signer.sign(r -> {
                    r.identity(creds).request(request)
                            .payload(ContentStreamProvider.fromByteArray(data))
                            .putProperty(AwsV4FamilyHttpSigner.SERVICE_SIGNING_NAME, "s3")
                            .putProperty(AwsV4HttpSigner.REGION_NAME, region)
                            .putProperty(AwsV4FamilyHttpSigner.CHUNK_ENCODING_ENABLED, true)
                            .putProperty(AwsV4FamilyHttpSigner.PAYLOAD_SIGNING_ENABLED, true);
                    if (checksum != null) r.putProperty(AwsV4FamilyHttpSigner.CHECKSUM_ALGORITHM, checksum);
                });
                byte[] body = readAll(signed.payload().get().newStream());
                if (tamper) {
                    // The payload's last byte sits before its chunk's CRLF, the final
                    // chunk and (with a checksum) the trailer.
                    String text = new String(body, java.nio.charset.StandardCharsets.ISO_8859_1);
                    int at = text.indexOf("\r\n0;chunk-signature=") - 1;
                    body[at] ^= 1;
                }
                SdkHttpRequest wire = signed.request().toBuilder()
                        .putHeader("Content-Length", Integer.toString(body.length)).build();
                final byte[] sent = body;
                HttpExecuteResponse resp = http.prepareRequest(HttpExecuteRequest.builder().request(wire)
                        .contentStreamProvider(() -> new ByteArrayInputStream(sent)).build()).call();
                String answer = resp.responseBody().map(b -> {
                    try { return new String(readAll(b)); } catch (Exception e) { return ""; }
                }).orElse("");
                System.out.println(name + "=" + resp.httpResponse().statusCode() + " "
                        + wire.firstMatchingHeader("x-amz-content-sha256").orElse("")
                        + (answer.isEmpty() ? "" : " " + answer.replaceAll("\\s+", " ")));
            }
        }
    }

    static byte[] readAll(InputStream in) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        in.transferTo(out);
        return out.toByteArray();
    }
}
