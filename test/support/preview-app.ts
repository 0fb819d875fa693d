/** The app the tests' runs build and preview: a page of its own, an echo of what it was asked, and a WebSocket. */

/** A tiny app: its page, `/echo…` answers with the path and query it was asked, and a WebSocket that echoes with the page's title. */
export const SERVER = `
import http from "node:http";
import fs from "node:fs";
import crypto from "node:crypto";
const page = fs.readFileSync("index.html", "utf8").trim();
const server = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html", "set-cookie": "app=1; Path=/" });
  res.end(req.url.startsWith("/echo") ? JSON.stringify({ url: req.url, authorization: req.headers.authorization ?? null, cookie: req.headers.cookie ?? null }) : page);
});
server.on("upgrade", (req, socket) => {
  const accept = crypto.createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  socket.write("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: " + accept + "\\r\\n\\r\\n");
  socket.on("data", (frame) => {
    const length = frame[1] & 127;
    const mask = frame.subarray(2, 6);
    const text = Buffer.from(frame.subarray(6, 6 + length).map((byte, i) => byte ^ mask[i % 4])).toString();
    const reply = Buffer.from(page.replace(/<[^>]+>/g, "") + " echoes " + text);
    socket.write(Buffer.concat([Buffer.from([0x81, reply.length]), reply]));
  });
});
server.listen(Number(process.env.PORT), () => console.log("listening on " + process.env.PORT));
`;

/** The steps of a run that builds the app with its own page. */
export const builds = (page: string) => [
  { tool: "Write", input: { file_path: "serve.mjs", content: SERVER } },
  { tool: "Write", input: { file_path: "index.html", content: `<h1>${page}</h1>\n` } },
  { text: "Built." },
];

