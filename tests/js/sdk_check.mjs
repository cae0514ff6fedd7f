// The official openai npm package through `parity record`: prints what it got as one JSON line.
// Usage: BASE_URL=http://127.0.0.1:PORT/v1 node sdk_check.mjs
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "sk-js-check", maxRetries: 0 });
const model = "gpt-4o-mini";
const out = {};

const plain = await client.chat.completions.create({ model, messages: [{ role: "user", content: "js-plain" }] });
out.plain = plain.choices[0].message.content;

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "js-stream" }],
  stream: true,
  stream_options: { include_usage: true },
});
out.stream = "";
for await (const chunk of stream) out.stream += chunk.choices[0]?.delta?.content ?? "";

const events = await client.responses.create({ model, input: "js-responses", stream: true });
out.responses_events = 0;
for await (const event of events) {
  out.responses_events += 1;
  if (event.type === "response.completed") out.responses_text = event.response.output_text;
}

try {
  await client.chat.completions.create(
    { model, messages: [{ role: "user", content: "js-429" }] },
    { headers: { "x-fake-error": "429" } },
  );
} catch (err) {
  out.error_status = err.status;
}

console.log(JSON.stringify(out));
