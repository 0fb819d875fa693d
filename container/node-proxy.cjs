"use strict";
/**
 * Preloaded into every Node process inside a sandbox's walls (NODE_OPTIONS
 * --require): Node's own fetch, http and https go through the runtime's proxy,
 * as NODE_USE_ENV_PROXY would send them, but each is set up only when a
 * process first uses it. The flag builds its fetch client at every start:
 * 24 ms on each `node` here, against under 2 ms for this file.
 *
 * - fetch (and WebSocket, EventSource): the global dispatcher that Node's
 *   bundled undici and npm's both read is npm undici's EnvHttpProxyAgent,
 *   built when first used. A dispatcher the program sets itself wins.
 * - http, https: when a program first names the module, its global agent is
 *   replaced by one with the proxy environment (Node ≥ 22.21; older Nodes
 *   ignore the option, as they ignore the flag).
 */
const { registerHooks } = require("node:module");

const DISPATCHER = Symbol.for("undici.globalDispatcher.1");
const PROXY_KEYS = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"];

function proxyEnv() {
  const env = {};
  for (const key of PROXY_KEYS) if (process.env[key] !== undefined) env[key] = process.env[key];
  return env;
}

/** npm undici's EnvHttpProxyAgent, built the first time a dispatcher is used. */
let agent;
function proxyAgent() {
  if (agent) return agent;
  // The proxy agent alone, not the rest of undici's index (its fetch, WebSocket, mocks, caches): half the load.
  // The dispatchers' request methods, the tunnel's CONNECT among them, go on as undici's index puts them.
  Object.assign(require("undici/lib/dispatcher/dispatcher.js").prototype, require("undici/lib/api/index.js"));
  const EnvHttpProxyAgent = require("undici/lib/dispatcher/env-http-proxy-agent.js");
  // Every request through a tunnel, as under the flag: a refused host is a failed request, not a 403 answer,
  // and a WebSocket's upgrade reaches its host.
  agent = new EnvHttpProxyAgent();
  return agent;
}

if (globalThis[DISPATCHER] === undefined) {
  // Node's undici loads with more than fetch (an ESM import of node:http does it) and looks here as it does:
  // what it finds is this stand-in, which builds the proxy agent only when something reads from it.
  const methods = new Map();
  const standIn = new Proxy(
    {},
    {
      get(_, key) {
        const real = proxyAgent();
        const value = Reflect.get(real, key, real);
        if (typeof value !== "function" || key === "constructor") return value;
        if (!methods.has(value)) methods.set(value, value.bind(real));
        return methods.get(value);
      },
      set: (_, key, value) => Reflect.set(proxyAgent(), key, value),
      has: (_, key) => Reflect.has(proxyAgent(), key),
      getPrototypeOf: () => Reflect.getPrototypeOf(proxyAgent()),
    },
  );
  Object.defineProperty(globalThis, DISPATCHER, { value: standIn, writable: true, enumerable: false, configurable: true });
}

/** The modules whose global agent is still Node's own, by every name a program may give them. */
const agents = new Map([
  ["http", "node:http"],
  ["node:http", "node:http"],
  ["https", "node:https"],
  ["node:https", "node:https"],
]);

/** Gives the module named `specifier` its proxy agent the first time it is named, unless a preload before this one set its own. */
function proxied(specifier) {
  const name = agents.get(specifier);
  if (!name) return;
  for (const [key, value] of agents) if (value === name) agents.delete(key);
  const module = require(name);
  const own = module.globalAgent;
  if (own.constructor !== module.Agent || own.options?.proxyEnv !== undefined) return;
  module.globalAgent = new module.Agent({ keepAlive: true, scheduling: "lifo", timeout: 5000, proxyEnv: proxyEnv() });
}

if (typeof registerHooks === "function") {
  registerHooks({
    resolve(specifier, context, nextResolve) {
      proxied(specifier);
      return nextResolve(specifier, context);
    },
  });
  // The one way to a built-in module that no resolve hook sees.
  const getBuiltinModule = process.getBuiltinModule;
  if (typeof getBuiltinModule === "function") {
    process.getBuiltinModule = function (id) {
      proxied(id);
      return getBuiltinModule.call(process, id);
    };
  }
}
