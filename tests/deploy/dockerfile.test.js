// deploy/Dockerfile: valid syntax, the build stage doing what scripts/test
// does, a runtime stage with the libraries the binaries load and nothing to
// build with, one target per service with the right entry point, ports and
// HEALTHCHECK, a non-root user.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const { DockerfileParser } = require('dockerfile-ast');
const { validate } = require('dockerfile-utils');
const lib = require('./lib');

const TEXT = lib.read('deploy/Dockerfile');

// The stages: name -> { base, instructions: [{ keyword, args }] }, with the
// ARG defaults declared before the first FROM substituted in the bases.
function stages(text) {
  const df = DockerfileParser.parse(text);
  const args = {};
  for (const a of df.getInitialARGs()) {
    const p = a.getProperty();
    args[p.getName()] = p.getValue();
  }
  const out = new Map();
  let cur = null;
  for (const i of df.getInstructions()) {
    const keyword = i.getKeyword();
    // Flags (--from=build, --interval=10s) first, as they were written.
    const flags = typeof i.getFlags === 'function' ? i.getFlags().map((f) => f.toString()) : [];
    const raw = [...flags, i.getArgumentsContent() || ''].join(' ');
    if (keyword === 'FROM') {
      const base = i.getImageName().replace(/\$\{(\w+)\}/g, (_, n) => args[n] ?? '');
      const tag = i.getImageTag();
      cur = { base: tag ? `${base}:${tag}` : base, from: i.getImage(), instructions: [] };
      const name = i.getBuildStage();
      assert.ok(name, `every stage is named (FROM ${raw})`);
      out.set(name, cur);
    } else if (cur) {
      // Continuation lines arrive joined with their indentation; squeeze it.
      cur.instructions.push({ keyword, args: raw.replace(/\s+/g, ' ').trim() });
    }
  }
  return out;
}

function all(stage, keyword) {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

// The packages of the apt-get install in a stage's RUN lines.
function aptPackages(stage) {
  const pkgs = [];
  for (const r of all(stage, 'RUN')) {
    const m = /apt-get install (.*?)(?:&&|$)/.exec(r.args);
    if (m) pkgs.push(...m[1].split(' ').filter((w) => w && !w.startsWith('-')));
  }
  return pkgs;
}

// A stage's settings as the next stage inherits them (ENV, USER, WORKDIR).
function inherited(st, name) {
  const chain = [];
  for (let s = st.get(name); s; s = st.get(s.from)) chain.unshift(s);
  const env = {};
  let user = null;
  for (const s of chain) {
    for (const i of s.instructions) {
      if (i.keyword === 'ENV') {
        for (const m of i.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]] = m[2];
      }
      if (i.keyword === 'USER') user = i.args;
    }
  }
  return { env, user };
}

const ST = stages(TEXT);

test('the linter finds no problem, and does find one in a broken copy', () => {
  assert.deepEqual(
    validate(TEXT).map((d) => `${d.range.start.line + 1}: ${d.message}`),
    [],
  );
  // The linter is live: an instruction it does not know is reported.
  const broken = TEXT.replace('WORKDIR /src', 'WORKDIRR /src');
  assert.ok(validate(broken).length > 0, 'a misspelt instruction is reported');
});

test('the build and runtime stages start from Debian 12', () => {
  for (const name of ['build', 'runtime']) {
    assert.ok(ST.has(name), `stage ${name}`);
    assert.match(ST.get(name).base, /^debian:12(-slim)?$/, `${name} base`);
  }
});

test('the build stage configures and builds exactly as scripts/test does', () => {
  const script = lib.read('scripts/test');
  // The main build; the fuzz targets' build (in "$build-fuzz", with clang) is for tests only.
  const lines = script.split('\n')
    .filter((l) => /^cmake /.test(l.trim()) && !l.includes('-fuzz'));
  assert.equal(lines.length, 2, 'scripts/test has one configure and one build line');
  // scripts/test's own variables: the build directory (build by default)
  // and extra arguments (none by default).
  const expected = lines.map((l) =>
    l.trim()
      .replace(/"\$build"/g, 'build')
      .replace(/\s*"\$\{cmake_args\[@\]\}"/, '')
      .replace(/\s+/g, ' '));
  const runs = all(ST.get('build'), 'RUN').map((r) => r.args);
  const cmakeRun = runs.find((r) => r.startsWith('cmake '));
  assert.ok(cmakeRun, 'a RUN with the cmake commands');
  assert.deepEqual(cmakeRun.split(' && ').map((c) => c.trim()), expected);
});

