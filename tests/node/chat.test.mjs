// Chat completions with the official Node SDK: sync, streamed, and async through the
// `x-prism-async` header (the SDK's per-request `headers` option), polled and cancelled.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import OpenAI from 'openai';

import { TERMINAL_JOB, chat, client, pollUntil } from './prism.mjs';

test('sync completion parses into a chat completion', async () => {
  const completion = await client().chat.completions.create({
    model: 'gpt-4o-mini-node-sync',
    messages: [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hello' },
    ],
  });
  assert.equal(completion.object, 'chat.completion');
  assert.equal(completion.choices[0].message.content, 'hello');
  assert.ok(completion._request_id?.startsWith('req_'), completion._request_id);
});

test('streamed completion yields every chunk', async () => {
  const stream = await client().chat.completions.create({
    ...chat('gpt-4o-mini-node-stream', 'one two three'),
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    usage = chunk.usage ?? usage;
  }
  assert.equal(text, 'one two three');
  assert.ok(usage, 'the last chunk carries usage');
});

test('async create answers a job that polling sees completed', async () => {
  const sdk = client();
  const job = await sdk.chat.completions.create(chat('gpt-4o-mini-node-async', 'What is 2+2?'), {
    headers: { 'x-prism-async': 'true' },
  });
  assert.match(job.id, /^job_/);
  assert.equal(job.object, 'async.job');
  assert.equal(job.choices, undefined); // a job, not a completion

  const done = await pollUntil(
    () => sdk.get(`/async/${job.id}`),
    (j) => TERMINAL_JOB.includes(j.status),
  );
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.equal(done.result.choices[0].message.content, 'What is 2+2?');

  const page = await sdk.get('/async', { query: { limit: 100, status: 'completed' } });
  assert.equal(page.object, 'list');
  assert.ok(page.data.some((j) => j.id === job.id));
});

test('async cancel stops a running job, answers again, and 409s on a completed one', async () => {
  const sdk = client();
  const hanging = await sdk.chat.completions.create(chat('mock-hang-node', 'never answered'), {
    headers: { 'x-prism-async': 'true' },
  });
  const cancelled = await sdk.delete(`/async/${hanging.id}`);
  assert.equal(cancelled.status, 'cancelled');
  const again = await sdk.delete(`/async/${hanging.id}`);
  assert.equal(again.status, 'cancelled');

  const quick = await sdk.chat.completions.create(chat('gpt-4o-mini-node-done', 'done'), {
    headers: { 'x-prism-async': 'true' },
  });
  await pollUntil(
    () => sdk.get(`/async/${quick.id}`),
    (j) => j.status === 'completed',
  );
  await assert.rejects(sdk.delete(`/async/${quick.id}`), (error) => {
    assert.ok(error instanceof OpenAI.ConflictError, error.constructor.name);
    assert.equal(error.status, 409);
    assert.equal(error.headers.get('x-should-retry'), 'false');
    return true;
  });
});

test('async streaming is a bad request the SDK does not retry', async () => {
  const sdk = client({ maxRetries: 2 });
  await assert.rejects(
    sdk.chat.completions.create(
      { ...chat('gpt-4o-mini-node-nostream', 'x'), stream: true },
      { headers: { 'x-prism-async': 'true' } },
    ),
    (error) => {
      assert.ok(error instanceof OpenAI.BadRequestError, error.constructor.name);
      assert.equal(error.code, 'streaming_unsupported');
      assert.match(error.requestID, /^req_/);
      return true;
    },
  );
});
