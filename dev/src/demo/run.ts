import { tmpdir } from 'node:os';
import { formatDuration, createLogger } from '@spire-csi/driver/internal';
import { CleanupStack } from './cleanup.js';
import { startClientApp } from './client-app.js';
import { createDemoRoot, removeDemoRoot, unmountLeftovers } from './demo-folder.js';
import type { Display, DisplayContext, Output } from './display.js';
import { DemoError, messageOf } from './errors.js';
import { demoLayout, type DemoLayout } from './layout.js';
import { LiveDisplay } from './live-display.js';
import { LogFile } from './log-file.js';
import { chooseMounter } from './mounter-choice.js';
import { demoPods, publishPod, startNode } from './node.js';
import type { DemoOptions } from './options.js';
import { PlainDisplay } from './plain-display.js';
import { openPodSource } from './pod-source.js';
import { startServerApp } from './server-app.js';
import { DemoState } from './state.js';
import { Stopper } from './stopper.js';

export interface DemoIo {
  readonly stdout: Output;
  readonly stderr: Output;
  readonly signals: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
  readonly env: NodeJS.ProcessEnv;
  /** Called when the user insists on quitting before cleanup finished. */
  readonly abandon: (code: number) => void;
}

const REQUEST_INTERVAL_MS = 100;

/**
 * The whole product on one machine: builds everything (registering its teardown as it goes),
 * runs until a stop condition, tears everything down and prints a summary. Resolves with the exit
 * code: 0 only when it ran, served every request and left nothing behind.
 */
export async function runDemo(options: DemoOptions, io: DemoIo): Promise<number> {
  const state = new DemoState();
  const stopper = new Stopper();
  const cleanup = new CleanupStack();
  const context: DisplayContext = {
    rotation: `rotation every ${formatDuration(options.rotationMs)} (SVID TTL ${formatDuration(options.rotationMs * 2)})`,
    ending: endingOf(options),
    requestIntervalMs: REQUEST_INTERVAL_MS,
  };
  const live = !options.plain && io.stdout.isTTY === true && io.env.TERM !== 'dumb';
  const display: Display = live ? new LiveDisplay(io.stdout, state, context) : new PlainDisplay(io.stdout, state, context);
  stopper.watchSignals(io.signals, (signal, repeats) => {
    if (repeats === 1) {
      display.line(`${signal} again: still cleaning up; send it once more to quit without cleaning up`);
      return;
    }
    io.stderr.write(`demo: quitting without finishing the cleanup; check for mounts under the demo folder and remove it\n`);
    io.abandon(130);
  });

  let layout: DemoLayout | undefined;
  let log: LogFile | undefined;
  let failure: unknown;
  try {
    display.line('spire-csi demo: DEVELOPMENT ONLY (a development agent stands in for SPIRE; nothing here is for production)');
    const root = await createDemoRoot(options.parentFolder ?? tmpdir());
    try {
      layout = demoLayout(root);
    } catch (error) {
      await removeDemoRoot(root);
      throw error;
    }
    log = new LogFile(layout.logFile);
    display.line(`demo folder: ${layout.root}`);
    display.line(`logs (dev agent, driver, SDK): ${layout.logFile}`);
    await build(options, layout, log, state, stopper, cleanup, display);
    if (!stopper.stopped) {
      if (options.durationMs !== null) stopper.after(options.durationMs, `--duration ${formatDuration(options.durationMs)} reached`);
      if (options.rotations !== null) {
        const wanted = options.rotations;
        state.on('clientRotation', (count) => {
          if (count >= wanted) stopper.stop(`the client SDK saw ${count} rotations (--rotations ${wanted})`);
        });
      }
    }
  } catch (error) {
    failure = error;
  }

  if (failure === undefined) {
    const reason = await stopper.wait();
    state.note(`stopping: ${reason}`);
  } else if (stopper.stopped) {
    state.note(`stopping: ${stopper.reason}`);
  }
  display.stop();

  const problems = await tearDown(cleanup, layout, log, options, display, failure !== undefined || state.requestsFailed > 0);
  stopper.dispose();
  // Nothing ran that a summary could describe when the demo folder could not even be set up.
  if (layout !== undefined) printSummary(display, state, layout, options, problems, failure !== undefined);
  // Last, so what went wrong and what to do is what stays on screen.
  if (failure !== undefined) writeFailure(io.stderr, failure, layout);

  if (problems.length > 0) {
    io.stderr.write(
      `demo: cleanup did not finish:\n${problems.map((p) => `  - ${p}\n`).join('')}` +
        `what to do: unmount what is listed (\`umount <path>\`), then remove ${layout?.root ?? 'the demo folder'}\n`,
    );
    return 1;
  }
  if (failure !== undefined) return 1;
  if (state.requestsFailed > 0) {
    io.stderr.write(
      `demo: ${state.requestsFailed} request(s) failed (last: ${state.lastFailure}); a rotation should never fail a request.\n` +
        `what to do: the log ${layout?.logFile ?? ''} was kept; look for "error" and "warn" lines around the failures\n`,
    );
    return 1;
  }
  return 0;
}

