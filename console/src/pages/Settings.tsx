import { useEffect, useState } from "preact/hooks";
import { api, unwrap, type Schemas } from "../api/client";
import { ErrorNote, PAGE, Pager, Section } from "../components";
import { formatDate, lang, useT, type Key } from "../i18n";
import { useSignal } from "../signal";

type Setting = Schemas["SettingPublic"];
type Change = Schemas["SettingChangePublic"];
type Service = "interaction" | "retention";
const SERVICES: Service[] = ["retention", "interaction"];
const SOURCE_WORDS: Record<Setting["source"], Key> = {
  default: "sourceDefault",
  env: "sourceEnv",
  override: "sourceOverride",
};

/** Run-time settings: each service's tunables, the value in force and where it comes from, edited in place. */
export function Settings() {
  const t = useT();
  return (
    <main id="main">
      <h1>{t("settingsTitle")}</h1>
      <p class="hint">{t("settingsIntro")}</p>
      {SERVICES.map((s) => (
        <ServiceSettings key={s} service={s} />
      ))}
    </main>
  );
}

async function fetchSettings(service: Service): Promise<Setting[]> {
  const answer =
    service === "retention"
      ? await api.GET("/api/v1/settings/retention")
      : await api.GET("/api/v1/settings/interaction");
  return unwrap(answer).items;
}

async function fetchChanges(service: Service, offset: number) {
  const query = { limit: PAGE, offset };
  return unwrap(
    service === "retention"
      ? await api.GET("/api/v1/settings/retention/changes", { params: { query } })
      : await api.GET("/api/v1/settings/interaction/changes", { params: { query } }),
  );
}

async function putSetting(service: Service, name: string, value: unknown): Promise<Setting> {
  // The name is one of the service's tunables (an enum in the API); the list came from the same service.
  const path = { name } as never;
  return unwrap(
    service === "retention"
      ? await api.PUT("/api/v1/settings/retention/{name}", { params: { path }, body: { value } })
      : await api.PUT("/api/v1/settings/interaction/{name}", { params: { path }, body: { value } }),
  );
}

async function resetSetting(service: Service, name: string): Promise<Setting> {
  const path = { name } as never;
  return unwrap(
    service === "retention"
      ? await api.DELETE("/api/v1/settings/retention/{name}", { params: { path } })
      : await api.DELETE("/api/v1/settings/interaction/{name}", { params: { path } }),
  );
}

