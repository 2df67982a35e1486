// deploy/k8s: the base and each overlay render with kubectl kustomize, every
// object validates against the Kubernetes OpenAPI schemas, and the rendered
// manifests have the properties the deployment relies on.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('./lib');

const RENDERINGS = {
  production: 'deploy/k8s',
  dev: 'deploy/k8s/overlays/dev',
  'external-postgres': 'deploy/k8s/overlays/external-postgres',
};
const rendered = {};
for (const [name, dir] of Object.entries(RENDERINGS)) rendered[name] = lib.render(dir);

// The kubernetes-models class of an object: kubernetes-models/apps/v1/Deployment.
function modelOf(obj) {
  const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : [null, obj.apiVersion];
  const rel = group ? `${group}/${version}/${obj.kind}` : `${version}/${obj.kind}`;
  const file = path.join(path.dirname(require.resolve('kubernetes-models/package.json')), rel);
  if (!fs.existsSync(`${file}.js`) && !fs.existsSync(path.join(file, 'index.js'))) return null;
  return require(`kubernetes-models/${rel}`)[obj.kind];
}

function podSpecs(objects) {
  return lib.workloads(objects).map((w) => ({ workload: w, pod: w.spec.template }));
}

function allContainers(pod) {
  return [
    ...(pod.spec.initContainers || []).map((c) => ({ c, init: true })),
    ...pod.spec.containers.map((c) => ({ c, init: false })),
  ];
}

// The literal value of a container's env variable, following ConfigMap and
// Secret references into the rendered objects.
function envValues(objects, container) {
  const out = {};
  for (const e of container.env || []) {
    if (e.value !== undefined) out[e.name] = e.value;
    else if (e.valueFrom && e.valueFrom.configMapKeyRef) {
      const ref = e.valueFrom.configMapKeyRef;
      const cm = lib.find(objects, 'ConfigMap', ref.name);
      out[e.name] = cm && cm.data ? cm.data[ref.key] : undefined;
    } else if (e.valueFrom && e.valueFrom.secretKeyRef) {
      const ref = e.valueFrom.secretKeyRef;
      const s = lib.find(objects, 'Secret', ref.name);
      const v = s && s.data && s.data[ref.key];
      out[e.name] = v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
    }
  }
  return out;
}

// The container port a probe or Service names (a number or a port name).
function resolvePort(container, port) {
  if (typeof port === 'number') return port;
  const p = (container.ports || []).find((x) => x.name === port);
  return p ? p.containerPort : undefined;
}

function workload(objects, name) {
  return lib.workloads(objects).find((w) => w.metadata.name === name);
}

function mainContainer(w) {
  return w.spec.template.spec.containers[0];
}

function replicasOf(w) {
  return w.spec.replicas === undefined ? 1 : w.spec.replicas;
}

