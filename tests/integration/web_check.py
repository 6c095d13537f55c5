#!/usr/bin/python3
"""The manager's web view against cellctl, over a running cell.

  web_check.py api     BASE_URL CELLCTL...
      every /api/ page equals cellctl's -o json of the same thing (less
      the fields that move between two reads); a write is refused with
      403 and changes nothing; then a few thousand malformed or random
      requests each get an answer below 500, and the manager still
      answers afterwards.
  web_check.py browser BASE_URL OUTDIR CELLCTL...
      the page in headless Chromium (Debian's chromium, driven by
      selenium): its node, cell and VM tables are cellctl's; a running
      VM's heat map refreshes by itself; once the VM stops, the map has
      one square per page with the homes, colours and copies that
      `cellctl vm pages -o json` and `--svg` give; a screenshot is left
      in OUTDIR/web.png. Exits 77 (skipped) when Chromium or selenium is
      not installed.

CELLCTL is the cellctl command with its --manager option. The browser
mode runs a VM named 'webmap' and deletes it at the end.
"""
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2',
           '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac']
# fields that change between two reads a moment apart
VOLATILE = {'heartbeat_age_ms', 'load1', 'mem_free_mb', 'uptime_ms',
            'state_since', 'vcpus_load'}


def fail(msg):
    print('FAIL: ' + msg)
    sys.exit(1)


def ctl(cmd, *args, check=True):
    r = subprocess.run(cmd + list(args), capture_output=True, text=True)
    if check and r.returncode:
        fail(f'cellctl {" ".join(args)}: exit {r.returncode}: {r.stderr}')
    return r


def ctl_json(cmd, *args):
    return json.loads(ctl(cmd, '-o', 'json', *args).stdout)


def http(base, path, method='GET'):
    req = urllib.request.Request(base + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def api(base, path):
    status, headers, body = http(base, path)
    if status != 200:
        fail(f'{path}: HTTP {status}: {body[:300]!r}')
    if not headers['Content-Type'].startswith('application/json'):
        fail(f'{path}: Content-Type {headers["Content-Type"]}')
    return json.loads(body)


def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in VOLATILE}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def same(what, web, cli):
    if strip(web) != strip(cli):
        fail(f'{what}: the web API and cellctl differ:\n web {json.dumps(strip(web))[:1500]}'
             f'\n ctl {json.dumps(strip(cli))[:1500]}')


def check_api(base, cmd):
    # The same as cellctl, read back to back; a node's state or a VM's
    # can change in between, so a difference is read again before it
    # counts.
    pairs = [('/api/nodes', ['node', 'list']), ('/api/cells', ['cell', 'list']),
             ('/api/vms', ['vm', 'list'])]
    nodes = ctl_json(cmd, 'node', 'list')['nodes']
    vms = ctl_json(cmd, 'vm', 'list')['vms']
    pairs += [(f'/api/nodes/{n["id"]}', ['node', 'info', n['id']]) for n in nodes]
    pairs += [(f'/api/vms/{v["name"]}', ['vm', 'info', v['name']]) for v in vms]
    pairs += [(f'/api/vms/{v["name"]}/pages', ['vm', 'pages', v['name']]) for v in vms]
    if not vms:
        fail('the cell has no VM to compare (the quickstart runs two)')
    for path, args in pairs:
        for attempt in range(5):
            web, cli = api(base, path), ctl_json(cmd, *args)
            if strip(web) == strip(cli):
                break
            time.sleep(0.3)
        same(path, web, cli)
        print(f'ok {path} == cellctl -o json {" ".join(args)}')
    st, cli = api(base, '/api/status'), ctl_json(cmd, 'status')
    for k in ('version', 'protocol_version', 'epoch', 'nodes', 'cells',
              'healthy', 'problems', 'agent_addr', 'ctl_addr'):
        if st[k] != cli[k]:
            fail(f'/api/status {k}: {st[k]!r}, cellctl status: {cli[k]!r}')
    print(f'ok /api/status == cellctl status (healthy: {st["healthy"]})')
    ev = api(base, '/api/events?limit=5')
    cli = ctl_json(cmd, 'events')
    if ev['events'] != cli['events'][:5]:
        fail(f'/api/events?limit=5 is not the first 5 of cellctl events')
    later = api(base, f'/api/events?after_id={ev["events"][-1]["id"]}&limit=1000')
    if later['events'] and later['events'][0]['id'] <= ev['events'][-1]['id']:
        fail('/api/events?after_id= returned an older event')
    print('ok /api/events (limit, after_id) == cellctl events')

    # writes: refused, nothing changes
    before = ctl_json(cmd, 'vm', 'list')
    for method, path in (('POST', '/api/vms'), ('DELETE', f'/api/vms/{vms[0]["name"]}'),
                         ('PUT', '/api/cells'), ('POST', '/')):
        status, _, body = http(base, path, method)
        want = 403 if path.startswith('/api/') else 405
        if status != want:
            fail(f'{method} {path}: HTTP {status}, want {want}: {body[:200]!r}')
        if want == 403 and b'read-only' not in body:
            fail(f'{method} {path}: the refusal does not say why: {body!r}')
    same('the VMs after refused writes', ctl_json(cmd, 'vm', 'list'), before)
    print('ok writes refused (403 under /api/, 405 for the page), nothing changed')

    # malformed requests: a 4xx each, with a JSON error under /api/
    for path, want in (('/api/nope', 404), ('/api/vms/-bad', 400),
                       ('/api/vms/' + 'x' * 200, 400), ('/api/vms/no-such-vm', 404),
                       ('/api/vms/a/b', 404), ('/api/nodes/no-such', 404),
                       ('/api/events?limit=0', 400), ('/api/events?limit=1001', 400),
                       ('/api/events?after_id=-1', 400), ('/api/events?x=1', 400),
                       ('/api/events?limit', 400), ('/api/vms?limit=3', 400),
                       ('/api/events?after_id=99999999999999999999999', 400),
                       ('/nope.html', 404), ('/../../etc/passwd', 404)):
        status, headers, body = http(base, path)
        if status != want:
            fail(f'GET {path}: HTTP {status}, want {want}: {body[:200]!r}')
        if path.startswith('/api/') and 'error' not in json.loads(body):
            fail(f'GET {path}: no error in {body!r}')
    print('ok malformed requests get 400 or 404 with the reason')
    fuzz(base, cmd)


