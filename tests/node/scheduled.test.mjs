// Scheduled completions through the SDK's generic `post`/`get`/`delete`, as the README shows.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TERMINAL_JOB, chat, client, pollUntil } from './prism.mjs';

// RFC 3339 in UTC with whole seconds, as Prism normalises it.
function rfc3339In(seconds) {
  return new Date(Date.now() + seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

test('a scheduled completion runs at its time', async () => {
  const sdk = client();
  const job = await sdk.post('/scheduled', {
    body: {
      scheduled_at: rfc3339In(2),
      request: chat('gpt-node-scheduled', 'on time'),
      metadata: { suite: 'node' },
    },
  });
  assert.equal(job.object, 'scheduled.job');
  assert.match(job.id, /^sched_/);
  assert.deepEqual(job.metadata, { suite: 'node' });

  const done = await pollUntil(
    () => sdk.get(`/scheduled/${job.id}`),
    (j) => TERMINAL_JOB.includes(j.status),
    { every: 500 },
  );
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.equal(done.result.choices[0].message.content, 'on time');
});

test('a scheduled job is listed, read and cancelled', async () => {
  const sdk = client();
  const due = rfc3339In(3600);
  const job = await sdk.post('/scheduled', {
    body: { scheduled_at: due, request: chat('gpt-node-later', 'later') },
  });
  assert.equal(job.status, 'pending');
  assert.equal(job.scheduled_at, due);

  const page = await sdk.get('/scheduled', { query: { limit: 100, status: 'pending' } });
  assert.equal(page.object, 'list');
  assert.ok(page.data.some((j) => j.id === job.id));
  assert.equal((await sdk.get(`/scheduled/${job.id}`)).id, job.id);

  const cancelled = await sdk.delete(`/scheduled/${job.id}`);
  assert.equal(cancelled.status, 'cancelled');
});
