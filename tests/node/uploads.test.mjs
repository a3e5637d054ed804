// The Uploads API with the official Node SDK: a file sent in parts, completed with its MD5, then
// a batch over it; and the SDK's error classes for the Uploads API's refusals.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';

import OpenAI, { toFile } from 'openai';

import { TERMINAL_BATCH, client, pollUntil } from './prism.mjs';

const LINES = 6;

function jsonl() {
  return Array.from({ length: LINES }, (_, i) =>
    JSON.stringify({
      custom_id: `request-${i}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'gpt-4o-mini-node-uploads', messages: [{ role: 'user', content: `question ${i}` }] },
    }) + '\n',
  ).join('');
}

test('an upload in two parts becomes a file a batch runs over', async () => {
  const sdk = client();
  const bytes = Buffer.from(jsonl());
  const middle = bytes.indexOf('\n', bytes.length / 2) + 1;
  const md5 = crypto.createHash('md5').update(bytes).digest('hex');

  const upload = await sdk.uploads.create({
    bytes: bytes.length,
    filename: 'requests.jsonl',
    mime_type: 'application/jsonl',
    purpose: 'batch',
  });
  assert.equal(upload.status, 'pending');
  assert.equal(upload.object, 'upload');

  const first = await sdk.uploads.parts.create(upload.id, {
    data: await toFile(bytes.subarray(0, middle), 'part-1'),
  });
  const second = await sdk.uploads.parts.create(upload.id, {
    data: await toFile(bytes.subarray(middle), 'part-2'),
  });
  assert.equal(first.object, 'upload.part');
  assert.equal(first.upload_id, upload.id);

  const completed = await sdk.uploads.complete(upload.id, { part_ids: [first.id, second.id], md5 });
  assert.equal(completed.status, 'completed');
  assert.equal(completed.file.bytes, bytes.length);
  assert.equal(completed.file.purpose, 'batch');
  const content = await (await sdk.files.content(completed.file.id)).text();
  assert.equal(content, bytes.toString());

  const created = await sdk.batches.create({
    input_file_id: completed.file.id,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
  const batch = await pollUntil(
    () => sdk.batches.retrieve(created.id),
    (b) => TERMINAL_BATCH.includes(b.status),
    { every: 500 },
  );
  assert.equal(batch.status, 'completed', JSON.stringify(batch));
  assert.deepEqual(batch.request_counts, { total: LINES, completed: LINES, failed: 0 });
});

test('the Uploads API refusals reach the SDK as its error classes', async () => {
  const sdk = client();
  await assert.rejects(
    sdk.uploads.create({ bytes: 10, filename: 'a.jsonl', mime_type: 'application/jsonl', purpose: 'fine-tune' }),
    (error) => error instanceof OpenAI.BadRequestError && error.param === 'purpose',
  );
  const upload = await sdk.uploads.create({
    bytes: 3,
    filename: 'a.jsonl',
    mime_type: 'application/jsonl',
    purpose: 'batch',
  });
  const part = await sdk.uploads.parts.create(upload.id, { data: await toFile(Buffer.from('{}\n'), 'p') });
  await assert.rejects(
    sdk.uploads.complete(upload.id, { part_ids: [part.id], md5: '0'.repeat(32) }),
    (error) => error instanceof OpenAI.BadRequestError && error.param === 'md5',
  );
  const cancelled = await sdk.uploads.cancel(upload.id);
  assert.equal(cancelled.status, 'cancelled');
  await assert.rejects(
    sdk.uploads.parts.create(upload.id, { data: await toFile(Buffer.from('{}\n'), 'p') }),
    OpenAI.ConflictError,
  );
  await assert.rejects(sdk.uploads.cancel('upload_00000000000000000000000000'), OpenAI.NotFoundError);
});