for (const [name, objects] of Object.entries(rendered)) {
  test(`${name}: every object validates against the Kubernetes schemas`, () => {
    assert.ok(objects.length > 10, 'the rendering has objects');
    for (const o of objects) {
      const Model = modelOf(o);
      assert.ok(Model, `${o.apiVersion} ${o.kind} is a known Kubernetes type`);
      let obj = o;
      if (o.kind === 'Secret' && o.data) {
        // kustomize folds long base64 values over lines; the API server's
        // decoder (Go's encoding/base64) skips the line breaks, the schema's
        // pattern does not.
        const data = Object.fromEntries(Object.entries(o.data).map(([k, v]) => [k, v.replace(/\s+/g, '')]));
        obj = { ...o, data };
      }
      assert.doesNotThrow(() => new Model(obj).validate(), `${o.kind}/${o.metadata.name}`);
    }
  });

  test(`${name}: the namespace is athena-admin, labelled for the restricted Pod Security Standard`, () => {
    const ns = lib.find(objects, 'Namespace', lib.NAMESPACE);
    assert.ok(ns, 'Namespace athena-admin');
    assert.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
    for (const o of objects) {
      if (o.kind !== 'Namespace') assert.equal(o.metadata.namespace, lib.NAMESPACE, `${o.kind}/${o.metadata.name}`);
    }
  });

  test(`${name}: every container meets the restricted profile and has requests and limits`, () => {
    for (const { workload: w, pod } of podSpecs(objects)) {
      const ps = pod.spec.securityContext || {};
      assert.equal(pod.spec.hostNetwork || pod.spec.hostPID || pod.spec.hostIPC || false, false);
      for (const { c } of allContainers(pod)) {
        const where = `${w.metadata.name}/${c.name}`;
        const sc = c.securityContext || {};
        assert.equal(sc.runAsNonRoot ?? ps.runAsNonRoot, true, `${where}: runAsNonRoot`);
        const uid = sc.runAsUser ?? ps.runAsUser;
        assert.ok(uid === undefined || uid > 0, `${where}: runAsUser not 0`);
        assert.equal(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
        assert.equal(sc.privileged || false, false, `${where}: not privileged`);
        assert.deepEqual(sc.capabilities && sc.capabilities.drop, ['ALL'], `${where}: drops ALL capabilities`);
        assert.deepEqual((sc.capabilities && sc.capabilities.add) || [], [], `${where}: adds none`);
        assert.equal((sc.seccompProfile || ps.seccompProfile || {}).type, 'RuntimeDefault', `${where}: seccomp`);
        assert.equal(sc.readOnlyRootFilesystem, true, `${where}: read-only root filesystem`);
        for (const r of ['cpu', 'memory']) {
          const req = c.resources && c.resources.requests && c.resources.requests[r];
          const lim = c.resources && c.resources.limits && c.resources.limits[r];
          assert.ok(req && lim, `${where}: ${r} request and limit`);
          assert.ok(lib.quantity(req) <= lib.quantity(lim), `${where}: ${r} request <= limit`);
        }
        // No shell anywhere: commands are exec form with a real program.
        for (const argv of [c.command, c.lifecycle && c.lifecycle.preStop && c.lifecycle.preStop.exec &&
          c.lifecycle.preStop.exec.command]) {
          if (argv) assert.doesNotMatch(argv[0], /(^|\/)(ba|da)?sh$/, `${where}: no shell`);
        }
      }
      // Writable places are volumes of the pod, never the image.
      for (const { c } of allContainers(pod)) {
        for (const m of c.volumeMounts || []) {
          const v = (pod.spec.volumes || []).find((x) => x.name === m.name) ||
            (w.spec.volumeClaimTemplates || []).find((x) => x.metadata.name === m.name);
          assert.ok(v, `${w.metadata.name}/${c.name}: volume ${m.name} exists`);
        }
      }
    }
  });

  test(`${name}: our containers read only variables and flags their binary knows`, () => {
    let checked = 0;
    for (const { workload: w, pod } of podSpecs(objects)) {
      for (const { c } of allContainers(pod)) {
        const svc = lib.serviceOfImage(c.image);
        if (!svc) continue;
        const help = lib.binaryHelp(`athena-${svc}`);
        assert.equal(c.command, undefined, `${w.metadata.name}/${c.name}: the image's entry point runs`);
        for (const e of c.env || []) {
          assert.ok(help.env.has(e.name), `${w.metadata.name}/${c.name}: athena-${svc} reads ${e.name}`);
          checked++;
        }
        assert.deepEqual(c.envFrom || [], [], `${w.metadata.name}/${c.name}: variables named one by one`);
        for (const a of c.args || []) {
          const flag = a.split('=')[0];
          if (flag.startsWith('--')) assert.ok(help.flags.has(flag), `athena-${svc} takes ${flag}`);
        }
        // Every reference resolves to a key that is there.
        const values = envValues(objects, c);
        for (const e of c.env || []) {
          if (e.valueFrom) assert.notEqual(values[e.name], undefined, `${w.metadata.name}/${c.name}: ${e.name} resolves`);
        }
      }
    }
    assert.ok(checked > 20, 'variables were checked');
  });

  test(`${name}: probes on /health (liveness) and /ready (readiness) at the port the binary serves`, () => {
    for (const { workload: w, pod } of podSpecs(objects)) {
      for (const c of pod.spec.containers) {
        const where = `${w.metadata.name}/${c.name}`;
        assert.ok(c.livenessProbe && c.readinessProbe, `${where}: liveness and readiness probes`);
        const svc = lib.serviceOfImage(c.image);
        if (!svc) continue;
        const binary = `athena-${svc}`;
        const port = lib.portOf(lib.effective(binary, envValues(objects, c), 'LISTEN_ADDR'));
        assert.ok((c.ports || []).some((p) => p.containerPort === port), `${where}: declares port ${port}`);
        for (const [probe, p] of [['liveness', '/health'], ['readiness', '/ready'], ['startup', '/health']]) {
          const pr = c[`${probe}Probe`];
          if (!pr && probe === 'startup') continue;
          assert.ok(pr.httpGet, `${where}: ${probe} is an HTTP GET`);
          assert.equal(pr.httpGet.path, p, `${where}: ${probe} path`);
          assert.equal(resolvePort(c, pr.httpGet.port), port, `${where}: ${probe} port`);
        }
        // Prometheus finds /metrics on the same port.
        const a = pod.metadata.annotations || {};
        assert.equal(a['prometheus.io/scrape'], 'true', `${where}: scrape annotation`);
        assert.equal(Number(a['prometheus.io/port']), port, `${where}: scrape port`);
        assert.equal(a['prometheus.io/path'], '/metrics', `${where}: scrape path`);
      }
    }
  });

  test(`${name}: every Service selects pods and targets ports they declare`, () => {
    for (const s of objects.filter((o) => o.kind === 'Service')) {
      const pods = podSpecs(objects).filter(({ pod }) => lib.selects(lib.serviceSelector(s), pod.metadata.labels));
      assert.ok(pods.length > 0, `Service ${s.metadata.name} selects pods`);
      for (const p of s.spec.ports) {
        assert.ok(p.name, `Service ${s.metadata.name}: named port (ServiceMonitor endpoints use names)`);
        for (const { pod } of pods) {
          const ok = pod.spec.containers.some((c) => resolvePort(c, p.targetPort ?? p.port) !== undefined);
          assert.ok(ok, `Service ${s.metadata.name}: target port ${p.targetPort} is declared`);
        }
      }
    }
    // Workload selectors match their own templates.
    for (const w of lib.workloads(objects)) {
      assert.ok(lib.selects(w.spec.selector, w.spec.template.metadata.labels), `${w.metadata.name} selector`);
    }
  });

  test(`${name}: publishers dial every collector by its StatefulSet pod name, bus and replay ports`, () => {
    const sts = lib.find(objects, 'StatefulSet', 'athena-collector');
    assert.ok(sts, 'StatefulSet athena-collector');
    const svc = lib.find(objects, 'Service', sts.spec.serviceName);
    assert.ok(svc, `its governing Service ${sts.spec.serviceName}`);
    assert.equal(svc.spec.clusterIP, 'None', 'the Service is headless');
    assert.equal(svc.spec.publishNotReadyAddresses, true, 'names resolve while the database is away');
    assert.ok(lib.selects(lib.serviceSelector(svc), sts.spec.template.metadata.labels));
    const collector = mainContainer(sts);
    const busPort = lib.portOf(lib.effective('athena-collector', envValues(objects, collector), 'METRICS_BUS_LISTEN'));
    const replayPort = lib.portOf(lib.effective('athena-collector', envValues(objects, collector), 'METRICS_REPLAY_LISTEN'));
    for (const port of [busPort, replayPort]) {
      assert.ok(svc.spec.ports.some((p) => p.port === port && resolvePort(collector, p.targetPort) === port),
        `the Service carries the port ${port}`);
    }
    const expected = [], expectedReplay = [];
    for (let i = 0; i < replicasOf(sts); i++) {
      const host = `${sts.metadata.name}-${i}.${svc.metadata.name}.${lib.NAMESPACE}.svc.cluster.local`;
      expected.push(`tcp://${host}:${busPort}`);
      expectedReplay.push(`tcp://${host}:${replayPort}`);
    }
    let publishers = 0;
    for (const { workload: w, pod } of podSpecs(objects)) {
      for (const c of pod.spec.containers) {
        const s = lib.serviceOfImage(c.image);
        if (!s || !lib.binaryHelp(`athena-${s}`).env.has('METRICS_BUS_URLS')) continue;
        const urls = envValues(objects, c).METRICS_BUS_URLS;
        assert.ok(urls, `${w.metadata.name} sets METRICS_BUS_URLS`);
        assert.deepEqual(urls.split(','), expected, `${w.metadata.name}: one URL per collector`);
        const replay = envValues(objects, c).METRICS_REPLAY_URLS;
        assert.ok(replay, `${w.metadata.name} sets METRICS_REPLAY_URLS`);
        assert.deepEqual(replay.split(','), expectedReplay, `${w.metadata.name}: one replay URL per collector`);
        publishers++;
      }
    }
    assert.equal(publishers, 2, 'the gateway and the orchestrator publish');
  });

  test(`${name}: migrations run in an init container before the collectors and the admin-api start`, () => {
    for (const n of ['athena-collector', 'athena-admin-api']) {
      const w = workload(objects, n);
      assert.ok(w, n);
      const init = (w.spec.template.spec.initContainers || []).find((c) => (c.args || []).includes('--migrate'));
      assert.ok(init, `${n}: an init container runs --migrate`);
      assert.equal(lib.serviceOfImage(init.image), 'collector', `${n}: with the collector's image`);
      const initDb = init.env.find((e) => e.name === 'DATABASE_URL');
      const mainDb = mainContainer(w).env.find((e) => e.name === 'DATABASE_URL');
      assert.ok(initDb && initDb.valueFrom && initDb.valueFrom.secretKeyRef, `${n}: init DATABASE_URL from a Secret`);
      assert.ok(mainDb && mainDb.valueFrom && mainDb.valueFrom.secretKeyRef, `${n}: DATABASE_URL from a Secret`);
      assert.deepEqual(initDb.valueFrom, mainDb.valueFrom, `${n}: the same database`);
    }
  });

  test(`${name}: the admin-api is athena-admin-backend:8080, the URL the orchestrator uses`, () => {
    const svc = lib.find(objects, 'Service', 'athena-admin-backend');
    assert.ok(svc, 'Service athena-admin-backend');
    const admin = workload(objects, 'athena-admin-api');
    assert.ok(lib.selects(lib.serviceSelector(svc), admin.spec.template.metadata.labels));
    const port = svc.spec.ports.find((p) => p.port === 8080);
    assert.ok(port, 'port 8080');
    const adminPort = lib.portOf(lib.effective('athena-admin-api', envValues(objects, mainContainer(admin)), 'LISTEN_ADDR'));
    assert.equal(resolvePort(mainContainer(admin), port.targetPort), adminPort, 'reaches the admin-api');
    const orch = mainContainer(workload(objects, 'athena-orchestrator'));
    assert.equal(envValues(objects, orch).ADMIN_API_URL,
      `http://athena-admin-backend.${lib.NAMESPACE}.svc.cluster.local:8080`);
    for (const [n, port] of [['athena-gateway', 8000], ['athena-orchestrator', 8001]]) {
      const s = lib.find(objects, 'Service', n);
      assert.ok(s && s.spec.ports.some((p) => p.port === port), `Service ${n} on ${port}`);
    }
  });

  test(`${name}: graceful termination leaves time to store or finish what is held`, () => {
    const preStopSeconds = (c) => {
      const cmd = c.lifecycle && c.lifecycle.preStop && c.lifecycle.preStop.exec && c.lifecycle.preStop.exec.command;
      return cmd && /(^|\/)sleep$/.test(cmd[0]) ? Number(cmd[1]) : 0;
    };
    const cases = [
      ['athena-collector', 'athena-collector', (v) => Number(lib.effective('athena-collector', v, 'COLLECTOR_SHUTDOWN_TIMEOUT_MS')) / 1000],
      ['athena-gateway', 'athena-gateway', (v) => Number(lib.effective('athena-gateway', v, 'GATEWAY_TIMEOUT_S')) +
        Number(lib.effective('athena-gateway', v, 'METRICS_LINGER_MS')) / 1000],
      ['athena-orchestrator', 'athena-orchestrator', (v) => Number(lib.effective('athena-orchestrator', v, 'ORCH_QUERY_TIMEOUT_S')) +
        Number(lib.effective('athena-orchestrator', v, 'METRICS_LINGER_MS')) / 1000],
    ];
    for (const [n, , need] of cases) {
      const w = workload(objects, n);
      const c = mainContainer(w);
      const grace = w.spec.template.spec.terminationGracePeriodSeconds ?? 30;
      const want = preStopSeconds(c) + need(envValues(objects, c));
      assert.ok(grace >= want, `${n}: terminationGracePeriodSeconds ${grace} >= ${want}`);
    }
    const collector = mainContainer(workload(objects, 'athena-collector'));
    assert.ok(preStopSeconds(collector) > 0, 'the collector has a preStop hook');
  });

  test(`${name}: the collector's memory limit holds its queue bound`, () => {
    const c = mainContainer(workload(objects, 'athena-collector'));
    const queueMiB = Number(lib.effective('athena-collector', envValues(objects, c), 'COLLECTOR_QUEUE_MAX_MIB'));
    // docs/BENCHMARKS.md: the peak RSS is the queue bound plus about 20 MiB.
    const limit = lib.quantity(c.resources.limits.memory) / 1024 ** 2;
    assert.ok(limit >= queueMiB + 20, `memory limit ${limit} MiB >= queue ${queueMiB} MiB + 20 MiB`);
  });

  test(`${name}: the collector writes its spool to a volume, not the read-only root`, () => {
    const sts = workload(objects, 'athena-collector');
    const c = mainContainer(sts);
    const spool = envValues(objects, c).COLLECTOR_SPOOL_DIR ||
      path.posix.join(c.workingDir || '/', '.data/spool');
    const mount = (c.volumeMounts || []).find((m) => spool === m.mountPath || spool.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `a volume holds ${spool}`);
    assert.notEqual(mount.readOnly, true, 'writable');
  });
}

// NetworkPolicy evaluation, for pods of the namespace and of other namespaces.
function allowed(objects, src, dstLabels, port) {
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy' &&
    (o.spec.policyTypes || ['Ingress']).includes('Ingress') && lib.selects(o.spec.podSelector, dstLabels));
  if (policies.length === 0) return true; // not isolated
  return policies.some((p) => (p.spec.ingress || []).some((rule) => {
    const portOk = !rule.ports || rule.ports.some((rp) => rp.port === port);
    const fromOk = !rule.from || rule.from.some((peer) => {
      if (peer.namespaceSelector) {
        const nsOk = lib.selects(peer.namespaceSelector, { 'kubernetes.io/metadata.name': src.namespace });
        return nsOk && (!peer.podSelector || lib.selects(peer.podSelector, src.labels));
      }
      if (peer.podSelector) return src.namespace === lib.NAMESPACE && lib.selects(peer.podSelector, src.labels);
      return false;
    });
    return portOk && fromOk;
  }));
}

