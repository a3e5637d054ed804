// The Responses API with the official Node SDK: `responses.create` sync and streamed,
// background mode (`retrieve`, `cancel`), a background stream broken off and resumed with
// `starting_after`, losing and repeating no event, and `/v1/responses` as a batch endpoint whose
// output lines the SDK's own Responses parser reads.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { maybeParseResponse } from 'openai/lib/ResponsesParser';

import { TERMINAL_BATCH, client, pollUntil } from './prism.mjs';

const deltas = (events) =>
  events
    .filter((e) => e.type === 'response.output_text.delta')
    .map((e) => e.delta)
    .join('');

test('responses.create returns the output text', async () => {
  const response = await client().responses.create({ model: 'gpt-4o-mini-node-resp', input: 'hello there' });
  assert.equal(response.object, 'response');
  assert.equal(response.status, 'completed');
  assert.equal(response.output_text, 'hello there');
});

test('streamed responses yield typed events in order', async () => {
  const stream = await client().responses.create({
    model: 'gpt-4o-mini-node-resp-stream',
    input: 'one two three',
    stream: true,
  });
  const events = [];
  for await (const event of stream) events.push(event);
  assert.equal(events[0].type, 'response.created');
  assert.equal(events.at(-1).type, 'response.completed');
  assert.equal(deltas(events), 'one two three');
  assert.deepEqual(
    events.map((e) => e.sequence_number),
    events.map((_, i) => i),
  );
});

test('a background response is retrieved until completed, and cancel is idempotent', async () => {
  const sdk = client();
  const created = await sdk.responses.create({ model: 'gpt-4o-mini-node-bg', input: 'later', background: true });
  assert.match(created.id, /^resp_/);
  const done = await pollUntil(
    () => sdk.responses.retrieve(created.id),
    (r) => ['completed', 'failed'].includes(r.status),
  );
  assert.equal(done.status, 'completed');
  assert.equal(done.output_text, 'later');

  const hanging = await sdk.responses.create({ model: 'mock-hang-node', input: 'never', background: true });
  assert.equal((await sdk.responses.cancel(hanging.id)).status, 'cancelled');
  assert.equal((await sdk.responses.cancel(hanging.id)).status, 'cancelled');
});

test('a background stream broken off resumes with starting_after', async () => {
  const sdk = client();
  const text = 'a stream the client leaves and picks up again later';
  const stream = await sdk.responses.create({
    model: 'mock-drip-150-node',
    input: text,
    background: true,
    stream: true,
  });
  const first = [];
  for await (const event of stream) {
    first.push(event);
    if (first.length === 4) break;
  }
  const id = first[0].response.id;
  assert.match(id, /^resp_/);
  const resumed = await sdk.responses.retrieve(id, {
    stream: true,
    starting_after: first.at(-1).sequence_number,
  });
  const rest = [];
  for await (const event of resumed) rest.push(event);
  const events = [...first, ...rest];
  assert.deepEqual(
    events.map((e) => e.sequence_number),
    events.map((_, i) => i),
  );
  assert.equal(events.at(-1).type, 'response.completed');
  assert.equal(deltas(events), text);
});

test('a /v1/responses batch writes a response object the SDK parses on every output line', async () => {
  const sdk = client();
  const lines = 20;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-node-'));
  const input = path.join(dir, 'responses.jsonl');
  const requests = Array.from({ length: lines }, (_, i) => ({
    custom_id: `r-${i}`,
    method: 'POST',
    url: '/v1/responses',
    body: { model: 'gpt-4o-mini-node-resp-batch', input: `answer number ${i}` },
  }));
  fs.writeFileSync(input, requests.map((line) => JSON.stringify(line) + '\n').join(''));
  const file = await sdk.files.create({ file: fs.createReadStream(input), purpose: 'batch' });
  const created = await sdk.batches.create({
    input_file_id: file.id,
    endpoint: '/v1/responses',
    completion_window: '24h',
  });
  assert.equal(created.endpoint, '/v1/responses');

  const batch = await pollUntil(
    () => sdk.batches.retrieve(created.id),
    (b) => TERMINAL_BATCH.includes(b.status),
    { every: 500, within: 120_000 },
  );
  assert.equal(batch.status, 'completed', JSON.stringify(batch));
  assert.deepEqual(batch.request_counts, { total: lines, completed: lines, failed: 0 });
  const content = await (await sdk.files.content(batch.output_file_id)).text();
  const outputs = content
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  assert.deepEqual(outputs.map((line) => line.custom_id).sort(), requests.map((r) => r.custom_id).sort());
  let inputTokens = 0;
  let outputTokens = 0;
  for (const line of outputs) {
    assert.equal(line.response.status_code, 200, JSON.stringify(line));
    // The SDK's own reading of a Responses object, as `responses.parse` applies it to one it
    // fetched: `output_text` gathered from the message's `output_text` parts.
    const response = maybeParseResponse(line.response.body, null);
    assert.equal(response.object, 'response');
    assert.match(response.id, /^resp_/);
    assert.equal(response.status, 'completed');
    assert.equal(response.output_text, `answer number ${line.custom_id.slice(2)}`);
    assert.equal(response.output_parsed, null);
    inputTokens += response.usage.input_tokens;
    outputTokens += response.usage.output_tokens;
  }
  assert.ok(inputTokens > 0 && outputTokens > 0, `${inputTokens} in, ${outputTokens} out`);
  assert.equal(batch.usage.input_tokens, inputTokens);
  assert.equal(batch.usage.output_tokens, outputTokens);
});
