/// The dashboard's script: draws a `DashboardSnapshot` (the page's embedded first one, then each
/// event of `GET /dashboard/events`) into the page: figures as text, charts as SVG. No library,
/// no other origin; data goes into the page as text nodes only (never parsed as HTML).
/// `body[data-updates]` counts the snapshots drawn (the browser test reads it).
enum DashboardScript {
    static let source = #"""
    (function () {
    'use strict';
    var NAT = ['open', 'full-cone', 'restricted-cone', 'port-restricted-cone', 'cone', 'symmetric-predictable',
               'symmetric-random', 'udp-blocked', 'unknown'];
    var METHODS = ['lan', 'hairpin', 'punch', 'predict', 'many-port', 'tcp-simultaneous-open', 'relay'];
    var SVG = 'http://www.w3.org/2000/svg';
    var history = [];
    var recent = [];  // one point a snapshot since the page opened (the last hour's), finer than the history
    var RECENT_MOST = 3600;
    var updates = 0;

    function $(id) { return document.getElementById(id); }
    function setText(id, value) { var e = $(id); if (e) { e.textContent = String(value); } }
    function node(tag, cls, text) {
      var e = document.createElement(tag);
      if (cls) { e.className = cls; }
      if (text !== undefined) { e.textContent = String(text); }
      return e;
    }
    function svgNode(tag, attrs, text) {
      var e = document.createElementNS(SVG, tag);
      Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
      if (text !== undefined) { e.textContent = String(text); }
      return e;
    }
    function clear(e) { while (e.firstChild) { e.removeChild(e.firstChild); } }
    function bytes(n) {
      var units = ['B', 'KB', 'MB', 'GB', 'TB'], u = 0;
      while (n >= 1000 && u < units.length - 1) { n /= 1000; u += 1; }
      return u === 0 ? Math.round(n) + ' B' : n.toFixed(1) + ' ' + units[u];
    }
    function duration(s) {
      var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
      if (d > 0) { return d + 'd ' + h + 'h'; }
      if (h > 0) { return h + 'h ' + m + 'm'; }
      if (m > 0) { return m + 'm ' + (s % 60) + 's'; }
      return s + 's';
    }
    function axisBytes(n) {
      var units = ['B', 'KB', 'MB', 'GB', 'TB'], u = 0;
      while (n >= 1000 && u < units.length - 1) { n /= 1000; u += 1; }
      return (n >= 10 || u === 0 ? Math.round(n) : n.toFixed(1)) + ' ' + units[u] + '/s';
    }
    function clock(ms) { return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }); }
    function niceCeiling(v) {
      if (v <= 0) { return 1; }
      var p = Math.pow(10, Math.floor(Math.log(v) / Math.LN10)), steps = [1, 2, 5, 10];
      for (var i = 0; i < steps.length; i++) { if (steps[i] * p >= v) { return steps[i] * p; } }
      return 10 * p;
    }