for (const name of ['production', 'dev']) {
  test(`${name}: network policies allow what the services need and nothing more`, () => {
    const objects = rendered[name];
    const labels = (n) => workload(objects, n).spec.template.metadata.labels;
    const pod = (n) => ({ namespace: lib.NAMESPACE, labels: labels(n) });
    const ours = ['athena-collector', 'athena-admin-api', 'athena-gateway', 'athena-orchestrator', 'athena-postgres'];

    const deny = objects.find((o) => o.kind === 'NetworkPolicy' && Object.keys(o.spec.podSelector).length === 0);
    assert.ok(deny && deny.spec.policyTypes.includes('Ingress') && !(deny.spec.ingress || []).length,
      'a default deny of ingress');
    // Every policy and every peer selects pods that exist.
    for (const p of objects.filter((o) => o.kind === 'NetworkPolicy')) {
      if (p === deny) continue;
      assert.ok(lib.workloads(objects).some((w) => lib.selects(p.spec.podSelector, w.spec.template.metadata.labels)),
        `${p.metadata.name} selects pods`);
      for (const rule of p.spec.ingress || []) {
        for (const peer of rule.from || []) {
          if (!peer.podSelector || peer.namespaceSelector || !Object.keys(peer.podSelector).length) continue;
          assert.ok(lib.workloads(objects).some((w) => lib.selects(peer.podSelector, w.spec.template.metadata.labels)),
            `${p.metadata.name}: peer ${JSON.stringify(peer.podSelector)} selects pods`);
        }
      }
    }

    const collector = mainContainer(workload(objects, 'athena-collector'));
    const bus = lib.portOf(lib.effective('athena-collector', envValues(objects, collector), 'METRICS_BUS_LISTEN'));
    const replay = lib.portOf(lib.effective('athena-collector', envValues(objects, collector), 'METRICS_REPLAY_LISTEN'));
    for (const n of ours) {
      const want = n === 'athena-gateway' || n === 'athena-orchestrator';
      assert.equal(allowed(objects, pod(n), labels('athena-collector'), bus), want, `${n} -> collector bus`);
      assert.equal(allowed(objects, pod(n), labels('athena-collector'), replay), want, `${n} -> collector replay`);
    }
    assert.equal(allowed(objects, { namespace: 'default', labels: labels('athena-gateway') }, labels('athena-collector'), bus),
      false, 'a gateway-like pod elsewhere -> collector bus');

    for (const n of ours) {
      const want = n === 'athena-collector' || n === 'athena-admin-api';
      assert.equal(allowed(objects, pod(n), labels('athena-postgres'), 5432), want, `${n} -> postgres`);
    }

    const adminPort = lib.portOf(lib.effective('athena-admin-api',
      envValues(objects, mainContainer(workload(objects, 'athena-admin-api'))), 'LISTEN_ADDR'));
    for (const n of ours) assert.ok(allowed(objects, pod(n), labels('athena-admin-api'), adminPort), `${n} -> admin-api`);
    assert.ok(allowed(objects, { namespace: lib.NAMESPACE, labels: { app: 'anything' } }, labels('athena-admin-api'), adminPort),
      'any pod of the namespace -> admin-api');
    assert.ok(allowed(objects, { namespace: 'ingress-nginx', labels: {} }, labels('athena-admin-api'), adminPort),
      'ingress controller -> admin-api');
    assert.equal(allowed(objects, { namespace: 'default', labels: {} }, labels('athena-admin-api'), adminPort), false,
      'another namespace -> admin-api');

    // Prometheus reaches every /metrics port, and nothing else.
    for (const n of ['athena-collector', 'athena-admin-api', 'athena-gateway', 'athena-orchestrator']) {
      const port = Number(workload(objects, n).spec.template.metadata.annotations['prometheus.io/port']);
      assert.ok(allowed(objects, { namespace: 'monitoring', labels: {} }, labels(n), port), `prometheus -> ${n}:${port}`);
    }
    assert.equal(allowed(objects, { namespace: 'monitoring', labels: {} }, labels('athena-collector'), bus), false,
      'prometheus -> collector bus');
  });
}

