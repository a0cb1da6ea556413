import { useState, type FormEvent } from "react";
import { errorMessage, sdk, type ApiKeyCreated } from "../api";
import { ErrorBox, formatTime, Section, useLoad } from "../ui";

export function AccountPage() {
  const keys = useLoad(() => sdk((client) => client.apiKeys.list()), []);
  const [created, setCreated] = useState<ApiKeyCreated | null>(null);
  const [error, setError] = useState<string | null>(null);
  const create = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = event.currentTarget;
    const name = String(new FormData(form).get("name") ?? "").trim();
    try {
      setCreated(await sdk((client) => client.apiKeys.create(name)));
      form.reset();
      setError(null);
      keys.reload();
    } catch (failure) {
      setError(errorMessage(failure));
    }
  };
  const revoke = async (id: string) => {
    try {
      await sdk((client) => client.apiKeys.revoke(id));
      keys.reload();
    } catch (failure) {
      setError(errorMessage(failure));
    }
  };
  return (
    <>
      <h1>API keys</h1>
      <Section title="New key">
        <form className="row-form" onSubmit={create}>
          <label>
            Name <input name="name" required />
          </label>
          <button type="submit">Create key</button>
        </form>
        {created && (
          <p className="notice" role="status">
            Copy the key now; it is not shown again: <code data-testid="new-key">{created.key}</code>
          </p>
        )}
        <ErrorBox error={error ?? keys.error} />
      </Section>
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Prefix</th>
            <th>Created</th>
            <th>Last used</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {keys.data?.map((key) => (
            <tr key={key.id}>
              <td>{key.name}</td>
              <td>
                <code>{key.prefix}</code>
              </td>
              <td>{formatTime(key.created_at)}</td>
              <td>{formatTime(key.last_used_at)}</td>
              <td>
                <button type="button" className="danger" onClick={() => revoke(key.id)}>
                  Revoke
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function UsersPage() {
  const users = useLoad(() => sdk((client) => client.users.list({ limit: 100 })), []);
  const [error, setError] = useState<string | null>(null);
  const create = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    try {
      await sdk((client) =>
        client.users.create({
          username: String(data.get("username")),
          password: String(data.get("password")),
          role: String(data.get("role")) as "user" | "admin",
        }),
      );
      form.reset();
      setError(null);
      users.reload();
    } catch (failure) {
      setError(errorMessage(failure));
    }
  };
  const setActive = async (id: string, isActive: boolean) => {
    try {
      await sdk((client) => client.users.update(id, { isActive }));
      users.reload();
    } catch (failure) {
      setError(errorMessage(failure));
    }
  };
  return (
    <>
      <h1>Users</h1>
      <Section title="New user">
        <form className="row-form" onSubmit={create}>
          <label>
            Username <input name="username" required />
          </label>
          <label>
            Password <input name="password" type="password" required minLength={8} />
          </label>
          <label>
            Role
            <select name="role" defaultValue="user">
              <option value="user">user</option>
              <option value="admin">admin</option>
            </select>
          </label>
          <button type="submit">Create user</button>
        </form>
        <ErrorBox error={error ?? users.error} />
      </Section>
      <table>
        <thead>
          <tr>
            <th>Username</th>
            <th>Role</th>
            <th>Tier</th>
            <th>Active</th>
            <th>Created</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {users.data?.items.map((u) => (
            <tr key={u.id}>
              <td>{u.username}</td>
              <td>{u.role}</td>
              <td>{u.tier}</td>
              <td>{u.is_active ? "yes" : "no"}</td>
              <td>{formatTime(u.created_at)}</td>
              <td>
                <button type="button" onClick={() => setActive(u.id, !u.is_active)}>
                  {u.is_active ? "Disable" : "Enable"}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
