/**
 * The local host's network jail for confined agents whose only network is the
 * model API (analysis runs): the command runs in a network namespace of its
 * own (`unshare --net`, only loopback), where container/model-bridge.mjs
 * listens on the model endpoint's loopback port (or serves CONNECT for a
 * remote one) and passes each connection out through a Unix socket to this
 * side, which connects only to the allowed origins.
 */
import { mkdirSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Inside a jail, where an agent whose model API is not on loopback finds its CONNECT proxy. */
const JAIL_PROXY_PORT = 3128;

const BRIDGE = path.join(path.dirname(fileURLToPath(import.meta.url)), "model-bridge.mjs");

/**
 * Run inside a fresh network namespace (only loopback, brought up here): the
 * model bridge listens where the agent expects the model API, then the
 * confined command runs. Exit 97 says the jail itself could not be built.
 */
const JAIL_SCRIPT = [
  "ip link set lo up || exit 97",
  'node "$SORTIE_BRIDGE" "$SORTIE_BRIDGE_SOCKET" $SORTIE_BRIDGE_PORTS > "$SORTIE_BRIDGE_LOG" 2>&1 &',
  'for _ in $(seq 1 200); do grep -q ready "$SORTIE_BRIDGE_LOG" 2>/dev/null && break; sleep 0.05; done',
  'grep -q ready "$SORTIE_BRIDGE_LOG" || { echo "sortie: the model bridge did not start: $(cat "$SORTIE_BRIDGE_LOG")" >&2; exit 97; }',
  'exec bash -c "$SORTIE_JAILED"',
].join("\n");

/**
 * Opens a network jail for one command: the command line to spawn (as root;
 * it drops to the confined user itself) and its environment, and `close`
 * for when it has exited. Outside the namespace, a Unix socket under
 * `socketDir` that the bridge inside connects to reaches the allowed model
 * origins only.
 */
export function openNetworkJail(socketDir: string, origins: string[], jailed: string) {
  const allowed = new Set<string>();
  const ports: string[] = [];
  let proxied = false;
  for (const origin of origins) {
    const url = new URL(origin);
    const port = url.port || (url.protocol === "https:" ? "443" : "80");
    allowed.add(`${url.hostname}:${port}`);
    if (url.hostname === "127.0.0.1" || url.hostname === "localhost") {
      allowed.add(`127.0.0.1:${port}`);
      ports.push(port);
    } else proxied = true;
  }
  if (proxied) ports.push(`proxy:${JAIL_PROXY_PORT}`);
  mkdirSync(socketDir, { recursive: true, mode: 0o700 });
  const socket = path.join(socketDir, `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const server = net.createServer((inside) => {
    let head = "";
    const onData = (chunk: Buffer) => {
      head += chunk.toString("latin1");
      const newline = head.indexOf("\n");
      if (newline < 0) return;
      inside.off("data", onData);
      const target = head.slice(0, newline).replace(/^localhost:/, "127.0.0.1:");
      const match = /^(.+):(\d+)$/.exec(target);
      if (!match || !allowed.has(target)) {
        inside.destroy();
        return;
      }
      const outside = net.connect(Number(match[2]), match[1]!);
      const rest = Buffer.from(head.slice(newline + 1), "latin1");
      if (rest.length) outside.write(rest);
      inside.pipe(outside).pipe(inside);
      const close = () => { inside.destroy(); outside.destroy(); };
      inside.on("error", close);
      outside.on("error", close);
    };
    inside.on("data", onData);
  });
  server.listen(socket);
  return {
    command: ["unshare", "--net", "--", "bash", "-c", JAIL_SCRIPT],
    env: {
      SORTIE_BRIDGE: BRIDGE,
      SORTIE_JAILED: jailed,
      SORTIE_BRIDGE_SOCKET: socket,
      SORTIE_BRIDGE_PORTS: ports.join(" "),
      SORTIE_BRIDGE_LOG: `${socket}.log`,
      ...(proxied ? { HTTPS_PROXY: `http://127.0.0.1:${JAIL_PROXY_PORT}`, https_proxy: `http://127.0.0.1:${JAIL_PROXY_PORT}` } : {}),
    },
    close: () => {
      server.close();
      rmSync(socket, { force: true });
      rmSync(`${socket}.log`, { force: true });
    },
  };
}
