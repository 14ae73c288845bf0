// Pure helpers for the time-series pages: calendar-month windows and daily counts.

export type Window = { label: string; from: string; to: string };

/** The last `count` calendar months up to and including the current one (UTC), oldest first; the
 * current month ends at `now`. */
export function monthWindows(now: Date, count: number): Window[] {
  const out: Window[] = [];
  for (let back = count - 1; back >= 0; back--) {
    const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - back, 1));
    const next = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1));
    const end = next.getTime() > now.getTime() ? now : next;
    out.push({ label: start.toISOString().slice(0, 7), from: start.toISOString(), to: end.toISOString() });
  }
  return out;
}

/** How many of `times` fall on each UTC day of [from, to), one entry per day, oldest first. */
export function dailyCounts(times: string[], from: Date, to: Date): { day: string; count: number }[] {
  const days: { day: string; count: number }[] = [];
  const index = new Map<string, number>();
  for (let t = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate()); t < to.getTime(); t += 86_400_000) {
    const day = new Date(t).toISOString().slice(0, 10);
    index.set(day, days.length);
    days.push({ day, count: 0 });
  }
  for (const time of times) {
    const at = index.get(new Date(time).toISOString().slice(0, 10));
    if (at !== undefined) days[at].count += 1;
  }
  return days;
}
