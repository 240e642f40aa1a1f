// Audits a GraphQL endpoint against the GraphQL-over-HTTP spec with graphql-http,
// the spec's reference implementation. Usage: node tests/http/audit.mjs <url>
// Prints one JSON array of {id, name, status, reason} on stdout; status is
// ok, or notice (MAY), warn (SHOULD), error (MUST) when the audit failed.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node tests/http/audit.mjs <url>');
  process.exit(2);
}

const results = await auditServer({ url });
const report = results.map(({ id, name, status, reason }) => ({
  id,
  name,
  status,
  reason: reason ?? null,
}));
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