test('production: two admin-api replicas, two collectors kept at one or more through disruptions', () => {
  const objects = rendered.production;
  assert.equal(replicasOf(workload(objects, 'athena-admin-api')), 2);
  const sts = workload(objects, 'athena-collector');
  assert.equal(replicasOf(sts), 2);
  const pdb = objects.find((o) => o.kind === 'PodDisruptionBudget' &&
    lib.selects(o.spec.selector, sts.spec.template.metadata.labels));
  assert.ok(pdb, 'a PodDisruptionBudget covers the collectors');
  assert.ok(pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < replicasOf(sts), 'minAvailable 1');
});

test('dev: one replica of everything, smaller limits, the simulator behind OLLAMA_URL', () => {
  const dev = rendered.dev;
  const prod = rendered.production;
  for (const w of lib.workloads(dev)) assert.equal(replicasOf(w), 1, `${w.metadata.name} replicas`);
  assert.equal(dev.filter((o) => o.kind === 'PodDisruptionBudget').length, 0, 'no budget blocks a drain');
  for (const w of lib.workloads(prod)) {
    const d = workload(dev, w.metadata.name);
    for (const c of w.spec.template.spec.containers) {
      const dc = d.spec.template.spec.containers.find((x) => x.name === c.name);
      assert.ok(lib.quantity(dc.resources.limits.memory) < lib.quantity(c.resources.limits.memory),
        `${w.metadata.name}/${c.name}: smaller memory limit`);
    }
  }
  const gw = mainContainer(workload(dev, 'athena-gateway'));
  const url = new URL(envValues(dev, gw).OLLAMA_URL);
  const svcName = url.hostname.split('.')[0];
  const svc = lib.find(dev, 'Service', svcName);
  assert.ok(svc, `Service ${svcName} for ${url}`);
  const sim = workload(dev, 'athena-ollama-sim');
  assert.ok(lib.selects(lib.serviceSelector(svc), sim.spec.template.metadata.labels));
  const port = svc.spec.ports.find((p) => p.port === Number(url.port));
  assert.equal(resolvePort(mainContainer(sim), port.targetPort),
    lib.portOf(lib.effective('athena-ollama-sim', envValues(dev, mainContainer(sim)), 'LISTEN_ADDR')));
  for (const n of ['athena-gateway', 'athena-orchestrator']) {
    assert.ok(allowed(dev, { namespace: lib.NAMESPACE, labels: workload(dev, n).spec.template.metadata.labels },
      sim.spec.template.metadata.labels, Number(url.port)), `${n} -> simulator`);
  }
});

