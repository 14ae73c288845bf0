// Server-sent events over fetch (EventSource cannot send the Authorization header), resuming from the
// last event id after a drop.
import { session } from "./auth";

export type StreamState = "live" | "offline";

export function followAlerts(onEvent: () => void, onState: (state: StreamState) => void): () => void {
  let stopped = false;
  let lastId: string | null = null;
  let controller: AbortController | null = null;

  async function run(): Promise<void> {
    while (!stopped) {
      const token = session.token();
      if (!token) break;
      controller = new AbortController();
      try {
        const headers: Record<string, string> = { Accept: "text/event-stream", Authorization: `Bearer ${token}` };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch("/api/v1/alerts/stream", { headers, signal: controller.signal });
        if (!response.ok || !response.body) {
          onState("offline");
          if (response.status === 401 || response.status === 403) break;
        } else {
          onState("live");
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let end: number;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const frame = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const id = /^id: ?(.*)$/m.exec(frame);
              if (id) lastId = id[1];
              if (/^data:/m.test(frame)) onEvent();
            }
          }
          onState("offline");
        }
      } catch {
        if (stopped) break;
        onState("offline");
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  void run();
  return () => {
    stopped = true;
    controller?.abort();
  };
}
