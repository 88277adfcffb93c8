// Preloaded into the MCP conformance suite (`node --import ./bearer.mjs …/conformance server …`) to
// give it a bearer token: the suite's server mode builds its MCP client with no way to pass
// headers, and Switchboard's /mcp answers 401 to a request without a verified caller, as every
// route does. Rather than weaken the server for the test, every `fetch` the suite makes to the
// origin of SWITCHBOARD_MCP_URL carries `Authorization: Bearer $SWITCHBOARD_TOKEN` (unless the
// request already has an Authorization header). The suite's raw `undici.request` probes (only the
// dns-rebinding scenario uses them) go without it.
const token = process.env.SWITCHBOARD_TOKEN?.trim();
const target = process.env.SWITCHBOARD_MCP_URL;
if (!token || !target) {
  throw new Error("bearer.mjs: set SWITCHBOARD_TOKEN and SWITCHBOARD_MCP_URL");
}
const origin = new URL(target).origin;
const fetchWithoutToken = globalThis.fetch;

globalThis.fetch = (input, init = {}) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (url.origin !== origin) {
    return fetchWithoutToken(input, init);
  }
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
  if (!headers.has("authorization")) {
    headers.set("authorization", `Bearer ${token}`);
  }
  return fetchWithoutToken(input, { ...init, headers });
};
