import { useState } from "preact/hooks";
import { type ConsoleConfig, type Role, devSignIn, expiredNotice, oidcStart } from "../auth";
import { ErrorNote } from "../components";
import { useT, useWord } from "../i18n";
import { useSignal } from "../signal";

export function SignIn({ config, next }: { config: ConsoleConfig; next: string }) {
  const t = useT();
  const word = useWord();
  const expired = useSignal(expiredNotice);
  const [sub, setSub] = useState("");
  const [role, setRole] = useState<Role>("agent");
  const [team, setTeam] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const members = team.split(",").map((s) => s.trim()).filter(Boolean);
      await devSignIn(sub.trim(), role, members);
    } catch (exc) {
      setError((exc as Error).message); // the form keeps what was typed
    } finally {
      setBusy(false);
    }
  }

  return (
    <main id="main" class="signin">
      <h1>{t("appTitle")}</h1>
      {expired && <p class="notice">{t("expired")}</p>}
      {config.oidc && (
        <button type="button" class="primary" onClick={() => oidcStart(config.oidc!, next).catch((e) => setError(e.message))}>
          {t("oidcSignIn")}
        </button>
      )}
      {config.dev_sign_in && (
        <form onSubmit={submit} class="card" aria-labelledby="dev-title">
          <h2 id="dev-title">{t("devSignIn")}</h2>
          <p class="hint">{t("devSignInHelp")}</p>
          <label>
            {t("user")}
            <input name="sub" required value={sub} onInput={(e) => setSub(e.currentTarget.value)} autoComplete="username" />
          </label>
          <label>
            {t("role")}
            <select name="role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
              {config.roles.map((r) => (
                <option value={r} key={r}>
                  {word(r)}
                </option>
              ))}
            </select>
          </label>
          {role === "manager" && (
            <label>
              {t("team")}
              <input name="team" value={team} onInput={(e) => setTeam(e.currentTarget.value)} />
            </label>
          )}
          <ErrorNote message={error} />
          <button type="submit" class="primary" disabled={busy}>
            {t("signIn")}
          </button>
        </form>
      )}
      {!config.oidc && !config.dev_sign_in && <p class="error">{t("noSignIn")}</p>}
    </main>
  );
}
