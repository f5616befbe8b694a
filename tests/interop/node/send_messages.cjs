// node-hl7-client (npm) as the sending system: reads a job (JSON file, argv[2]), sends each message
// to lisguard over MLLP, one after another, waits for the ACKs it asked for, parses each with the
// library's Message, and prints one JSON report on stdout. Run by tests/interop/test_node_hl7_client.py.
//
// job: {host, port, timeout_ms, messages: [{name, text, encoding ("utf-8" | "latin1"), acks}]}
// report: {library, version, results: [{name, sent_equal, acks: [{msa_1, msa_2, msh_3, ...}], error}]}
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { Client, Message } = require("node-hl7-client");

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf-8"));
const pkg = JSON.parse(
  fs.readFileSync(path.join(__dirname, "node_modules", "node-hl7-client", "package.json"), "utf-8"),
);

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The client hands over what it framed as one text (segments joined by CR); two ACKs that came
// in one read (enhanced mode: commit, then application ACK) are split at their MSH.
function splitAcks(text) {
  return text
    .split("\r")
    .reduce((messages, segment) => {
      if (segment.startsWith("MSH") || messages.length === 0) messages.push([]);
      messages[messages.length - 1].push(segment);
      return messages;
    }, [])
    .map((segments) => segments.join("\r"));
}

function readAck(text) {
  const ack = new Message({ text });
  const field = (p) => ack.get(p).toString();
  return {
    msh_3: field("MSH.3"),
    msh_4: field("MSH.4"),
    msh_5: field("MSH.5"),
    msh_6: field("MSH.6"),
    msh_9_1: field("MSH.9.1"),
    msh_10: field("MSH.10"),
    msa_1: field("MSA.1"),
    msa_2: field("MSA.2"),
  };
}

// One connection per character set: the client encodes every message of a connection alike.
function connect(client, encoding) {
  const received = [];
  let wake = null;
  const connection = client.createConnection(
    // waitAck false: this script waits for the ACKs itself, as many as the message asks for
    // (none in enhanced mode with MSH-15/16 NE); the client's own wait expects exactly one
    { port: job.port, encoding, waitAck: false, maxConnectionAttempts: 1 },
    async () => {}, // ACKs are taken from "data.raw" below: two may come in one read
  );
  connection.on("data.raw", (text) => {
    received.push(...splitAcks(text));
    if (wake) wake();
  });
  const ready = new Promise((resolve, reject) => {
    connection.once("connect", resolve);
    connection.once("client.error", reject);
  });
  async function next(ms, what) {
    while (received.length === 0) {
      await withTimeout(new Promise((resolve) => (wake = resolve)), ms, what);
    }
    return received.shift();
  }
  return { connection, ready, next, received };
}

async function main() {
  const client = new Client({ host: job.host });
  const connections = new Map();
  const results = [];
  let broken = null; // after a timeout the connection's ACKs can no longer be matched
  for (const item of job.messages) {
    const result = { name: item.name, sent_equal: null, acks: [], error: null };
    results.push(result);
    if (broken) {
      result.error = `not sent: ${broken}`;
      continue;
    }
    try {
      if (!connections.has(item.encoding)) {
        const c = connect(client, item.encoding);
        connections.set(item.encoding, c);
        await withTimeout(c.ready, job.timeout_ms, `connect (${item.encoding})`);
      }
      const c = connections.get(item.encoding);
      const message = new Message({ text: item.text });
      result.sent_equal = message.toString() === item.text.replace(/\r+$/, "");
      await c.connection.sendMessage(message);
      for (let i = 0; i < item.acks; i++) {
        result.acks.push(readAck(await c.next(job.timeout_ms, `ACK ${i + 1} of ${item.name}`)));
      }
    } catch (err) {
      result.error = String(err && err.message ? err.message : err);
      broken = result.error;
    }
  }
  // an ACK nobody asked for would have been read as the next message's: none may be left over
  const leftover = [...connections.values()].reduce((n, c) => n + c.received.length, 0);
  for (const c of connections.values()) await c.connection.close();
  client.closeAll();
  return { library: pkg.name, version: pkg.version, leftover_acks: leftover, results };
}

main().then(
  (report) => {
    process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(0));
  },
  (err) => {
    process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
    process.exit(1);
  },
);
