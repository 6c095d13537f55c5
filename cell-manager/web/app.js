// cellmon's web view: polls the manager's JSON API (/api/, the data
// `cellctl ... -o json` prints) every second and draws the cell. No
// framework, no build step; every value is set as text, never as HTML.
'use strict';

const POLL_MS = 1000;
// The node colours of the heat map, in map_nodes order: the same as
// cellctl vm pages --svg (cellctl_svg.c).
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2',
  '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
const EVENTS_SHOWN = 200;
const HOT_SHOWN = 20; // rows of the hottest pages' table

let lastEventId = 0;
const events = [];

function $(id) { return document.getElementById(id); }

async function get(path) {
  const r = await fetch(path, { cache: 'no-store' });
  const body = await r.json();
  if (!r.ok) throw new Error(`${path}: ${body.error || r.status}`);
  return body;
}

function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text === undefined || text === null ? '' : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(table, rows, draw) {
  const tbody = $(table).tBodies[0];
  const fresh = document.createElement('tbody');
  rows.forEach(r => fresh.appendChild(draw(r)));
  tbody.replaceWith(fresh);
}

function iso(ms) { return ms ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z') : '-'; }

function selectedVm() {
  const m = /^#vm=(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

function drawStatus(s) {
  const h = $('health');
  h.textContent = s.healthy ? 'healthy' : `NOT healthy (${s.problems.length})`;
  h.className = 'health ' + (s.healthy ? 'ok' : 'bad');
  const ul = document.createElement('ul');
  ul.id = 'problems';
  (s.problems.length ? s.problems : ['none']).forEach(p => {
    const li = document.createElement('li');
    li.textContent = p;
    ul.appendChild(li);
  });
  $('problems').replaceWith(ul);
  $('updated').textContent = `manager ${s.version}, epoch ${s.epoch}, ` +
    `updated ${new Date().toLocaleTimeString()}`;
}

function drawCells(j) {
  fill('cells', j.cells, c => {
    const tr = document.createElement('tr');
    tr.dataset.cell = c.name;
    cell(tr, c.name);
    cell(tr, c.nodes.join(', '));
    cell(tr, c.nodes_up, 'num');
    cell(tr, c.page_policy);
    cell(tr, c.created);
    return tr;
  });
}

function drawNodes(j) {
  fill('nodes', j.nodes, n => {
    const tr = document.createElement('tr');
    tr.dataset.node = n.id;
    tr.className = 'state-' + n.state;
    cell(tr, n.id, 'id');
    cell(tr, n.state, 'state');
    cell(tr, n.cell || '-', 'cell');
    cell(tr, n.incarnation, 'num incarnation');
    cell(tr, n.addr, 'addr');
    cell(tr, n.cpus, 'num');
    cell(tr, n.memory_mb, 'num');
    cell(tr, n.mem_free_mb, 'num');
    cell(tr, n.vcpus, 'num');
    cell(tr, n.heartbeat_age_ms + ' ms', 'num');
    return tr;
  });
}

function drawVms(j) {
  const sel = selectedVm();
  fill('vms', j.vms, v => {
    const tr = document.createElement('tr');
    tr.dataset.vm = v.name;
    tr.className = 'state-' + v.state + (v.name === sel ? ' selected' : '');
    const a = document.createElement('a');
    a.href = '#vm=' + encodeURIComponent(v.name);
    a.textContent = v.name;
    cell(tr, '', 'name').appendChild(a);
    cell(tr, v.state, 'state');
    cell(tr, v.spec ? v.spec.cell : '', 'cell');
    cell(tr, v.spec ? v.spec.engine : '');
    cell(tr, v.vcpus.length, 'num vcpus');
    cell(tr, v.spec ? v.spec.memory_mb : '', 'num');
    cell(tr, [...new Set(v.vcpus.map(c => c.node).filter(x => x))].join(', '), 'nodes');
    cell(tr, v.runs, 'num');
    cell(tr, v.reason);
    return tr;
  });
}

function drawEvents(j) {
  j.events.forEach(e => events.unshift(e));
  events.splice(EVENTS_SHOWN);
  lastEventId = Math.max(lastEventId, j.last_id || 0);
  fill('events', events, e => {
    const tr = document.createElement('tr');
    tr.dataset.id = e.id;
    cell(tr, iso(e.at_ms));
    cell(tr, e.kind, 'kind');
    cell(tr, e.subject);
    cell(tr, e.detail);
    return tr;
  });
}

// One square per range of pages: bands in the colours of the nodes that
// home its pages (as tall as their share), a dot growing with the
// faults of the last round, a white corner when some page has copies on
// two or more nodes. data-home names the node homing most of it.
function drawPages(p) {
  $('vm-name').textContent = p.vm;
  $('vm-summary').textContent =
    `page policy ${p.page_policy}; ${p.rounds} sample rounds this run ` +
    `(the last covered ${p.interval_ms} ms); ${p.moves} home moves and ` +
    `${p.pushes} pushes decided, ${p.applied} applied, ${p.dropped} ` +
    `dropped; ${p.ranges.length} squares of ${p.range_pages} ` +
    `page${p.range_pages === 1 ? '' : 's'}` +
    (p.ranges.length ? '' : ': no map yet, the page policy has not sampled this run');
  const sum = a => a.reduce((x, y) => x + y, 0);
  const maxFaults = Math.max(0, ...p.ranges.map(g => sum(g.faults)));
  const grid = document.createElement('div');
  grid.id = 'heatmap';
  grid.setAttribute('role', 'img');
  grid.setAttribute('aria-label', 'page heat map');
  p.ranges.forEach(g => {
    const d = document.createElement('div');
    const pages = sum(g.homed), faults = sum(g.faults);
    let best = 0;
    g.homed.forEach((n, k) => { if (n > g.homed[best]) best = k; });
    d.className = 'range';
    d.dataset.first = g.first;
    d.dataset.pages = pages;
    d.dataset.home = pages && best < p.map_nodes.length ? p.map_nodes[best] : '';
    d.dataset.color = pages ? PALETTE[best % PALETTE.length] : '';
    d.dataset.faults = faults;
    d.dataset.replicated = g.replicated;
    if (pages) {
      let at = 0;
      const stops = [];
      g.homed.forEach((n, k) => {
        if (!n) return;
        const c = PALETTE[k % PALETTE.length], to = at + 100 * n / pages;
        stops.push(`${c} ${at.toFixed(2)}%`, `${c} ${to.toFixed(2)}%`);
        at = to;
      });
      d.style.backgroundImage = `linear-gradient(to bottom, ${stops.join(', ')})`;
    }
    const homes = g.homed.map((n, k) => `${p.map_nodes[k]} ${n}`).join(' ');
    const fl = g.faults.map((n, k) => `${p.map_nodes[k]} ${n}`).join(' ');
    d.title = `pages ${g.first}-${g.first + (pages || 1) - 1}: homed ${homes}; ` +
      `faults ${fl}; ${g.replicated} with copies on two or more nodes`;
    if (faults && maxFaults) {
      const dot = document.createElement('span');
      const r = 1.5 + 6 * Math.sqrt(faults / maxFaults);
      dot.className = 'dot';
      dot.style.width = dot.style.height = `${2 * r}px`;
      dot.style.left = dot.style.top = `${9.5 - r}px`;
      d.appendChild(dot);
    }
    if (g.replicated) {
      const c = document.createElement('span');
      c.className = 'copies';
      d.appendChild(c);
    }
    grid.appendChild(d);
  });
  $('heatmap').replaceWith(grid);
  const legend = document.createElement('div');
  legend.id = 'legend';
  p.map_nodes.forEach((n, k) => {
    const e = document.createElement('span');
    const sw = document.createElement('span');
    e.dataset.node = n;
    e.dataset.color = PALETTE[k % PALETTE.length];
    sw.className = 'swatch';
    sw.style.background = PALETTE[k % PALETTE.length];
    e.appendChild(sw);
    e.appendChild(document.createTextNode('homed on ' + n));
    legend.appendChild(e);
  });
  const dots = document.createElement('span');
  dots.textContent = `dot: faults on the range in the last round (the largest: ${maxFaults})`;
  legend.appendChild(dots);
  const corner = document.createElement('span');
  corner.textContent = 'white corner: some pages have copies on two or more nodes';
  legend.appendChild(corner);
  $('legend').replaceWith(legend);
  $('hot-count').textContent = p.hot.length > HOT_SHOWN
    ? `(the ${HOT_SHOWN} hottest of ${p.hot.length})` : '';
  fill('hot', p.hot.slice(0, HOT_SHOWN), h => {
    const tr = document.createElement('tr');
    const by = a => h.nodes.map((n, k) => `${n} ${a[k]}`).join(', ');
    cell(tr, h.page, 'num');
    cell(tr, h.home);
    cell(tr, by(h.reads));
    cell(tr, by(h.writes));
    cell(tr, h.copies.join(', ') || '-');
    return tr;
  });
  fill('shared', p.shared, s => {
    const tr = document.createElement('tr');
    cell(tr, s.page, 'num');
    cell(tr, s.writers.join(', '));
    cell(tr, s.readers.join(', '));
    cell(tr, s.vcpus.join(', '));
    cell(tr, s.intervals, 'num');
    return tr;
  });
}

async function poll() {
  const vm = selectedVm();
  try {
    const [status, cells, nodes, vms, ev] = await Promise.all([
      get('/api/status'), get('/api/cells'), get('/api/nodes'),
      get('/api/vms'), get(`/api/events?after_id=${lastEventId}`)]);
    drawStatus(status);
    drawCells(cells);
    drawNodes(nodes);
    drawVms(vms);
    drawEvents(ev);
    $('vm-view').hidden = !vm;
    if (vm) drawPages(await get(`/api/vms/${encodeURIComponent(vm)}/pages`));
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (e) {
    const h = $('health');
    h.textContent = 'cannot reach the manager: ' + e.message;
    h.className = 'health bad';
  }
}

window.addEventListener('hashchange', poll);
poll();
setInterval(poll, POLL_MS);
