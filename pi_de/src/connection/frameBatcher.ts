// Streaming sends dozens of deltas per frame; dispatching each would re-render per delta. Frames are
// queued and handed over once per animation frame (or every 100 ms while the tab is hidden, where
// rAF never fires, so a finished run still updates state and can notify).
export class FrameBatcher<T> {
  private queue: T[] = [];
  private scheduled = false;
  private cancelled = false;

  constructor(private flush: (items: T[]) => void) {}

  push(item: T) {
    this.queue.push(item);
    if (this.scheduled || this.cancelled) return;
    this.scheduled = true;
    const run = () => {
      this.scheduled = false;
      if (this.cancelled || this.queue.length === 0) return;
      const items = this.queue;
      this.queue = [];
      this.flush(items);
    };
    if (typeof document !== "undefined" && document.visibilityState === "visible" && typeof requestAnimationFrame === "function") {
      requestAnimationFrame(run);
    } else {
      setTimeout(run, 100);
    }
  }

  cancel() {
    this.cancelled = true;
    this.queue = [];
  }
}
