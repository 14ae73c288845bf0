// The typed client of the public API, generated from the gateway's merged OpenAPI (schema.d.ts).
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";
import { session } from "../auth";
import { problemText } from "./problem";

export { problemText };

export type Schemas = components["schemas"];

/** A failed request, carrying the problem+json detail in plain words. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const withToken: Middleware = {
  onRequest({ request }) {
    const token = session.token();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
  onResponse({ response }) {
    if (response.status === 401) session.expired();
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin });
api.use(withToken);

/** The data of an openapi-fetch answer, or an ApiError with the problem's detail. */
export function unwrap<T>(answer: { data?: T; error?: unknown; response: Response }): T {
  if (answer.error !== undefined || !answer.response.ok) {
    throw new ApiError(answer.response.status, problemText(answer.response.status, answer.error));
  }
  return answer.data as T;
}
