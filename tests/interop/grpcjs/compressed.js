// A grpc-js client that calls every RPC of both services with compression on.
//
//   node compressed.js <host:port> <muxs.proto> <gzip|deflate>
//
// Requests are compressible (grpc-js compresses every message once the channel's
// algorithm is set). Prints {"<RPC>": <what it checked>, ...} as JSON, or {"error": ...}.
"use strict";
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, protoPath, encoding] = process.argv.slice(2);
const proto = grpc.loadPackageDefinition(
  protoLoader.loadSync(protoPath, { longs: Number, defaults: true }),
).muxs;
const algorithm = { deflate: 1, gzip: 2 }[encoding];
const options = { "grpc.default_compression_algorithm": algorithm };
const credentials = grpc.credentials.createInsecure();
const greeter = new proto.Greeter(target, credentials, options);
const files = new proto.FileController(target, credentials, options);
const NAME = "muxs ".repeat(200);
const DATA = Buffer.from("0123456789abcdef".repeat(4096));

function unary(client, method, request) {
  return new Promise((resolve, reject) =>
    client[method](request, (error, reply) => (error ? reject(error) : resolve(reply))),
  );
}

function replies(call) {
  return new Promise((resolve, reject) => {
    const out = [];
    call.on("data", (reply) => out.push(reply));
    call.on("error", reject);
    call.on("end", () => resolve(out));
  });
}

function upload(client, method, requests) {
  return new Promise((resolve, reject) => {
    const call = client[method]((error, reply) => (error ? reject(error) : resolve(reply)));
    for (const request of requests) call.write(request);
    call.end();
  });
}

async function main() {
  const result = {};
  result.SayHello = (await unary(greeter, "sayHello", { name: NAME })).message.length;
  result.Square = (await unary(greeter, "square", { value: 9 })).value;
  const many = await replies(greeter.lotsOfReplies({ name: NAME, count: 3 }));
  result.LotsOfReplies = many.map((reply) => reply.index);
  const names = [1, 2, 3].map(() => ({ name: NAME }));
  result.LotsOfGreetings = (await upload(greeter, "lotsOfGreetings", names)).message.length;
  const bidi = greeter.bidiHello();
  const answered = replies(bidi);
  for (const request of names) bidi.write(request);
  bidi.end();
  result.BidiHello = (await answered).length;
  const text = NAME.repeat(10);
  result.Write = (await unary(files, "write", { filename: "small.txt", text })).sha256;
  result.Read = (await unary(files, "read", { filename: "small.txt" })).text.length;
  const chunks = [{ filename: "big.bin", data: DATA }, { data: DATA }, { data: DATA }];
  result.WriteStream = (await upload(files, "writeStream", chunks)).sha256;
  const read = await replies(files.readStream({ filename: "big.bin" }));
  result.ReadStream = Buffer.concat(read.map((chunk) => chunk.data)).length;
  result.Stat = (await unary(files, "stat", { filename: "big.bin" })).size;
  const listed = await replies(files.list({ path: "" }));
  result.List = listed.map((info) => info.name).sort();
  result.Delete = (await unary(files, "delete", { filename: "small.txt" })).code;
  return result;
}

main()
  .then((result) => console.log(JSON.stringify(result)))
  .catch((error) => console.log(JSON.stringify({ error: `${error.code}: ${error.details}` })))
  .finally(() => {
    greeter.close();
    files.close();
  });