test('the build stage installs the build packages of scripts/lib/deps.sh, and no others', () => {
  const deps = execFileSync(
    'bash',
    ['-c', 'source scripts/lib/deps.sh && printf "%s\\n" "${AM_DEB_PACKAGES[@]}"'],
    { cwd: lib.SOURCE_DIR, encoding: 'utf8' },
  ).split('\n').filter(Boolean);
  // What scripts/test and scripts/up need besides building.
  const runOrTestOnly = new Set([
    'postgresql-15', 'postgresql-client-15', 'clang-format', 'curl', 'procps', 'iproute2',
    'jq', 'prometheus', 'chromium', 'nodejs', 'npm', 'clang', 'libclang-rt-14-dev', 'openssl',
  ]);
  const build = aptPackages(ST.get('build'));
  for (const p of build) assert.ok(deps.includes(p), `${p} is in scripts/lib/deps.sh`);
  for (const p of deps) {
    if (!runOrTestOnly.has(p)) assert.ok(build.includes(p), `deps.sh's ${p} is in the build stage`);
  }
});

test('the build stage copies every source folder the CMake build reads', () => {
  const copied = new Set(
    all(ST.get('build'), 'COPY').map((c) => c.args.split(' ')[0].replace(/\/$/, '')),
  );
  const needed = new Set(['CMakeLists.txt']);
  for (const d of fs.readdirSync(lib.SOURCE_DIR, { withFileTypes: true })) {
    if (d.isDirectory() && !d.name.startsWith('build') &&
        fs.existsSync(path.join(lib.SOURCE_DIR, d.name, 'CMakeLists.txt'))) needed.add(d.name);
  }
  // Folders the CMake files name directly, e.g. ${CMAKE_SOURCE_DIR}/web.
  for (const dir of needed) {
    const f = path.join(lib.SOURCE_DIR, dir, 'CMakeLists.txt');
    if (!fs.existsSync(f)) continue;
    for (const m of fs.readFileSync(f, 'utf8').matchAll(/\$\{CMAKE_SOURCE_DIR\}\/([\w-]+)/g)) {
      if (fs.existsSync(path.join(lib.SOURCE_DIR, m[1]))) needed.add(m[1]);
    }
  }
  for (const n of needed) assert.ok(copied.has(n), `COPY ${n}`);
});

test('the images ship every binary, stripped', () => {
  const built = fs.readdirSync(lib.BIN_DIR).filter((f) => /^athena-/.test(f));
  assert.ok(built.length >= 6, `binaries in ${lib.BIN_DIR}`);
  const strip = all(ST.get('build'), 'RUN').find((r) => r.args.includes('strip '));
  assert.ok(strip, 'a RUN that strips the binaries');
  assert.match(strip.args, /strip --strip-all/);
  for (const b of built) assert.ok(strip.args.includes(` ${b}`), `${b} is stripped and shipped`);
  const copy = all(ST.get('runtime'), 'COPY').map((c) => c.args);
  assert.ok(copy.some((c) => /--from=build \/out\/bin\/? \/usr\/local\/bin\/?/.test(c)),
    'runtime copies the stripped binaries');
});

