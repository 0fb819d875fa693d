// What every stand-in server does with HTTP bodies: read a JSON request (decompressed if the
// client compressed it) and answer JSON.
import zlib from "node:zlib";

/** The request's JSON body, or undefined when it is empty or not JSON. */
export async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  let raw = Buffer.concat(chunks);
  try {
    // Codex may compress requests (zstd needs Node >= 22.15, else the body reads as undefined).
    const encoding = String(req.headers["content-encoding"] ?? "").toLowerCase();
    if (encoding === "gzip") raw = zlib.gunzipSync(raw);
    else if (encoding === "deflate") raw = zlib.inflateSync(raw);
    else if (encoding === "br") raw = zlib.brotliDecompressSync(raw);
    else if (encoding === "zstd") raw = /** @type {any} */ (zlib).zstdDecompressSync(raw);
    const text = raw.toString("utf8");
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

/** Answers `value` as JSON with `status`, plus any extra headers. */
export function sendJson(res, status, value, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(value));
}

/**
 * Starts `server` on loopback (a free port unless `options.port`); returns
 * where it listens and how to stop it, open connections included.
 * @param {import("node:http").Server} server
 * @param {{ port?: number, host?: string }} [options]
 */
export async function listenOnLoopback(server, options = {}) {
  await new Promise((resolve) => server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve(undefined)));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    /** @returns {Promise<void>} */
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve(undefined)); }),
  };
}
