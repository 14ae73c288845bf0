import { useEffect, useState } from "preact/hooks";
import { api, unwrap, type Schemas } from "../api/client";
import { ChartBox, ErrorNote, Section } from "../components";
import { formatNumber, formatPercent, lang, useT, useWord } from "../i18n";
import { useSignal } from "../signal";

const TIER_COLOURS = ["#6b21a8", "#a16207", "#475569", "#78716c", "#d1d5db"];

export function Manager() {
  const t = useT();
  const word = useWord();
  const language = useSignal(lang);
  const [segment, setSegment] = useState(() => new URLSearchParams(window.location.search).get("segment") ?? "");
  const [typed, setTyped] = useState(segment);
  const [summary, setSummary] = useState<Schemas["ScoreSummaryPublic"] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    (async () => {
      try {
        const query = segment ? { segment } : {};
        setSummary(unwrap(await api.GET("/api/v1/scores/summary", { params: { query } })));
        setError(null);
      } catch (exc) {
        setError((exc as Error).message);
      }
    })();
  }, [segment]);
  const filter = (
    <form
      class="inline-form filter"
      onSubmit={(e) => {
        e.preventDefault();
        const next = typed.trim();
        window.history.replaceState(null, "", next ? `?segment=${encodeURIComponent(next)}` : window.location.pathname);
        setSegment(next);
      }}
    >
      <label>
        {t("segment")}
        <input name="segment" value={typed} maxLength={100} onInput={(e) => setTyped(e.currentTarget.value)} />
      </label>
      <button type="submit">{t("apply")}</button>
    </form>
  );
  if (error || !summary) {
    return (
      <main id="main">
        <h1>{t("pyramidTitle")}</h1>
        {filter}
        {error ? <ErrorNote message={error} /> : <p>{t("loading")}</p>}
      </main>
    );
  }
  const tierName = (tier: string | null) => (tier ? word(tier) : t("unvalued"));
  const top = summary.tiers.filter((s) => s.tier === "platinum" || s.tier === "gold");
  const topShare = top.reduce((sum, s) => sum + s.value_share, 0);
  const topCustomers = summary.customers ? top.reduce((sum, s) => sum + s.customers, 0) / summary.customers : 0;
  return (
    <main id="main">
      <h1>{t("pyramidTitle")}</h1>
      {filter}
      <p>
        {t("customers")}: <strong data-field="total">{formatNumber(language, summary.customers)}</strong>
      </p>
      <div class="grid">
        <Section title={t("pyramidTitle")} id="pyramid-title">
          <div class="table-wrap">
            <table class="pyramid">
              <thead>
                <tr>
                  <th scope="col">{t("tier")}</th>
                  <th scope="col">{t("customers")}</th>
                  <th scope="col">{t("valueShare")}</th>
                </tr>
              </thead>
              <tbody>
                {summary.tiers.map((s) => (
                  <tr key={String(s.tier)} data-tier={s.tier ?? "none"}>
                    <th scope="row">{tierName(s.tier)}</th>
                    <td data-field="customers">{formatNumber(language, s.customers)}</td>
                    <td>{formatPercent(language, s.value_share)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {summary.tiers.some((s) => s.value > 0) && (
            <p>{t("eightyTwenty", { share: formatPercent(language, topShare), customers: formatPercent(language, topCustomers) })}</p>
          )}
          <ChartBox
            label={t("pyramidTitle")}
            config={{
              type: "bar",
              data: {
                labels: summary.tiers.map((s) => tierName(s.tier)),
                datasets: [
                  { label: t("customers"), data: summary.tiers.map((s) => s.customers), backgroundColor: TIER_COLOURS },
                ],
              },
              options: { indexAxis: "y", plugins: { legend: { display: false } } },
            }}
          />
        </Section>
        <Section title={t("riskTitle")} id="risk-title">
          <ChartBox
            label={t("riskTitle")}
            config={{
              type: "bar",
              data: {
                labels: summary.risk.map((b) => `${formatPercent(language, b.low)}–${formatPercent(language, b.high)}`),
                datasets: [{ label: t("customers"), data: summary.risk.map((b) => b.customers), backgroundColor: "#b91c1c" }],
              },
              options: { plugins: { legend: { display: false } } },
            }}
          />
          <ul class="sr-list">
            {summary.risk.map((b) => (
              <li key={b.low} data-risk={b.low}>
                {t("riskRange", { low: formatPercent(language, b.low), high: formatPercent(language, b.high) })}: {b.customers}
              </li>
            ))}
          </ul>
        </Section>
        <Section title={t("funnelTitle")} id="funnel-title">
          <ChartBox
            label={t("funnelTitle")}
            config={{
              type: "bar",
              data: {
                labels: summary.stages.map((s) => word(s.stage)),
                datasets: [{ label: t("customers"), data: summary.stages.map((s) => s.customers), backgroundColor: "#1d4ed8" }],
              },
              options: { plugins: { legend: { display: false } } },
            }}
          />
          <ul class="sr-list">
            {summary.stages.map((s) => (
              <li key={String(s.stage)} data-stage={s.stage ?? "none"}>
                {word(s.stage)}: {s.customers}
              </li>
            ))}
          </ul>
        </Section>
      </div>
    </main>
  );
}
