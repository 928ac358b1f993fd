// Graceful shutdown (SERVER.md §1.10, §3.4): SIGTERM while a stream runs → the stream ends
// properly (a finish or an error event, then [DONE]), requests that arrive while draining get 503
// with retry-after, and the process exits 0 within 5 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, readSSE, assertErrorShape, sleep } from './helpers.mjs';

const LONG = { model: 'default', messages: [{ role: 'user', content: 'Tell me everything.' }], max_tokens: 8000,
               ignore_eos: true, stream: true };

test('SIGTERM during a stream: stream ends with finish or error then [DONE]; draining → 503; exit 0 within 5 s', async () => {
  const server = await startServer({ args: ['--ctx-size', '16384'] });
  try {
    const res = await server.post('/v1/chat/completions', LONG);
    assert.equal(res.status, 200);
    let signalled = null;
    let duringDrain = null;
    let healthDuringDrain = null;
    const sse = readSSE(res, (ev, i) => {
      if (i === 5 && !signalled) {
        signalled = Date.now();
        server.proc.kill('SIGTERM');
        // A new request while the stream is still being drained.
        duringDrain = sleep(150).then(() => server.post('/v1/chat/completions',
          { model: 'default', messages: [{ role: 'user', content: 'late' }], max_tokens: 2 }))
          .then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.json() }),
                (e) => ({ error: e }));
        healthDuringDrain = sleep(150).then(() => server.fetch('/health'))
          .then(async (r) => ({ status: r.status, body: await r.json() }), (e) => ({ error: e }));
      }
      return false;
    });
    const { events, raw } = await sse;
    assert.ok(signalled, 'SIGTERM was sent');
    // The stream: [DONE] last, exactly once; before it either a finish_reason or an error event.
    assert.ok(raw.endsWith('data: [DONE]\n\n'), `stream did not end with [DONE]: ...${JSON.stringify(raw.slice(-300))}`);
    assert.equal(events.filter((e) => e === '[DONE]').length, 1);
    const body = events.slice(0, -1);
    const errors = body.filter((e) => e.error);
    const finished = body.some((e) => e.choices?.some((c) => c.finish_reason));
    assert.ok(finished || errors.length === 1, 'the stream ends with a finish_reason or one error event');
    for (const e of errors) {
      assertErrorShape(e, 'mid-stream error event');
      assert.equal(events[events.indexOf(e) + 1], '[DONE]', 'the error event is followed by [DONE]');
    }

    // The request during draining: 503 with retry-after (or refused at the socket once closed).
    const late = await duringDrain;
    assert.ok(!late.error, `the request during draining failed at the connection: ${late.error}`);
    assert.equal(late.status, 503, JSON.stringify(late));
    assert.ok(late.retryAfter, '503 carries retry-after');
    assertErrorShape(late.body, 'draining 503');
    // /health says so too, so that a load balancer stops sending.
    const health = await healthDuringDrain;
    assert.ok(!health.error, `/health during draining failed at the connection: ${health.error}`);
    assert.equal(health.status, 503, JSON.stringify(health));
    assertErrorShape(health.body, 'draining /health');

    // Last, the exit: status 0 within 5 s of SIGTERM.
    const status = await Promise.race([server.exited, sleep(Math.max(0, 5000 - (Date.now() - signalled))).then(() => null)]);
    const st = status ?? await Promise.race([server.exited, sleep(10_000).then(() => null)]);
    assert.ok(status && server.exitTime - signalled <= 5000,
              `the server exited ${server.exitTime - signalled} ms after SIGTERM (limit 5000)\n${server.stderr.slice(-2000)}`);
    assert.deepEqual(st, { code: 0, signal: null }, server.stderr.slice(-2000));
  } finally {
    await server.kill();
  }
});

test('SIGTERM with a non-streaming request in flight: it gets a complete answer or an error body, then exit 0', async () => {
  const server = await startServer({ args: ['--ctx-size', '16384'] });
  try {
    const pending = server.post('/v1/chat/completions', { ...LONG, stream: false })
      .then(async (r) => ({ status: r.status, body: await r.json() }), (e) => ({ error: e }));
    // Wait until it is running.
    for (let i = 0; i < 250; i++) {
      if ((await server.metrics()).get('dsv3:num_requests_running') === 1) break;
      await sleep(20);
    }
    const t0 = Date.now();
    server.proc.kill('SIGTERM');
    const r = await pending;
    assert.ok(!r.error, `connection error instead of a response: ${r.error}`);
    if (r.status === 200) {
      assert.ok(r.body.choices[0].finish_reason, JSON.stringify(r.body).slice(0, 300));
    } else {
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assertErrorShape(r.body, 'in-flight non-stream at shutdown');
    }
    const status = await Promise.race([server.exited, sleep(Math.max(0, 5000 - (Date.now() - t0))).then(() => null)]);
    if (!status) await Promise.race([server.exited, sleep(10_000)]);
    assert.ok(status && server.exitTime - t0 <= 5000,
              `the server exited ${server.exitTime - t0} ms after SIGTERM (limit 5000)\n${server.stderr.slice(-2000)}`);
    assert.deepEqual(status, { code: 0, signal: null }, server.stderr.slice(-2000));
  } finally {
    await server.kill();
  }
});

