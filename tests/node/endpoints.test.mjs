// Models and embeddings with the official Node SDK: models.list() and retrieve, embeddings.create
// (the SDK asks for base64 and decodes it itself), and an embeddings batch of 10,000 lines.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import OpenAI from 'openai';

import { TERMINAL_BATCH, client, pollUntil } from './prism.mjs';

test('models.list() and models.retrieve answer in OpenAI shape', async () => {
  const sdk = client();
  const ids = [];
  for await (const model of sdk.models.list()) {
    assert.equal(model.object, 'model');
    ids.push(model.id);
  }
  assert.ok(ids.includes('text-embedding-3-small'), ids.join(','));
  const model = await sdk.models.retrieve('text-embedding-3-small');
  assert.equal(model.owned_by, 'prism-testkit');
  await assert.rejects(sdk.models.retrieve('no-such-model'), (error) => {
    assert.ok(error instanceof OpenAI.NotFoundError);
    assert.equal(error.code, 'model_not_found');
    return true;
  });
});

test('embeddings.create returns deterministic vectors of the asked size', async () => {
  const sdk = client();
  const first = await sdk.embeddings.create({ model: 'text-embedding-3-small', input: ['alpha', 'beta'] });
  assert.deepEqual(first.data.map((d) => d.index), [0, 1]);
  assert.equal(first.data[0].embedding.length, 8);
  const norm = first.data[0].embedding.reduce((sum, v) => sum + v * v, 0);
  assert.ok(Math.abs(norm - 1) < 1e-4, String(norm));
  const again = await sdk.embeddings.create({ model: 'text-embedding-3-small', input: 'alpha' });
  assert.deepEqual(again.data[0].embedding, first.data[0].embedding);
  const sized = await sdk.embeddings.create({
    model: 'text-embedding-3-small',
    input: 'alpha',
    dimensions: 16,
    encoding_format: 'float',
  });
  assert.equal(sized.data[0].embedding.length, 16);
});

test('an embeddings batch of 10,000 lines completes with one embedding list per line', async () => {
  const sdk = client();
  const lines = 10_000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-node-'));
  const input = path.join(dir, 'embeddings.jsonl');
  const body = Array.from({ length: lines }, (_, i) =>
    JSON.stringify({
      custom_id: `doc-${i}`,
      method: 'POST',
      url: '/v1/embeddings',
      body: { model: 'text-embedding-3-small', input: `document number ${i}` },
    }) + '\n',
  ).join('');
  fs.writeFileSync(input, body);
  const file = await sdk.files.create({ file: fs.createReadStream(input), purpose: 'batch' });
  const created = await sdk.batches.create({
    input_file_id: file.id,
    endpoint: '/v1/embeddings',
    completion_window: '24h',
  });
  assert.equal(created.endpoint, '/v1/embeddings');
  const batch = await pollUntil(
    () => sdk.batches.retrieve(created.id),
    (b) => TERMINAL_BATCH.includes(b.status),
    { within: 600_000, every: 1000 },
  );
  assert.equal(batch.status, 'completed', JSON.stringify(batch));
  assert.equal(batch.request_counts.completed, lines);
  assert.equal(batch.error_file_id, null);
  const content = (await (await sdk.files.content(batch.output_file_id)).text()).trim().split('\n');
  assert.equal(content.length, lines);
  const ids = new Set();
  for (const raw of content) {
    const line = JSON.parse(raw);
    ids.add(line.custom_id);
    assert.equal(line.response.body.object, 'list');
    assert.equal(line.response.body.data[0].embedding.length, 8);
  }
  assert.equal(ids.size, lines);
});
