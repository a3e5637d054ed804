// The Responses API with the official Node SDK: `responses.create` sync and streamed,
// background mode (`retrieve`, `cancel`), and a background stream broken off and resumed with
// `starting_after`, losing and repeating no event.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { client, pollUntil } from './prism.mjs';

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
