import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, unwrap, type Schemas } from "../api/client";
import { ErrorNote, PAGE, Pager, Section } from "../components";
import { formatDate, formatNumber, formatPercent, lang, useT, useWord } from "../i18n";
import { navigate } from "../router";
import { useSignal } from "../signal";
import { followAlerts, type StreamState } from "../stream";

type Alert = Schemas["AlertPublic"];
type Task = Schemas["TaskPublic"];
type Outcome = Schemas["Outcome"];

export function Queue() {
  const t = useT();
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<{ items: Alert[]; total: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [stream, setStream] = useState<StreamState>("offline");
  const [tick, setTick] = useState(0); // bumped on every alert change: the task list follows too
  const offsetRef = useRef(0);
  offsetRef.current = offset;

  const load = useCallback(async () => {
    try {
      const body = unwrap(
        await api.GET("/api/v1/alerts", {
          params: { query: { status: ["open", "acknowledged"], limit: PAGE, offset: offsetRef.current } },
        }),
      );
      setPage({ items: body.items, total: body.total });
      setError(null);
    } catch (exc) {
      setError((exc as Error).message);
    }
  }, []);

  useEffect(() => {
    void load();
  }, [offset]);

  useEffect(() => {
    let timer: number | undefined;
    // Every alert change on the stream reloads the page on screen (coalesced).
    return followAlerts(
      () => {
        window.clearTimeout(timer);
        timer = window.setTimeout(() => {
          void load();
          setTick((n) => n + 1);
        }, 100);
      },
      setStream,
    );
  }, []);

  return (
    <main id="main">
      <h1>
        {t("queueTitle")}{" "}
        <span class={stream === "live" ? "badge live" : "badge"} title={stream === "live" ? t("live") : t("offline")} data-stream={stream}>
          {stream === "live" ? t("live") : "–"}
        </span>
      </h1>
      <ErrorNote message={error} />
      {page === null ? (
        <p>{t("loading")}</p>
      ) : page.items.length === 0 ? (
        <p>{t("none")}</p>
      ) : (
        <ul class="queue" aria-label={t("queueTitle")}>
          {page.items.map((alert) => (
            <AlertRow key={alert.id} alert={alert} onChanged={load} />
          ))}
        </ul>
      )}
      {page && <Pager offset={offset} total={page.total} onPage={setOffset} />}
      <Tasks tick={tick} />
    </main>
  );
}

function AlertRow({ alert, onChanged }: { alert: Alert; onChanged: () => Promise<unknown> }) {
  const t = useT();
  const word = useWord();
  const language = useSignal(lang);
  const [resolving, setResolving] = useState(false);
  const [snoozing, setSnoozing] = useState(false);
  const [until, setUntil] = useState("");
  const [snoozeReason, setSnoozeReason] = useState("");
  const [outcome, setOutcome] = useState<Outcome>("saved");
  const [note, setNote] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function act(run: () => Promise<unknown>) {
    setBusy(true);
    setError(null);
    try {
      await run();
      setResolving(false);
      setSnoozing(false);
      await onChanged();
    } catch (exc) {
      setError((exc as Error).message); // the outcome and note stay as typed
    } finally {
      setBusy(false);
    }
  }

  const path = { params: { path: { alert_id: alert.id } } };
  return (
    <li class={`alert sev-${alert.severity}`} data-alert={alert.id} data-customer={alert.customer_id}>
      <div class="alert-main">
        <a
          href={`/console/customers/${encodeURIComponent(alert.customer_id)}`}
          onClick={(e) => {
            e.preventDefault();
            navigate(`/console/customers/${encodeURIComponent(alert.customer_id)}`);
          }}
        >
          {alert.customer_id}
        </a>
        <span class="reason">{alert.reason}</span>
        <span class="pill">{word(alert.severity)}</span>
        <span class="pill status">{word(alert.status)}</span>
        {alert.tier && <span class="pill">{word(alert.tier)}</span>}
      </div>
      <dl class="figures">
        <div>
          <dt>{t("valueAtRisk")}</dt>
          <dd>{formatNumber(language, alert.value_at_risk, 0)}</dd>
        </div>
        <div>
          <dt>{t("churnRisk")}</dt>
          <dd>{formatPercent(language, alert.churn_risk)}</dd>
        </div>
        <div>
          <dt>{t("when")}</dt>
          <dd>{formatDate(language, alert.last_triggered_at)}</dd>
        </div>
      </dl>
      {alert.factors.length > 0 && (
        <ul class="factors">
          {alert.factors.slice(0, 3).map((f) => (
            <li key={f.code}>{f.label}</li>
          ))}
        </ul>
      )}
      <div class="buttons">
        {alert.status === "open" && (
          <button type="button" disabled={busy} onClick={() => act(async () => unwrap(await api.POST("/api/v1/alerts/{alert_id}/acknowledge", { ...path, body: {} })))}>
            {t("acknowledge")}
          </button>
        )}
        <button type="button" disabled={busy} onClick={() => setSnoozing(!snoozing)} aria-expanded={snoozing}>
          {t("snooze")}
        </button>
        <button type="button" disabled={busy} onClick={() => setResolving(!resolving)} aria-expanded={resolving}>
          {t("resolve")}
        </button>
      </div>
      {snoozing && (
        <form
          class="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            const when = until ? new Date(until).toISOString() : "";
            void act(async () =>
              unwrap(
                await api.POST("/api/v1/alerts/{alert_id}/snooze", { ...path, body: { until: when, reason: snoozeReason } }),
              ),
            );
          }}
        >
          <label>
            {t("until")}
            <input type="datetime-local" value={until} onInput={(e) => setUntil(e.currentTarget.value)} />
          </label>
          <label>
            {t("reason")}
            <input value={snoozeReason} maxLength={500} onInput={(e) => setSnoozeReason(e.currentTarget.value)} />
          </label>
          <button type="submit" class="primary" disabled={busy}>
            {t("save")}
          </button>
        </form>
      )}
      {resolving && (
        <form
          class="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            void act(async () =>
              unwrap(await api.POST("/api/v1/alerts/{alert_id}/resolve", { ...path, body: { outcome, note: note || null } })),
            );
          }}
        >
          <label>
            {t("outcome")}
            <select value={outcome} onChange={(e) => setOutcome(e.currentTarget.value as Outcome)}>
              {(["saved", "churned", "false_alarm"] as const).map((o) => (
                <option key={o} value={o}>
                  {t(o)}
                </option>
              ))}
            </select>
          </label>
          <label>
            {t("note")}
            <input value={note} maxLength={2000} onInput={(e) => setNote(e.currentTarget.value)} />
          </label>
          <button type="submit" class="primary" disabled={busy}>
            {t("save")}
          </button>
        </form>
      )}
      <ErrorNote message={error} />
    </li>
  );
}

