// Request/response over the registry socket: `{id, method, params}` → `{id, result | error}`.
// Responses may come out of order (the hypivisor runs requests concurrently), so they are matched
// by id. Everything pending is rejected when the socket closes, so no caller waits forever.
import type { ErrorInfo } from "../protocol/types";

export class RpcError extends Error {
  constructor(
    public code: number,
    message: string,
  ) {
    super(message);
  }
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class RpcClient {
  private seq = 0;
  private pending = new Map<string, Pending>();

  constructor(private send: (frame: string) => void) {}

  request<T>(method: string, params: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    const id = `r${++this.seq}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RpcError(0, `${method} timed out after ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        this.send(JSON.stringify({ id, method, params }));
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new RpcError(0, `not connected: ${String(e)}`));
      }
    });
  }

  /** Returns true when the frame was a response (so the caller does not treat it as an event). */
  handle(frame: { id?: unknown; result?: unknown; error?: ErrorInfo | null }): boolean {
    if (typeof frame.id !== "string" || !this.pending.has(frame.id)) return false;
    const p = this.pending.get(frame.id)!;
    this.pending.delete(frame.id);
    clearTimeout(p.timer);
    if (frame.error) p.reject(new RpcError(frame.error.code, frame.error.message));
    else p.resolve(frame.result);
    return true;
  }

  rejectAll(reason: string) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new RpcError(0, reason));
    }
    this.pending.clear();
  }
}
