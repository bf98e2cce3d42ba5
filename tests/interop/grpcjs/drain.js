// A grpc-js client calling SayHello back to back, round robin over two servers, while the
// test stops one of them.
//
//   node drain.js <host:port> <host:port> <muxs.proto>
//
// Prints "ready" once calls have been answered; after a line on stdin (the server has
// stopped), makes 40 more calls and prints {"replies": N, "refused": N, "lost": [...]}:
// refused are the calls a drain refused unstarted, lost every other failure.
"use strict";
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const readline = require("readline");

const [first, second, protoPath] = process.argv.slice(2);
const proto = grpc.loadPackageDefinition(
  protoLoader.loadSync(protoPath, { longs: Number, defaults: true }),
).muxs;
const greeter = new proto.Greeter(
  `ipv4:${first},${second}`,
  grpc.credentials.createInsecure(),
  { "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }) },
);
const REFUSED = "the server is shutting down; retry on another server";
const CALLERS = 4;
const result = { replies: 0, refused: 0, lost: [] };
let stopped = false;
let afterStop = 0;

function sayHello() {
  return new Promise((resolve) =>
    greeter.SayHello({ name: "bob" }, (error, reply) => {
      if (!error && reply.message === "Hello, bob!") {
        result.replies += 1;
      } else if (error && error.code === grpc.status.UNAVAILABLE && error.details === REFUSED) {
        result.refused += 1;
      } else {
        result.lost.push(error ? `${error.code} ${error.details}` : `reply ${reply.message}`);
      }
      resolve();
    }),
  );
}

async function caller() {
  while (!stopped || afterStop < 40) {
    await sayHello();
    if (stopped) afterStop += 1;
    if (result.replies === 40 && !stopped) console.log("ready");
  }
}

const stdin = readline.createInterface({ input: process.stdin });
stdin.once("line", () => {
  stopped = true;
});
Promise.all(Array.from({ length: CALLERS }, caller)).then(() => {
  console.log(JSON.stringify(result));
  greeter.close();
  stdin.close();
});