test('production: DATABASE_URL points at the in-cluster PostgreSQL', () => {
  const objects = rendered.production;
  const pg = workload(objects, 'athena-postgres');
  assert.ok(pg && pg.spec.volumeClaimTemplates && pg.spec.volumeClaimTemplates.length, 'PostgreSQL keeps its data on a PVC');
  assert.match(mainContainer(pg).image, /^postgres:15/);
  const url = new URL(envValues(objects, mainContainer(workload(objects, 'athena-collector'))).DATABASE_URL);
  const svc = lib.find(objects, 'Service', url.hostname.split('.')[0]);
  assert.ok(svc && lib.selects(lib.serviceSelector(svc), pg.spec.template.metadata.labels), `${url.hostname} is the PostgreSQL Service`);
  assert.ok(svc.spec.ports.some((p) => p.port === Number(url.port || 5432)));
  const pgEnv = envValues(objects, mainContainer(pg));
  assert.equal(decodeURIComponent(url.username), pgEnv.POSTGRES_USER, 'the role PostgreSQL is initialised with');
  assert.equal(decodeURIComponent(url.password), pgEnv.POSTGRES_PASSWORD, 'and its password');
  assert.equal(url.pathname.slice(1), pgEnv.POSTGRES_DB, 'and its database');
});

