/**
 * Kubelet retries a failed NodePublish/NodeUnpublish until it succeeds; these do the same, bounded,
 * and only for errors a retry can cure (a driver restarting, a publish still waiting).
 */
import { status, type ServiceError } from '@grpc/grpc-js';

const FINAL = new Set<number>([status.INVALID_ARGUMENT, status.ALREADY_EXISTS, status.NOT_FOUND, status.UNIMPLEMENTED]);

export function grpcCode(err: unknown): number | undefined {
  const code = (err as Partial<ServiceError> | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

export async function retryLikeKubelet<T>(what: string, fn: () => Promise<T>, attempts = 20, delayMs = 200): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      const code = grpcCode(err);
      if (code !== undefined && FINAL.has(code)) break;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
  throw new Error(`retry: ${what} kept failing: ${(last as Error).message}`, { cause: last });
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
