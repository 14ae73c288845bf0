// A minimal observable value, so module state (who is signed in, the language) re-renders components.
import { useEffect, useState } from "preact/hooks";

export type Signal<T> = { value: T; subscribe(fn: () => void): () => void };

export function signal<T>(initial: T): Signal<T> {
  let current = initial;
  const listeners = new Set<() => void>();
  return {
    get value() {
      return current;
    },
    set value(next: T) {
      current = next;
      listeners.forEach((fn) => fn());
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}

export function useSignal<T>(s: Signal<T>): T {
  const [, bump] = useState(0);
  useEffect(() => s.subscribe(() => bump((n) => n + 1)), [s]);
  return s.value;
}