test('the runtime stage installs the library packages the binaries load, and no -dev package', () => {
  const runtime = aptPackages(ST.get('runtime'));
  for (const p of runtime) assert.doesNotMatch(p, /-dev$|^build-essential$|^cmake$/, p);
  // soname -> the file ldd resolves it to, for every library a binary names.
  const files = new Map();
  for (const b of fs.readdirSync(lib.BIN_DIR).filter((f) => /^athena-/.test(f))) {
    const exe = path.join(lib.BIN_DIR, b);
    const needed = execFileSync('readelf', ['-d', exe], { encoding: 'utf8' })
      .split('\n').map((l) => /\(NEEDED\).*\[(.+)\]/.exec(l)).filter(Boolean).map((m) => m[1]);
    const ldd = execFileSync('ldd', [exe], { encoding: 'utf8' });
    for (const soname of needed) {
      // A sanitizer build (-DAM_SANITIZE) loads its runtimes; images are never built that way.
      if (/^lib(asan|ubsan|lsan|tsan)\.so/.test(soname)) continue;
      const m = new RegExp(`^\\s*${soname.replace(/[.+]/g, '\\$&')} => (\\S+)`, 'm').exec(ldd);
      assert.ok(m, `${b}: ldd resolves ${soname}`);
      files.set(soname, m[1]);
    }
  }
  // The package owning each, asked once for all; dpkg knows a file by the
  // path it installed, which may be the link or its target (merged /usr).
  const paths = [...new Set([...files.values()].flatMap((f) => [f, fs.realpathSync(f)]))];
  const owners = new Map();
  const out = spawnSync('dpkg', ['-S', ...paths], { encoding: 'utf8' }).stdout;
  for (const line of out.split('\n')) {
    const m = /^([^:\s]+)(?::\S+)?: (.+)$/.exec(line);
    if (m) owners.set(m[2], m[1]);
  }
  const wanted = new Set();
  for (const [soname, f] of files) {
    const owner = owners.get(f) || owners.get(fs.realpathSync(f));
    assert.ok(owner, `a Debian package owns ${soname} (${f})`);
    wanted.add(owner);
  }
  wanted.delete('libc6'); // part of every Debian image
  for (const p of ['libnng1', 'libpq5', 'libmicrohttpd12']) assert.ok(wanted.has(p), `found ${p}`);
  for (const p of wanted) assert.ok(runtime.includes(p), `runtime installs ${p}`);
});

test('every image runs as a non-root user given by number', () => {
  for (const [name] of ST) {
    if (name === 'build') continue;
    const { user } = inherited(ST, name);
    assert.ok(user, `${name} sets USER`);
    const [uid, gid] = user.split(':');
    assert.match(uid, /^\d+$/, `${name}: numeric uid (runAsNonRoot can check it)`);
    assert.notEqual(Number(uid), 0, `${name}: not root`);
    if (gid !== undefined) assert.notEqual(Number(gid), 0, `${name}: group not root`);
  }
});

test('each service target starts its binary, exposes its ports and checks its /health', () => {
  for (const svc of lib.SERVICES) {
    const st = ST.get(svc);
    assert.ok(st, `target ${svc}`);
    assert.equal(st.from, 'runtime', `${svc} is built on the runtime stage`);
    const binary = `athena-${svc}`;
    const [ep] = all(st, 'ENTRYPOINT');
    assert.ok(ep, `${svc} has an ENTRYPOINT`);
    assert.deepEqual(JSON.parse(ep.args), [`/usr/local/bin/${binary}`],
      `${svc}: exec-form entry point, no shell`);
    assert.equal(all(st, 'CMD').length, 0, `${svc}: no CMD (arguments come from the deployment)`);

    const { env } = inherited(ST, svc);
    const httpPort = lib.portOf(lib.effective(binary, env, 'LISTEN_ADDR'));
    const exposed = all(st, 'EXPOSE').flatMap((e) => e.args.split(' ')).map((p) => Number(p.split('/')[0]));
    assert.ok(exposed.includes(httpPort), `${svc} exposes its HTTP port ${httpPort}`);
    if (lib.binaryHelp(binary).env.has('METRICS_BUS_LISTEN')) {
      const bus = lib.portOf(lib.effective(binary, env, 'METRICS_BUS_LISTEN'));
      assert.ok(exposed.includes(bus), `${svc} exposes its bus port ${bus}`);
      const replay = lib.portOf(lib.effective(binary, env, 'METRICS_REPLAY_LISTEN'));
      assert.ok(exposed.includes(replay), `${svc} exposes its replay port ${replay}`);
    }
    // The simulator defaults to loopback, which nobody outside the container reaches.
    assert.doesNotMatch(lib.effective(binary, env, 'LISTEN_ADDR'), /^127\./,
      `${svc} listens beyond loopback`);

    const [hc] = all(st, 'HEALTHCHECK');
    assert.ok(hc, `${svc} has a HEALTHCHECK`);
    const cmd = /CMD (\[.*\])$/.exec(hc.args);
    assert.ok(cmd, `${svc}: exec-form HEALTHCHECK`);
    const argv = JSON.parse(cmd[1]);
    assert.equal(argv[0], 'curl');
    assert.ok(argv.includes('-f') || argv.some((a) => /^-[a-zA-Z]*f/.test(a)), 'curl fails on HTTP errors');
    assert.equal(argv.at(-1), `http://127.0.0.1:${httpPort}/health`, `${svc} health URL`);
  }
  const runtime = aptPackages(ST.get('runtime'));
  assert.ok(runtime.includes('curl'), 'the runtime stage has the curl the HEALTHCHECKs run');
});
