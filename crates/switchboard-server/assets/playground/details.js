// "What happened" for one answer: its request id and status, the route, each agent and how its
// call ended, the trace waterfall and the request's audit rows.

import { call } from './api.js';
import { byId, el, ms } from './dom.js';
import { renderWaterfall, spansOf } from './waterfall.js';

/** The route the router proposed, in words. */
function routeText(spans) {
  const route = spans.find((s) => s.name === 'route');
  const decision = route && route.attributes['switchboard.route'];
  if (!decision) return route && route.status === 'error' ? `routing failed: ${route.message}` : 'none';
  if (decision.type === 'clarify') {
    return `clarify (closest: ${(decision.candidates || []).join(', ') || 'none'})`;
  }
  return (decision.calls || []).map((c) => `${c.agent} ← “${c.input}”`).join('; ') || 'no agent';
}

/** Each agent of the request with how its call ended: from the audit when a row says, else its span. */
function agentsOf(spans, rows) {
  const agents = new Map();
  for (const span of spans.filter((s) => s.kind === 'AGENT' && s.depth === 1)) {
    const name = span.attributes['gen_ai.agent.name'] || span.name.replace(/^invoke_agent /, '');
    agents.set(name, { name, status: span.status, note: span.message, duration: span.end - span.start });
  }
  for (const row of rows.filter((r) => r.hop === 'agent')) {
    const known = agents.get(row.agent) || { name: row.agent, duration: row.duration_ms };
    known.status = row.decision === 'allowed' ? 'ok' : row.decision;
    known.note = row.reason || known.note;
    agents.set(row.agent, known);
  }
  return [...agents.values()];
}

function time(unixMs) {
  const d = new Date(unixMs);
  return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** Shows what happened in the request of `result` (see `api.ask`). */
export async function showDetails(result) {
  byId('details-empty').hidden = true;
  const body = byId('details-body');
  body.hidden = false;
  body.dataset.requestId = result.requestId || '';
  body.dataset.loaded = 'false';
  byId('d-request').textContent = result.requestId || 'unknown';
  byId('d-status').replaceChildren(el('span', { class: `badge ${result.status}` }, result.status));

  let trace = result.trace;
  if (!trace && result.requestId) {
    const fetched = await call(`/v1/traces/${encodeURIComponent(result.requestId)}`);
    trace = fetched.ok ? fetched.body : null;
  }
  const audit = result.requestId
    ? await call(`/api/2.0/audit?request_id=${encodeURIComponent(result.requestId)}`)
    : { ok: false, error: 'no request id' };
  // A newer answer may have been selected while these were loading.
  if (body.dataset.requestId !== (result.requestId || '')) return;

  const spans = trace ? spansOf(trace) : [];
  const rows = audit.ok ? audit.body.rows : [];
  byId('d-route').textContent = spans.length ? routeText(spans) : 'no trace recorded';

  const agents = byId('agents');
  agents.replaceChildren(
    ...agentsOf(spans, rows).map((a) =>
      el(
        'li',
        { class: 'agent', dataset: { agent: a.name, status: a.status } },
        el('strong', {}, a.name),
        ' ',
        el('span', { class: `badge ${a.status}` }, a.status),
        a.duration !== undefined ? ` ${ms(a.duration)}` : '',
        a.note ? el('div', { class: 'note' }, a.note) : null,
      ),
    ),
  );
  if (!agents.children.length) agents.append(el('li', {}, 'No agent was called.'));

  renderWaterfall(byId('waterfall'), spans, result.requestId || 'none');

  byId('audit-scope').textContent = audit.ok
    ? audit.body.scope === 'all'
      ? 'Every row of this request (your role reads the whole audit log).'
      : 'The rows of your own calls in this request.'
    : `Audit rows unavailable: ${audit.error}`;
  const tbody = byId('audit').tBodies[0];
  tbody.replaceChildren(
    ...rows.map((r) =>
      el(
        'tr',
        { class: 'audit-row', dataset: { decision: r.decision, agent: r.agent, caller: r.caller_email } },
        el('td', {}, time(r.ts_unix_ms)),
        el('td', {}, r.caller_email),
        el('td', {}, r.agent),
        el('td', {}, r.hop),
        el('td', {}, r.target),
        el('td', {}, r.principal),
        el('td', {}, r.credential_mode),
        el('td', {}, el('span', { class: `badge ${r.decision}` }, r.decision)),
        el('td', {}, r.reason || ''),
      ),
    ),
  );
  if (!rows.length) tbody.append(el('tr', {}, el('td', { colspan: '9' }, 'No audit rows.')));
  body.dataset.loaded = 'true';
}
