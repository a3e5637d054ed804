// The Files and Batch APIs with the official Node SDK, as OpenAI's docs show them: upload JSONL,
// create a batch, poll it, read the output file; list and cancel.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import OpenAI from 'openai';

import { TERMINAL_BATCH, backend, client, pollUntil } from './prism.mjs';

function writeJsonl(name, lines) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-node-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, lines.map((line) => JSON.stringify(line) + '\n').join(''));
  return file;
}

function requests(count, model) {
  return Array.from({ length: count }, (_, i) => ({
    custom_id: `request-${i}`,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model, messages: [{ role: 'user', content: `question ${i}` }] },
  }));
}

test('a batch runs from a JSONL upload to its output lines', async () => {
  const sdk = client();
  const input = writeJsonl('requests.jsonl', requests(12, 'gpt-4o-mini-node-batch'));
  const file = await sdk.files.create({ file: fs.createReadStream(input), purpose: 'batch' });
  assert.equal(file.purpose, 'batch');
  assert.equal(file.status, 'processed');
  assert.equal(file.bytes, fs.statSync(input).size);

  const created = await sdk.batches.create({
    input_file_id: file.id,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
    metadata: { suite: 'node' },
  });
  assert.equal(created.status, 'validating');
  assert.equal(created.request_counts.completed, 0);

  const batch = await pollUntil(
    () => sdk.batches.retrieve(created.id),
    (b) => TERMINAL_BATCH.includes(b.status),
    { every: 500 },
  );
  assert.equal(batch.status, 'completed', JSON.stringify(batch));
  assert.deepEqual(batch.request_counts, { total: 12, completed: 12, failed: 0 });
  assert.equal(batch.error_file_id, null);
  assert.deepEqual(batch.metadata, { suite: 'node' });

  const content = await (await sdk.files.content(batch.output_file_id)).text();
  const answers = Object.fromEntries(
    content
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
      .map((r) => [r.custom_id, r.response.body.choices[0].message.content]),
  );
  assert.deepEqual(
    answers,
    Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`request-${i}`, `question ${i}`])),
  );

  const listed = await sdk.batches.list({ limit: 100 });
  assert.ok(listed.data.some((b) => b.id === batch.id));
  const outputs = await sdk.files.list({ purpose: 'batch_output' });
  assert.ok(outputs.data.some((f) => f.id === batch.output_file_id));
  await assert.rejects(sdk.batches.cancel(batch.id), OpenAI.ConflictError);
});

test('a batch cancelled in progress ends cancelled with its lines in the error file', async () => {
  const sdk = client();
  const input = writeJsonl('slow.jsonl', requests(4, 'mock-hang-node-batch'));
  const file = await sdk.files.create({ file: fs.createReadStream(input), purpose: 'batch' });
  const created = await sdk.batches.create({
    input_file_id: file.id,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
  // Its lines are planned (and hang upstream) once it is in progress.
  await pollUntil(
    () => sdk.batches.retrieve(created.id),
    (b) => b.status === 'in_progress',
    { every: 200 },
  );
  const cancelling = await sdk.batches.cancel(created.id);
  assert.ok(['cancelling', 'cancelled'].includes(cancelling.status), cancelling.status);

  const batch = await pollUntil(
    () => sdk.batches.retrieve(created.id),
    (b) => TERMINAL_BATCH.includes(b.status),
    { every: 500, within: 120_000 },
  );
  assert.equal(batch.status, 'cancelled', JSON.stringify(batch));
  assert.equal((await sdk.batches.cancel(created.id)).status, 'cancelled');
  const errors = await (await sdk.files.content(batch.error_file_id)).text();
  const codes = errors
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line).error?.code ?? JSON.parse(line).response?.body?.error?.code);
  assert.equal(codes.length, 4);
  assert.ok(codes.every((code) => code === 'batch_cancelled'), JSON.stringify(codes));
});

test('files round-trip: retrieve, content (through the S3 redirect on AWS), list, delete', async () => {
  const sdk = client();
  const line = '{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{}}\n';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-node-'));
  const input = path.join(dir, 'large.jsonl');
  // Past the 1 KiB redirect threshold the launcher configures, so AWS answers 307 to S3.
  fs.writeFileSync(input, line.repeat(64));
  const file = await sdk.files.create({ file: fs.createReadStream(input), purpose: 'batch' });
  assert.equal((await sdk.files.retrieve(file.id)).bytes, fs.statSync(input).size);

  const raw = await fetch(`${client().baseURL}/files/${file.id}/content`, {
    headers: { Authorization: `Bearer ${sdk.apiKey}` },
    redirect: 'manual',
  });
  assert.equal(raw.status, backend === 'embedded' ? 200 : 307);
  assert.equal(await (await sdk.files.content(file.id)).text(), line.repeat(64));

  const listed = await sdk.files.list({ purpose: 'batch' });
  assert.ok(listed.data.some((f) => f.id === file.id));
  const deleted = await sdk.files.delete(file.id);
  assert.equal(deleted.deleted, true);
  await assert.rejects(sdk.files.retrieve(file.id), OpenAI.NotFoundError);
  await assert.rejects(
    sdk.files.create({ file: fs.createReadStream(input), purpose: 'fine-tune' }),
    (error) => error instanceof OpenAI.BadRequestError && error.param === 'purpose',
  );
});
