// What every Node SDK test shares: a client for the Prism that tests/sdk/prism_launcher.py
// started (its base URL and key come in PRISM_BASE_URL and PRISM_API_KEY), and polling.
import OpenAI from 'openai';

export const baseURL = required('PRISM_BASE_URL');
export const apiKey = required('PRISM_API_KEY');
export const backend = process.env.PRISM_SDK_BACKEND ?? 'embedded';

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the suite through tests/sdk/prism_launcher.py`);
  }
  return value;
}

// Retries off, so an error answer reaches the test as it was sent.
export function client(options = {}) {
  return new OpenAI({ baseURL, apiKey, maxRetries: 0, ...options });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Reads `read()` until `done(value)` holds; the deadline only keeps a broken server from hanging
// the suite, it is not what a test asserts.
export async function pollUntil(read, done, { within = 60_000, every = 200 } = {}) {
  const deadline = Date.now() + within;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) {
      throw new Error(`still not done after ${within} ms: ${JSON.stringify(value)}`);
    }
    await sleep(every);
  }
}

export const TERMINAL_JOB = ['completed', 'failed', 'cancelled'];
export const TERMINAL_BATCH = ['completed', 'failed', 'expired', 'cancelled'];

export function chat(model, content) {
  return { model, messages: [{ role: 'user', content }] };
}
