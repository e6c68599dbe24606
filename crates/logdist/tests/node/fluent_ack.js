// Sends events to logdist's Fluent forward listener with Node's @fluent-org/logger, with
// acknowledgements (`ack: {}`: each emit resolves only once the server answered its
// chunk's `{"ack": chunk}`). Run by crates/logdist/tests/forward.rs with NODE_PATH set to
// where the package is installed.
//
// Usage: node fluent_ack.js PORT EVENTS MODE TAG
// With FLUENT_SHARED_KEY set, it authenticates with that shared key (the client's
// `security` option, as client host `node-client`); with FLUENT_TLS_CA, it connects over
// TLS to `localhost`, trusting that PEM CA.
// Event i is {message: "event i", level: LEVELS[i % 5], seq: i}, label "app". MODE is one
// of Message, Forward, PackedForward, CompressedPackedForward. Prints one JSON line: the
// emits acknowledged and failed, with the first error.

const LEVELS = ["debug", "info", "warning", "error", "critical"];

async function main() {
  const [port, events, mode, tag] = process.argv.slice(2);
  let FluentClient;
  try {
    ({ FluentClient } = require("@fluent-org/logger"));
  } catch (e) {
    console.error(`@fluent-org/logger is missing (${e}); npm install @fluent-org/logger@1.0.10`);
    process.exit(2);
  }
  const socket = { host: "127.0.0.1", port: Number(port), timeout: 20000 };
  if (process.env.FLUENT_TLS_CA) {
    socket.tls = { ca: require("fs").readFileSync(process.env.FLUENT_TLS_CA), servername: "localhost" };
  }
  const security = process.env.FLUENT_SHARED_KEY
    ? { clientHostname: "node-client", sharedKey: process.env.FLUENT_SHARED_KEY }
    : undefined;
  const client = new FluentClient(tag, {
    socket,
    security,
    ack: { ackTimeout: 20000 },
    eventMode: mode,
    milliseconds: true,
    // Batches of events in one chunk, as an application logging steadily makes them.
    flushInterval: 20,
  });
  const emits = [];
  for (let i = 0; i < Number(events); i++) {
    emits.push(client.emit("app", { message: `event ${i}`, level: LEVELS[i % 5], seq: i }));
  }
  const results = await Promise.allSettled(emits);
  const failed = results.filter((r) => r.status === "rejected");
  await client.disconnect().catch(() => {});
  console.log(
    JSON.stringify({
      acked: results.length - failed.length,
      failed: failed.length,
      error: failed.length ? String(failed[0].reason) : null,
    })
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
