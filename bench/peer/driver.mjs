// Driver of the "peer" benchmark suite (bench/suites/peer.sh): appends events
// from Node.js with node-postgres through three contenders and prints one
// result line.  Every contender runs on the same client stack: one Node.js
// process, JOBS worker threads (like pgbench -j), CLIENTS async loops spread
// over them, each loop with its own connection from a pg.Pool of that thread.
//
//   emmett     Emmett's PostgreSQL event store, through its own API:
//              getPostgreSQLEventStore(connectionString).appendToStream(...)
//              (its own pool: dumbo's pg.Pool, one per thread).
//   extension  SELECT * FROM eventstore.append($1, $2, $3, $4) /
//              eventstore.append_events($1, $2), as named (prepared)
//              statements of node-postgres.
//   plain      INSERT INTO bench_peer_plain.events ..., a named statement;
//              stream_version from a per-loop counter: the physical limit.
//
// Usage (the connection from PEER_HOST, PEER_PORT, PEER_USER, PEER_DB):
//   node driver.mjs probe                 # "pg=VERSION emmett=VERSION" or "emmett=none (...)"
//   node driver.mjs migrate               # create Emmett's schema through its API
//   node driver.mjs run CONTENDER EVENTS_PER_APPEND CLIENTS JOBS SECONDS DATA_JSON METADATA_JSON
//
// "run" first makes one warm-up append per loop (connections opened,
// statements prepared, Emmett's schema check done), then starts every loop at
// once, stops starting appends after SECONDS and waits for the ones in
// flight.  It prints
//   tps transactions failed latency_ms warmup_transactions
// where tps = transactions / (time from the start to the last loop's end).

import { createRequire } from 'node:module';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const EVENT_TYPE = 'MoneyDeposited';
const now = () => performance.timeOrigin + performance.now(); // ms, comparable across threads

function connectionString() {
  const host = process.env.PEER_HOST;
  const port = process.env.PEER_PORT ?? '5432';
  const user = process.env.PEER_USER ?? 'postgres';
  const db = process.env.PEER_DB ?? 'bench_peer';
  if (!host) throw new Error('PEER_HOST (the unix socket directory) is not set');
  // The socket directory as the host parameter: understood by node-postgres
  // (pg-connection-string) and so by Emmett, which passes the string on.
  return `postgresql://${encodeURIComponent(user)}@localhost/${encodeURIComponent(db)}` +
    `?host=${encodeURIComponent(host)}&port=${encodeURIComponent(port)}`;
}

// pg through require(), so that NODE_PATH (e.g. Debian's node-pg in
// /usr/share/nodejs) works as a fallback when npm could not install.
function loadPg() {
  const pg = require('pg');
  let version = 'unknown';
  try { version = require('pg/package.json').version; } catch { /* exports may hide it */ }
  return { pg, version };
}

async function loadEmmett() {
  const mod = await import('@event-driven-io/emmett-postgresql');
  let version = 'unknown';
  try {
    version = require('@event-driven-io/emmett-postgresql/package.json').version;
  } catch {
    try {
      const fs = await import('node:fs');
      const p = fileURLToPath(new URL('./node_modules/@event-driven-io/emmett-postgresql/package.json', import.meta.url));
      version = JSON.parse(fs.readFileSync(p, 'utf8')).version;
    } catch { /* keep unknown */ }
  }
  return { mod, version };
}

async function probe() {
  let out;
  try {
    out = `pg=${loadPg().version}`;
  } catch (e) {
    out = 'pg=none';
  }
  try {
    const { mod, version } = await loadEmmett();
    if (typeof mod.getPostgreSQLEventStore !== 'function') throw new Error('no getPostgreSQLEventStore export');
    out += ` emmett=${version}`;
  } catch (e) {
    out += ` emmett=none (${String(e.message ?? e).split('\n')[0]})`;
  }
  console.log(out);
}

async function migrate() {
  const { mod } = await loadEmmett();
  const store = mod.getPostgreSQLEventStore(connectionString());
  await store.schema.migrate();
  await store.close();
}

// ---------------------------------------------------------------- contenders
// Each returns { append(loopId): Promise, close(): Promise }.  Every append
// serialises its JSON from objects (JSON.stringify), as an application would;
// Emmett does that itself.

function plainInsertText(events) {
  const rows = [];
  // $1 stream, $2 type, then per event: version, data, metadata.
  for (let i = 0; i < events; i++) {
    const b = 3 + i * 3;
    rows.push(`($${b}, $1, $2, $${b + 1}, $${b + 2})`);
  }
  return 'INSERT INTO bench_peer_plain.events (stream_version, stream_id, event_type, data, metadata) VALUES ' +
    rows.join(', ');
}

