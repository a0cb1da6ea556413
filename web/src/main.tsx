import { StrictMode, useEffect, useState, type FormEvent, type ReactNode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter, Navigate, NavLink, Route, Routes, useLocation, useNavigate } from "react-router-dom";
import { errorMessage, sdk, session, type User } from "./api";
import { DatasetPage, DatasetsPage } from "./pages/datasets";
import { ExperimentPage, ExperimentsPage } from "./pages/experiments";
import { GpusPage } from "./pages/gpus";
import { JobPage } from "./pages/job";
import { JobsPage } from "./pages/jobs";
import { ModelPage, ModelsPage } from "./pages/models";
import { DeploymentsPage, EvaluationsPage, LeaderboardPage } from "./pages/serving";
import { StudiesPage, StudyPage } from "./pages/studies";
import { AccountPage, UsersPage } from "./pages/users";
import "./styles.css";
import { closeActivity, ErrorBox } from "./ui";

type Theme = "light" | "dark";

function initialTheme(): Theme {
  const saved = localStorage.getItem("sparktrainer.theme");
  if (saved === "light" || saved === "dark") return saved;
  return window.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function SignIn() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const navigate = useNavigate();
  const location = useLocation();
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    try {
      await session.login(username, password);
      const from = (location.state as { from?: string } | null)?.from ?? "/jobs";
      navigate(from, { replace: true });
    } catch (failure) {
      setError(errorMessage(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <form onSubmit={submit} className="card" aria-label="Sign in">
        <h1>SparkTrainer</h1>
        <label>
          Username
          <input name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} autoFocus required />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        </label>
        <ErrorBox error={error} />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}

const NAV = [
  ["/jobs", "Jobs"],
  ["/gpus", "GPUs"],
  ["/experiments", "Experiments"],
  ["/hpo", "HPO studies"],
  ["/datasets", "Datasets"],
  ["/models", "Models"],
  ["/evaluations", "Evaluations"],
  ["/leaderboard", "Leaderboard"],
  ["/deployments", "Deployments"],
  ["/account", "API keys"],
] as const;

function Shell({ user, children, theme, setTheme }: { user: User | null; children: ReactNode; theme: Theme; setTheme: (t: Theme) => void }) {
  const navigate = useNavigate();
  const signOut = async () => {
    closeActivity();
    await session.logout();
    navigate("/signin");
  };
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <nav aria-label="Main">
        <div className="brand">SparkTrainer</div>
        <ul>
          {NAV.map(([to, label]) => (
            <li key={to}>
              <NavLink to={to}>{label}</NavLink>
            </li>
          ))}
          {user?.role === "admin" && (
            <li>
              <NavLink to="/users">Users</NavLink>
            </li>
          )}
        </ul>
        <div className="who">
          <span data-testid="whoami">{user?.username ?? ""}</span>
          {user?.role === "admin" && <span className="badge">admin</span>}
        </div>
        <button type="button" onClick={() => setTheme(theme === "dark" ? "light" : "dark")}>
          {theme === "dark" ? "Light" : "Dark"} theme
        </button>
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </nav>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </div>
  );
}

function Authenticated({ theme, setTheme }: { theme: Theme; setTheme: (t: Theme) => void }) {
  const [user, setUser] = useState<User | null>(null);
  const [error, setError] = useState<string | null>(null);
  const location = useLocation();
  const [signedIn, setSignedIn] = useState(session.signedIn);
  useEffect(() => session.onChange(setSignedIn), []);
  useEffect(() => {
    if (!signedIn) return;
    sdk((client) => client.users.me()).then(setUser, (failure) => setError(errorMessage(failure)));
  }, [signedIn]);
  if (!signedIn) return <Navigate to="/signin" state={{ from: location.pathname + location.search }} replace />;
  if (error) return <ErrorBox error={error} />;
  // Pages load their data while the user is still being fetched: a page opened directly
  // (a job's, say) does not wait a round trip longer.
  const admin = user?.role === "admin";
  return (
    <Shell user={user} theme={theme} setTheme={setTheme}>
      <Routes>
        <Route path="/" element={<Navigate to="/jobs" replace />} />
        <Route path="/jobs" element={<JobsPage admin={admin} />} />
        <Route path="/jobs/:jobId" element={<JobPage />} />
        <Route path="/gpus" element={<GpusPage />} />
        <Route path="/experiments" element={<ExperimentsPage />} />
        <Route path="/experiments/:experimentId" element={<ExperimentPage />} />
        <Route path="/hpo" element={<StudiesPage />} />
        <Route path="/hpo/:studyId" element={<StudyPage />} />
        <Route path="/datasets" element={<DatasetsPage />} />
        <Route path="/datasets/:datasetId" element={<DatasetPage />} />
        <Route path="/models" element={<ModelsPage />} />
        <Route path="/models/:modelId" element={<ModelPage />} />
        <Route path="/evaluations" element={<EvaluationsPage />} />
        <Route path="/leaderboard" element={<LeaderboardPage />} />
        <Route path="/deployments" element={<DeploymentsPage />} />
        <Route path="/account" element={<AccountPage />} />
        <Route path="/users" element={admin ? <UsersPage /> : user ? <Navigate to="/jobs" /> : null} />
        <Route path="*" element={<p>No such page.</p>} />
      </Routes>
    </Shell>
  );
}

function App() {
  const [theme, setTheme] = useState<Theme>(initialTheme);
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("sparktrainer.theme", theme);
  }, [theme]);
  return (
    <BrowserRouter>
      <Routes>
        <Route path="/signin" element={<SignIn />} />
        <Route path="*" element={<Authenticated theme={theme} setTheme={setTheme} />} />
      </Routes>
    </BrowserRouter>
  );
}

createRoot(document.getElementById("root") as HTMLElement).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
