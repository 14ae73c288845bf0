import { useEffect, useState } from "preact/hooks";
import { ApiError, api, unwrap, type Schemas } from "../api/client";
import { ChartBox, ErrorNote, PAGE, Pager, Section } from "../components";
import { formatDate, formatNumber, formatPercent, lang, useT, useWord } from "../i18n";
import { navigate } from "../router";
import { useSignal } from "../signal";

type View = {
  customer_id: string;
  profile: Schemas["CustomerPublic"] | null;
  scores: Schemas["CustomerScoresPublic"] | null;
  complaints: { items: Schemas["InteractionPublic"][] } | null;
  alerts: { items: Schemas["AlertPublic"][] } | null;
  unavailable: string[];
};
type Interaction = Schemas["InteractionPublic"];
type HistoryItem = Schemas["ScoreHistoryItem"];

export function Customer({ id }: { id: string }) {
  const t = useT();
  const word = useWord();
  const language = useSignal(lang);
  const [view, setView] = useState<View | null>(null);
  const [history, setHistory] = useState<HistoryItem[]>([]);
  const [error, setError] = useState<{ status: number; message: string } | null>(null);

  useEffect(() => {
    setView(null);
    setError(null);
    (async () => {
      try {
        const body = unwrap(await api.GET("/api/v1/customers/{customer_id}/360", { params: { path: { customer_id: id } } }));
        setView(body as unknown as View);
        const past = unwrap(
          await api.GET("/api/v1/customers/{customer_id}/scores/history", {
            params: { path: { customer_id: id }, query: { limit: 100 } },
          }),
        );
        setHistory(past.items);
      } catch (exc) {
        setError({ status: exc instanceof ApiError ? exc.status : 0, message: (exc as Error).message });
      }
    })();
  }, [id]);

  if (error) {
    return (
      <main id="main">
        <h1>{error.status === 404 ? t("notFound") : t("customer")}</h1>
        <ErrorNote message={error.message} />
      </main>
    );
  }
  if (!view) {
    return (
      <main id="main">
        <p>{t("loading")}</p>
      </main>
    );
  }
  const profile = view.profile;
  const score = view.scores?.scores ?? null;
  const ordered = [...history].reverse();
  return (
    <main id="main" class="customer">
      <h1>{profile?.name ?? id}</h1>
      {view.unavailable.length > 0 && <p class="notice">{t("unavailable", { parts: view.unavailable.join(", ") })}</p>}
      <div class="grid">
        <Section title={t("profile")} id="profile-title">
          <dl class="facts">
            <dt>{t("customer")}</dt>
            <dd>{id}</dd>
            <dt>{t("status")}</dt>
            <dd>{profile?.status ?? "–"}</dd>
            <dt>{t("owner")}</dt>
            <dd>{profile?.owner ?? "–"}</dd>
            <dt>{t("segment")}</dt>
            <dd>{profile?.segment ?? "–"}</dd>
            <dt>{t("tier")}</dt>
            <dd data-field="tier">{score?.value_tier ? word(score.value_tier) : t("unvalued")}</dd>
            <dt>{t("stage")}</dt>
            <dd data-field="stage">{word(score?.lifecycle_stage)}</dd>
            <dt>{t("churnRisk")}</dt>
            <dd data-field="churn-risk">{formatPercent(language, score?.churn_risk)}</dd>
            <dt>{t("health")}</dt>
            <dd data-field="health">{score ? `${formatNumber(language, score.health)} / 100` : "–"}</dd>
            <dt>{t("clv")}</dt>
            <dd>{formatNumber(language, score?.clv, 0)}</dd>
          </dl>
        </Section>
        <Section title={t("riskFactors")} id="risk-title">
          <Factors factors={score?.factors.churn_risk ?? []} />
          <h3>{t("healthFactors")}</h3>
          <Factors factors={score?.factors.health ?? []} />
        </Section>
      </div>
      <Section title={t("scoreHistory")} id="history-title">
        {ordered.length === 0 ? (
          <p>{t("none")}</p>
        ) : (
          <ChartBox
            label={`${t("scoreHistory")}: ${t("churnRisk")} ${formatPercent(language, ordered[ordered.length - 1].churn_risk)}`}
            config={{
              type: "line",
              data: {
                labels: ordered.map((h) => formatDate(language, h.as_of)),
                datasets: [
                  {
                    label: `${t("churnRisk")} (%)`,
                    data: ordered.map((h) => Math.round(h.churn_risk * 1000) / 10),
                    borderColor: "#b91c1c",
                    backgroundColor: "#b91c1c",
                  },
                  { label: `${t("health")} (0–100)`, data: ordered.map((h) => h.health), borderColor: "#047857", backgroundColor: "#047857" },
                ],
              },
              options: { scales: { y: { min: 0, max: 100 } } },
            }}
          />
        )}
      </Section>
      {view.alerts && view.alerts.items.length > 0 && (
        <Section title={t("openAlerts")} id="alerts-title">
          <ul>
            {view.alerts.items.map((a) => (
              <li key={a.id}>
                {a.reason} · {word(a.severity)} · {word(a.status)} · {t("valueAtRisk")} {formatNumber(language, a.value_at_risk)}
              </li>
            ))}
          </ul>
        </Section>
      )}
      {view.complaints && view.complaints.items.length > 0 && (
        <Section title={t("openComplaints")} id="complaints-title">
          <ul>
            {view.complaints.items.map((c) => (
              <li key={c.id} data-complaint={c.id}>
                {c.category ?? String(c.type)} · {word(c.severity)} · {String(c.complaint_status ?? "")} · {t("due")}{" "}
                {formatDate(language, c.due_at)}
                {c.overdue_at && <strong class="overdue"> {t("overdue")}</strong>}
              </li>
            ))}
          </ul>
          <a
            href={`/console/complaints?customer_id=${encodeURIComponent(id)}`}
            onClick={(e) => {
              e.preventDefault();
              navigate(`/console/complaints?customer_id=${encodeURIComponent(id)}`);
            }}
          >
            {t("navComplaints")}
          </a>
        </Section>
      )}
      <Timeline id={id} />
    </main>
  );
}