test('external-postgres: no PostgreSQL in the cluster, DATABASE_URL from the Secret', () => {
  const objects = rendered['external-postgres'];
  assert.equal(objects.filter((o) => /postgres/.test(o.metadata.name)).length, 0, 'no PostgreSQL objects');
  for (const n of ['athena-collector', 'athena-admin-api']) {
    const url = envValues(objects, mainContainer(workload(objects, n))).DATABASE_URL;
    assert.match(url, /^postgres(ql)?:\/\//, `${n}: DATABASE_URL`);
    assert.doesNotMatch(url, /athena-postgres/, `${n}: not the in-cluster server`);
  }
});

test('the images are the Dockerfile targets, all of one tag', () => {
  const dockerfile = lib.read('deploy/Dockerfile');
  const tags = new Set();
  for (const objects of Object.values(rendered)) {
    for (const { pod } of podSpecs(objects)) {
      for (const { c } of allContainers(pod)) {
        const svc = lib.serviceOfImage(c.image);
        if (!svc) continue;
        assert.match(dockerfile, new RegExp(`^FROM runtime AS ${svc}$`, 'm'), `a Dockerfile target ${svc}`);
        const tag = /:([^:/]+)$/.exec(c.image);
        assert.ok(tag, `${c.image} has a tag`);
        tags.add(tag[1]);
      }
    }
  }
  assert.equal(tags.size, 1, `one tag: ${[...tags]}`);
});
