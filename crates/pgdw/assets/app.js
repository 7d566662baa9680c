// pgdw's dashboard pages: fetch each panel's JSON and draw it with uPlot (vendored).
// Every panel element says how it went in data-state (loading, drawn, empty, error) and
// data-points, so a browser test can check what a person sees.
(function () {
  'use strict';
  const PALETTE = ['#2f6fde', '#e8710a', '#1e8e3e', '#d93025', '#9334e6', '#12b5cb', '#f9ab00', '#5f6368', '#c5221f', '#188038'];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  async function getJSON(url) {
    const r = await fetch(url);
    let body;
    try { body = await r.json(); } catch (_) { body = { error: 'HTTP ' + r.status + ' (not JSON)' }; }
    if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
    return body;
  }

  function fmt(v, unit) {
    if (v === null || v === undefined) return '';
    if (typeof v !== 'number') return String(v);
    if (unit === 'bytes') {
      const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
      let i = 0, x = Math.abs(v);
      while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
      return (v < 0 ? '-' : '') + x.toFixed(x < 10 && i > 0 ? 1 : 0) + ' ' + units[i];
    }
    const s = Math.abs(v) >= 1000 ? Math.round(v).toLocaleString() : (Number.isInteger(v) ? String(v) : v.toFixed(2));
    return unit && unit !== 'bytes' ? s + ' ' + unit : s;
  }

  function toSeconds(v) {
    if (typeof v === 'number') return v > 1e11 ? v / 1000 : v;
    const t = Date.parse(v);
    return Number.isNaN(t) ? null : t / 1000;
  }

  // Columns (time, value, value...) or rows (time, series, value): uPlot's aligned arrays.
  function timeseries(data) {
    const rows = data.rows;
    const long = data.columns.length === 3 && rows.some(r => typeof r[1] === 'string');
    if (!long) {
      const xs = rows.map(r => toSeconds(r[0]));
      const series = data.columns.slice(1).map((name, i) => ({ name, values: rows.map(r => r[i + 1]) }));
      return { xs, series };
    }
    const times = [...new Set(rows.map(r => toSeconds(r[0])))].sort((a, b) => a - b);
    const index = new Map(times.map((t, i) => [t, i]));
    const bySeries = new Map();
    for (const r of rows) {
      const name = r[1] === null ? '(none)' : String(r[1]);
      if (!bySeries.has(name)) bySeries.set(name, new Array(times.length).fill(null));
      bySeries.get(name)[index.get(toSeconds(r[0]))] = r[2];
    }
    return { xs: times, series: [...bySeries].map(([name, values]) => ({ name, values })) };
  }

  function chart(body, kind, data, unit) {
    const width = Math.max(280, body.clientWidth || 500);
    let xs, series, opts;
    const yAxis = { values: (u, vals) => vals.map(v => fmt(v, unit)), size: 86 };
    if (kind === 'timeseries') {
      ({ xs, series } = timeseries(data));
      // The whole requested range, so that a few points sit where they belong in time.
      opts = { scales: { x: { time: true, range: [data.from / 1000, data.to / 1000] } }, axes: [{}, yAxis] };
    } else {
      const labels = data.rows.map(r => String(r[0]));
      xs = labels.map((_, i) => i);
      series = data.columns.slice(1).map((name, i) => ({ name, values: data.rows.map(r => r[i + 1]) }));
      // Room per bar decides how much of a label fits; long ones are cut with an ellipsis.
      const room = Math.max(4, Math.floor((width - 100) / Math.max(1, labels.length) / 7));
      const short = l => l.length > room ? l.slice(0, Math.max(1, room - 1)) + '…' : l;
      opts = {
        scales: {
          x: { time: false, range: [-0.5, labels.length - 0.5] },
          y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.08 : 1] },
        },
        axes: [{ values: (u, vals) => vals.map(v => Number.isInteger(v) ? short(labels[v] || '') : ''), size: 40, gap: 4 }, yAxis],
      };
    }
    const bars = kind === 'bar' ? uPlot.paths.bars({ size: [0.7, 80] }) : null;
    const u = new uPlot(Object.assign({
      width, height: 260,
      series: [{ label: kind === 'timeseries' ? 'time' : data.columns[0] }].concat(series.map((s, i) => ({
        label: s.name, stroke: PALETTE[i % PALETTE.length], width: 1.5,
        fill: kind === 'bar' ? PALETTE[i % PALETTE.length] + 'cc' : undefined,
        paths: bars || undefined, spanGaps: false,
        // A sparse series shows its points: a single sample draws no line.
        points: { show: !bars && s.values.filter(v => v !== null).length < 60 },
        value: (u, v) => fmt(v, unit),
      }))),
      legend: { live: kind === 'timeseries' },
    }, opts), [xs].concat(series.map(s => s.values)), body);
    return { points: series.reduce((n, s) => n + s.values.filter(v => v !== null).length, 0), plot: u };
  }

  function table(body, data, unit) {
    const head = el('tr', {}, ...data.columns.map(c => el('th', {}, c)));
    const rows = data.rows.map(r => el('tr', {}, ...r.map(v => {
      const td = el('td', typeof v === 'number' ? { class: 'num' } : {});
      const text = typeof v === 'object' && v !== null ? JSON.stringify(v) : fmt(v, typeof v === 'number' ? unit : null);
      td.append(el('span', { class: String(v) }, text));
      return td;
    })));
    body.append(el('div', { class: 'table-wrap' }, el('table', {}, el('thead', {}, head), el('tbody', {}, ...rows))));
    return data.rows.length;
  }

  async function drawPanel(box, dashboard, panel, params) {
    const body = box.querySelector('.body');
    const ms = box.querySelector('.ms');
    box.dataset.state = 'loading';
    try {
      const data = await getJSON(`/api/dashboards/${encodeURIComponent(dashboard)}/panels/${panel.id}?${params}`);
      body.replaceChildren();
      ms.textContent = data.elapsed_ms.toFixed(0) + ' ms';
      let points = 0;
      if (data.rows.length === 0) {
        body.append(el('div', { class: 'empty' }, 'no rows in this range'));
        box.dataset.state = 'empty';
        box.dataset.points = '0';
        return;
      }
      if (panel.kind === 'number') {
        const v = data.rows[0][0];
        body.append(el('div', { class: 'number' }, fmt(v, panel.unit === 'bytes' ? 'bytes' : null),
          el('small', {}, panel.unit && panel.unit !== 'bytes' ? panel.unit : '')));
        points = v === null ? 0 : 1;
      } else if (panel.kind === 'table') {
        points = table(body, data, panel.unit);
      } else {
        points = chart(body, panel.kind, data, panel.unit).points;
      }
      box.dataset.points = String(points);
      box.dataset.state = points > 0 ? 'drawn' : 'empty';
    } catch (e) {
      body.replaceChildren(el('div', { class: 'error' }, e.message));
      ms.textContent = '';
      box.dataset.state = 'error';
      box.dataset.points = '0';
    }
  }

  async function dashboard(name) {
    const d = await getJSON('/api/dashboards/' + encodeURIComponent(name));
    document.title = d.title + ' · pgdw';
    document.getElementById('title').textContent = d.title;
    document.getElementById('description').textContent = d.description;
    const range = document.getElementById('range');
    if (![...range.options].some(o => Number(o.value) === d.range_ms)) {
      range.append(el('option', { value: String(d.range_ms) }, 'last ' + Math.round(d.range_ms / 3600000) + ' h'));
    }
    range.value = String(d.range_ms);
    const refresh = document.getElementById('refresh');
    if (d.refresh_ms && [...refresh.options].some(o => Number(o.value) === d.refresh_ms)) refresh.value = String(d.refresh_ms);
    const vars = document.getElementById('variables');
    for (const v of d.variables) {
      const select = el('select', { id: 'var-' + v.name, 'data-name': v.name }, el('option', { value: '' }, 'all'));
      for (const c of Array.isArray(v.choices) ? v.choices : []) select.append(el('option', { value: c.value }, c.label));
      vars.append(el('label', {}, v.label + ' ', select));
    }
    const grid = document.getElementById('panels');
    const boxes = d.panels.map(p => {
      const box = el('section', { class: 'panel' + (p.width === 2 || p.kind === 'table' ? ' wide' : ''), 'data-kind': p.kind, 'data-state': 'loading', id: 'panel-' + p.id },
        el('h3', {}, el('span', {}, p.title), el('span', { class: 'ms' }, '')), el('div', { class: 'body' }));
      if (p.sql) box.title = p.sql;
      grid.append(box);
      return box;
    });
    async function load() {
      const to = Date.now();
      const params = new URLSearchParams({ from: String(to - Number(range.value)), to: String(to) });
      for (const s of vars.querySelectorAll('select')) if (s.value) params.set(s.dataset.name, s.value);
      await Promise.all(d.panels.map((p, i) => drawPanel(boxes[i], d.name, p, params.toString())));
      document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    }
    let timer = null;
    function schedule() {
      if (timer) clearInterval(timer);
      const every = Number(refresh.value);
      timer = every > 0 ? setInterval(load, every) : null;
    }
    for (const c of [range, ...vars.querySelectorAll('select')]) c.addEventListener('change', load);
    refresh.addEventListener('change', schedule);
    document.getElementById('reload').addEventListener('click', load);
    schedule();
    await load();
  }

  async function index(list) {
    try {
      const ds = await getJSON('/api/dashboards');
      if (ds.length === 0) list.append(el('li', { class: 'muted' }, 'No dashboards: add TOML files under dashboards/ in the project.'));
      for (const d of ds) {
        list.append(el('li', {}, el('a', { href: '/d/' + encodeURIComponent(d.name) },
          el('h2', {}, d.title), el('div', { class: 'muted' }, d.description || ''), el('div', { class: 'muted' }, d.panels + ' panels'))));
      }
      list.dataset.state = 'drawn';
    } catch (e) {
      list.append(el('li', { class: 'error' }, e.message));
      list.dataset.state = 'error';
    }
  }

  window.pgdw = { dashboard, index };
})();
