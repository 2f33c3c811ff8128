/**
 * Full mTLS handshakes per second: the SDK server (createTlsServer over a StaticSource) against a
 * plain node:tls server with the same certificate, key and CA and the same client. Each server runs
 * in its own child process, started the same way: work a handshake leaves for later (garbage
 * collection, native frees) is then charged to the server that caused it, which one shared process
 * charged to whichever round it happened in. The client alternates between them in short rounds
 * (ABBA order) so drift in machine load falls on both alike.
 *
 * Each handshake ends with the server writing one byte from its connection handler, so the SDK
 * server's post-handshake SPIFFE verification is inside the measured cycle.
 *
 * Two ratios: handshakes per second (wall clock, what a client sees) and server CPU time per
 * handshake (the server process's CPU use over each round, which only one of the servers is
 * serving). The second barely moves with other load on the machine, the first does.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { authorizeAny } from '@spire-csi/sdk';
import { createClientTlsOptions, createTlsServer, type SpiffeClientTlsOptions } from '@spire-csi/sdk/tls';
import { DEFAULT_MIN_VERSION } from '../sdk/src/tls/tls-settings.js';
import { onAbort } from './lib/abort.js';
import { median, printTargets, round, summarize, table, writeResult } from './lib/report.js';
import { mintPki, staticSource } from './lib/sdk-material.js';

const ROUND_MS = Number(process.env.BENCH_HANDSHAKE_ROUND_MS ?? 2000);
const PAIRS = Number(process.env.BENCH_HANDSHAKE_PAIRS ?? 10);
const CONCURRENCY = 16;

interface ServeRequest {
  readonly chainPem: string;
  readonly keyPem: string;
  readonly rootPem: string;
}

type ServerKind = 'sdk' | 'plain';

/** Child side: one server (which one is the argument after --serve), the material from the parent. */
function serve(kind: ServerKind): void {
  process.on('message', (message: { type?: string }) => {
    if (message.type !== 'cpu?') return;
    const { user, system } = process.cpuUsage();
    process.send?.({ type: 'cpu', micros: user + system });
  });
  process.once('message', (message: ServeRequest) => {
    const source = staticSource(message, message.rootPem);
    const answer = (socket: tls.TLSSocket): void => {
      socket.end('x');
    };
    const server =
      kind === 'sdk'
        ? createTlsServer(source, authorizeAny(), {}, answer)
        : tls.createServer(
            {
              cert: message.chainPem,
              key: message.keyPem,
              ca: [message.rootPem],
              requestCert: true,
              rejectUnauthorized: true,
              minVersion: DEFAULT_MIN_VERSION,
            },
            answer,
          );
    server.on('tlsClientError', () => undefined);
    server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as { port: number }).port }));
    process.on('disconnect', () => process.exit(0));
  });
}

/** The server process's CPU time so far (user + system, µs). */
function serverCpu(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    const onMessage = (m: { type?: string; micros?: number }): void => {
      if (m.type !== 'cpu') return;
      child.off('message', onMessage);
      resolve(m.micros!);
    };
    child.on('message', onMessage);
    child.send({ type: 'cpu?' });
  });
}

function handshake(options: SpiffeClientTlsOptions, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ ...options, host: '127.0.0.1', port });
    socket.once('data', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the server answered')));
  });
}

/** CONCURRENCY loops of handshakes for `ms`; returns completed handshakes/s and their latencies. */
async function roundAgainst(options: SpiffeClientTlsOptions, port: number, ms: number): Promise<{ perSecond: number; latencies: number[]; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  const end = start + ms;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await handshake(options, port);
          latencies.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  return { perSecond: (latencies.length / (performance.now() - start)) * 1000, latencies, errors };
}

