/** Credentials planted by the redaction tests (test/node/redact.test.ts, test/worker/redaction.test.ts). */

/** One credential of each kind Sortie must never let out, shaped as its issuer mints it. */
export const SHAPED = {
  anthropic: "sk-ant-api03-Zq9vXw2LmN4pR7tY1uI0oP3aS6dF8gH5jK2lZ4xC7vB9nM1qW3eR5tY7u",
  openai: "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
  openaiProject: "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6hIj9k",
  google: "AIzaSyD3xQ9v2Lm4nP7rT1uW0yZ3bC6eF8gH5jK",
  githubClassic: "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
  githubOauth: "gho_16C7e42F292c6912E7710c838347Ae178B4a",
  githubUser: "ghu_16C7e42F292c6912E7710c838347Ae178B4a",
  githubInstallation: "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
  githubRefresh: "ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",
  githubFineGrained: "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP",
  slackBot: "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
  slackUser: "xoxp-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
  slackApp: "xapp-1-A0123456789-1234567890123-abcdef0123456789",
  slackWebhook: "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
  aws: "AKIAIOSFODNN7EXAMPLE",
  awsTemporary: "ASIAJEXAMPLEXEG2JICE",
  pem: "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n-----END RSA PRIVATE KEY-----",
  jwt: "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiI0MjQyIiwiaWF0IjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlLW9mLXRoZS1hcHA",
  bearer: "Zm9vYmFyYmF6cXV4MDEyMzQ1Njc4OQ",
  basic: "dXNlcjpwYXNzd29yZC0wMTIzNDU2Nzg5",
  urlPassword: "hunter2-hunter2",
};

/** How each one shows up in text: on its own, or inside the header or URL that carries it. */
export function inContext(kind: string, value: string): string {
  if (kind === "bearer") return `curl -H "Authorization: Bearer ${value}" https://api.example.com`;
  if (kind === "basic") return `Authorization: Basic ${value}`;
  if (kind === "slackWebhook") return `posting to https://hooks.slack.com/services/${value}`;
  if (kind === "urlPassword") return `git clone https://deploy:${value}@git.example.com/acme/widgets.git`;
  return `the value is ${value}, see?`;
}