def raw(host, port, data, timeout=5.0):
    """Sends data, returns the status code of the first response line
    (None when the server closed without one)."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        buf = b''
        while b'\r\n' not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    m = re.match(rb'HTTP/1\.[01] (\d{3})', buf)
    return int(m.group(1)) if m else None


KNOWN_METHODS = {'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH',
                 'TRACE', 'CONNECT'}


def fuzz(base, cmd, n=3000):
    host, port = re.match(r'http://([^:/]+):(\d+)', base).groups()
    port = int(port)
    rng = random.Random(int(os.environ.get('WEB_FUZZ_SEED', '1')))
    segs = ['api', 'vms', 'nodes', 'cells', 'events', 'status', 'pages', 'demo',
            'node1', '..', '.', '', '%00', '%2e%2e', '%2F', 'index.html', 'app.js',
            'x' * 70, 'a' * 5000, '\u00e9'.encode().decode('latin-1'), '-', '_x']
    keys = ['after_id', 'limit', 'since', '', 'x', 'limit=1', '%26']
    vals = ['0', '1', '1000', '1001', '-1', '18446744073709551615',
            '18446744073709551616', 'abc', '', '1e3', '0x10', ' 1', '99' * 30]
    methods = ['GET', 'GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS',
               'PATCH', 'TRACE', 'CONNECT', 'BREW', 'get']
    codes = {}
    for i in range(n):
        path = '/' + '/'.join(rng.choice(segs) for _ in range(rng.randint(0, 4)))
        if rng.random() < 0.5:
            qs = '&'.join(f'{rng.choice(keys)}={rng.choice(vals)}'
                          if rng.random() < 0.8 else rng.choice(keys)
                          for _ in range(rng.randint(1, 3)))
            path += '?' + qs
        if rng.random() < 0.05:
            path += '#' + rng.choice(segs)
        if rng.random() < 0.05:  # random bytes in the request line
            path = '/' + ''.join(chr(rng.randint(1, 255)) for _ in range(rng.randint(1, 40)))
        method = rng.choice(methods)
        line = f'{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n'
        if rng.random() < 0.05:
            line += 'Content-Length: 10\r\n\r\n0123456789'
        else:
            line += '\r\n'
        if rng.random() < 0.03:  # not HTTP at all
            data = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 300)))
        else:
            data = line.encode('latin-1')
        code = raw(host, port, data)
        codes[code] = codes.get(code, 0) + 1
        # 501 is HTTP's answer to a method it does not know, from evhttp
        unknown = method not in KNOWN_METHODS or not data.startswith(method.encode())
        if code is not None and code >= 500 and not (code == 501 and unknown):
            fail(f'fuzz request {i} ({data[:200]!r}) got HTTP {code}')
    # still serving, and the manager's RPC side too
    api(base, '/api/status')
    ctl_json(cmd, 'status')
    print(f'ok {n} random requests: answers {sorted(codes.items(), key=str)}; '
          'the manager still answers')


# ---------------------------------------------------------------- browser

def rgb(hex_colour):
    h = hex_colour.lstrip('#')
    return 'rgb({}, {}, {})'.format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


def best_home(g):
    best = 0
    for k, n in enumerate(g['homed']):
        if n > g['homed'][best]:
            best = k
    return best


def svg_squares(path):
    ns = {'s': 'http://www.w3.org/2000/svg'}
    out = []
    for g in ET.parse(path).getroot().findall('s:g', ns):
        if g.get('class') != 'range':
            continue
        fills = {r.get('fill') for r in g.findall('s:rect', ns)} - {'#eee'}
        out.append((int(g.get('data-first')), g.get('data-home'), fills,
                    g.find('s:path', ns) is not None))
    return out


def check_browser(base, outdir, cmd):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        print('SKIP: python3-selenium is not installed (deploy/install-deps '
              'installs it when the archive can be reached)')
        sys.exit(77)
    for exe in ('/usr/bin/chromium', '/usr/bin/chromedriver'):
        if not os.access(exe, os.X_OK):
            print(f'SKIP: {exe} is not installed (Debian packages chromium and '
                  'chromium-driver; deploy/install-deps installs them when the '
                  'archive can be reached)')
            sys.exit(77)
    opts = webdriver.ChromeOptions()
    opts.binary_location = '/usr/bin/chromium'
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu',
              '--disable-dev-shm-usage', '--window-size=1300,1500'):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=opts)
    vm_made = False
    try:
        wait = WebDriverWait(driver, 30, poll_frequency=0.2)
        driver.get(base + '/')
        wait.until(lambda d: int(d.find_element(By.TAG_NAME, 'body')
                                 .get_attribute('data-loaded') or 0) >= 1)

        # The page redraws its tables every second: read each in one
        # script run, never through element handles that go stale.
        def rows(table, key):
            return driver.execute_script(
                'return [...document.querySelectorAll("#" + arguments[0] + " tbody tr")]'
                '.map(r => [r.dataset[arguments[1]],'
                ' [...r.querySelectorAll("td")].map(td => td.textContent)]);',
                table, key)

        def settle(what, expect_fn, got_fn):
            deadline = time.time() + 15
            while True:
                want, got = expect_fn(), got_fn()
                if want == got:
                    return
                if time.time() > deadline:
                    fail(f'{what}: the page shows {got}, cellctl says {want}')
                time.sleep(0.5)

        settle('the node table',
               lambda: [(n['id'], n['state'], n['cell'] or '-', str(n['incarnation']))
                        for n in ctl_json(cmd, 'node', 'list')['nodes']],
               lambda: [(k, c[1], c[2], c[3]) for k, c in rows('nodes', 'node')])
        print('ok the node table is cellctl node list')
        settle('the cell table',
               lambda: [(c['name'], ', '.join(c['nodes']), str(c['nodes_up']))
                        for c in ctl_json(cmd, 'cell', 'list')['cells']],
               lambda: [(k, c[1], c[2]) for k, c in rows('cells', 'cell')])
        print('ok the cell table is cellctl cell list')

        # a VM of 1 MiB: 256 pages, one square each; its 3 vCPUs on 3
        # nodes sweep a small grid for a long time
        ctl(cmd, 'vm', 'delete', 'webmap', check=False)
        ctl(cmd, 'vm', 'create', 'webmap', '--cell=local', '--image=spmd',
            '--vcpus=3', '--memory=1M', '--placement=spread', '--start',
            '--', '96', '200000')
        vm_made = True
        settle('the VM table',
               lambda: [(v['name'], v['state'], v['spec']['cell'], str(len(v['vcpus'])))
                        for v in ctl_json(cmd, 'vm', 'list')['vms']],
               lambda: [(k, c[1], c[2], c[4]) for k, c in rows('vms', 'vm')])
        print('ok the VM table is cellctl vm list')

        driver.find_element(By.CSS_SELECTOR, '#vms tr[data-vm="webmap"] a').click()
        wait.until(lambda d: d.find_element(By.ID, 'vm-view').is_displayed())

        def rounds():
            t = driver.find_element(By.ID, 'vm-summary').text
            m = re.search(r'(\d+) sample rounds', t)
            return int(m.group(1)) if m else -1
        wait.until(lambda d: rounds() >= 1)
        r0, t0 = rounds(), time.time()
        WebDriverWait(driver, 30, poll_frequency=0.2).until(lambda d: rounds() > r0)
        print(f'ok the heat map refreshes by itself while the VM runs '
              f'(sample rounds {r0} -> {rounds()} in {time.time() - t0:.1f} s)')
        driver.save_screenshot(os.path.join(outdir, 'web-running.png'))

        ctl(cmd, 'vm', 'stop', 'webmap')
        settle('the stopped VM', lambda: 'stopped',
               lambda: dict(rows('vms', 'vm')).get('webmap', ['', ''])[1])
        pages = ctl_json(cmd, 'vm', 'pages', 'webmap')
        # the page polls every second: wait for it to show this map
        time.sleep(2.5)
        squares = driver.execute_script(
            'return [...document.querySelectorAll("#heatmap .range")].map(d => ({'
            'first: Number(d.dataset.first), home: d.dataset.home,'
            'bg: getComputedStyle(d).backgroundImage,'
            'corner: d.querySelector(".copies") !== null}));')
        legend = driver.execute_script(
            'return Object.fromEntries([...document.querySelectorAll("#legend [data-node]")]'
            '.map(e => [e.dataset.node,'
            ' getComputedStyle(e.querySelector(".swatch")).backgroundColor]));')
        if pages['range_pages'] != 1 or len(pages['ranges']) != 256:
            fail(f'want 256 ranges of one page for a 1 MiB VM, cellctl gives '
                 f'{len(pages["ranges"])} of {pages["range_pages"]}')
        if len(squares) != len(pages['ranges']):
            fail(f'{len(squares)} squares on the page, {len(pages["ranges"])} '
                 f'pages in cellctl vm pages')
        svg = os.path.join(outdir, 'webmap.svg')
        ctl(cmd, 'vm', 'pages', 'webmap', '--svg=' + svg)
        svgs = svg_squares(svg)
        homes = set()
        for i, (g, sq) in enumerate(zip(pages['ranges'], squares)):
            b = best_home(g)
            want_home = pages['map_nodes'][b] if sum(g['homed']) else ''
            homes.add(want_home)
            first, home = sq['first'], sq['home']
            if (first, home) != (g['first'], want_home):
                fail(f'square {i}: page {first} home {home!r}; cellctl: page '
                     f'{g["first"]} home {want_home!r}')
            bg = sq['bg']
            colours = {PALETTE[k % len(PALETTE)] for k, n in enumerate(g['homed']) if n}
            for c in colours:
                if rgb(c) not in bg:
                    fail(f'square {i} (page {first}): colour {c} of its home '
                         f'missing from {bg}')
            corner = sq['corner']
            if corner != bool(g['replicated']):
                fail(f'square {i}: copies corner {corner}, cellctl replicated '
                     f'{g["replicated"]}')
            sf, sh, sfills, scorner = svgs[i]
            if (sf, sh, sfills, scorner) != (first, home, colours, corner):
                fail(f'square {i}: the page has ({first}, {home}, {colours}, '
                     f'{corner}), the SVG ({sf}, {sh}, {sfills}, {scorner})')
        for k, n in enumerate(pages['map_nodes']):
            if legend.get(n) != rgb(PALETTE[k % len(PALETTE)]):
                fail(f'the legend colour of {n} is {legend.get(n)}, not '
                     f'{rgb(PALETTE[k % len(PALETTE)])}')
        print(f'ok {len(squares)} squares, one per page, with the homes '
              f'({", ".join(sorted(h for h in homes if h))}) and colours of '
              f'cellctl vm pages -o json and --svg; the legend names each node')
        shot = os.path.join(outdir, 'web.png')
        driver.execute_script('document.getElementById("vm-view").scrollIntoView()')
        driver.save_screenshot(shot)
        print(f'screenshot: {shot}')
    finally:
        driver.quit()
        if vm_made:
            ctl(cmd, 'vm', 'kill', 'webmap', check=False)
            ctl(cmd, 'vm', 'delete', 'webmap', check=False)


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ('api', 'browser'):
        print(__doc__)
        sys.exit(2)
    if sys.argv[1] == 'api':
        check_api(sys.argv[2].rstrip('/'), sys.argv[3:])
    else:
        check_browser(sys.argv[2].rstrip('/'), sys.argv[3], sys.argv[4:])
    print('PASS')


if __name__ == '__main__':
    main()
