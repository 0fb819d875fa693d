// The inside half of the local host's network jail for confined agents.
//
// A confined process runs in a network namespace of its own, where only the
// loopback interface exists. This bridge, started in that namespace before
// the agent, listens on the loopback ports the model API is reached at and
// passes each connection to a Unix socket the local host serves outside the
// namespace (pathname sockets cross network namespaces), prefixed with the
// origin it was meant for. The host connects only to the origins it allows.
//
//   node model-bridge.mjs <socket> <port>...     # prints "ready" once listening
//
// With port `proxy:<n>` it also serves HTTP CONNECT on <n>, for a model API
// that is not on loopback (HTTPS_PROXY points the agent at it).
import net from "node:net";

const [socketPath, ...ports] = process.argv.slice(2);
if (!socketPath || ports.length === 0) {
  console.error("usage: model-bridge.mjs <socket> <port|proxy:port>...");
  process.exit(2);
}

function relay(client, target) {
  // Written before anything is piped, so the origin line leads even when the client speaks first.
  const upstream = net.connect(socketPath);
  upstream.write(`${target}\n`);
  client.pipe(upstream).pipe(client);
  const close = () => { client.destroy(); upstream.destroy(); };
  client.on("error", close);
  upstream.on("error", close);
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
}

const servers = ports.map((spec) => {
  if (spec.startsWith("proxy:")) {
    const server = net.createServer((client) => {
      // Read the CONNECT request line, answer it, then relay the tunnel.
      let head = "";
      const onData = (chunk) => {
        head += chunk.toString("latin1");
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        client.off("data", onData);
        const target = /^CONNECT ([^\s]+) HTTP\/1\.[01]/.exec(head)?.[1];
        if (!target) {
          client.end("HTTP/1.1 405 Method Not Allowed\r\n\r\n");
          return;
        }
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        const rest = Buffer.from(head.slice(end + 4), "latin1");
        if (rest.length) client.unshift(rest);
        relay(client, target);
      };
      client.on("data", onData);
    });
    return listen(server, Number(spec.slice("proxy:".length)));
  }
  const server = net.createServer((client) => relay(client, `127.0.0.1:${spec}`));
  return listen(server, Number(spec));
});

await Promise.all(servers);
console.log("ready");
