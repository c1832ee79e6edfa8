// Times Converse and ConverseStream with the AWS SDK for JavaScript v3 on its DEFAULT request
// handler (NodeHttp2Handler: h2c with prior knowledge on an http:// endpoint) and prints one
// JSON line: {"handler", "converse_ms": [...], "streams": [{"ttft_ms", "ms_per_token", ...}]}.
// Usage: node bedrock_timing.mjs ENDPOINT MODEL_ID [REPEATS]
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
} from "@aws-sdk/client-bedrock-runtime";

const [endpoint, modelId, repeatsArg] = process.argv.slice(2);
const repeats = Number(repeatsArg ?? 3);
const client = new BedrockRuntimeClient({
  region: "us-east-1",
  endpoint,
  credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
  maxAttempts: 1,
});
const messages = (i) => [{ role: "user", content: [{ text: `Summarise the release notes ${i}` }] }];
const now = () => Number(process.hrtime.bigint()) / 1e6;

const converse = [];
const streams = [];
for (let i = 0; i < repeats; i++) {
  const start = now();
  const out = await client.send(new ConverseCommand({ modelId, messages: messages(i) }));
  converse.push({ ms: now() - start, outputTokens: out.usage.outputTokens, stopReason: out.stopReason });

  const t0 = now();
  const response = await client.send(new ConverseStreamCommand({ modelId, messages: messages(i) }));
  const stamps = [];
  let tokens = 0;
  let stopReason = null;
  for await (const event of response.stream) {
    if (event.contentBlockDelta?.delta?.text) stamps.push(now() - t0);
    if (event.messageStop) stopReason = event.messageStop.stopReason;
    if (event.metadata) tokens = event.metadata.usage.outputTokens;
  }
  streams.push({
    ttft_ms: stamps[0],
    ms_per_token: (stamps[stamps.length - 1] - stamps[0]) / (tokens - 1),
    deltas: stamps.length,
    outputTokens: tokens,
    stopReason,
  });
}
const handler = client.config.requestHandler?.constructor?.name ?? "unknown";
console.log(JSON.stringify({ handler, converse, streams }));
client.destroy();
