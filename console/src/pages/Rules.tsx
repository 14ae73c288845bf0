import { useEffect, useState } from "preact/hooks";
import { api, unwrap, type Schemas } from "../api/client";
import { type Role } from "../auth";
import { ChartBox, ErrorNote, PAGE, Pager, Section } from "../components";
import { type Key, formatNumber, lang, useT, useWord } from "../i18n";
import { dailyCounts } from "../periods";
import { useSignal } from "../signal";

type Rule = Schemas["RulePublic"];
type Preview = Schemas["PreviewPublic"];
type Severity = Schemas["Severity"];
type Params = Schemas["RuleParamsBody"];

// The rule parameters a person edits as numbers (the rest, lists of tiers or severities, stay as they are).
const NUMBER_PARAMS = ["threshold", "high_at", "delta", "within_days", "nps_max", "csat_max"] as const;
const PREVIEW_DAYS = 30;

export function Rules({ role }: { role: Role }) {
  const t = useT();
  const word = useWord();
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<{ items: Rule[]; total: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState<Rule | null>(null);

  async function load() {
    try {
      const body = unwrap(await api.GET("/api/v1/rules", { params: { query: { limit: PAGE, offset } } }));
      setPage({ items: body.items, total: body.total });
      setError(null);
    } catch (exc) {
      setError((exc as Error).message);
    }
  }
  useEffect(() => {
    void load();
  }, [offset]);

  return (
    <main id="main">
      <h1>{t("rulesTitle")}</h1>
      <ErrorNote message={error} />
      {!page && !error && <p>{t("loading")}</p>}
      {page && (
        <div class="table-wrap" tabIndex={0} role="region" aria-label={t("rulesTitle")}>
          <table>
            <thead>
              <tr>
                <th scope="col">{t("name")}</th>
                <th scope="col">{t("type")}</th>
                <th scope="col">{t("severity")}</th>
                <th scope="col">{t("ruleParams")}</th>
                <th scope="col">{t("status")}</th>
                {role === "admin" && <th scope="col">{t("actions")}</th>}
              </tr>
            </thead>
            <tbody>
              {page.items.map((rule) => (
                <tr key={rule.id} data-rule={rule.id}>
                  <td>{rule.name}</td>
                  <td>{rule.kind}</td>
                  <td>{word(rule.severity)}</td>
                  <td>
                    <code>{paramsText(rule.params)}</code>
                  </td>
                  <td>{rule.enabled ? t("enabled") : t("disabled")}</td>
                  {role === "admin" && (
                    <td>
                      <button type="button" onClick={() => setEditing(rule)} aria-label={`${t("edit")} ${rule.name}`}>
                        {t("edit")}
                      </button>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {page && <Pager offset={offset} total={page.total} onPage={setOffset} />}
      {editing && (
        <RuleEditor
          key={editing.id}
          rule={editing}
          onSaved={async () => {
            setEditing(null);
            await load();
          }}
          onCancel={() => setEditing(null)}
        />
      )}
    </main>
  );
}

function paramsText(params: Record<string, unknown>): string {
  return Object.entries(params)
    .filter(([, v]) => v !== null && !(Array.isArray(v) && v.length === 0))
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("|") : String(v)}`)
    .join(", ");
}

function RuleEditor({ rule, onSaved, onCancel }: { rule: Rule; onSaved: () => Promise<void>; onCancel: () => void }) {
  const t = useT();
  const language = useSignal(lang);
  const [name, setName] = useState(rule.name);
  const [severity, setSeverity] = useState<Severity>(rule.severity);
  const original = rule.params as Record<string, unknown>;
  const [numbers, setNumbers] = useState<Record<string, string>>(() =>
    Object.fromEntries(NUMBER_PARAMS.filter((k) => original[k] != null).map((k) => [k, String(original[k])])),
  );
  const [preview, setPreview] = useState<Preview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // An edit after the preview asks for a new one: what is saved is what was previewed.
  useEffect(() => setPreview(null), [name, severity, JSON.stringify(numbers)]);

  function params(): Params {
    const out: Record<string, unknown> = { ...original };
    for (const [k, v] of Object.entries(numbers)) out[k] = v.trim() === "" ? null : Number(v);
    return out as Params;
  }

  async function run(step: () => Promise<void>) {
    setBusy(true);
    setError(null);
    try {
      await step();
    } catch (exc) {
      setError((exc as Error).message); // the edits stay as typed
    } finally {
      setBusy(false);
    }
  }

  const to = new Date();
  const from = new Date(to.getTime() - PREVIEW_DAYS * 86_400_000);
  const days = preview ? dailyCounts(preview.customers.map((c) => c.first_triggered_at), from, to) : [];
  return (
    <Section title={`${t("editRule")}: ${rule.name}`} id="rule-editor-title">
      <form
        class="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          void run(async () => {
            const body = { from: from.toISOString(), to: to.toISOString(), rule: { kind: rule.kind, name, severity, reason: rule.reason, enabled: rule.enabled, params: params() } };
            setPreview(unwrap(await api.POST("/api/v1/rules/preview", { body })));
          });
        }}
      >
        <label>
          {t("name")}
          <input value={name} maxLength={200} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          {t("severity")}
          <select value={severity} onChange={(e) => setSeverity(e.currentTarget.value as Severity)}>
            {(["low", "medium", "high", "critical"] as const).map((s) => (
              <option key={s} value={s}>
                {t(s)}
              </option>
            ))}
          </select>
        </label>
        {Object.keys(numbers).map((k) => (
          <label key={k}>
            {t(`param_${k}` as Key)}
            <input
              name={k}
              inputMode="decimal"
              value={numbers[k]}
              onInput={(e) => setNumbers({ ...numbers, [k]: e.currentTarget.value })}
            />
          </label>
        ))}
        <button type="submit" disabled={busy}>
          {t("previewRule")}
        </button>
        <button
          type="button"
          class="primary"
          disabled={busy || !preview}
          title={preview ? undefined : t("previewFirst")}
          onClick={() =>
            run(async () => {
              unwrap(
                await api.PATCH("/api/v1/rules/{rule_id}", {
                  params: { path: { rule_id: rule.id } },
                  body: { name, severity, params: params() },
                }),
              );
              await onSaved();
            })
          }
        >
          {t("save")}
        </button>
        <button type="button" onClick={onCancel}>
          {t("cancel")}
        </button>
      </form>
      <ErrorNote message={error} />
      {preview && (
        <div data-preview="done">
          <p>
            {t("previewSummary", {
              days: PREVIEW_DAYS,
              alerts: formatNumber(language, preview.alerts),
              customers: formatNumber(language, preview.customers.length),
            })}
          </p>
          <ChartBox
            label={`${t("previewChart")}: ${days.filter((d) => d.count).map((d) => `${d.day} ${d.count}`).join(", ") || 0}`}
            config={{
              type: "bar",
              data: {
                labels: days.map((d) => d.day.slice(5)),
                datasets: [{ label: t("previewChart"), data: days.map((d) => d.count), backgroundColor: "#b91c1c" }],
              },
              options: { plugins: { legend: { display: false } } },
            }}
          />
        </div>
      )}
    </Section>
  );
}
