import { useEffect, useState } from "preact/hooks";
import { api, unwrap, type Schemas } from "../api/client";
import { ChartBox, ErrorNote, Section } from "../components";
import { formatDate, formatNumber, lang, useT } from "../i18n";
import { useSignal } from "../signal";

type Model = Schemas["ModelVersionPublic"];
type Bin = { from: number; to: number; n: number; predicted: number; observed: number };
type Quality = { roc_auc?: number; brier?: number; calibration?: Bin[]; roc?: { fpr: number; tpr: number }[] };

export function Analyst() {
  const t = useT();
  const language = useSignal(lang);
  const [models, setModels] = useState<Model[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [activated, setActivated] = useState<string | null>(null);
  // The rescore job started when the analyst went back to the rules.
  const [rulesJob, setRulesJob] = useState<string | null>(null);

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

  // Also the rollback: an earlier version made active again.
  async function activate(model: Model) {
    setError(null);
    setActivated(null);
    setRulesJob(null);
    try {
      unwrap(await api.POST("/api/v1/models/{model_id}/activate", { params: { path: { model_id: model.id } } }));
      setActivated(model.id);
      await load();
    } catch (exc) {
      setError((exc as Error).message);
    }
  }

  // No churn model active: churn risk comes from the rules again (a model that misbehaves is switched off
  // without picking another); every customer is rescored.
  async function backToRules() {
    setError(null);
    setActivated(null);
    setRulesJob(null);
    try {
      const job = unwrap(await api.POST("/api/v1/models/churn/deactivate", {}));
      setRulesJob(job.id);
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
      {active && !active.active && <p class="notice">{t("rulesActive")}</p>}
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
          <Section title={t("roc")} id="roc-title">
            {quality.roc ? (
              <ChartBox
                label={`${t("roc")}: ${t("auc")} ${formatNumber(language, quality.roc_auc, 3)}`}
                config={{
                  type: "scatter",
                  data: {
                    datasets: [
                      {
                        label: t("roc"),
                        data: quality.roc.map((pt) => ({ x: pt.fpr, y: pt.tpr })),
                        showLine: true,
                        borderColor: "#b91c1c",
                        backgroundColor: "#b91c1c",
                        pointRadius: 1,
                      },
                      {
                        label: t("chance"),
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
                      x: { min: 0, max: 1, title: { display: true, text: t("fpr") } },
                      y: { min: 0, max: 1, title: { display: true, text: t("tpr") } },
                    },
                  },
                }}
              />
            ) : (
              <p>{t("noRoc")}</p>
            )}
          </Section>
        </div>
      )}
      <ValueFit />
      {models && models.length > 0 && (
        <Section title={t("modelHistory")} id="history-title">
          {activated && (
            <p class="notice" role="status">
              {t("nowActive", { id: activated })}
            </p>
          )}
          {rulesJob && (
            <p class="notice" role="status" data-job={rulesJob}>
              {t("nowRules")}
            </p>
          )}
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">{t("version")}</th>
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
                    <tr key={m.id} data-model={m.id}>
                      <td>
                        <code>{m.id}</code>
                      </td>
                      <td>{formatDate(language, m.fitted_at)}</td>
                      <td>{m.algorithm}</td>
                      <td>{formatNumber(language, q.roc_auc, 3)}</td>
                      <td>{formatNumber(language, q.brier, 3)}</td>
                      <td>
                        {m.active ? (
                          <>
                            <strong>{t("active")}</strong>{" "}
                            <button type="button" aria-label={t("deactivateModel", { id: m.id })} onClick={backToRules}>
                              {t("deactivate")}
                            </button>
                          </>
                        ) : (
                          <button
                            type="button"
                            aria-label={t("activateModel", { id: m.id })}
                            onClick={() => activate(m)}
                          >
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

type Backtest = {
  holdout_end: string;
  holdout_weeks: number;
  actual: number;
  predicted: number;
  by_frequency: { x: string; customers: number; actual: number; predicted: number }[];
};

/** The active value model: BG/NBD and Gamma-Gamma parameters, and its holdout backtest (predicted
 * against actual purchases by calibration-period frequency). */
function ValueFit() {
  const t = useT();
  const language = useSignal(lang);
  const [model, setModel] = useState<Model | null | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    (async () => {
      try {
        const body = unwrap(await api.GET("/api/v1/models", { params: { query: { kind: "value", limit: 20 } } }));
        setModel(body.items.find((m) => m.active) ?? body.items[0] ?? null);
      } catch (exc) {
        setError((exc as Error).message);
      }
    })();
  }, []);
  const params = (model?.params ?? {}) as { bgnbd?: Record<string, number>; gamma_gamma?: Record<string, number> };
  const metrics = (model?.metrics ?? {}) as { backtest?: Backtest; n_customers?: number; n_repeat_buyers?: number };
  const back = metrics.backtest;
  const facts = (values: Record<string, number> | undefined, group: string) =>
    Object.entries(values ?? {}).flatMap(([k, v]) => [
      <dt key={`${k}-name`}>{k}</dt>,
      <dd key={`${k}-value`} data-param={`${group}.${k}`}>
        {formatNumber(language, v, 4)}
      </dd>,
    ]);
  return (
    <Section title={t("valueFit")} id="value-fit-title">
      <ErrorNote message={error} />
      {model === undefined && !error && <p>{t("loading")}</p>}
      {model === null && <p>{t("noValueModel")}</p>}
      {model && (
        <div class="grid">
          <div>
            <h3>BG/NBD</h3>
            <dl class="facts">{facts(params.bgnbd, "bgnbd")}</dl>
            <h3>Gamma-Gamma</h3>
            <dl class="facts">{facts(params.gamma_gamma, "gamma_gamma")}</dl>
            <p>
              {t("fitted")}: {formatDate(language, model.fitted_at)} · {t("customers")}: {formatNumber(language, model.n_customers)}
            </p>
          </div>
          <div>
            {back ? (
              <>
                <p data-field="backtest-total">
                  {t("backtestTotal", {
                    weeks: formatNumber(language, back.holdout_weeks, 1),
                    predicted: formatNumber(language, back.predicted, 1),
                    actual: formatNumber(language, back.actual, 0),
                  })}
                </p>
                <ChartBox
                  label={`${t("predictedVsActual")}: ${back.by_frequency.map((r) => `${r.x} ${r.predicted}/${r.actual}`).join(", ")}`}
                  config={{
                    type: "bar",
                    data: {
                      labels: back.by_frequency.map((r) => r.x),
                      datasets: [
                        { label: t("actualPurchases"), data: back.by_frequency.map((r) => r.actual), backgroundColor: "#1d4ed8" },
                        { label: t("predictedPurchases"), data: back.by_frequency.map((r) => r.predicted), backgroundColor: "#a16207" },
                      ],
                    },
                    options: { scales: { x: { title: { display: true, text: t("repeatPurchases") } } } },
                  }}
                />
              </>
            ) : (
              <p>{t("noBacktest")}</p>
            )}
          </div>
        </div>
      )}
    </Section>
  );
}