function Tasks({ tick }: { tick: number }) {
  const t = useT();
  const language = useSignal(lang);
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<{ items: Task[]; total: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notes, setNotes] = useState<Record<string, string>>({});

  async function load() {
    try {
      const body = unwrap(await api.GET("/api/v1/tasks", { params: { query: { status: "open", limit: PAGE, offset } } }));
      setPage({ items: body.items, total: body.total });
      setError(null);
    } catch (exc) {
      setError((exc as Error).message);
    }
  }
  useEffect(() => {
    void load();
  }, [offset, tick]);

  async function complete(task: Task) {
    try {
      unwrap(
        await api.POST("/api/v1/tasks/{task_id}/complete", {
          params: { path: { task_id: task.id } },
          body: { note: notes[task.id] || null },
        }),
      );
      await load();
    } catch (exc) {
      setError((exc as Error).message);
    }
  }

  return (
    <Section title={t("tasksTitle")} id="tasks-title">
      <ErrorNote message={error} />
      {page && page.items.length === 0 && <p>{t("none")}</p>}
      {page && page.items.length > 0 && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{t("customer")}</th>
                <th scope="col">{t("action")}</th>
                <th scope="col">{t("due")}</th>
                <th scope="col">{t("note")}</th>
                <th scope="col">{t("actions")}</th>
              </tr>
            </thead>
            <tbody>
              {page.items.map((task) => (
                <tr key={task.id} data-task={task.id}>
                  <td>{task.customer_id}</td>
                  <td>{String(task.action)}</td>
                  <td>
                    {formatDate(language, task.due_at)} {task.overdue && <strong class="overdue">{t("overdue")}</strong>}
                  </td>
                  <td>
                    <input
                      aria-label={`${t("note")} ${task.customer_id}`}
                      value={notes[task.id] ?? ""}
                      onInput={(e) => setNotes({ ...notes, [task.id]: e.currentTarget.value })}
                    />
                  </td>
                  <td>
                    <button type="button" onClick={() => complete(task)}>
                      {t("complete")}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {page && <Pager offset={offset} total={page.total} onPage={setOffset} />}
    </Section>
  );
}
