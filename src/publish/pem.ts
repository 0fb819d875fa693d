/**
 * A GitHub App's private key as Web Crypto takes it. GitHub hands out PKCS#1
 * PEM (`BEGIN RSA PRIVATE KEY`), which Web Crypto cannot import; wrapping the
 * same bytes in a PKCS#8 envelope needs no crypto, only DER framing, so it
 * works in workerd whichever build of the JWT library gets bundled.
 */
import { SortieError } from "../errors.ts";

/** `AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }`. */
const RSA_ALGORITHM = [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/;

/**
 * Returns the key as PKCS#8 PEM, given PKCS#1 or PKCS#8 PEM. Tolerates the
 * forms keys take in environment variables: `\n` escapes, or line breaks
 * turned into spaces. Anything else (OpenSSH, encrypted, EC keys) is refused
 * with a message naming `name` and never echoing the key.
 *
 * @example await crypto.subtle.importKey("pkcs8", derOf(toPkcs8Pem(env.GITHUB_APP_PRIVATE_KEY, "GITHUB_APP_PRIVATE_KEY")), …)
 */
export function toPkcs8Pem(key: string, name: string): string {
  const block = PEM_BLOCK.exec(key.replace(/\\n/g, "\n"));
  const label = block?.[1];
  const base64 = block?.[2]?.replace(/\s+/g, "") ?? "";
  if (!block || (label !== "RSA PRIVATE KEY" && label !== "PRIVATE KEY") || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) {
    const found = label ? `a "${label}" block` : "no PEM block";
    throw new SortieError("github_app_key_invalid", `${name} must be a PEM RSA private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY); it holds ${found}`, 422);
  }
  if (label === "PRIVATE KEY") return pem("PRIVATE KEY", base64);
  const pkcs1 = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const info = [0x02, 0x01, 0x00, ...RSA_ALGORITHM, 0x04, ...derLength(pkcs1.length), ...pkcs1];
  const pkcs8 = Uint8Array.from([0x30, ...derLength(info.length), ...info]);
  return pem("PRIVATE KEY", btoa(String.fromCharCode(...pkcs8)));
}

function derLength(length: number): number[] {
  if (length < 0x80) return [length];
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return [0x80 | bytes.length, ...bytes];
}

function pem(label: string, base64: string): string {
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
