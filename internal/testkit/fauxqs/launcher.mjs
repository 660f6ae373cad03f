// Starts fauxqs (the SNS/SQS emulator pinned by package.json here) for
// payrail's tests: node launcher.mjs <install dir>, where <install dir> holds
// node_modules/fauxqs (.cache/fauxqs, installed by
// .ci/setup.d/bus-snssqs-fauxqs.sh). It listens on a free loopback port and
// prints one JSON line, {"port":N}, on stdout once it accepts requests. It
// stops when its stdin closes (the Go test process exited or called Stop)
// or on SIGTERM/SIGINT, so that it never outlives the tests.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node launcher.mjs <dir holding node_modules/fauxqs>");
  process.exit(2);
}
const entry = join(dir, "node_modules", "fauxqs", "dist", "app.js");
const { startFauxqs } = await import(pathToFileURL(entry).href);
const server = await startFauxqs({ port: 0, host: "127.0.0.1", logger: false });

let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  try {
    await server.stop();
  } finally {
    process.exit(code);
  }
}
process.on("SIGTERM", () => stop(0));
process.on("SIGINT", () => stop(0));
process.stdin.on("end", () => stop(0));
process.stdin.on("error", () => stop(0));
process.stdin.resume();

process.stdout.write(JSON.stringify({ port: server.port }) + "\n");
