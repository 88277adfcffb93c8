// The server's API as the signed-in caller. The token lives only in this module's memory: never in
// storage, cookies or the URL, so it is gone when the page is closed or reloaded.

let session = null;

/** Signs in with `token`; `who` is what the page shows ({email, roles}). */
export function signIn(token, who) {
  session = { token, email: who.email, roles: who.roles || [] };
}

export function signOut() {
  session = null;
}

/** The signed-in identity ({email, roles}), or null. */
export function whoami() {
  return session && { email: session.email, roles: session.roles };
}

function headers(extra) {
  const h = { accept: 'application/json', ...extra };
  if (session) h.authorization = `Bearer ${session.token}`;
  return h;
}

/** The message of an OpenAI-style error body, or the status line. */
function errorOf(status, body) {
  const message = body && body.error && (body.error.message || body.error);
  return typeof message === 'string' ? message : `HTTP ${status}`;
}

/** The response's JSON body, or null when it has none (or not JSON). */
async function jsonOrNull(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** A JSON request: {ok, status, body, requestId, error}. */
export async function call(path, { method = 'GET', body } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const parsed = await jsonOrNull(response);
  return {
    ok: response.ok,
    status: response.status,
    body: parsed,
    requestId: response.headers.get('x-request-id'),
    error: response.ok ? null : errorOf(response.status, parsed),
  };
}

/** Splits an event stream into events ({event, data}) as its bytes arrive. */
async function* events(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) yield { event, data: data.join('\n') };
    }
  }
}

/**
 * Asks the supervisor `question` in `thread`, streaming: `onDelta(text)` is called with each piece
 * of the answer as it arrives. Resolves to {requestId, status, answer, outputs, trace, error, code}
 * where status is the run's (`ok`, `clarify`) or `denied`, `rate_limited`, `error`.
 */
export async function ask(question, thread, onDelta) {
  const response = await fetch('/v1/responses', {
    method: 'POST',
    headers: headers({ 'content-type': 'application/json', accept: 'text/event-stream' }),
    body: JSON.stringify({
      input: question,
      stream: true,
      store: false,
      custom_inputs: { thread_id: thread },
      databricks_options: { return_trace: true },
    }),
  });
  const requestId = response.headers.get('x-request-id');
  if (!response.ok) {
    const body = await jsonOrNull(response);
    const status = { 403: 'denied', 429: 'rate_limited', 401: 'unauthenticated' }[response.status] || 'error';
    return { requestId, status, answer: '', error: errorOf(response.status, body), code: response.status };
  }
  let answer = '';
  let deltas = 0;
  for await (const { data } of events(response.body)) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      continue;
    }
    if (event.type === 'response.output_text.delta' || event.type === 'response.refusal.delta') {
      answer += event.delta;
      deltas += 1;
      onDelta(event.delta);
    } else if (event.type === 'response.completed') {
      const outputs = event.response.custom_outputs || {};
      const trace = event.databricks_output && event.databricks_output.trace;
      return { requestId, status: outputs.status || 'ok', answer, deltas, outputs, trace };
    } else if (event.type === 'error') {
      return { requestId, status: 'error', answer, deltas, error: event.message || 'the run failed' };
    }
  }
  return { requestId, status: 'error', answer, deltas, error: 'the stream ended before the answer was complete' };
}