async function main(): Promise<void> {
  const pki = await mintPki();
  // BENCH_CPU_PROF=<dir> profiles the server processes (written when they exit after the run).
  const profDir = process.env.BENCH_CPU_PROF;
  const execArgv = profDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profDir];
  const children = {} as Record<ServerKind, ChildProcess>;
  for (const kind of ['sdk', 'plain'] as const) {
    children[kind] = fork(process.argv[1]!, ['--serve', kind], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  }
  onAbort(async () => {
    for (const child of Object.values(children)) child.kill('SIGKILL');
  });
  try {
    const ports = {} as Record<ServerKind, number>;
    for (const kind of ['sdk', 'plain'] as const) {
      const child = children[kind];
      ports[kind] = await new Promise<number>((resolve, reject) => {
        child.once('message', (m: { port: number }) => resolve(m.port));
        child.once('exit', (code) => reject(new Error(`${kind} server process exited with ${code}`)));
        child.send({ chainPem: pki.server.chainPem, keyPem: pki.server.keyPem, rootPem: pki.ca.rootPem } satisfies ServeRequest);
      });
    }
    const client = createClientTlsOptions(staticSource(pki.client, pki.ca.rootPem), authorizeAny());

    // Warm-up: JIT, OpenSSL caches, both code paths.
    await roundAgainst(client, ports.plain, 500);
    await roundAgainst(client, ports.sdk, 500);

    const rates: Record<'sdk' | 'plain', number[]> = { sdk: [], plain: [] };
    const latencies: Record<'sdk' | 'plain', number[]> = { sdk: [], plain: [] };
    let errors = 0;
    const pairRatios: number[] = [];
    const cpuPerHandshake: Record<'sdk' | 'plain', number[]> = { sdk: [], plain: [] };
    const cpuPairRatios: number[] = [];
    for (let pair = 0; pair < PAIRS; pair++) {
      const order: ('sdk' | 'plain')[] = pair % 2 === 0 ? ['plain', 'sdk'] : ['sdk', 'plain'];
      const got: Partial<Record<'sdk' | 'plain', number>> = {};
      const cpu: Partial<Record<'sdk' | 'plain', number>> = {};
      for (const which of order) {
        const cpu0 = await serverCpu(children[which]);
        const r = await roundAgainst(client, ports[which], ROUND_MS);
        const cpuUs = (await serverCpu(children[which])) - cpu0;
        rates[which].push(r.perSecond);
        latencies[which].push(...r.latencies);
        errors += r.errors;
        got[which] = r.perSecond;
        cpu[which] = cpuUs / 1000 / Math.max(1, r.latencies.length);
        cpuPerHandshake[which].push(cpu[which]!);
      }
      pairRatios.push(got.sdk! / got.plain!);
      cpuPairRatios.push(cpu.plain! / cpu.sdk!);
    }
    const sdkRate = median(rates.sdk);
    const plainRate = median(rates.plain);
    const ratio = round(median(pairRatios), 3);
    const cpuRatio = round(median(cpuPairRatios), 3);
    const result = {
      concurrency: CONCURRENCY,
      roundMs: ROUND_MS,
      pairs: PAIRS,
      handshakesPerSecond: {
        sdk: { median: round(sdkRate, 1), rounds: rates.sdk.map((r) => round(r, 1)) },
        plain: { median: round(plainRate, 1), rounds: rates.plain.map((r) => round(r, 1)) },
      },
      latencyMs: { sdk: summarize(latencies.sdk), plain: summarize(latencies.plain) },
      ratio,
      pairRatios: pairRatios.map((r) => round(r, 3)),
      serverCpuMsPerHandshake: { sdk: round(median(cpuPerHandshake.sdk), 3), plain: round(median(cpuPerHandshake.plain), 3) },
      cpuRatio,
      cpuPairRatios: cpuPairRatios.map((r) => round(r, 3)),
      errors,
    };
    table(
      `mTLS handshakes/s, ${CONCURRENCY} in flight, ${PAIRS} interleaved pairs of ${ROUND_MS} ms rounds`,
      ['server', 'median/s', 'min/s', 'max/s', 'latency p50 ms', 'latency p99 ms', 'server CPU ms/handshake'],
      (['plain', 'sdk'] as const).map((w) => [
        w === 'sdk' ? 'SDK createTlsServer' : 'plain node:tls',
        round(median(rates[w]), 1),
        round(Math.min(...rates[w]), 1),
        round(Math.max(...rates[w]), 1),
        result.latencyMs[w].p50,
        result.latencyMs[w].p99,
        result.serverCpuMsPerHandshake[w],
      ]),
    );
    console.log(`SDK/plain (medians of per-pair ratios): handshakes/s ${ratio}, server CPU efficiency ${cpuRatio}; errors: ${errors}`);
    const targets = [
      { name: 'SDK/plain handshakes/s', target: '>= 0.95', value: ratio, met: ratio >= 0.95 },
      { name: 'SDK/plain server CPU per handshake (plain ÷ SDK)', target: '>= 0.95', value: cpuRatio, met: cpuRatio >= 0.95 },
      { name: 'handshake errors', target: '0', value: errors, met: errors === 0 },
    ];
    printTargets(targets);
    writeResult('handshake', result, targets);
  } finally {
    // A clean exit (on disconnect) lets --cpu-prof write its profile; SIGKILL only if it hangs.
    await Promise.all(
      Object.values(children).map(async (child) => {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        if (child.connected) child.disconnect();
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
        child.kill('SIGKILL');
      }),
    );
  }
}

const serveAt = process.argv.indexOf('--serve');
if (serveAt >= 0) serve(process.argv[serveAt + 1] === 'sdk' ? 'sdk' : 'plain');
else
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