function ServiceSettings({ service }: { service: Service }) {
  const t = useT();
  const [items, setItems] = useState<Setting[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [version, setVersion] = useState(0);
  useEffect(() => {
    fetchSettings(service)
      .then((found) => {
        setItems(found);
        setError(null);
      })
      .catch((exc) => setError((exc as Error).message));
  }, [service, version]);
  const title = t(service === "retention" ? "settingsRetention" : "settingsInteraction");
  return (
    <Section title={title} id={`settings-${service}`}>
      <ErrorNote message={error} />
      {items && (
        <ul class="settings-list">
          {items.map((s) => (
            <SettingRow key={s.name} service={service} setting={s} onChanged={() => setVersion(version + 1)} />
          ))}
        </ul>
      )}
      <Changes service={service} version={version} />
    </Section>
  );
}

/** The text a person edits: a string as it is, anything else as JSON. */
function asText(value: unknown): string {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function isStringSetting(setting: Setting): boolean {
  const schema = setting.json_schema as { type?: string; anyOf?: { type?: string }[] };
  const types = schema.anyOf ? schema.anyOf.map((s) => s.type) : [schema.type];
  return types.includes("string");
}

function isNullable(setting: Setting): boolean {
  const schema = setting.json_schema as { anyOf?: { type?: string }[] };
  return Boolean(schema.anyOf?.some((s) => s.type === "null"));
}

function SettingRow({ service, setting, onChanged }: { service: Service; setting: Setting; onChanged: () => void }) {
  const t = useT();
  const language = useSignal(lang);
  const [text, setText] = useState(asText(setting.value));
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  const inputId = `setting-${service}-${setting.name}`;

  function parsed(): { value: unknown } | null {
    const raw = text.trim();
    if (raw === "" && isNullable(setting)) return { value: null };
    if (isStringSetting(setting) && !raw.startsWith("{") && !raw.startsWith("[")) return { value: raw };
    try {
      return { value: JSON.parse(raw) };
    } catch {
      setError(t("notJson"));
      return null;
    }
  }

  async function act(step: () => Promise<Setting>) {
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      const answer = await step();
      setText(asText(answer.value));
      setSaved(true);
      onChanged();
    } catch (exc) {
      setError((exc as Error).message); // the field keeps what was typed
    } finally {
      setBusy(false);
    }
  }

  return (
    <li class="setting" data-setting={setting.name}>
      <div class="setting-head">
        <code>{setting.name}</code>
        <span class="pill" data-field="source">
          {t(SOURCE_WORDS[setting.source])}
        </span>
      </div>
      <p class="hint">{setting.description}</p>
      <dl class="setting-values">
        <dt>{t("valueInForce")}</dt>
        <dd data-field="value">
          <code>{JSON.stringify(setting.value)}</code>
        </dd>
        <dt>{t("defaultValue")}</dt>
        <dd data-field="default">
          <code>{JSON.stringify(setting.default)}</code>
        </dd>
        {setting.source === "override" && (
          <>
            <dt>{t("changedBy")}</dt>
            <dd data-field="updated">
              {setting.updated_by} · {formatDate(language, setting.updated_at)}
            </dd>
          </>
        )}
      </dl>
      <form
        class="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          const body = parsed();
          if (body) void act(() => putSetting(service, setting.name, body.value));
        }}
      >
        <label for={inputId}>{t("newValue")}</label>
        <input
          id={inputId}
          name={setting.name}
          value={text}
          onInput={(e) => setText(e.currentTarget.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? `${inputId}-error` : undefined}
        />
        <button type="submit" class="primary" disabled={busy}>
          {t("save")}
        </button>
        {setting.source === "override" && (
          <button type="button" disabled={busy} onClick={() => void act(() => resetSetting(service, setting.name))}>
            {t("resetSetting")}
          </button>
        )}
      </form>
      {error && (
        <p class="error" role="alert" id={`${inputId}-error`}>
          {error}
        </p>
      )}
      {saved && !error && (
        <p class="notice" role="status">
          {t("settingSaved")}
        </p>
      )}
    </li>
  );
}

function Changes({ service, version }: { service: Service; version: number }) {
  const t = useT();
  const language = useSignal(lang);
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<{ items: Change[]; total: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    fetchChanges(service, offset)
      .then((found) => {
        setPage(found);
        setError(null);
      })
      .catch((exc) => setError((exc as Error).message));
  }, [service, offset, version]);
  return (
    <div class="changes">
      <h3>{t("settingChanges")}</h3>
      <ErrorNote message={error} />
      {page && page.items.length === 0 && <p>{t("none")}</p>}
      {page && page.items.length > 0 && (
        <div class="table-wrap" tabIndex={0} role="region" aria-label={`${t("settingChanges")} ${service}`}>
          <table>
            <thead>
              <tr>
                <th scope="col">{t("when")}</th>
                <th scope="col">{t("name")}</th>
                <th scope="col">{t("changedBy")}</th>
                <th scope="col">{t("before")}</th>
                <th scope="col">{t("after")}</th>
              </tr>
            </thead>
            <tbody>
              {page.items.map((c) => (
                <tr key={c.id} data-change={c.id}>
                  <td>{formatDate(language, c.changed_at)}</td>
                  <td>
                    <code>{c.name}</code>
                    {c.action === "reset" ? ` (${t("resetSetting")})` : ""}
                  </td>
                  <td>{c.changed_by}</td>
                  <td>
                    <code>{JSON.stringify(c.old_value)}</code>
                  </td>
                  <td>
                    <code>{JSON.stringify(c.new_value)}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {page && <Pager offset={offset} total={page.total} onPage={setOffset} />}
    </div>
  );
}