    // A line chart of series [{points: [[ms, value]], cls}] into the SVG `id` (600 x 180).
    function chart(id, series, format) {
      var svg = $(id), W = 600, H = 180, L = 70, R = 10, T = 10, B = 22;
      clear(svg);
      var all = [];
      series.forEach(function (s) { all = all.concat(s.points); });
      if (all.length === 0) { svg.appendChild(svgNode('text', { x: W / 2, y: H / 2, 'class': 'axis', 'text-anchor': 'middle' }, 'no data yet')); return; }
      var t0 = Math.min.apply(null, all.map(function (p) { return p[0]; }));
      var t1 = Math.max.apply(null, all.map(function (p) { return p[0]; }));
      if (t1 - t0 < 60000) { t0 = t1 - 60000; }
      var top = niceCeiling(Math.max.apply(null, all.map(function (p) { return p[1]; })));
      function x(t) { return L + (t - t0) / (t1 - t0) * (W - L - R); }
      function y(v) { return H - B - v / top * (H - B - T); }
      var grid = svgNode('g', { 'class': 'grid' });
      [0, top / 2, top].forEach(function (v) {
        grid.appendChild(svgNode('line', { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
        svg.appendChild(svgNode('text', { x: L - 6, y: y(v) + 4, 'class': 'axis', 'text-anchor': 'end' }, format(v)));
      });
      svg.insertBefore(grid, svg.firstChild);
      svg.appendChild(svgNode('text', { x: L, y: H - 6, 'class': 'axis' }, clock(t0)));
      svg.appendChild(svgNode('text', { x: W - R, y: H - 6, 'class': 'axis', 'text-anchor': 'end' }, 'now'));
      series.forEach(function (s) {
        if (s.points.length === 0) { return; }
        var line = s.points.map(function (p) { return x(p[0]).toFixed(1) + ',' + y(p[1]).toFixed(1); });
        if (s.area) {
          var first = s.points[0], last = s.points[s.points.length - 1];
          svg.appendChild(svgNode('polygon', { 'class': 'area ' + s.cls,
            points: x(first[0]).toFixed(1) + ',' + y(0) + ' ' + line.join(' ') + ' ' + x(last[0]).toFixed(1) + ',' + y(0) }));
        }
        svg.appendChild(svgNode('polyline', { 'class': 'line ' + s.cls, points: line.join(' ') }));
        var end = s.points[s.points.length - 1];
        svg.appendChild(svgNode('circle', { 'class': 'dot ' + s.cls, cx: x(end[0]), cy: y(end[1]), r: 3 }));
      });
    }

    // Rows of [name, count, barClass] with a bar each, relative to the largest count.
    function bars(id, rows) {
      var body = $(id), most = 0;
      clear(body);
      rows.forEach(function (r) { most = Math.max(most, r[1]); });
      rows.forEach(function (r) {
        var tr = node('tr', r[1] === 0 ? 'zero' : '');
        tr.setAttribute('data-name', r[0]);
        tr.appendChild(node('td', '', r[0]));
        tr.appendChild(node('td', 'num', r[1]));
        var cell = node('td'), bar = node('div', 'bar'), fill = node('span', r[2] || '');
        fill.style.width = (most > 0 ? Math.round(r[1] / most * 100) : 0) + '%';
        bar.appendChild(fill);
        cell.appendChild(bar);
        tr.appendChild(cell);
        body.appendChild(tr);
      });
    }

    function render(s) {
      if (!s) { return; }
      var now = Date.parse(s.time);
      if (s.history) { history = s.history; }
      if (recent.length === 0 || recent[recent.length - 1][0] < now) {
        recent.push([now, s.peers.online, s.peers.network, s.relay ? s.relay.bytesPerSecond : 0]);
        if (recent.length > RECENT_MOST) { recent.shift(); }
      }
      setText('supernode-address', s.supernode.address);
      setText('supernode-key', s.supernode.key);
      setText('uptime', duration(s.supernode.uptimeSeconds));
      setText('peers-online', s.peers.online);
      setText('peers-network', s.peers.network);
      setText('sessions', s.peers.sessions);
      var t = s.traversals, done = t.direct + t.relayed;
      setText('traversals-direct', t.direct);
      setText('traversals-relayed', t.relayed);
      setText('traversals-failed', t.failed);
      setText('direct-share', done > 0 ? Math.round(t.direct / done * 100) + '%' : '\u2013');
      if (s.relay) {
        setText('relay-rate', bytes(s.relay.bytesPerSecond) + '/s');
        setText('relay-allocations', s.relay.allocations);
        setText('relay-total', bytes(s.relay.forwardedBytes));
      } else {
        setText('relay-rate', 'no relay');
      }
      var others = s.supernodes.filter(function (m) { return !m.isSelf; });
      var linked = others.filter(function (m) { return m.linkUp; }).length;
      setText('supernode-count', s.supernodes.length);
      setText('supernode-links', others.length === 0 ? 'alone (no network of supernodes)' : 'links up to ' + linked + ' of ' + others.length + ' others');

      var points = history.map(function (h) { return [Date.parse(h.time), h.peers, h.networkPeers, h.relayBytesPerSecond]; })
        .filter(function (p) { return p[0] < recent[0][0]; }).concat(recent);
      var series = [{ cls: 'here', area: true, points: points.map(function (p) { return [p[0], p[1]]; }) }];
      if (points.some(function (p) { return p[2] !== p[1]; })) {
        series.unshift({ cls: 'net', points: points.map(function (p) { return [p[0], p[2]]; }) });
      }
      chart('chart-peers', series, function (v) { return v % 1 === 0 ? String(v) : v.toFixed(1); });
      chart('chart-relay', [{ cls: 'relay', area: true, points: points.map(function (p) { return [p[0], p[3]]; }) }],
            axisBytes);

      var kinds = Object.keys(s.natTypes).filter(function (k) { return s.natTypes[k] > 0; });
      function rank(k) { var i = NAT.indexOf(k); return i < 0 ? NAT.length : i; }
      kinds.sort(function (a, b) { return rank(a) - rank(b) || (a < b ? -1 : 1); });
      bars('nat-types', kinds.map(function (k) { return [k, s.natTypes[k], '']; }));
      $('nat-empty').hidden = kinds.length > 0;
      var methods = METHODS.concat(Object.keys(t.methods).filter(function (m) { return METHODS.indexOf(m) < 0; }));
      bars('methods', methods.map(function (m) { return [m, t.methods[m] || 0, m === 'relay' ? 'relayed' : 'direct']; }));

      var body = $('supernodes');
      clear(body);
      s.supernodes.forEach(function (m) {
        var tr = node('tr');
        tr.setAttribute('data-key', m.key);
        var key = node('td'), code = node('code', '', m.key);
        key.appendChild(code);
        tr.appendChild(key);
        tr.appendChild(node('td', '', m.address.replace(/^peerway:\/\/[^@]*@/, '')));
        tr.appendChild(node('td', m.isSelf ? '' : (m.linkUp ? 'up' : 'down-text'), m.isSelf ? 'this one' : (m.linkUp ? 'up' : 'DOWN')));
        tr.appendChild(node('td', 'num', m.peers));
        tr.appendChild(node('td', 'num', m.relayAllocations));
        tr.appendChild(node('td', 'num', m.isSelf ? '\u2013' : (m.heartbeatAgeMillis / 1000).toFixed(1) + ' s ago'));
        body.appendChild(tr);
      });
      setText('updated', clock(now));
      updates += 1;
      document.body.setAttribute('data-updates', String(updates));
    }

    function state(text, cls) { var e = $('state'); e.textContent = text; e.className = 'state ' + cls; }

    try { render(JSON.parse($('initial').textContent)); } catch (e) { state('no data', 'down'); }
    if (!window.EventSource) { state('no live updates in this browser', 'down'); return; }
    var events = new EventSource('/dashboard/events');
    events.onmessage = function (e) { render(JSON.parse(e.data)); state('live', 'live'); };
    events.onerror = function () {
      if (events.readyState === 2) { state('session ended: reload to log in', 'down'); } else { state('reconnecting', 'down'); }
    };
    })();
    """#
}
