// Prism's error answers arrive as the SDK's error classes, with OpenAI's error shape.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import OpenAI from 'openai';

import { baseURL, chat, client } from './prism.mjs';

function rejectsWith(promise, errorClass, check = () => {}) {
  return assert.rejects(promise, (error) => {
    assert.ok(error instanceof errorClass, `${error.constructor.name}: ${error.message}`);
    check(error);
    return true;
  });
}

test('a wrong key is an AuthenticationError', async () => {
  const wrong = new OpenAI({ baseURL, apiKey: 'sk-prism-wrong', maxRetries: 0 });
  await rejectsWith(
    wrong.chat.completions.create(chat('gpt-4o-mini', 'x')),
    OpenAI.AuthenticationError,
    (error) => assert.equal(error.status, 401),
  );
});

test('unknown ids are NotFoundErrors on every resource', async () => {
  const sdk = client();
  await rejectsWith(sdk.files.retrieve('file-00000000000000000000000000'), OpenAI.NotFoundError);
  await rejectsWith(sdk.batches.retrieve('batch_00000000000000000000000000'), OpenAI.NotFoundError);
  await rejectsWith(sdk.get('/async/job_00000000000000000000000000'), OpenAI.NotFoundError);
  await rejectsWith(
    sdk.get('/scheduled/sched_00000000000000000000000000'),
    OpenAI.NotFoundError,
    (error) => assert.equal(error.type, 'invalid_request_error'),
  );
});

test('cancelling a completed job is a ConflictError', async () => {
  const sdk = client();
  const job = await sdk.chat.completions.create(chat('gpt-4o-mini-node-conflict', 'x'), {
    headers: { 'x-prism-async': 'true' },
  });
  for (;;) {
    const current = await sdk.get(`/async/${job.id}`);
    if (current.status === 'completed') break;
    assert.ok(['pending', 'running'].includes(current.status), current.status);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await rejectsWith(sdk.delete(`/async/${job.id}`), OpenAI.ConflictError);
});

test("the upstream's 429 on a sync completion is a RateLimitError", async () => {
  // The mock answers this model's first call 429 (retry-after: 1); Prism's sync path relays it
  // and leaves the retry to the SDK, whose retries are off here.
  await rejectsWith(
    client().chat.completions.create(chat('mock-429-1-node', 'x')),
    OpenAI.RateLimitError,
    (error) => assert.equal(error.status, 429),
  );
});

test('a bad request names its parameter', async () => {
  await rejectsWith(
    client().post('/scheduled', { body: { scheduled_at: 'tomorrow', request: chat('m', 'x') } }),
    OpenAI.BadRequestError,
    (error) => assert.equal(error.param, 'scheduled_at'),
  );
});
