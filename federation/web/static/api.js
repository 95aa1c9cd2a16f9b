// The public GraphQL API, as any client uses it: POST /graphql, with the signed-in
// credential (an API key or a token, kept for this tab only) as a Bearer header.

import { currentLanguage } from './i18n.js';

const CREDENTIAL_KEY = 'biofed.credential';

export class ApiError extends Error {
  constructor(message, code, status = 200) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

export function credential() {
  return sessionStorage.getItem(CREDENTIAL_KEY);
}

export function setCredential(value) {
  if (value) sessionStorage.setItem(CREDENTIAL_KEY, value);
  else sessionStorage.removeItem(CREDENTIAL_KEY);
}

/** Run a request; resolves to {data, errors, status} (GraphQL errors are not thrown). */
export async function request(query, variables = {}, { credentialOverride } = {}) {
  // Server-written texts (count reasons, access rules, notes, errors) in the page's language.
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json', 'Accept-Language': currentLanguage() };
  const secret = credentialOverride ?? credential();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers,
      body: JSON.stringify({ query, variables }),
      credentials: 'same-origin',
    });
  } catch (err) {
    throw new ApiError(String(err), 'NETWORK', 0);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`HTTP ${response.status}`, 'HTTP_ERROR', response.status);
  }
  const errors = (body.errors || []).map((e) => ({
    message: e.message,
    code: (e.extensions && e.extensions.code) || 'ERROR',
    retryAfter: e.extensions && e.extensions.retryAfter,
    path: e.path,
  }));
  if (response.status === 401 && secret && !credentialOverride) {
    document.dispatchEvent(new CustomEvent('biofed:credential-rejected'));
  }
  return { data: body.data ?? null, errors, status: response.status };
}

/** Run a request; resolves to its data, or throws the first error as an ApiError. */
export async function query(text, variables = {}) {
  const { data, errors, status } = await request(text, variables);
  if (errors.length) throw new ApiError(errors[0].message, errors[0].code, status);
  return data;
}

// The parts of the schema the UI adapts to (fields other issues add: `me`, `diseaseNames`,
// `startSync`), asked once per page. When introspection is refused the UI assumes none.
const CAPABILITIES = `{
  __schema {
    queryType { fields { name } }
    mutationType {
      fields {
        name
        args { name defaultValue type { kind name ofType { kind name ofType { kind name } } } }
        type { kind name ofType { kind name ofType { kind name } } }
      }
    }
  }
  identity: __type(name: "Identity") { fields { name } }
}`;
let capabilities = null;

export function schemaCapabilities() {
  capabilities ??= request(CAPABILITIES).then(
    ({ data, errors }) => {
      const schema = data && data.__schema;
      if (!schema || errors.length) return { known: false, queries: new Set(), mutations: new Map(), identity: new Set() };
      return {
        known: true,
        queries: new Set(schema.queryType.fields.map((f) => f.name)),
        mutations: new Map(((schema.mutationType && schema.mutationType.fields) || []).map((f) => [f.name, f])),
        identity: new Set(((data.identity && data.identity.fields) || []).map((f) => f.name)),
      };
    },
    () => ({ known: false, queries: new Set(), mutations: new Map(), identity: new Set() }),
  );
  return capabilities;
}

/** The name of a GraphQL type reference, without list and non-null wrappers. */
export function namedType(ref) {
  let type = ref;
  while (type && !type.name) type = type.ofType;
  return type ? type.name : null;
}
