import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "./style.css";
import { type ConsoleConfig, type Role, loadConfig, oidcFinish, person, session } from "./auth";
import { ErrorNote } from "./components";
import { lang, useT, useWord } from "./i18n";
import { Admin } from "./pages/Admin";
import { Analyst } from "./pages/Analyst";
import { Complaints } from "./pages/Complaints";
import { Customer } from "./pages/Customer";
import { Manager } from "./pages/Manager";
import { Queue } from "./pages/Queue";
import { Retention } from "./pages/Retention";
import { Rules } from "./pages/Rules";
import { Settings } from "./pages/Settings";
import { SignIn } from "./pages/SignIn";
import { BASE, match, navigate, route } from "./router";
import { useSignal } from "./signal";

type NavKey =
  | "navQueue"
  | "navComplaints"
  | "navManager"
  | "navRetention"
  | "navRules"
  | "navAnalyst"
  | "navAdmin"
  | "navSettings";
// The pages a role may use (the gateway enforces the same rules on every call).
const NAV: { path: string; key: NavKey; roles: Role[] }[] = [
  { path: `${BASE}/queue`, key: "navQueue", roles: ["agent", "manager", "admin"] },
  { path: `${BASE}/complaints`, key: "navComplaints", roles: ["agent", "manager", "analyst", "admin"] },
  { path: `${BASE}/manager`, key: "navManager", roles: ["manager", "analyst", "admin"] },
  { path: `${BASE}/retention`, key: "navRetention", roles: ["manager", "analyst", "admin"] },
  { path: `${BASE}/rules`, key: "navRules", roles: ["manager", "analyst", "admin"] },
  { path: `${BASE}/analyst`, key: "navAnalyst", roles: ["analyst", "admin"] },
  { path: `${BASE}/admin`, key: "navAdmin", roles: ["admin"] },
  { path: `${BASE}/settings`, key: "navSettings", roles: ["admin"] },
];

function home(role: Role): string {
  return (NAV.find((n) => n.roles.includes(role)) ?? NAV[0]).path;
}

function Page({ path, role }: { path: string; role: Role }) {
  const customer = match(/^\/console\/customers\/([^/]+)\/?$/, path);
  if (customer) return <Customer id={customer[0]} />;
  const allowed = NAV.find((n) => n.path === path)?.roles.includes(role);
  if (allowed && path === `${BASE}/queue`) return <Queue />;
  if (allowed && path === `${BASE}/complaints`) return <Complaints role={role} />;
  if (allowed && path === `${BASE}/manager`) return <Manager />;
  if (allowed && path === `${BASE}/retention`) return <Retention />;
  if (allowed && path === `${BASE}/rules`) return <Rules role={role} />;
  if (allowed && path === `${BASE}/analyst`) return <Analyst />;
  if (allowed && path === `${BASE}/admin`) return <Admin />;
  if (allowed && path === `${BASE}/settings`) return <Settings />;
  navigate(home(role));
  return null;
}

function App() {
  const t = useT();
  const word = useWord();
  const language = useSignal(lang);
  const who = useSignal(person);
  const path = useSignal(route);
  const [config, setConfig] = useState<ConsoleConfig | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [next] = useState(() => (path.startsWith(`${BASE}/oidc-callback`) ? `${BASE}/` : path));

  useEffect(() => {
    document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
    document.title = t("appTitle");
  }, [language]);

  useEffect(() => {
    loadConfig()
      .then(async (loaded) => {
        setConfig(loaded);
        if (path.startsWith(`${BASE}/oidc-callback`) && loaded.oidc) await oidcFinish(loaded.oidc);
      })
      .catch((exc) => {
        setError((exc as Error).message);
        navigate(`${BASE}/`);
      });
  }, []);

  // After signing in, go where the person was headed.
  useEffect(() => {
    if (who && (path === BASE || path === `${BASE}/`)) navigate(next === BASE || next === `${BASE}/` ? home(who.role) : next);
  }, [who]);

  const switcher = (
    <button type="button" class="lang" lang={language === "zh" ? "en" : "zh-CN"} aria-label={t("languageLabel")} onClick={() => (lang.value = language === "zh" ? "en" : "zh")}>
      {t("language")}
    </button>
  );

  if (!config) {
    return (
      <main id="main">
        <ErrorNote message={error} />
      </main>
    );
  }
  if (!who) {
    return (
      <>
        <header class="top">{switcher}</header>
        {error && (
          <div class="signin-error">
            <ErrorNote message={error} />
          </div>
        )}
        <SignIn config={config} next={next} />
      </>
    );
  }
  return (
    <>
      <a class="skip" href="#main">
        {t("appTitle")}
      </a>
      <header class="top">
        <strong class="brand">{t("appTitle")}</strong>
        <nav aria-label="main">
          {NAV.filter((n) => n.roles.includes(who.role)).map((n) => (
            <a
              key={n.path}
              href={n.path}
              aria-current={path === n.path ? "page" : undefined}
              onClick={(e) => {
                e.preventDefault();
                navigate(n.path);
              }}
            >
              {t(n.key)}
            </a>
          ))}
        </nav>
        <span class="who">
          {who.sub} · {word(who.role)}
        </span>
        {switcher}
        <button
          type="button"
          onClick={() => {
            session.signOut();
            navigate(`${BASE}/`);
          }}
        >
          {t("signOut")}
        </button>
      </header>
      <Page path={path} role={who.role} />
    </>
  );
}

render(<App />, document.getElementById("app")!);