async function build(
  options: DemoOptions,
  layout: DemoLayout,
  log: LogFile,
  state: DemoState,
  stopper: Stopper,
  cleanup: CleanupStack,
  display: Display,
): Promise<void> {
  const logger = createLogger('info', log);
  const choice = await chooseMounter(layout.root);
  display.line(`volumes: ${choice.note}`);
  display.start();
  if (stopper.stopped) return;

  const pods = demoPods(options.trustDomain);
  const node = await startNode({
    layout,
    trustDomain: options.trustDomain,
    svidTtlMs: options.rotationMs * 2,
    pods: [pods.server, pods.client],
    mounter: choice.mounter,
    logger,
    cleanup,
    identityApi: options.identityApi,
  });
  for (const line of node.description) state.note(line);
  if (stopper.stopped) return;

  const targets: Record<string, string> = {};
  for (const pod of [pods.server, pods.client]) {
    const volume = await publishPod(node, pod, cleanup, layout.logFile);
    targets[pod.role] = volume.targetPath;
    state.note(`kubelet published the ${pod.role} pod's volume (${choice.kind}): ${volume.targetPath}`);
    if (stopper.stopped) return;
  }

  const sdkLogger = logger.child({ component: 'sdk' });
  const serverSource = await openPodSource('server', targets.server!, options.rotationMs, state, sdkLogger.child({ pod: 'server' }));
  cleanup.push("closing the server pod's FileSource", () => serverSource.close());
  const server = await startServerApp(serverSource, pods.client.spiffeId, state, sdkLogger.child({ pod: 'server' }));
  cleanup.push('stopping the HTTPS server', () => server.close());
  state.note(`server pod: HTTPS on ${server.url}, accepts only ${pods.client.spiffeId}`);
  if (stopper.stopped) return;

  const clientSource = await openPodSource('client', targets.client!, options.rotationMs, state, sdkLogger.child({ pod: 'client' }));
  cleanup.push("closing the client pod's FileSource", () => clientSource.close());
  const client = startClientApp(
    clientSource,
    { url: server.url, serverId: pods.server.spiffeId, clientId: pods.client.spiffeId, intervalMs: REQUEST_INTERVAL_MS },
    state,
    sdkLogger.child({ pod: 'client' }),
  );
  cleanup.push('stopping the client', () => client.close());
  state.note(`client pod: a request every ${REQUEST_INTERVAL_MS} ms, accepts only ${pods.server.spiffeId}`);
}

/** Returns what could not be cleaned up; an empty list means nothing is left behind. */
async function tearDown(
  cleanup: CleanupStack,
  layout: DemoLayout | undefined,
  log: LogFile | undefined,
  options: DemoOptions,
  display: Display,
  failed: boolean,
): Promise<string[]> {
  if (layout === undefined) return cleanup.runAll();
  display.line('cleaning up: stopping the apps, unpublishing and unmounting the volumes, stopping the driver and agent');
  const problems = await cleanup.runAll();
  try {
    const leftovers = await unmountLeftovers(layout.root);
    if (leftovers.length > 0) problems.push(`left mounted after unpublish (now unmounted): ${leftovers.join(', ')}`);
  } catch (error) {
    problems.push(`unmounting what was left: ${messageOf(error)}`);
  }
  await log?.close();
  const keepLog = options.keepLogs || failed || problems.length > 0;
  try {
    await removeDemoRoot(layout.root, keepLog ? layout.logFile : undefined);
  } catch (error) {
    problems.push(`removing ${layout.root}: ${messageOf(error)}`);
  }
  return problems;
}

function printSummary(
  display: Display,
  state: DemoState,
  layout: DemoLayout,
  options: DemoOptions,
  problems: readonly string[],
  failed: boolean,
): void {
  const kept = options.keepLogs || failed || problems.length > 0 || state.requestsFailed > 0;
  const lines = [
    '',
    'summary',
    `  rotations seen by the client SDK: ${state.rotations('client')} (server SDK: ${state.rotations('server')})`,
    `  requests ok: ${state.requestsOk}`,
    `  requests failed: ${state.requestsFailed}`,
    `  requests served by the server: ${state.served}`,
  ];
  lines.push(
    problems.length === 0
      ? `  cleanup: volumes unpublished and unmounted, ${kept ? 'demo folder emptied except the log' : 'demo folder removed'}`
      : `  cleanup: incomplete (${problems.length} problem(s), listed below)`,
    kept
      ? `  logs: ${layout.logFile} (kept)`
      : `  logs were in: ${layout.logFile} (removed with the demo folder; --keep-logs keeps them)`,
  );
  for (const line of lines) display.line(line);
}

function writeFailure(stderr: Output, failure: unknown, layout: DemoLayout | undefined): void {
  const hint =
    failure instanceof DemoError ? failure.hint : `look at ${layout?.logFile ?? 'the log'}; report the message above if it persists`;
  const message = messageOf(failure);
  stderr.write(`\n${message.startsWith('demo: ') ? message : `demo: ${message}`}\nwhat to do: ${hint}\n`);
}

function endingOf(options: DemoOptions): string {
  const parts: string[] = [];
  if (options.rotations !== null) parts.push(`stops after ${options.rotations} rotation${options.rotations === 1 ? '' : 's'}`);
  if (options.durationMs !== null) parts.push(`stops after ${formatDuration(options.durationMs)}`);
  parts.push('Ctrl-C to stop');
  return parts.join(' · ');
}
