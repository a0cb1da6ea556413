import type { ApiKey, ApiKeyCreated, Gpu, Page, Role, SystemMetrics, Tier, User } from "../types.js";
import { Resource, body, type Paging } from "./base.js";

export interface UserCreateParams {
  username: string;
  password: string;
  role?: Role;
  tier?: Tier;
}

export interface UserUpdateParams {
  role?: Role;
  tier?: Tier;
  isActive?: boolean;
  password?: string;
}

export class Users extends Resource {
  /** The user the client is authenticated as. */
  me(): Promise<User> {
    return this.t.json<User>("GET", "/api/auth/me");
  }

  /** All users (admins only). */
  list(params: Paging = {}): Promise<Page<User>> {
    return this.t.json<Page<User>>("GET", "/api/users", {
      query: { limit: params.limit, offset: params.offset },
    });
  }

  get(userId: string): Promise<User> {
    return this.t.json<User>("GET", "/api/users/{user_id}", { path: { user_id: userId } });
  }

  create(params: UserCreateParams): Promise<User> {
    return this.t.json<User>("POST", "/api/users", {
      json: body({ username: params.username, password: params.password, role: params.role, tier: params.tier }),
    });
  }

  update(userId: string, params: UserUpdateParams): Promise<User> {
    return this.t.json<User>("PATCH", "/api/users/{user_id}", {
      path: { user_id: userId },
      json: body({ role: params.role, tier: params.tier, is_active: params.isActive, password: params.password }),
    });
  }
}

export class ApiKeys extends Resource {
  list(): Promise<ApiKey[]> {
    return this.t.json<ApiKey[]>("GET", "/api/auth/api-keys");
  }

  /** Creates an API key; its secret (`key`) is in this answer only. */
  create(name: string): Promise<ApiKeyCreated> {
    return this.t.json<ApiKeyCreated>("POST", "/api/auth/api-keys", { json: { name } });
  }

  async revoke(keyId: string): Promise<void> {
    await this.t.request("DELETE", "/api/auth/api-keys/{key_id}", { path: { key_id: keyId } });
  }
}

export class Gpus extends Resource {
  list(): Promise<Gpu[]> {
    return this.t.json<Gpu[]>("GET", "/api/gpus");
  }
}

export class SystemMetricsResource extends Resource {
  /** CPU, memory, disk and network use of the API's machine. */
  get(): Promise<SystemMetrics> {
    return this.t.json<SystemMetrics>("GET", "/api/metrics");
  }
}
