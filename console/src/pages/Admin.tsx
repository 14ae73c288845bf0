import { useEffect, useState } from "preact/hooks";
import { api, unwrap, type Schemas } from "../api/client";
import { ErrorNote, PAGE, Pager, Section } from "../components";
import { formatDate, lang, useT, useWord } from "../i18n";
import { useSignal } from "../signal";

type Key = Schemas["ApiKeyPublic"];
type KeyRole = Schemas["ApiKeyCreate"]["role"];
type Hook = Schemas["WebhookPublic"];
type Delivery = Schemas["DeliveryPublic"];

const KEY_ROLES: KeyRole[] = ["integration", "importer", "agent", "manager", "analyst", "admin"];

/** Administration: API keys and webhooks with their delivery log. */
export function Admin() {
  const t = useT();
  return (
    <main id="main">
      <h1>{t("adminTitle")}</h1>
      <ApiKeys />
      <Webhooks />
      <p class="hint">{t("settingsNote")}</p>
    </main>
  );
}

function usePage<T>(fetchPage: (offset: number) => Promise<{ items: T[]; total: number }>) {
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<{ items: T[]; total: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  async function load() {
    try {
      setPage(await fetchPage(offset));
      setError(null);
    } catch (exc) {
      setError((exc as Error).message);
    }
  }
  useEffect(() => {
    void load();
  }, [offset]);
  return { offset, setOffset, page, error, setError, load };
}

function ApiKeys() {
  const t = useT();
  const language = useSignal(lang);
  const keys = usePage<Key>(async (offset) =>
    unwrap(await api.GET("/api/v1/keys", { params: { query: { include_revoked: true, limit: PAGE, offset } } })),
  );
  const [name, setName] = useState("");
  const [role, setRole] = useState<KeyRole>("integration");
  const [expires, setExpires] = useState("");
  const [scopes, setScopes] = useState("");
  const [created, setCreated] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function act(step: () => Promise<void>) {
    setBusy(true);
    keys.setError(null);
    try {
      await step();
      await keys.load();
    } catch (exc) {
      keys.setError((exc as Error).message); // the form keeps what was typed
    } finally {
      setBusy(false);
    }
  }

  return (
    <Section title={t("apiKeys")} id="keys-title">
      <form
        class="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          void act(async () => {
            // Empty: every permission of the role; otherwise the subset named (the gateway refuses others).
            const scopeList = scopes
              .split(",")
              .map((s) => s.trim())
              .filter(Boolean);
            const body = {
              name,
              role,
              scopes: scopeList.length ? scopeList : null,
              expires_at: expires ? new Date(expires).toISOString() : null,
            };
            const answer = unwrap(await api.POST("/api/v1/keys", { body }));
            setCreated(answer.key);
            setName("");
            setScopes("");
            setExpires("");
          });
        }}
      >
        <label>
          {t("name")}
          <input name="key-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          {t("role")}
          <select value={role} onChange={(e) => setRole(e.currentTarget.value as KeyRole)}>
            {KEY_ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t("scopes")}
          <input name="key-scopes" value={scopes} onInput={(e) => setScopes(e.currentTarget.value)} />
        </label>
        <label>
          {t("expires")}
          <input type="datetime-local" value={expires} onInput={(e) => setExpires(e.currentTarget.value)} />
        </label>
        <button type="submit" class="primary" disabled={busy}>
          {t("createKey")}
        </button>
      </form>
      {created && (
        <p class="notice" data-field="new-key">
          {t("keyShownOnce")} <code>{created}</code>
        </p>
      )}
      <ErrorNote message={keys.error} />
      {keys.page && keys.page.items.length === 0 && <p>{t("none")}</p>}
      {keys.page && keys.page.items.length > 0 && (
        <div class="table-wrap" tabIndex={0} role="region" aria-label={t("apiKeys")}>
          <table>
            <thead>
              <tr>
                <th scope="col">{t("name")}</th>
                <th scope="col">{t("role")}</th>
                <th scope="col">{t("createdBy")}</th>
                <th scope="col">{t("when")}</th>
                <th scope="col">{t("expires")}</th>
                <th scope="col">{t("actions")}</th>
              </tr>
            </thead>
            <tbody>
              {keys.page.items.map((k) => (
                <tr key={k.id} data-key={k.id}>
                  <td>{k.name}</td>
                  <td>{k.role}</td>
                  <td>{k.created_by ?? "–"}</td>
                  <td>{formatDate(language, k.created_at)}</td>
                  <td>{formatDate(language, k.expires_at)}</td>
                  <td>
                    {k.revoked_at ? (
                      t("revoked")
                    ) : (
                      <button
                        type="button"
                        disabled={busy}
                        aria-label={`${t("revoke")} ${k.name}`}
                        onClick={() =>
                          act(async () => {
                            unwrap(await api.DELETE("/api/v1/keys/{key_id}", { params: { path: { key_id: k.id } } }));
                          })
                        }
                      >
                        {t("revoke")}
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {keys.page && <Pager offset={keys.offset} total={keys.page.total} onPage={keys.setOffset} />}
    </Section>
  );
}

function Webhooks() {
  const t = useT();
  const language = useSignal(lang);
  const hooks = usePage<Hook>(async (offset) =>
    unwrap(await api.GET("/api/v1/webhooks", { params: { query: { limit: PAGE, offset } } })),
  );
  const [url, setUrl] = useState("");
  const [secret, setSecret] = useState("");
  const [events, setEvents] = useState("");
  const [busy, setBusy] = useState(false);
  const [open, setOpen] = useState<string | null>(null);

  async function act(step: () => Promise<void>) {
    setBusy(true);
    hooks.setError(null);
    try {
      await step();
      await hooks.load();
    } catch (exc) {
      hooks.setError((exc as Error).message); // the form keeps what was typed
    } finally {
      setBusy(false);
    }
  }

  return (
    <Section title={t("webhooks")} id="webhooks-title">
      <form
        class="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          void act(async () => {
            const event_types = events
              .split(",")
              .map((s) => s.trim())
              .filter(Boolean);
            unwrap(await api.POST("/api/v1/webhooks", { body: { url, secret, event_types } }));
            setUrl("");
            setSecret("");
            setEvents("");
          });
        }}
      >
        <label>
          {t("url")}
          <input name="webhook-url" value={url} onInput={(e) => setUrl(e.currentTarget.value)} />
        </label>
        <label>
          {t("secret")}
          <input name="webhook-secret" type="password" autoComplete="off" value={secret} onInput={(e) => setSecret(e.currentTarget.value)} />
        </label>
        <label>
          {t("eventTypes")}
          <input name="webhook-events" value={events} onInput={(e) => setEvents(e.currentTarget.value)} />
        </label>
        <button type="submit" class="primary" disabled={busy}>
          {t("addWebhook")}
        </button>
      </form>
      <ErrorNote message={hooks.error} />
      {hooks.page && hooks.page.items.length === 0 && <p>{t("none")}</p>}
      {hooks.page && hooks.page.items.length > 0 && (
        <ul class="queue">
          {hooks.page.items.map((h) => (
            <li key={h.id} class="alert" data-webhook={h.id}>
              <div class="alert-main">
                <code>{h.url}</code>
                <span class="pill">{h.event_types.length ? h.event_types.join(", ") : t("allEvents")}</span>
                <span class="pill">{formatDate(language, h.created_at)}</span>
              </div>
              <div class="buttons">
                <button type="button" aria-expanded={open === h.id} onClick={() => setOpen(open === h.id ? null : h.id)}>
                  {t("deliveryLog")}
                </button>
                <button
                  type="button"
                  disabled={busy}
                  onClick={() =>
                    act(async () => {
                      unwrap(await api.DELETE("/api/v1/webhooks/{webhook_id}", { params: { path: { webhook_id: h.id } } }));
                    })
                  }
                >
                  {t("unsubscribe")}
                </button>
              </div>
              {open === h.id && <Deliveries id={h.id} />}
            </li>
          ))}
        </ul>
      )}
      {hooks.page && <Pager offset={hooks.offset} total={hooks.page.total} onPage={hooks.setOffset} />}
    </Section>
  );
}

function Deliveries({ id }: { id: string }) {
  const t = useT();
  const word = useWord();
  const language = useSignal(lang);
  const log = usePage<Delivery>(async (offset) =>
    unwrap(
      await api.GET("/api/v1/webhooks/{webhook_id}/deliveries", {
        params: { path: { webhook_id: id }, query: { limit: PAGE, offset } },
      }),
    ),
  );
  return (
    <div class="deliveries">
      <ErrorNote message={log.error} />
      {log.page && log.page.items.length === 0 && <p>{t("none")}</p>}
      {log.page && log.page.items.length > 0 && (
        <div class="table-wrap" tabIndex={0} role="region" aria-label={t("deliveryLog")}>
          <table>
            <thead>
              <tr>
                <th scope="col">{t("when")}</th>
                <th scope="col">{t("type")}</th>
                <th scope="col">{t("status")}</th>
                <th scope="col">{t("attempts")}</th>
                <th scope="col">{t("lastAnswer")}</th>
                <th scope="col">{t("nextAttempt")}</th>
              </tr>
            </thead>
            <tbody>
              {log.page.items.map((d) => (
                <tr key={d.id} data-delivery={d.id}>
                  <td>{formatDate(language, d.created_at)}</td>
                  <td>{d.event_type}</td>
                  <td>{word(d.status)}</td>
                  <td>{d.attempts}</td>
                  <td>{d.last_status_code ?? d.last_error ?? "–"}</td>
                  <td>{d.status === "pending" ? formatDate(language, d.next_attempt_at) : "–"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {log.page && <Pager offset={log.offset} total={log.page.total} onPage={log.setOffset} />}
    </div>
  );
}
