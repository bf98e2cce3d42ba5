// A grpc-js client that uploads with WriteStream, and may give up mid-upload.
//
//   node upload.js <host:port> <muxs.proto> <filename> <finish|cancel|deadline> <chunks>
//
// It sends the chunks (the first names the file) and waits until grpc-js has handed them
// to HTTP/2. Then "finish" ends the upload; "cancel" cancels the call a moment later,
// once the stream is quiet; "deadline" never ends it and lets its 1-second deadline pass.
// For the last two, Node's HTTP/2 sends an empty DATA frame with END_STREAM, then a
// RST_STREAM. Prints the call's status code (and the server's sha256) as JSON.
"use strict";
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, protoPath, filename, mode, chunks] = process.argv.slice(2);
const proto = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath)).muxs;
const client = new proto.FileController(target, grpc.credentials.createInsecure());
const options = mode === "deadline" ? { deadline: Date.now() + 1000 } : {};

const call = client.writeStream(options, (error, status) => {
  const sha256 = status ? status.sha256 : "";
  console.log(JSON.stringify({ code: error ? error.code : 0, sha256 }));
  client.close();
});

let left = Number(chunks);
function sendNext() {
  if (left === 0) {
    if (mode === "finish") call.end();
    else if (mode === "cancel") setTimeout(() => call.cancel(), 100);
    return; // "deadline": never end the upload; the deadline cancels it
  }
  const chunk = { data: Buffer.alloc(16384, 0x61) };
  if (left === Number(chunks)) chunk.filename = filename;
  left -= 1;
  call.write(chunk, sendNext);
}
sendNext();