async function makeContender(name, events, loops, data, metadata) {
  const cs = connectionString();
  if (name === 'emmett') {
    const { mod } = await loadEmmett();
    const { pg } = loadPg();
    // Emmett's own pool (dumbo: a pg.Pool per connection string, pg's
    // default max 10).  With more loops than that in one thread, appends
    // would queue for a connection: hand Emmett a pool big enough instead
    // (its documented connectionOptions.pool).
    let ownPool = null;
    const options = loops > 10
      ? { connectionOptions: { pool: (ownPool = new pg.Pool({ connectionString: cs, max: loops })) } }
      : undefined;
    const store = mod.getPostgreSQLEventStore(cs, options);
    return {
      append: (stream) => {
        const batch = [];
        for (let i = 0; i < events; i++) batch.push({ type: EVENT_TYPE, data, metadata });
        return store.appendToStream(stream, batch);
      },
      close: async () => { await store.close(); if (ownPool) await ownPool.end(); },
    };
  }
  const { pg } = loadPg();
  const pool = new pg.Pool({ connectionString: cs, max: loops });
  if (name === 'extension') {
    const single = events === 1;
    const q = single
      ? { name: 'peer_append', text: 'SELECT * FROM eventstore.append($1, $2, $3, $4)' }
      : { name: 'peer_append_events', text: 'SELECT * FROM eventstore.append_events($1, $2)' };
    return {
      append: (stream) => {
        let values;
        if (single) {
          values = [stream, EVENT_TYPE, JSON.stringify(data), JSON.stringify(metadata)];
        } else {
          const batch = [];
          for (let i = 0; i < events; i++) batch.push({ type: EVENT_TYPE, data, metadata });
          values = [stream, JSON.stringify(batch)];
        }
        return pool.query({ ...q, values });
      },
      close: () => pool.end(),
    };
  }
  if (name === 'plain') {
    const q = { name: `peer_plain_${events}`, text: plainInsertText(events) };
    return {
      append: (stream, state) => {
        const values = [stream, EVENT_TYPE];
        for (let i = 0; i < events; i++) {
          values.push(++state.version, JSON.stringify(data), JSON.stringify(metadata));
        }
        return pool.query({ ...q, values });
      },
      close: () => pool.end(),
    };
  }
  throw new Error(`unknown contender ${name}`);
}

// -------------------------------------------------------------- worker thread
async function workerMain() {
  const { contender, events, loopIds, data, metadata } = workerData;
  const c = await makeContender(contender, events, loopIds.length, data, metadata);
  const states = loopIds.map((id) => ({ id, version: 0 }));
  const streamOf = (s) => `stream-${s.id}-${1 + Math.floor(Math.random() * 1000000)}`;

  // Warm-up: one append per loop, all at once (opens every connection).
  await Promise.all(states.map((s) => c.append(streamOf(s), s)));
  parentPort.postMessage({ type: 'ready' });

  const { deadline } = await new Promise((resolve) =>
    parentPort.once('message', (m) => resolve(m)));

  let tx = 0, failed = 0, latency = 0, firstError = null;
  const loop = async (s) => {
    while (now() < deadline) {
      const t = now();
      try {
        await c.append(streamOf(s), s);
        tx++;
        latency += now() - t;
      } catch (e) {
        failed++;
        firstError ??= String(e.message ?? e);
        if (failed > 1000) break;
      }
    }
  };
  await Promise.all(states.map(loop));
  const end = now();
  await c.close();
  parentPort.postMessage({ type: 'done', tx, failed, latency, end, firstError, warmup: states.length });
}

// ---------------------------------------------------------------- main thread
async function run(args) {
  const [contender, eventsArg, clientsArg, jobsArg, secondsArg, dataJson, metadataJson] = args;
  const events = Number(eventsArg), clients = Number(clientsArg), seconds = Number(secondsArg);
  const jobs = Math.max(1, Math.min(Number(jobsArg), clients));
  if (!['emmett', 'extension', 'plain'].includes(contender) || !(events >= 1) || !(clients >= 1) || !(seconds > 0)) {
    throw new Error('usage: driver.mjs run emmett|extension|plain EVENTS CLIENTS JOBS SECONDS DATA_JSON METADATA_JSON');
  }
  const data = JSON.parse(dataJson), metadata = JSON.parse(metadataJson);
  const workers = [];
  for (let j = 0; j < jobs; j++) {
    // Loop (client) ids 0..CLIENTS-1, round-robin over the threads, as
    // pgbench's client_id.
    const loopIds = [];
    for (let id = j; id < clients; id += jobs) loopIds.push(id);
    const w = new Worker(fileURLToPath(import.meta.url), {
      workerData: { contender, events, loopIds, data, metadata },
    });
    const ready = new Promise((resolve, reject) => {
      w.on('error', reject);
      w.on('exit', (code) => { if (code !== 0) reject(new Error(`worker exited with ${code}`)); });
      w.on('message', (m) => { if (m.type === 'ready') resolve(); });
    });
    const done = new Promise((resolve, reject) => {
      w.on('error', reject);
      w.on('message', (m) => { if (m.type === 'done') resolve(m); });
    });
    done.catch(() => {}); // reported through ready or Promise.all below
    workers.push({ w, ready, done });
  }
  await Promise.all(workers.map((x) => x.ready));
  const start = now();
  const deadline = start + seconds * 1000;
  for (const x of workers) x.w.postMessage({ deadline });
  const results = await Promise.all(workers.map((x) => x.done));
  let tx = 0, failed = 0, latency = 0, end = start, warmup = 0;
  for (const r of results) {
    tx += r.tx; failed += r.failed; latency += r.latency; warmup += r.warmup;
    end = Math.max(end, r.end);
    if (r.firstError) console.error(`peer driver (${contender}): ${r.failed} failed append(s), first: ${r.firstError}`);
  }
  const elapsed = (end - start) / 1000;
  const tps = tx / elapsed;
  console.log(`${tps.toFixed(1)} ${tx} ${failed} ${tx ? (latency / tx).toFixed(3) : 'n/a'} ${warmup}`);
}

if (isMainThread) {
  const [cmd, ...args] = process.argv.slice(2);
  const commands = { probe, migrate, run };
  if (!commands[cmd]) {
    console.error('usage: node driver.mjs probe | migrate | run ...');
    process.exit(2);
  }
  commands[cmd](args).then(
    () => process.exit(0),
    (e) => { console.error(`peer driver: ${e.stack ?? e}`); process.exit(1); },
  );
} else {
  workerMain().catch((e) => {
    console.error(`peer driver (worker): ${e.stack ?? e}`);
    process.exit(1);
  });
}
