// An RFC 9457 problem in plain words.
type Problem = { title?: string; detail?: string; errors?: { field?: string; message?: string }[] };

/** The problem's words: its detail, and each offending field. */
export function problemText(status: number, body: unknown): string {
  const problem = (body ?? {}) as Problem;
  const fields = (problem.errors ?? []).map((e) => `${e.field ?? ""}: ${e.message ?? ""}`.trim());
  const main = problem.detail || problem.title || `HTTP ${status}`;
  return fields.length ? `${main} (${fields.join("; ")})` : main;
}

