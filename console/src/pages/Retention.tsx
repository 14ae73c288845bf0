import { useEffect, useState } from "preact/hooks";
import { api, unwrap, type Schemas } from "../api/client";
import { ChartBox, ErrorNote, Section } from "../components";
import { formatNumber, formatPercent, lang, useT } from "../i18n";
import { monthWindows, type Window } from "../periods";
import { useSignal } from "../signal";

type Metrics = Schemas["MetricsPublic"];
const MONTHS = 6;

/** Retention, churn and save rates month by month; alert precision/recall and playbook uplift against the
 * control group (GET /retention/metrics, one call per month). */
export function Retention() {
  const t = useT();
  const language = useSignal(lang);
  const [rows, setRows] = useState<{ window: Window; m: Metrics }[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    (async () => {
      try {
        const windows = monthWindows(new Date(), MONTHS);
        const answers = await Promise.all(
          windows.map(async (w) => ({
            window: w,
            m: unwrap(await api.GET("/api/v1/retention/metrics", { params: { query: { from: w.from, to: w.to } } })).overall,
          })),
        );
        setRows(answers);
      } catch (exc) {
        setError((exc as Error).message);
      }
    })();
  }, []);

  const pct = (v: number | null | undefined) => formatPercent(language, v);
  const labels = rows?.map((r) => r.window.label) ?? [];
  const line = (label: string, data: (number | null)[], colour: string) => ({
    label,
    data,
    borderColor: colour,
    backgroundColor: colour,
    spanGaps: true,
  });
  return (
    <main id="main">
      <h1>{t("retentionTitle")}</h1>
      <ErrorNote message={error} />
      {!rows && !error && <p>{t("loading")}</p>}
      {rows && (
        <div class="grid">
          <Section title={t("ratesOverTime")} id="rates-title">
            <ChartBox
              label={t("ratesOverTime")}
              config={{
                type: "line",
                data: {
                  labels,
                  datasets: [
                    line(t("retentionRate"), rows.map((r) => r.m.retention_rate ?? null), "#065f46"),
                    line(t("churnRate"), rows.map((r) => r.m.churn_rate ?? null), "#b91c1c"),
                    line(t("saveRate"), rows.map((r) => r.m.save_rate ?? null), "#1d4ed8"),
                  ],
                },
                options: { scales: { y: { min: 0, max: 1 } } },
              }}
            />
          </Section>
          <Section title={t("alertQuality")} id="quality-title">
            <ChartBox
              label={t("alertQuality")}
              config={{
                type: "line",
                data: {
                  labels,
                  datasets: [
                    line(t("precision"), rows.map((r) => r.m.precision ?? null), "#6b21a8"),
                    line(t("recall"), rows.map((r) => r.m.recall ?? null), "#a16207"),
                  ],
                },
                options: { scales: { y: { min: 0, max: 1 } } },
              }}
            />
          </Section>
        </div>
      )}
      {rows && (
        <Section title={t("upliftTitle")} id="uplift-title">
          <div class="table-wrap" tabIndex={0} role="region" aria-label={t("upliftTitle")}>
            <table class="rates">
              <thead>
                <tr>
                  <th scope="col">{t("month")}</th>
                  <th scope="col">{t("customers")}</th>
                  <th scope="col">{t("retentionRate")}</th>
                  <th scope="col">{t("churnRate")}</th>
                  <th scope="col">{t("saveRate")}</th>
                  <th scope="col">{t("precision")}</th>
                  <th scope="col">{t("recall")}</th>
                  <th scope="col">{t("treatedChurn")}</th>
                  <th scope="col">{t("controlChurn")}</th>
                  <th scope="col">{t("uplift")}</th>
                </tr>
              </thead>
              <tbody>
                {rows.map(({ window, m }) => (
                  <tr key={window.label} data-month={window.label}>
                    <th scope="row">{window.label}</th>
                    <td data-field="customers">{formatNumber(language, m.customers)}</td>
                    <td data-field="retention">{pct(m.retention_rate)}</td>
                    <td data-field="churn">{pct(m.churn_rate)}</td>
                    <td data-field="save">{pct(m.save_rate)}</td>
                    <td data-field="precision">{pct(m.precision)}</td>
                    <td data-field="recall">{pct(m.recall)}</td>
                    <td>
                      {pct(m.treated.churn_rate)} ({m.treated.churned}/{m.treated.alerts})
                    </td>
                    <td>
                      {pct(m.control.churn_rate)} ({m.control.churned}/{m.control.alerts})
                    </td>
                    <td data-field="uplift">{pct(m.uplift)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <p class="hint">{t("upliftHelp")}</p>
        </Section>
      )}
    </main>
  );
}
