// Chat: threads (new, continue, list) and the conversation, with answers streamed in as they
// arrive. The server keeps each thread's history (`custom_inputs.thread_id`, per caller); this page
// lists the threads of this session.

import { ask, whoami } from './api.js';
import { byId, el } from './dom.js';
import { showDetails } from './details.js';

const threads = [];
let current = null;

function newThread() {
  const id = `pg-${crypto.randomUUID()}`;
  const thread = { id, title: 'New thread', turns: [] };
  threads.unshift(thread);
  current = thread;
  render();
  byId('question').focus();
}

function renderThreads() {
  const list = byId('thread-list');
  list.replaceChildren(
    ...threads.map((t) =>
      el(
        'li',
        {},
        el(
          'button',
          {
            type: 'button',
            class: 'thread',
            'aria-current': t === current ? 'true' : null,
            dataset: { thread: t.id },
            onclick: () => {
              current = t;
              render();
            },
          },
          t.title,
          el('span', { class: 'count' }, ` · ${t.turns.length} ${t.turns.length === 1 ? 'turn' : 'turns'}`),
        ),
      ),
    ),
  );
}

/**
 * `text` with `**bold**` as strong and its `[n]` citation markers as links to the sources listed
 * under the answer. Each agent numbers its own citations from 1, so a marker is linked only when
 * exactly one citation has its number; an ambiguous one stays plain text rather than point at a
 * source the answer may not mean.
 */
function withCitations(text, requestId, citations) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(/\*\*([^*]+)\*\*|\[(\d+)\]/g)) {
    let node = null;
    if (match[1] !== undefined) node = el('strong', {}, match[1]);
    else {
      const numbered = citations.filter((c) => String(c.n) === match[2]);
      const cited = numbered.length === 1 ? numbered[0] : null;
      if (cited) node = el('a', { href: `#src-${requestId}-${cited.agent}-${cited.n}`, class: 'cite' }, match[0]);
    }
    if (!node) continue;
    parts.push(text.slice(last, match.index), node);
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

/** An answer's text as paragraphs and tables (the Markdown tables SQL agents answer with). */
function formatted(text, requestId, citations) {
  const blocks = [];
  const lines = text.split('\n');
  const plain = (line) => line.trim() !== '' && !line.trim().startsWith('|') && !line.trim().startsWith('```');
  for (let i = 0; i < lines.length; ) {
    if (lines[i].trim().startsWith('```')) {
      const code = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith('```')) code.push(lines[i++]);
      i += 1;
      blocks.push(el('pre', {}, el('code', {}, code.join('\n'))));
      continue;
    }
    if (lines[i].trim().startsWith('|')) {
      const rows = [];
      while (i < lines.length && lines[i].trim().startsWith('|')) rows.push(lines[i++]);
      const cells = rows
        .filter((r) => !/^\s*\|[\s:|-]+\|\s*$/.test(r))
        .map((r) => r.trim().replace(/^\||\|$/g, '').split('|').map((c) => c.trim()));
      const [head, ...body] = cells;
      blocks.push(
        el(
          'table',
          { class: 'result' },
          el('thead', {}, el('tr', {}, head.map((c) => el('th', { scope: 'col' }, c)))),
          el('tbody', {}, body.map((r) => el('tr', {}, r.map((c) => el('td', {}, c))))),
        ),
      );
      continue;
    }
    const para = [];
    while (i < lines.length && plain(lines[i])) para.push(lines[i++]);
    if (para.length) blocks.push(el('p', {}, withCitations(para.join('\n'), requestId, citations)));
    else i += 1;
  }
  return blocks;
}

function sources(requestId, citations) {
  if (!citations.length) return null;
  return el(
    'div',
    { class: 'sources' },
    el('h4', {}, 'Sources'),
    el(
      'ol',
      {},
      citations.map((c) =>
        el(
          'li',
          { id: `src-${requestId}-${c.agent}-${c.n}`, tabindex: '-1', dataset: { doc: c.id } },
          `[${c.n}] ${c.title} `,
          el('span', { class: 'hint' }, `(${c.agent}: ${c.id})`),
        ),
      ),
    ),
  );
}

const LABELS = {
  ok: 'Answer',
  clarify: 'The supervisor asks',
  denied: 'Access denied',
  rate_limited: 'Rate limited',
  unauthenticated: 'Not signed in',
  error: 'Failed',
};

/** The list item of one turn's answer. */
function answerItem(turn) {
  const r = turn.result;
  const status = r ? r.status : 'streaming';
  const text = el('div', { class: 'answer-text' });
  if (!r) text.textContent = turn.partial;
  else if (r.status === 'ok' || r.status === 'clarify') {
    const citations = (r.outputs && r.outputs.citations) || [];
    text.append(...formatted(r.answer, r.requestId, citations));
    const src = sources(r.requestId, citations);
    if (src) text.append(src);
  } else text.textContent = r.error;
  return el(
    'li',
    {
      class: `answer ${status}`,
      role: r && !['ok', 'clarify'].includes(r.status) ? 'alert' : null,
      dataset: { status, requestId: r ? r.requestId || '' : '', deltas: String(turn.deltas) },
    },
    el('div', { class: 'who' }, LABELS[status] || 'Answering…'),
    text,
    r
      ? el('button', { type: 'button', class: 'show-details', onclick: () => showDetails(r) }, 'What happened')
      : null,
  );
}

function renderMessages() {
  const list = byId('messages');
  list.replaceChildren();
  if (!current) return;
  for (const turn of current.turns) {
    list.append(el('li', { class: 'question' }, el('div', { class: 'who' }, whoami().email), turn.question));
    turn.node = answerItem(turn);
    list.append(turn.node);
  }
}

function render() {
  renderThreads();
  renderMessages();
  byId('conversation-title').textContent = current ? current.title : 'Conversation';
}

async function send(question) {
  if (!current) newThread();
  const thread = current;
  if (!thread.turns.length) thread.title = question.length > 48 ? `${question.slice(0, 47)}…` : question;
  const turn = { question, partial: '', deltas: 0, result: null };
  thread.turns.push(turn);
  render();
  const button = byId('send');
  button.disabled = true;
  try {
    turn.result = await ask(question, thread.id, (delta) => {
      turn.partial += delta;
      turn.deltas += 1;
      if (turn.node) {
        turn.node.dataset.deltas = String(turn.deltas);
        turn.node.querySelector('.answer-text').textContent = turn.partial;
      }
    });
  } catch (e) {
    turn.result = { status: 'error', error: `The request failed: ${e.message}` };
  } finally {
    button.disabled = false;
  }
  if (current === thread) {
    const fresh = answerItem(turn);
    turn.node.replaceWith(fresh);
    turn.node = fresh;
    renderThreads();
  }
  await showDetails(turn.result);
}

/** Wires the chat view. */
export function setUpChat() {
  byId('new-thread').addEventListener('click', newThread);
  const field = byId('question');
  byId('ask').addEventListener('submit', (event) => {
    event.preventDefault();
    const question = field.value.trim();
    if (!question || byId('send').disabled) return;
    field.value = '';
    send(question);
  });
  field.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      byId('ask').requestSubmit();
    }
  });
}

/** Forgets every thread (on sign-out: they were the previous identity's). */
export function resetChat() {
  threads.length = 0;
  current = null;
  render();
  byId('details-empty').hidden = false;
  byId('details-body').hidden = true;
}
