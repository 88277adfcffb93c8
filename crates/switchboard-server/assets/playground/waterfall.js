// The trace waterfall: each span of a request as a bar on one time axis, children under their
// parents, with its attributes one click (or Enter) away.

import { el, ms } from './dom.js';

/** An MLflow attribute value (JSON text) as the value it encodes. */
function decode(text) {
  if (typeof text !== 'string') return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * The spans of an MLflow V3 trace dictionary (what `/v1/traces/{id}` and `return_trace` give),
 * depth first in start order: [{id, parent, name, kind, start, end, status, message, attributes, depth}],
 * times in milliseconds from the trace's start.
 */
export function spansOf(trace) {
  const raw = (trace && trace.data && trace.data.spans) || [];
  const origin = Math.min(...raw.map((s) => Number(s.start_time_unix_nano)));
  const spans = raw.map((s) => {
    const attributes = Object.fromEntries(Object.entries(s.attributes || {}).map(([k, v]) => [k, decode(v)]));
    return {
      id: s.span_id,
      parent: s.parent_span_id,
      name: s.name,
      kind: attributes['mlflow.spanType'] || '',
      start: (Number(s.start_time_unix_nano) - origin) / 1e6,
      end: (Number(s.end_time_unix_nano) - origin) / 1e6,
      status: s.status && s.status.code === 'STATUS_CODE_ERROR' ? 'error' : 'ok',
      message: (s.status && s.status.message) || '',
      attributes,
    };
  });
  const ids = new Set(spans.map((s) => s.id));
  const children = new Map();
  for (const span of spans) {
    const key = span.parent && ids.has(span.parent) ? span.parent : null;
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(span);
  }
  const ordered = [];
  const visit = (key, depth) => {
    for (const span of (children.get(key) || []).sort((a, b) => a.start - b.start)) {
      span.depth = depth;
      ordered.push(span);
      visit(span.id, depth + 1);
    }
  };
  visit(null, 0);
  return ordered;
}

function show(value) {
  return typeof value === 'string' ? value : JSON.stringify(value, null, 1);
}

/** Renders `spans` into the list `list`. */
export function renderWaterfall(list, spans, requestId) {
  list.replaceChildren();
  const total = Math.max(...spans.map((s) => s.end), 0.001);
  spans.forEach((span, i) => {
    const duration = span.end - span.start;
    const attrsId = `span-${requestId}-${i}`;
    const attrs = el(
      'dl',
      { class: 'attrs', id: attrsId, hidden: true },
      span.message ? [el('dt', {}, 'status message'), el('dd', {}, span.message)] : [],
      Object.entries(span.attributes)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([key, value]) => [el('dt', {}, key), el('dd', {}, show(value))]),
    );
    const bar = el('span', { class: `bar ${span.status}`, 'aria-hidden': 'true' });
    bar.style.marginLeft = `${(span.start / total) * 100}%`;
    bar.style.width = `${Math.max((duration / total) * 100, 0.5)}%`;
    const label = el(
      'span',
      { class: 'label' },
      el('span', { class: 'name' }, span.name),
      ' ',
      el('span', { class: 'kind' }, span.kind),
      ' ',
      el('span', { class: 'duration' }, ms(duration)),
      ' ',
      el('span', { class: `badge ${span.status}` }, span.status),
    );
    label.style.paddingLeft = `${span.depth * 1.1}em`;
    const toggle = el(
      'button',
      {
        type: 'button',
        class: 'span-toggle',
        'aria-expanded': 'false',
        'aria-controls': attrsId,
        onclick: () => {
          const open = toggle.getAttribute('aria-expanded') !== 'true';
          toggle.setAttribute('aria-expanded', String(open));
          attrs.hidden = !open;
        },
      },
      label,
      el('span', { class: 'track' }, bar),
    );
    list.append(
      el(
        'li',
        {
          class: 'span',
          dataset: {
            name: span.name,
            kind: span.kind,
            status: span.status,
            start: span.start.toFixed(4),
            end: span.end.toFixed(4),
            depth: String(span.depth),
          },
        },
        toggle,
        attrs,
      ),
    );
  });
}