test('SIGTERM right after the URL line (6 fresh servers): each exits 0, promptly', async () => {
  // The URL line says the server is up; a supervisor may stop it at once.
  const results = [];
  for (let i = 0; i < 6; i++) {
    const server = await startServer();
    const t0 = Date.now();
    server.proc.kill('SIGTERM');
    const st = await Promise.race([server.exited, sleep(5000).then(() => null)]);
    await server.kill();
    results.push({ ...(st ?? { timeout: true }), ms: Date.now() - t0 });
  }
  for (const r of results) assert.deepEqual({ code: r.code, signal: r.signal }, { code: 0, signal: null }, JSON.stringify(results));
  for (const r of results) assert.ok(r.ms < 2000, `idle shutdown took ${r.ms} ms: ${JSON.stringify(results)}`);
});

// Raw HTTP/1.1 over one socket: connects, waits `delayMs`, sends a keep-alive GET, resolves with
// the status line once the headers arrive (or a description of what went wrong); the socket stays open.
function lateGet(server, path, delayMs) {
  const { port, hostname } = new URL(server.origin);
  return new Promise((resolve) => {
    const s = net.connect(Number(port), hostname, () => {
      setTimeout(() => s.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`), delayMs);
    });
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\r\n\r\n')) resolve({ status: buf.split('\r\n')[0], socket: s });
    });
    s.on('close', () => resolve({ status: `closed after ${buf.length} bytes` + (buf ? `: ${buf.slice(0, 80)}` : ''), socket: s }));
    s.on('error', (e) => resolve({ status: `error ${e.code}`, socket: s }));
  });
}

test('a first request sent 2 s after connecting is answered; idle keep-alive connections do not delay SIGTERM', async () => {
  const server = await startServer();
  const sockets = [];
  try {
    // A client busy between connect and write (a loaded event loop, a slow network) once got
    // its connection closed unanswered after 1 s ("other side closed").
    const late = await lateGet(server, '/health', 2000);
    sockets.push(late.socket);
    assert.equal(late.status, 'HTTP/1.1 200 OK');
    // That connection now idles (keep-alive), and a second one never sends anything.
    const silent = net.connect(Number(new URL(server.origin).port), new URL(server.origin).hostname);
    silent.on('error', () => {});
    sockets.push(silent);
    await new Promise((r) => silent.once('connect', r));
    const ms = await server.stop(6000);
    console.log(`# shutdown ${ms} ms`);
    assert.ok(ms < 2500, `shutdown with two idle connections took ${ms} ms (the keep-alive timeout is 5 s)`);
  } finally {
    for (const s of sockets) s.destroy();
    await server.kill();
  }
});

test('SIGTERM while a streaming client has stopped reading (the server blocked writing to it): exit 0 within 6 s', async () => {
  // The reply fills the client's receive buffer and then the server's send buffer; the writer then
  // waits on the 60 s write timeout (exit took ~55 s). Such connections are cut 250 ms after the
  // others have closed.
  const server = await startServer({ args: ['--ctx-size', '16384'] });
  const { port, hostname } = new URL(server.origin);
  const body = JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'Talk.' }], max_tokens: 16000,
                                ignore_eos: true, stream: true, logprobs: true, top_logprobs: 20 });
  const s = net.connect(Number(port), hostname);
  s.on('error', () => {});
  try {
    await new Promise((r) => s.once('connect', r));
    s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    let got = 0;
    s.on('data', (d) => { got += d.length; });
    await sleep(300);
    s.pause();  // stop reading
    // Until the server has written far more than the socket buffers hold unread.
    let last = -1;
    for (let i = 0; i < 40; i++) {
      await sleep(250);
      const m = await server.metrics();
      const n = m.get('dsv3:generation_tokens_total');
      if (n === last && n > 0) break;  // generation stalled: the writer is blocked
      last = n;
    }
    const ms = await server.stop(6000);
    console.log(`# shutdown with a blocked writer: ${ms} ms (${got} bytes read before the pause)`);
  } finally {
    s.destroy();
    await server.kill();
  }
});
