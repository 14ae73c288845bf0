import { useEffect, useState } from "preact/hooks";
import { api, unwrap, type Schemas } from "../api/client";
import { ChartBox, ErrorNote, Section } from "../components";
import { formatDate, formatNumber, lang, useT } from "../i18n";
import { useSignal } from "../signal";

type Model = Schemas["ModelVersionPublic"];
type Bin = { from: number; to: number; n: number; predicted: number; observed: number };
type Quality = { roc_auc?: number; brier?: number; calibration?: Bin[] };

export function Analyst() {
  const t = useT();
  const language = useSignal(lang);
  const [models, setModels] = useState<Model[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function load() {
    try {
      setModels(unwrap(await api.GET("/api/v1/models", { params: { query: { kind: "churn", limit: 50 } } })).items);
    } catch (exc) {
      setError((exc as Error).message);
    }
  }
  useEffect(() => {
    void load();
  }, []);

  async function activate(model: Model) {
    try {
      unwrap(await api.POST("/api/v1/models/{model_id}/activate", { params: { path: { model_id: model.id } } }));
      await load();
    } catch (exc) {
      setError((exc as Error).message);
    }
  }

  const active = models?.find((m) => m.active) ?? models?.[0];
  const quality = ((active?.metrics as { model?: Quality } | undefined)?.model ?? {}) as Quality;
  const bins = quality.calibration ?? [];
  return (
    <main id="main">
      <h1>{t("modelTitle")}</h1>
      <ErrorNote message={error} />
      {models === null && !error && <p>{t("loading")}</p>}
      {models !== null && !active && <p>{t("noModel")}</p>}
      {active && (
        <div class="grid">
          <Section title={`${t("modelTitle")}: ${active.algorithm}`} id="quality-title">
            <dl class="facts big">
              <dt>{t("auc")}</dt>
              <dd data-field="auc">{formatNumber(language, quality.roc_auc, 3)}</dd>
              <dt>{t("brier")}</dt>
              <dd data-field="brier">{formatNumber(language, quality.brier, 3)}</dd>
              <dt>{t("fitted")}</dt>
              <dd>{formatDate(language, active.fitted_at)}</dd>
            </dl>
          </Section>
          <Section title={t("calibration")} id="calibration-title">
            <ChartBox
              label={`${t("calibration")}: ${bins.map((b) => `${b.predicted} → ${b.observed}`).join(", ")}`}
              config={{
                type: "scatter",
                data: {
                  datasets: [
                    {
                      label: t("observed"),
                      data: bins.map((b) => ({ x: b.predicted, y: b.observed })),
                      showLine: true,
                      borderColor: "#1d4ed8",
                      backgroundColor: "#1d4ed8",
                    },
                    {
                      label: t("perfect"),
                      data: [
                        { x: 0, y: 0 },
                        { x: 1, y: 1 },
                      ],
                      showLine: true,
                      borderDash: [6, 4],
                      borderColor: "#6b7280",
                      pointRadius: 0,
                    },
                  ],
                },
                options: {
                  scales: {
                    x: { min: 0, max: 1, title: { display: true, text: t("predicted") } },
                    y: { min: 0, max: 1, title: { display: true, text: t("observed") } },
                  },
                },
              }}
            />
          </Section>
        </div>
      )}
      {models && models.length > 0 && (
        <Section title={t("modelHistory")} id="history-title">
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">{t("fitted")}</th>
                  <th scope="col">{t("algorithm")}</th>
                  <th scope="col">{t("auc")}</th>
                  <th scope="col">{t("brier")}</th>
                  <th scope="col">{t("actions")}</th>
                </tr>
              </thead>
              <tbody>
                {models.map((m) => {
                  const q = ((m.metrics as { model?: Quality }).model ?? {}) as Quality;
                  return (
                    <tr key={m.id}>
                      <td>{formatDate(language, m.fitted_at)}</td>
                      <td>{m.algorithm}</td>
                      <td>{formatNumber(language, q.roc_auc, 3)}</td>
                      <td>{formatNumber(language, q.brier, 3)}</td>
                      <td>
                        {m.active ? (
                          <strong>{t("active")}</strong>
                        ) : (
                          <button type="button" onClick={() => activate(m)}>
                            {t("activate")}
                          </button>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        </Section>
      )}
    </main>
  );
}
