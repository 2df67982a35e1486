// Helpers shared by the checks of deploy/: where things are, what each
// binary reads (from its --help), the rendered manifests, label selectors.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const YAML = require('yaml');

const SOURCE_DIR = process.env.AM_SOURCE_DIR || path.resolve(__dirname, '..', '..');
const BIN_DIR = process.env.AM_BIN_DIR || path.join(SOURCE_DIR, 'build', 'bin');
const KUBECTL = process.env.KUBECTL || 'kubectl';
const NAMESPACE = 'athena-admin';

// The images the deployment runs, each named after the binary it starts.
const SERVICES = ['collector', 'admin-api', 'gateway', 'orchestrator', 'ollama-sim'];

function read(rel) {
  return fs.readFileSync(path.join(SOURCE_DIR, rel), 'utf8');
}

const helpCache = new Map();

/*
 * What a binary reads, from its own --help: env variable -> { flag, default }
 * and the set of its flags. The settings tables print one option a line:
 *   --queue-max-mib VALUE   text [1..4096] (default: 32) [env COLLECTOR_QUEUE_MAX_MIB]
 */
function binaryHelp(binary) {
  if (helpCache.has(binary)) return helpCache.get(binary);
  const exe = path.join(BIN_DIR, binary);
  if (!fs.existsSync(exe)) throw new Error(`${exe} not found: build first (scripts/test does)`);
  const text = execFileSync(exe, ['--help'], { encoding: 'utf8' });
  const env = new Map();
  const flags = new Set();
  for (const line of text.split('\n')) {
    const m = /^\s+(--[a-z0-9-]+)/.exec(line);
    if (!m) continue;
    flags.add(m[1]);
    const e = /\[env ([A-Z0-9_]+)\]\s*$/.exec(line);
    if (!e) continue;
    const d = /\(default: ([^)]*)\)/.exec(line);
    env.set(e[1], { flag: m[1], default: d ? d[1] : undefined });
  }
  if (env.size === 0) throw new Error(`${binary} --help lists no environment variables:\n${text}`);
  const help = { env, flags };
  helpCache.set(binary, help);
  return help;
}

// The value a binary sees for NAME: the one given, else its default.
function effective(binary, vars, name) {
  if (vars[name] !== undefined) return vars[name];
  const s = binaryHelp(binary).env.get(name);
  if (!s) throw new Error(`${binary} does not read ${name}`);
  return s.default;
}

// "host:port" or "tcp://host:port" -> port number.
function portOf(addr) {
  const m = /:(\d+)\/?$/.exec(String(addr));
  if (!m) throw new Error(`no port in ${addr}`);
  return Number(m[1]);
}

// kubectl kustomize DIR, parsed: an array of objects.
function render(rel) {
  const out = execFileSync(KUBECTL, ['kustomize', path.join(SOURCE_DIR, rel)], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return YAML.parseAllDocuments(out).map((d) => {
    if (d.errors.length) throw new Error(`${rel}: ${d.errors[0].message}`);
    return d.toJS();
  });
}

// Does a LabelSelector (matchLabels, matchExpressions) select these labels?
function selects(selector, labels) {
  if (!selector) return false;
  labels = labels || {};
  for (const [k, v] of Object.entries(selector.matchLabels || {})) {
    if (labels[k] !== v) return false;
  }
  for (const e of selector.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    switch (e.operator) {
      case 'In':
        if (!has || !e.values.includes(labels[e.key])) return false;
        break;
      case 'NotIn':
        if (has && e.values.includes(labels[e.key])) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        throw new Error(`unknown selector operator ${e.operator}`);
    }
  }
  return true;
}

// A Service's plain selector (a map) as a LabelSelector.
function serviceSelector(svc) {
  return { matchLabels: svc.spec.selector || {} };
}

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job']);

// Every workload with its pod template.
function workloads(objects) {
  return objects.filter((o) => WORKLOAD_KINDS.has(o.kind));
}

function find(objects, kind, name) {
  return objects.find((o) => o.kind === kind && o.metadata.name === name);
}

// The object a generated name (athena-config-<hash>) came from.
function findGenerated(objects, kind, name) {
  return objects.find(
    (o) => o.kind === kind && (o.metadata.name === name || o.metadata.name.startsWith(`${name}-`)),
  );
}

// "athena-collector:0.1.0" -> "collector" when it is one of ours.
function serviceOfImage(image) {
  const m = /^(?:.*\/)?athena-([a-z-]+?)(?::[^/]+)?$/.exec(image || '');
  return m && SERVICES.includes(m[1]) ? m[1] : null;
}

// Kubernetes quantities: "250m" CPU, "128Mi" memory -> numbers (cores, bytes).
function quantity(q) {
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(String(q));
  if (!m) throw new Error(`bad quantity ${q}`);
  const units = {
    '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4,
  };
  if (!(m[2] in units)) throw new Error(`unknown unit in ${q}`);
  return Number(m[1]) * units[m[2]];
}

module.exports = {
  SOURCE_DIR, BIN_DIR, KUBECTL, NAMESPACE, SERVICES,
  read, binaryHelp, effective, portOf, render, selects, serviceSelector, workloads, find,
  findGenerated, serviceOfImage, quantity,
};