function Factors({ factors }: { factors: { code: string; label: string; contribution: number }[] }) {
  const t = useT();
  if (factors.length === 0) return <p>{t("none")}</p>;
  return (
    <ul class="factors">
      {factors.map((f) => (
        <li key={f.code}>
          {f.label} <span class="muted">({f.contribution >= 0 ? "+" : ""}{f.contribution.toFixed(2)})</span>
        </li>
      ))}
    </ul>
  );
}

function Timeline({ id }: { id: string }) {
  const t = useT();
  const word = useWord();
  const language = useSignal(lang);
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<{ items: Interaction[]; total: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    (async () => {
      try {
        const body = unwrap(
          await api.GET("/api/v1/customers/{customer_id}/interactions", {
            params: { path: { customer_id: id }, query: { limit: PAGE, offset } },
          }),
        );
        setPage({ items: body.items, total: body.total });
      } catch (exc) {
        setError((exc as Error).message);
      }
    })();
  }, [id, offset]);
  return (
    <Section title={t("timeline")} id="timeline-title">
      <ErrorNote message={error} />
      {page && page.items.length === 0 && <p>{t("none")}</p>}
      {page && page.items.length > 0 && (
        <ol class="timeline">
          {page.items.map((i) => (
            <li key={i.id} data-type={i.type}>
              <time dateTime={i.occurred_at}>{formatDate(language, i.occurred_at)}</time> <strong>{String(i.type)}</strong>
              {i.severity && <span class="pill">{word(i.severity)}</span>}
              {i.complaint_status && <span class="pill status">{String(i.complaint_status)}</span>}
              {i.category && <span> · {i.category}</span>}
              {i.amount && <span> · {i.amount} {i.currency ?? ""}</span>}
              {i.text && <p class="muted">{i.text}</p>}
            </li>
          ))}
        </ol>
      )}
      {page && <Pager offset={offset} total={page.total} onPage={setOffset} />}
    </Section>
  );
}
