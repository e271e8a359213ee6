// The peerline inspector page: a WebSocket client of the local visualizer
// server. Messages only change the model below; drawing happens at most once
// per animation frame, touching only the rows that changed.
'use strict';

(() => {
  const $ = (selector) => document.querySelector(selector);
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // ------------------------------------------------------------------ model
  const model = {
    machineId: 'peerConnection',
    states: [],
    colors: {},
    peers: new Map(), // key -> PeerView
    engines: new Map(), // id -> EngineView
    selected: undefined,
    timeline: [], // newest last
    filter: '',
    stateFilter: new Set(),
    showFinished: true,
    scope: '',
    names: new Map(), // peer id -> display name
  };
  const dirty = { list: true, rows: new Set(), summary: true, graph: true, detail: true, timeline: true, metrics: true };
  const TIMELINE_MAX = 400;

  const colorOf = (state) => model.colors[state] || '#64748b';

  // ----------------------------------------------------------------- names
  // Peer ids are long (52 characters over QUIC): a known id shows as its
  // name, any other shortened to prefix…suffix; the full id is in the
  // element's title and in the selected peer's details.
  const shortId = (id) => (id.length <= 14 ? id : `${id.slice(0, 6)}\u2026${id.slice(-4)}`);
  const labelOf = (id) => model.names.get(id) || shortId(id);
  const titleOf = (id) => (model.names.has(id) ? `${model.names.get(id)}\n${id}` : id);
  const byLabel = (a, b) => a.localeCompare(b, undefined, { numeric: true });

  /** A name (or shortened id) with the full id as its tooltip. */
  function idLabel(id, className = 'id') {
    const span = el('span', className, labelOf(id));
    span.title = titleOf(id);
    if (!model.names.has(id)) span.classList.add('anon');
    return span;
  }

  // ------------------------------------------------------------- websocket
  let socket;
  let retryMs = 500;
  const conn = $('#conn');

  function connect() {
    conn.dataset.status = 'connecting';
    conn.textContent = 'connecting';
    socket = new WebSocket(`ws://${location.host}/ws`);
    socket.addEventListener('open', () => {
      retryMs = 500;
      conn.dataset.status = 'live';
      conn.textContent = 'live';
      if (model.selected !== undefined) send({ type: 'select', key: model.selected });
    });
    socket.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      onMessage(message);
    });
    socket.addEventListener('close', () => {
      conn.dataset.status = 'closed';
      conn.textContent = 'disconnected, retrying';
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    });
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function onMessage(m) {
    switch (m.type) {
      case 'hello':
        model.machineId = m.machineId;
        model.states = m.states;
        model.colors = m.colors;
        setNames(m.names);
        document.title = m.title;
        $('#title').textContent = m.title;
        dirty.summary = true;
        break;
      case 'snapshot':
        model.peers = new Map(m.peers.map((p) => [p.key, p]));
        setEngines(m.engines);
        dirty.list = true;
        dirty.summary = true;
        dirty.graph = true;
        dirty.detail = true;
        break;
      case 'update':
        for (const peer of m.peers) {
          if (!model.peers.has(peer.key)) dirty.list = true;
          model.peers.set(peer.key, peer);
          dirty.rows.add(peer.key);
          if (peer.key === model.selected) {
            dirty.detail = true;
            dirty.graph = true;
          }
        }
        for (const key of m.removed) {
          if (model.peers.delete(key)) dirty.list = true;
        }
        if (m.timeline && m.timeline.key === model.selected) appendTimeline(m.timeline.entries);
        dirty.summary = true;
        dirty.graph = true;
        break;
      case 'timeline':
        if (m.key !== model.selected) break;
        if (m.peer) model.peers.set(m.peer.key, m.peer);
        model.timeline = [];
        lastStep = undefined;
        appendTimeline(m.entries);
        dirty.detail = true;
        dirty.graph = true;
        break;
      case 'metrics':
        setEngines(m.engines);
        break;
      case 'names':
        setNames(m.names);
        break;
    }
    schedule();
  }

  function setNames(names) {
    model.names = new Map(Object.entries(names || {}));
    dirty.list = dirty.summary = dirty.graph = dirty.detail = dirty.metrics = true;
  }

  function setEngines(list) {
    const before = [...model.engines.keys()].join('\n');
    model.engines = new Map(list.map((e) => [e.id, e]));
    dirty.metrics = true;
    dirty.summary = true;
    // The list changes with the set of engines, or with the peers of an engine the inspector does not see.
    if (before !== list.map((e) => e.id).join('\n') || list.some((e) => e.peers)) dirty.list = true;
  }

  function appendTimeline(entries) {
    for (const entry of entries) {
      const previous = model.timeline[model.timeline.length - 1];
      if (entry.changed && previous && previous.sessionId === entry.sessionId) {
        lastStep = { from: previous.value, to: entry.value, event: entry.event };
      }
      model.timeline.push(entry);
    }
    if (model.timeline.length > TIMELINE_MAX) model.timeline.splice(0, model.timeline.length - TIMELINE_MAX);
    dirty.timeline = true;
    dirty.graph = true;
  }

  let frame = 0;
  function schedule() {
    if (frame === 0) frame = requestAnimationFrame(render);
  }

  // --------------------------------------------------------------- drawing
  function render() {
    frame = 0;
    if (dirty.list) renderList();
    else if (dirty.rows.size > 0) for (const key of dirty.rows) renderRow(key);
    dirty.list = false;
    dirty.rows.clear();
    if (dirty.metrics) renderMetrics();
    // After the list and the tables it fills in.
    if (dirty.summary || dirty.metrics) renderSummary();
    if (dirty.graph) renderGraph();
    if (dirty.detail) renderDetail();
    if (dirty.timeline) renderTimeline();
    dirty.summary = dirty.graph = dirty.detail = dirty.timeline = dirty.metrics = false;
  }

  const rows = new Map(); // key -> li

  /** Every peer the list shows: inspected ones, plus engine-reported ones for engines not inspected. */
  function allPeers() {
    const out = [...model.peers.values()];
    for (const engine of model.engines.values()) {
      if (!engine.peers) continue;
      for (const p of engine.peers) {
        const key = `${engine.id}/${p.peerId}`;
        if (!model.peers.has(key)) {
          out.push({ key, engineId: engine.id, peerId: p.peerId, state: p.state, status: 'active', details: {}, value: p.state, fromEngine: true });
        }
      }
    }
    return out;
  }

  function visible(peer) {
    if (!model.showFinished && peer.status !== 'active') return false;
    if (model.stateFilter.size > 0 && !model.stateFilter.has(peer.status === 'active' ? peer.state : 'closed')) return false;
    if (model.filter === '') return true;
    const f = model.filter;
    const matches = (id) => id.toLowerCase().includes(f) || (model.names.get(id) || '').toLowerCase().includes(f);
    return matches(peer.peerId) || matches(peer.engineId) || peer.state.toLowerCase().includes(f);
  }

  function describeValue(value) {
    if (typeof value === 'string') return value;
    if (value === null || typeof value !== 'object') return String(value);
    const leaves = (v, prefix) => {
      if (typeof v === 'string') return [prefix ? `${prefix}.${v}` : v];
      if (v === null || typeof v !== 'object') return [];
      return Object.entries(v).flatMap(([k, sub]) => leaves(sub, prefix ? `${prefix}.${k}` : k));
    };
    const [top, sub] = Object.entries(value)[0] || [];
    if (top === undefined) return '';
    const inner = leaves(sub, '');
    return inner.length === 0 ? top : `${top} (${inner.join(', ')})`;
  }

  function metaOf(peer) {
    const d = peer.details || {};
    const parts = [];
    if (peer.status !== 'active') parts.push(peer.status === 'done' ? 'closed machine' : peer.status);
    if (d.direction) parts.push(d.direction);
    if (d.streams) parts.push(`${d.streams} stream${d.streams === 1 ? '' : 's'}`);
    if (d.queued) parts.push(`${d.queued} queued`);
    if (d.attempts) parts.push(`attempt ${d.attempts}`);
    if (d.lastError) parts.push(d.lastError);
    if (d.ending && peer.state !== 'ready') parts.push(d.ending);
    if (peer.fromEngine) parts.push('not inspected');
    return parts.join(' · ');
  }

  function makeRow(peer) {
    const li = el('li', 'peer');
    li.setAttribute('role', 'option');
    li.tabIndex = 0;
    li.dataset.key = peer.key;
    li.append(el('span', 'dot'), el('span', 'pid'), el('span', 'st'), el('span', 'meta'));
    li.addEventListener('click', () => select(peer.key));
    li.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        select(li.dataset.key);
      }
    });
    rows.set(peer.key, li);
    return li;
  }

  function fillRow(li, peer) {
    const before = li.dataset.state;
    li.dataset.state = peer.state;
    li.dataset.status = peer.status;
    li.style.setProperty('--c', colorOf(peer.state));
    li.classList.toggle('finished', peer.status !== 'active');
    li.setAttribute('aria-selected', String(peer.key === model.selected));
    const pid = li.children[1];
    const named = model.names.get(peer.peerId);
    pid.replaceChildren(el('span', named ? 'name' : 'id anon', named || shortId(peer.peerId)));
    if (named) pid.append(el('span', 'id anon', shortId(peer.peerId)));
    pid.title = `${titleOf(peer.peerId)}\nseen by ${labelOf(peer.engineId)}`;
    li.children[2].textContent = peer.state;
    li.children[2].style.color = colorOf(peer.state);
    li.children[3].textContent = metaOf(peer);
    if (before !== undefined && before !== peer.state) {
      li.classList.remove('flash');
      void li.offsetWidth;
      li.classList.add('flash');
    }
  }

  function renderRow(key) {
    const peer = model.peers.get(key);
    const li = rows.get(key);
    if (!peer || !li) return;
    if (!visible(peer)) {
      dirty.list = true;
      return renderList();
    }
    fillRow(li, peer);
  }

  const byPeer = (a, b) => byLabel(labelOf(a.peerId), labelOf(b.peerId)) || byLabel(a.peerId, b.peerId);
  const heads = new Map(); // engine id -> the count span of its heading

  function renderList() {
    const list = $('#peer-list');
    const peers = allPeers();
    const groups = new Map();
    for (const engine of model.engines.keys()) groups.set(engine, []);
    for (const peer of peers) {
      if (!groups.has(peer.engineId)) groups.set(peer.engineId, []);
      groups.get(peer.engineId).push(peer);
    }
    const fragment = document.createDocumentFragment();
    const used = new Set();
    let shown = 0;
    heads.clear();
    const engineIds = [...groups.keys()].sort((a, b) => byLabel(labelOf(a), labelOf(b)));
    for (const engineId of engineIds) {
      const all = groups.get(engineId);
      const members = all.filter(visible).sort(byPeer);
      const section = el('section', 'engine');
      section.dataset.engine = engineId;
      const h3 = el('h3');
      h3.title = titleOf(engineId);
      const count = el('span', 'count muted');
      heads.set(engineId, count);
      h3.append(idLabel(engineId, 'name'));
      if (model.names.has(engineId)) h3.append(el('span', 'id anon', shortId(engineId)));
      h3.append(count);
      const ul = el('ul');
      for (const peer of members) {
        const li = rows.get(peer.key) || makeRow(peer);
        fillRow(li, peer);
        ul.append(li);
        used.add(peer.key);
      }
      shown += members.length;
      if (members.length === 0 && model.filter !== '') continue;
      section.append(h3, ul);
      fragment.append(section);
    }
    for (const key of [...rows.keys()]) if (!used.has(key)) rows.delete(key);
    // Rebuilding must not move what the reader is looking at.
    const scrollTop = list.scrollTop;
    list.replaceChildren(fragment);
    list.scrollTop = scrollTop;
    if (peers.length === 0) list.append(el('div', 'empty', 'No peer machines yet.'));
    $('#peer-count').textContent = `${shown} of ${peers.length} peer machines`;
    dirty.summary = true;
  }

  /**
   * Peer machines by state, from the peers the list shows: the header's
   * chips, the metrics bars, the engines' headings and their table all count
   * with this, in the same frame, so they always agree. Finished machines
   * (kept for viewing) count as `closed`. `engineId` limits it to one engine.
   */
  function census(engineId) {
    const counts = new Map();
    for (const state of model.states) if (state !== 'start') counts.set(state, 0);
    const byEngine = new Map();
    for (const peer of allPeers()) {
      if (engineId !== undefined && peer.engineId !== engineId) continue;
      const state = peer.status === 'active' ? peer.state : 'closed';
      counts.set(state, (counts.get(state) || 0) + 1);
      if (peer.status === 'active') byEngine.set(peer.engineId, (byEngine.get(peer.engineId) || 0) + 1);
    }
    return { counts, live: byEngine };
  }

  function renderSummary() {
    const { counts, live } = census();
    const chips = [];
    for (const [state, count] of counts) {
      const chip = el('button', 'chip');
      chip.type = 'button';
      chip.dataset.state = state;
      chip.setAttribute('aria-pressed', String(model.stateFilter.has(state)));
      const dot = el('span', 'dot');
      dot.style.setProperty('--c', colorOf(state));
      chip.append(dot, document.createTextNode(state), el('b', '', String(count)));
      chip.addEventListener('click', () => {
        if (model.stateFilter.has(state)) model.stateFilter.delete(state);
        else model.stateFilter.add(state);
        dirty.list = true;
        dirty.summary = true;
        schedule();
      });
      chips.push(chip);
    }
    $('#summary').replaceChildren(...chips);
    // Live counts on the graph's top-level states.
    for (const badge of graphEl.querySelectorAll('.pl-badge')) {
      const n = counts.get(badge.dataset.badge) || 0;
      badge.classList.toggle('on', n > 0);
      badge.querySelector('text').textContent = String(n);
      // Three digits and more need a wider disc.
      badge.querySelector('circle').setAttribute('r', String(n >= 100 ? 8 + 3.4 * String(n).length : 11));
    }
    for (const [engineId, span] of heads) {
      const engine = model.engines.get(engineId);
      span.textContent = `${live.get(engineId) || 0} active${engine ? ` · ${engine.status}` : ''}`;
    }
    for (const tr of document.querySelectorAll('#engines tbody tr')) {
      tr.children[2].textContent = String(live.get(tr.dataset.engine) || 0);
    }
    renderBars(model.scope === '' ? counts : census(model.scope).counts);
  }

  function renderBars(counts) {
    const max = Math.max(1, ...counts.values());
    const cells = [];
    for (const [state, n] of counts) {
      const bar = el('div', 'bar');
      bar.style.setProperty('--c', colorOf(state));
      bar.style.width = `${(n / max) * 100}%`;
      const wrap = el('div');
      wrap.append(bar);
      const label = el('span', 'state', state);
      label.style.color = colorOf(state);
      const num = el('span', 'n', String(n));
      num.dataset.state = state;
      cells.push(label, wrap, num);
    }
    $('#state-bars').replaceChildren(...cells);
  }

  // ----------------------------------------------------------------- graph
  const graphEl = $('#graph');
  let svg;
  let full = { x: 0, y: 0, w: 1, h: 1 };
  let view = { x: 0, y: 0, w: 1, h: 1 };
  let lastStep;
  const svgs = {};

  async function loadGraph(labels) {
    const url = labels ? '/graph.svg?labels=1' : '/graph.svg';
    if (!svgs[url]) {
      const response = await fetch(url);
      svgs[url] = await response.text();
    }
    const doc = new DOMParser().parseFromString(svgs[url], 'image/svg+xml');
    svg = document.importNode(doc.documentElement, true);
    const [x, y, w, h] = svg.getAttribute('viewBox').split(/\s+/).map(Number);
    full = { x, y, w, h };
    svg.removeAttribute('width');
    svg.removeAttribute('height');
    svg.setAttribute('preserveAspectRatio', 'xMidYMid meet');
    graphEl.replaceChildren(svg);
    if (labels) readable();
    else fit();
    dirty.graph = true;
    dirty.summary = true;
    schedule();
  }

  function applyView() {
    if (svg) svg.setAttribute('viewBox', `${view.x} ${view.y} ${view.w} ${view.h}`);
  }

  function fit() {
    const pad = 10;
    view = { x: full.x - pad, y: full.y - pad, w: full.w + pad * 2, h: full.h + pad * 2 };
    applyView();
  }

  /** Smallest size (px) transition labels are shown at when the labelled graph opens. */
  const READABLE_PX = 10;

  /**
   * The whole drawing if its transition labels read at that size; otherwise
   * zoomed until they do, around the selected peer's state (or the top): the
   * rest is a drag away, and Fit shows all of it.
   */
  function readable() {
    fit();
    const text = svg && svg.querySelector('.pl-edge-label text');
    const rect = graphEl.getBoundingClientRect();
    if (!text || rect.width === 0 || rect.height === 0) return;
    const fontSize = parseFloat(getComputedStyle(text).fontSize) || 11;
    const scale = Math.min(rect.width / view.w, rect.height / view.h);
    const wanted = READABLE_PX / fontSize;
    if (scale >= wanted) return;
    const w = rect.width / wanted;
    const h = rect.height / wanted;
    const peer = model.selected === undefined ? undefined : model.peers.get(model.selected);
    const ids = peer ? activeIds(peer.value) : [];
    // The innermost active state drawn; its centre goes to the middle.
    let focus;
    for (const id of ids.reverse()) {
      focus = svg.querySelector(`.pl-state[data-state="${CSS.escape(id)}"] > rect.pl-box`);
      if (focus) break;
    }
    const box = focus ? focus.getBBox() : { x: full.x + full.w / 2, y: full.y + h / 2, width: 0, height: 0 };
    const cx = Math.min(Math.max(box.x + box.width / 2, full.x + w / 2), full.x + full.w - w / 2);
    const cy = Math.min(Math.max(box.y + box.height / 2, full.y + h / 2), full.y + full.h - h / 2);
    view = { x: cx - w / 2, y: cy - h / 2, w, h };
    applyView();
  }

  function zoom(factor, cx, cy) {
    const rect = graphEl.getBoundingClientRect();
    // The point under (cx, cy) stays put; with preserveAspectRatio meet, map through the shown scale.
    const scale = Math.max(view.w / rect.width, view.h / rect.height);
    const offsetX = (rect.width * scale - view.w) / 2;
    const offsetY = (rect.height * scale - view.h) / 2;
    const px = view.x - offsetX + (cx - rect.left) * scale;
    const py = view.y - offsetY + (cy - rect.top) * scale;
    const w = Math.min(Math.max(view.w * factor, full.w / 20), full.w * 4);
    const k = w / view.w;
    view = { x: px - (px - view.x) * k, y: py - (py - view.y) * k, w, h: view.h * k };
    applyView();
  }

  graphEl.addEventListener(
    'wheel',
    (e) => {
      e.preventDefault();
      zoom(e.deltaY > 0 ? 1.15 : 1 / 1.15, e.clientX, e.clientY);
    },
    { passive: false },
  );
  let drag;
  graphEl.addEventListener('pointerdown', (e) => {
    drag = { x: e.clientX, y: e.clientY, view: { ...view } };
    graphEl.setPointerCapture(e.pointerId);
    graphEl.classList.add('dragging');
  });
  graphEl.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const rect = graphEl.getBoundingClientRect();
    const scale = Math.max(drag.view.w / rect.width, drag.view.h / rect.height);
    view = { ...drag.view, x: drag.view.x - (e.clientX - drag.x) * scale, y: drag.view.y - (e.clientY - drag.y) * scale };
    applyView();
  });
  const endDrag = () => {
    drag = undefined;
    graphEl.classList.remove('dragging');
  };
  graphEl.addEventListener('pointerup', endDrag);
  graphEl.addEventListener('pointercancel', endDrag);
  $('#fit').addEventListener('click', fit);
  $('#zoom-in').addEventListener('click', () => {
    const r = graphEl.getBoundingClientRect();
    zoom(1 / 1.3, r.left + r.width / 2, r.top + r.height / 2);
  });
  $('#zoom-out').addEventListener('click', () => {
    const r = graphEl.getBoundingClientRect();
    zoom(1.3, r.left + r.width / 2, r.top + r.height / 2);
  });
  $('#labels').addEventListener('change', (e) => void loadGraph(e.target.checked));

  function activeIds(value) {
    const ids = [model.machineId];
    const visit = (prefix, v) => {
      if (typeof v === 'string') return void ids.push(`${prefix}.${v}`);
      if (v === null || typeof v !== 'object') return;
      for (const [k, sub] of Object.entries(v)) {
        ids.push(`${prefix}.${k}`);
        visit(`${prefix}.${k}`, sub);
      }
    };
    visit(model.machineId, value);
    return ids;
  }

  /** The edges of the last step the selected machine took (between two timeline entries). */
  function stepEdges(step) {
    if (!svg || !step) return new Set();
    const from = new Set(activeIds(step.from));
    const to = new Set(activeIds(step.to));
    const edges = [...svg.querySelectorAll('.pl-edge[data-source]')].filter((e) => {
      const { source, target } = e.dataset;
      return from.has(source) && to.has(target) && (!from.has(target) || source === target);
    });
    const named = edges.filter((e) => e.dataset.events.split(' ').includes(step.event));
    return new Set(named.length > 0 ? named : edges);
  }

  function renderGraph() {
    if (!svg) return;
    const peer = model.selected === undefined ? undefined : model.peers.get(model.selected);
    const active = new Set(peer ? activeIds(peer.value) : []);
    graphEl.classList.toggle('has-selection', peer !== undefined);
    for (const node of svg.querySelectorAll('.pl-state')) node.classList.toggle('pl-active', active.has(node.dataset.state));
    const taken = peer ? stepEdges(lastStep) : new Set();
    for (const edge of svg.querySelectorAll('.pl-edge[data-source]')) edge.classList.toggle('pl-last', taken.has(edge));
    const caption = $('#graph-caption');
    if (peer) {
      caption.replaceChildren(pairOf(peer), document.createTextNode(` · ${describeValue(peer.value)}`));
      caption.title = `${peer.key}\n${describeValue(peer.value)}`;
    } else {
      caption.textContent = 'Select a peer to see its state';
    }
  }

  // ---------------------------------------------------------------- detail
  /** `engine → peer`, by name or shortened id. */
  function pairOf(peer) {
    const b = el('b', 'pair');
    b.append(idLabel(peer.engineId), el('span', 'arrow', ' \u2192 '), idLabel(peer.peerId));
    return b;
  }

  function select(key) {
    if (model.selected === key) return;
    const old = rows.get(model.selected);
    if (old) old.setAttribute('aria-selected', 'false');
    model.selected = key;
    model.timeline = [];
    lastStep = undefined;
    const row = rows.get(key);
    if (row) row.setAttribute('aria-selected', 'true');
    send({ type: 'select', key });
    dirty.detail = dirty.graph = dirty.timeline = true;
    schedule();
  }

  function renderDetail() {
    const box = $('#detail');
    const peer = model.selected === undefined ? undefined : model.peers.get(model.selected);
    if (!peer) {
      box.className = 'muted';
      const [engineId, ...rest] = (model.selected || '').split('/');
      box.textContent = model.selected === undefined ? 'No peer selected.' : `${labelOf(engineId)} \u2192 ${labelOf(rest.join('/'))}: no longer inspected.`;
      return;
    }
    box.className = '';
    const title = el('div', 'peer-title');
    const badge = el('span', 'badge', peer.state);
    badge.style.setProperty('--c', colorOf(peer.state));
    title.append(badge, pairOf(peer));
    // Long values (the full ids, for copying) on rows of their own; short ones two pairs a row.
    const ids = el('dl', 'ids');
    const d = peer.details || {};
    const wide = [
      ['peer', peer.peerId, model.names.get(peer.peerId)],
      ['engine', peer.engineId, model.names.get(peer.engineId)],
      ['state', describeValue(peer.value)],
      ['last event', peer.lastEvent && prettyEvent(peer.lastEvent)],
      ['last error', d.lastError],
      ['ending', d.ending],
    ];
    for (const [k, v, name] of wide) {
      if (v === undefined || v === null || v === '') continue;
      const dd = el('dd', k === 'peer' || k === 'engine' ? 'id' : '', String(v));
      dd.dataset.field = k;
      ids.append(el('dt', '', name ? `${k} ${name}` : k), dd);
    }
    const dl = el('dl', 'kvgrid');
    const pairs = [
      ['status', peer.status],
      ['direction', d.direction],
      ['pinned', d.pinned],
      ['attempts', d.attempts],
      ['streams', d.streams],
      ['queued', d.queued],
      ['opening', d.opening],
      ['leases', d.leases],
      ['connection', d.connectionId],
      ['machine', peer.sessionId],
      ['steps', peer.steps],
    ];
    for (const [k, v] of pairs) {
      if (v === undefined || v === null || v === '') continue;
      const dd = el('dd', '', String(v));
      dd.dataset.field = k;
      dl.append(el('dt', '', k), dd);
    }
    box.replaceChildren(title, ids, dl);
  }

  function prettyEvent(type) {
    let m = /^xstate\.after\.([^.]+)\./.exec(type);
    if (m) return `after ${m[1]}`;
    m = /^xstate\.(done|error)\.actor\.(.+)$/.exec(type);
    if (m) return `${m[1]}: ${m[2].split('.').pop()}`;
    return type;
  }

  function renderTimeline() {
    const body = $('#timeline tbody');
    const entries = model.timeline;
    $('#timeline-count').textContent = entries.length > 0 ? `${entries.length} steps` : '';
    const rowsOut = [];
    const first = entries[0];
    for (let i = entries.length - 1; i >= 0; i--) {
      const entry = entries[i];
      const tr = el('tr', entry.changed ? 'changed' : '');
      tr.dataset.state = entry.state;
      tr.dataset.event = entry.event;
      tr.style.setProperty('--c', colorOf(entry.state));
      const at = first ? ((entry.at - first.at) / 1000).toFixed(3) : '0.000';
      tr.append(el('td', '', `+${at}s`), el('td', '', prettyEvent(entry.event)), el('td', '', describeValue(entry.value)));
      tr.children[1].title = entry.event;
      rowsOut.push(tr);
      const older = entries[i - 1];
      if (older && older.sessionId !== entry.sessionId) {
        const sep = el('tr', 'session');
        const td = el('td', '', `new machine ${entry.sessionId}`);
        td.colSpan = 3;
        sep.append(td);
        rowsOut.push(sep);
      }
    }
    body.replaceChildren(...rowsOut);
  }

  // --------------------------------------------------------------- metrics
  function sumMetrics(list) {
    const total = { requests: { total: 0, opened: 0, leases: 0, failed: 0, aborted: 0, failedByCode: {} }, dials: { started: 0, failed: 0 }, retries: 0, transitions: 0, internalErrors: 0, pendingRequests: 0, rtt: [], resume: { live: 0, suspended: 0, resumes: 0, closed: 0, failed: 0, badProofs: 0, bufferedBytes: 0 } };
    for (const engine of list) {
      const m = engine.metrics;
      if (!m) continue;
      const r = m.requests || {};
      for (const k of ['total', 'opened', 'leases', 'failed', 'aborted']) total.requests[k] += r[k] || 0;
      for (const [code, n] of Object.entries(r.failedByCode || {})) total.requests.failedByCode[code] = (total.requests.failedByCode[code] || 0) + n;
      total.dials.started += (m.dials && m.dials.started) || 0;
      total.dials.failed += (m.dials && m.dials.failed) || 0;
      total.retries += m.retries || 0;
      total.transitions += m.transitions || 0;
      total.internalErrors += m.internalErrors || 0;
      total.pendingRequests += m.pendingRequests || 0;
      if (m.heartbeat && typeof m.heartbeat.avgRttMs === 'number') total.rtt.push(m.heartbeat.avgRttMs);
      const z = m.resume;
      if (z) {
        for (const k of ['live', 'suspended', 'resumes', 'closed', 'badProofs', 'bufferedBytes']) total.resume[k] += z[k] || 0;
        total.resume.failed += Object.values(z.failedByCode || {}).reduce((a, b) => a + b, 0);
      }
    }
    return total;
  }

  function cell(child) {
    const td = el('td');
    td.append(child);
    return td;
  }

  function kvTable(table, caption, pairs) {
    const rowsOut = pairs.map(([k, v]) => {
      const tr = el('tr');
      tr.dataset.key = k;
      tr.append(el('td', '', k), el('td', '', String(v)));
      return tr;
    });
    const cap = el('caption', '', caption);
    table.replaceChildren(cap, ...rowsOut);
  }

  function renderMetrics() {
    const scopeSelect = $('#scope');
    const ids = [...model.engines.keys()].sort((a, b) => byLabel(labelOf(a), labelOf(b)));
    const options = ['', ...ids];
    if (scopeSelect.options.length !== options.length || options.some((id, i) => scopeSelect.options[i].value !== id || scopeSelect.options[i].textContent !== (id === '' ? 'all engines' : labelOf(id)))) {
      scopeSelect.replaceChildren(...options.map((id) => {
        const option = el('option', '', id === '' ? 'all engines' : labelOf(id));
        option.value = id;
        option.title = id === '' ? '' : titleOf(id);
        return option;
      }));
      if (!model.engines.has(model.scope)) model.scope = '';
      scopeSelect.value = model.scope;
    }
    const scoped = [...model.engines.values()].filter((e) => model.scope === '' || e.id === model.scope);
    const total = sumMetrics(scoped);
    const r = total.requests;
    kvTable($('#requests'), 'requests', [
      ['total', r.total],
      ['opened', r.opened],
      ['leases', r.leases],
      ['failed', r.failed],
      ['aborted', r.aborted],
      ['pending', total.pendingRequests],
      ['dials', total.dials.started],
      ['dials failed', total.dials.failed],
      ['retries', total.retries],
      ['transitions', total.transitions],
      ['heartbeat rtt', total.rtt.length ? `${(total.rtt.reduce((a, b) => a + b, 0) / total.rtt.length).toFixed(1)} ms` : '-'],
      ['internal errors', total.internalErrors],
    ]);
    const codes = Object.entries(r.failedByCode).sort((a, b) => b[1] - a[1]);
    kvTable($('#failures'), 'failures by code', codes.length ? codes : [['none', 0]]);
    const z = total.resume;
    kvTable($('#resume'), 'resumable streams', [
      ['live', z.live],
      ['suspended', z.suspended],
      ['resumes', z.resumes],
      ['closed', z.closed],
      ['failed', z.failed],
      ['wrong proofs', z.badProofs],
      ['bytes buffered', z.bufferedBytes],
    ]);
    const sessionRows = [];
    for (const engine of scoped) {
      for (const x of engine.sessions || []) {
        const tr = el('tr');
        tr.dataset.session = x.sessionId;
        const state = el('td', '', x.state);
        state.style.color = x.state.startsWith('suspended') ? colorOf('errored') : x.state === 'open' ? colorOf('ready') : '';
        const session = el('td', '', `${x.sessionId.slice(0, 8)} (${x.role})`);
        session.title = x.sessionId;
        tr.append(cell(idLabel(engine.id)), cell(idLabel(x.peerId)), session, state, el('td', '', String(x.resumes)), el('td', '', String(x.buffered)));
        sessionRows.push(tr);
      }
    }
    $('#sessions tbody').replaceChildren(...sessionRows);
    const body = $('#engines tbody');
    body.replaceChildren(
      ...ids.map((id) => {
        const engine = model.engines.get(id);
        const m = engine.metrics;
        const tr = el('tr');
        tr.dataset.engine = id;
        tr.append(
          cell(idLabel(id)),
          el('td', '', engine.status),
          el('td', '', ''), // live peers: filled in by renderSummary, from the census

          el('td', '', m ? String(m.requests.opened) : '-'),
          el('td', '', m ? String(m.requests.failed) : '-'),
        );
        return tr;
      }),
    );
  }

  // ---------------------------------------------------------------- inputs
  $('#filter').addEventListener('input', (e) => {
    model.filter = e.target.value.trim().toLowerCase();
    dirty.list = true;
    schedule();
  });
  $('#show-finished').addEventListener('change', (e) => {
    model.showFinished = e.target.checked;
    dirty.list = true;
    schedule();
  });
  $('#scope').addEventListener('change', (e) => {
    model.scope = e.target.value;
    dirty.metrics = true;
    dirty.summary = true;
    schedule();
  });
  window.addEventListener('resize', () => applyView());

  void loadGraph(false);
  connect();
})();
