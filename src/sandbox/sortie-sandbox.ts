/**
 * The Durable Object class behind every Cloudflare sandbox: the SDK's
 * `Sandbox` with its network closed. `enableInternet = false` drops whatever
 * the Worker does not handle (raw TCP, SSH, any port it does not intercept);
 * `interceptHttps` makes the SDK trust Cloudflare's egress CA in the container,
 * so HTTPS reaches `sandboxEgress` too, where the model key is added and the
 * allowlist is applied. The Worker must also export the SDK's `ContainerProxy`,
 * through which the runtime hands those requests over.
 */
import { Sandbox } from "@cloudflare/sandbox";
import { GIT_PUSH_HANDLER, MODEL_ONLY_HANDLER, TASK_EGRESS_HANDLER, gitPushEgress, modelOnlyEgress, sandboxEgress, taskEgress } from "./egress.ts";

export class SortieSandbox extends Sandbox<Cloudflare.Env> {
  override enableInternet = false;
  override interceptHttps = true;
}

// Assigned, not declared as static fields: the setters file the handlers in the
// registry ContainerProxy reads, in every isolate that loads this module.
SortieSandbox.outbound = sandboxEgress;
SortieSandbox.outboundHandlers = { [GIT_PUSH_HANDLER]: gitPushEgress, [MODEL_ONLY_HANDLER]: modelOnlyEgress, [TASK_EGRESS_HANDLER]: taskEgress };
