/** Slack's v0 request signature, checked against Slack's own worked example and an independent signer (node:crypto). */
import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { SLACK_TOLERANCE_SECONDS, slackSignature, verifySlackRequest } from "../../src/triggers/slack/verify.ts";

// The worked example of Slack's "Verifying requests from Slack".
const DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5";
const DOC_TIMESTAMP = "1531420618";
const DOC_BODY =
  "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

const SECRET = "test-slack-signing-secret";
const now = Date.UTC(2026, 10, 20, 12);
const ts = String(Math.floor(now / 1000));
const body = "team_id=T0ACME&user_id=U0ALICE&text=acme%2Fwidgets+add+a+NOTES.md";
const nodeSign = (secret: string, timestamp: string, raw: string) => `v0=${createHmac("sha256", secret).update(`v0:${timestamp}:${raw}`).digest("hex")}`;
const headers = (signature: string | null, timestamp: string | null) => {
  const h = new Headers();
  if (signature !== null) h.set("X-Slack-Signature", signature);
  if (timestamp !== null) h.set("X-Slack-Request-Timestamp", timestamp);
  return h;
};

describe("verifySlackRequest", () => {
  it("accepts Slack's worked example and signs it to the same value", async () => {
    expect(await slackSignature(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY)).toBe(DOC_SIGNATURE);
    expect(await verifySlackRequest(DOC_SECRET, headers(DOC_SIGNATURE, DOC_TIMESTAMP), DOC_BODY, Number(DOC_TIMESTAMP) * 1000)).toEqual({ ok: true });
  });

  it("accepts a signature made independently with node:crypto, in either hex case", async () => {
    const signature = nodeSign(SECRET, ts, body);
    expect(await verifySlackRequest(SECRET, headers(signature, ts), body, now)).toEqual({ ok: true });
    expect(await verifySlackRequest(SECRET, headers(`v0=${signature.slice(3).toUpperCase()}`, ts), body, now)).toEqual({ ok: true });
  });

  it("refuses another secret, a changed body, a changed timestamp and a malformed signature", async () => {
    const bad = { ok: false, reason: "bad_signature" };
    expect(await verifySlackRequest(SECRET, headers(nodeSign("another-secret", ts, body), ts), body, now)).toEqual(bad);
    expect(await verifySlackRequest(SECRET, headers(nodeSign(SECRET, ts, body), ts), `${body}&x=1`, now)).toEqual(bad);
    expect(await verifySlackRequest(SECRET, headers(nodeSign(SECRET, ts, body), String(Number(ts) + 1)), body, now)).toEqual(bad);
    expect(await verifySlackRequest(SECRET, headers(nodeSign(SECRET, ts, body).replace("v0=", "v1="), ts), body, now)).toEqual(bad);
    expect(await verifySlackRequest(SECRET, headers("v0=abc", ts), body, now)).toEqual(bad);
    expect(await verifySlackRequest(SECRET, headers(`${nodeSign(SECRET, ts, body)}00`, ts), body, now)).toEqual(bad);
  });

  it("refuses a timestamp more than five minutes away, in the past or the future, even when correctly signed", async () => {
    for (const offset of [-(SLACK_TOLERANCE_SECONDS + 1), SLACK_TOLERANCE_SECONDS + 1]) {
      const when = String(Number(ts) + offset);
      expect(await verifySlackRequest(SECRET, headers(nodeSign(SECRET, when, body), when), body, now)).toEqual({ ok: false, reason: "stale_timestamp" });
    }
    const edge = String(Number(ts) - SLACK_TOLERANCE_SECONDS);
    expect(await verifySlackRequest(SECRET, headers(nodeSign(SECRET, edge, body), edge), body, now)).toEqual({ ok: true });
  });

  it("refuses a timestamp that is not a number, and missing headers", async () => {
    expect(await verifySlackRequest(SECRET, headers(nodeSign(SECRET, "soon", body), "soon"), body, now)).toEqual({ ok: false, reason: "stale_timestamp" });
    expect(await verifySlackRequest(SECRET, headers(null, ts), body, now)).toEqual({ ok: false, reason: "missing_headers" });
    expect(await verifySlackRequest(SECRET, headers(nodeSign(SECRET, ts, body), null), body, now)).toEqual({ ok: false, reason: "missing_headers" });
  });
});
