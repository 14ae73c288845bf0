import { useEffect, useState } from "preact/hooks";
import { api, unwrap, type Schemas } from "../api/client";
import { type Role } from "../auth";
import { ErrorNote, PAGE, Pager } from "../components";
import { type Key, formatDate, lang, useT, useWord } from "../i18n";
import { navigate } from "../router";
import { useSignal } from "../signal";

type Complaint = Schemas["ComplaintListItem"];
type Status = Schemas["ComplaintStatus"];

// The workflow's next steps (services/interaction/complaints.py TRANSITIONS); the service is the judge.
const NEXT: Record<Status, Status[]> = {
  open: ["acknowledged"],
  acknowledged: ["valid", "rejected"],
  valid: ["resolved"],
  rejected: ["closed"],
  resolved: ["followed_up"],
  followed_up: ["closed"],
  closed: [],
};
const OPEN: Status[] = ["open", "acknowledged", "valid", "resolved", "followed_up"];
const OWNER_SCOPED: Role[] = ["agent", "manager"];

/** The SLA clock in words: time left to the due time, or how long it is overdue. */
export function slaClock(dueAt: string | null | undefined, now: number): { overdue: boolean; hours: number } | null {
  if (!dueAt) return null;
  const left = (new Date(dueAt).getTime() - now) / 3_600_000;
  return { overdue: left < 0, hours: Math.abs(left) };
}

function duration(hours: number): string {
  return hours >= 48 ? `${Math.floor(hours / 24)} d` : hours >= 1 ? `${Math.floor(hours)} h` : `${Math.max(1, Math.round(hours * 60))} min`;
}

export function Complaints({ role }: { role: Role }) {
  const t = useT();
  const scoped = OWNER_SCOPED.includes(role);
  const [customer, setCustomer] = useState(() => new URLSearchParams(window.location.search).get("customer_id") ?? "");
  const [typed, setTyped] = useState(customer);
  const [overdueOnly, setOverdueOnly] = useState(false);
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<{ items: Complaint[]; total: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [now, setNow] = useState(Date.now());

  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 30_000);
    return () => window.clearInterval(timer);
  }, []);

  async function load() {
    // Without a customer, an agent or manager gets every customer they own (the gateway narrows the list).
    try {
      const query = {
        status: OPEN,
        limit: PAGE,
        offset,
        ...(customer ? { customer_id: customer } : {}),
        ...(overdueOnly ? { overdue: true } : {}),
      };
      const body = unwrap(await api.GET("/api/v1/complaints", { params: { query } }));
      setPage({ items: body.items, total: body.total });
      setError(null);
    } catch (exc) {
      setPage(null); // the list on screen no longer matches the filter
      setError((exc as Error).message);
    }
  }
  useEffect(() => {
    void load();
  }, [customer, overdueOnly, offset]);

  return (
    <main id="main">
      <h1>{t("complaintDesk")}</h1>
      <form
        class="inline-form filter"
        onSubmit={(e) => {
          e.preventDefault();
          const next = typed.trim();
          window.history.replaceState(null, "", next ? `?customer_id=${encodeURIComponent(next)}` : window.location.pathname);
          setOffset(0);
          setCustomer(next);
        }}
      >
        <label>
          {t("customer")}
          <input name="customer_id" value={typed} maxLength={100} onInput={(e) => setTyped(e.currentTarget.value)} />
        </label>
        <label class="check">
          <input type="checkbox" checked={overdueOnly} onChange={(e) => setOverdueOnly(e.currentTarget.checked)} />
          {t("overdueOnly")}
        </label>
        <button type="submit">{t("apply")}</button>
      </form>
      {scoped && !customer && <p class="hint">{t("complaintDeskScoped")}</p>}
      <ErrorNote message={error} />
      {page && page.items.length === 0 && <p>{t("none")}</p>}
      {page && page.items.length > 0 && (
        <ul class="queue" aria-label={t("complaintDesk")}>
          {page.items.map((c) => (
            <ComplaintRow key={c.id} complaint={c} now={now} canAct={role !== "analyst"} onChanged={load} />
          ))}
        </ul>
      )}
      {page && <Pager offset={offset} total={page.total} onPage={setOffset} />}
    </main>
  );
}

function ComplaintRow({
  complaint,
  now,
  canAct,
  onChanged,
}: {
  complaint: Complaint;
  now: number;
  canAct: boolean;
  onChanged: () => Promise<unknown>;
}) {
  const t = useT();
  const word = useWord();
  const language = useSignal(lang);
  const status = (complaint.complaint_status ?? "open") as Status;
  const [to, setTo] = useState<Status | "">("");
  const [note, setNote] = useState("");
  const [resolution, setResolution] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const clock = slaClock(complaint.due_at, now);

  async function submit(e: Event) {
    e.preventDefault();
    if (!to) return;
    setBusy(true);
    setError(null);
    try {
      unwrap(
        await api.POST("/api/v1/complaints/{complaint_id}/transitions", {
          params: { path: { complaint_id: complaint.id } },
          body: { to, note: note || null, resolution: resolution || null },
        }),
      );
      setTo("");
      setNote("");
      setResolution("");
      await onChanged();
    } catch (exc) {
      setError((exc as Error).message); // what was typed stays
    } finally {
      setBusy(false);
    }
  }

  return (
    <li class={`alert sev-${complaint.severity ?? "low"}`} data-complaint={complaint.id} data-status={status}>
      <div class="alert-main">
        <a
          href={`/console/customers/${encodeURIComponent(complaint.customer_id)}`}
          onClick={(e) => {
            e.preventDefault();
            navigate(`/console/customers/${encodeURIComponent(complaint.customer_id)}`);
          }}
        >
          {complaint.customer_id}
        </a>
        {complaint.owner && (
          <span class="pill" data-field="owner">
            {t("owner")}: {complaint.owner}
          </span>
        )}
        {complaint.category && <span class="reason">{complaint.category}</span>}
        {complaint.severity && <span class="pill">{word(complaint.severity)}</span>}
        <span class="pill status">{word(status)}</span>
        {clock && (
          <strong class={clock.overdue ? "sla overdue" : "sla"} data-field="sla">
            {t(clock.overdue ? "slaOverdue" : "slaLeft", { time: duration(clock.hours) })}
          </strong>
        )}
      </div>
      {complaint.text && <p class="complaint-text">{complaint.text}</p>}
      <dl class="figures">
        <div>
          <dt>{t("when")}</dt>
          <dd>{formatDate(language, complaint.occurred_at)}</dd>
        </div>
        <div>
          <dt>{t("due")}</dt>
          <dd>{formatDate(language, complaint.due_at)}</dd>
        </div>
      </dl>
      {canAct && NEXT[status].length > 0 && (
        <form class="inline-form" onSubmit={submit}>
          <label>
            {t("nextStep")}
            <select value={to} onChange={(e) => setTo(e.currentTarget.value as Status)}>
              <option value="">–</option>
              {NEXT[status].map((s) => (
                <option key={s} value={s}>
                  {t(s as Key)}
                </option>
              ))}
            </select>
          </label>
          <label>
            {t("note")}
            <input value={note} maxLength={2000} onInput={(e) => setNote(e.currentTarget.value)} />
          </label>
          {to === "resolved" && (
            <label>
              {t("resolution")}
              <input value={resolution} onInput={(e) => setResolution(e.currentTarget.value)} />
            </label>
          )}
          <button type="submit" class="primary" disabled={busy || !to}>
            {t("save")}
          </button>
        </form>
      )}
      <ErrorNote message={error} />
    </li>
  );
}
