// The Node peer for bench/dashboard.py: graphql-yoga + DataLoader + pg serving the schema
// subset that bench/dashboard.graphql and bench/staff_customers.graphql select, with the
// gateway's statements (7 and 4), the gateway's JSON and its Ed25519 access-token check.
// It is what a Node GraphQL server spends on the same work, to hold Kabinet's CPU against.
//
// Configured by the KABINET_* variables the gateway reads (database URL, signing key,
// issuer, audience, pool size, host, port); started by bench/dashboard.py as
// `node bench/peer/server.mjs`. /metrics names its counters as the gateway does.

import { createPublicKey } from "node:crypto";
import { createServer } from "node:http";

import DataLoader from "dataloader";
import { createSchema, createYoga } from "graphql-yoga";
import { GraphQLError } from "graphql";
import { calculateJwkThumbprint, exportJWK, importSPKI, jwtVerify } from "jose";
import pg from "pg";

const env = process.env;
const PATH = "/graphql";
const ISSUER = env.KABINET_JWT_ISSUER ?? "kabinet";
const AUDIENCE = env.KABINET_JWT_AUDIENCE ?? "kabinet-api";
const STAFF = new Set(["operator", "admin"]);
const ISSUED = new Set(["issued", "overdue", "paid"]); // domains.billing.invoice_issue.ISSUED
const SETTLED = new Set(["succeeded", "refunded"]); // domains.billing.settlement.SETTLED
const LEEWAY_SECONDS = 30; // domains.identity.tokens._LEEWAY_SECONDS
// Header parameters that would let a token choose its own verification key.
const FORBIDDEN_HEADERS = ["jku", "x5u", "jwk", "x5c", "crit"];

// Dates, timestamps and money stay text: the JSON prints them as the gateway does, and a
// JS Date would drop microseconds. Ids (bigint) fit a JS number.
pg.types.setTypeParser(pg.types.builtins.INT8, Number);
pg.types.setTypeParser(pg.types.builtins.DATE, (text) => text);
pg.types.setTypeParser(pg.types.builtins.TIMESTAMPTZ, (text) => text);

const pool = new pg.Pool({
  connectionString: env.KABINET_DATABASE_URL.replace(/^postgresql\+asyncpg:/, "postgresql:"),
  max: Number(env.KABINET_DATABASE_POOL_SIZE ?? 10),
  options: "-c TimeZone=UTC",
});
const publicKey = await importSPKI(
  createPublicKey(env.KABINET_JWT_PRIVATE_KEY).export({ type: "spki", format: "pem" }),
  "Ed25519",
);
const KID = await calculateJwkThumbprint(await exportJWK(publicKey)); // RFC 7638, as the gateway's

const counters = { statements: 0, requests: new Map() };

// bench/ceiling.py's statements, named so that pg prepares each once per connection.
const SQL = {
  users: `SELECT id, email, role, is_active, created_at FROM users WHERE id = ANY($1::bigint[])`,
  customersByUser: `SELECT id, user_id, contract_num, full_name, phone, balance, currency,
    created_at FROM customers WHERE user_id = ANY($1::bigint[])`,
  customerPage: `SELECT id, user_id, contract_num, full_name, phone, balance, currency,
    created_at FROM customers ORDER BY id ASC LIMIT $1`,
  contracts: `SELECT id, customer_id, tariff_id, address, status, start_date, end_date
    FROM contracts WHERE customer_id = ANY($1::bigint[]) ORDER BY start_date, id`,
  tariffs: `SELECT id, code, name, description, segment, monthly_price, currency,
    download_mbps, upload_mbps, is_active FROM tariffs WHERE id = ANY($1::bigint[])`,
  subscriptions: `SELECT id, customer_id, contract_id, tariff_id, status, started_at, ended_at
    FROM subscriptions WHERE customer_id = ANY($1::bigint[]) ORDER BY started_at, id`,
  invoicePages: `SELECT id, customer_id, subscription_id, number, period_start, period_end,
    amount, currency, status, issued_at, due_date, created_at
    FROM (SELECT id, customer_id, subscription_id, number, period_start, period_end, amount,
                 currency, status, issued_at, due_date, created_at, row_number() OVER (
            PARTITION BY customer_id ORDER BY period_start DESC, id DESC) AS rank
          FROM invoices WHERE customer_id = ANY($2::bigint[])) AS ranked
    WHERE rank <= $1 ORDER BY customer_id, rank`,
  payments: `SELECT id, invoice_id, customer_id, amount, currency, method, status,
    refunded_amount, created_at, confirmation_url
    FROM payments WHERE invoice_id = ANY($1::bigint[]) ORDER BY created_at, id`,
};

async function fetch(name, values) {
  counters.statements += 1;
  return (await pool.query({ name, text: SQL[name], values })).rows;
}

function b64(text) {
  return Buffer.from(text).toString("base64url");
}

const globalId = (type, pk) => b64(`${type}:${pk}`);
const money = (amount, currency) => ({ amount, currency });
const upper = (column) => (row) => row[column].toUpperCase();

// timestamptz text (UTC) as Python's datetime.isoformat() prints it.
function isoDateTime(text) {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))?\+00$/.exec(text);
  if (!m) throw new Error(`unexpected timestamp ${text}`);
  return `${m[1]}T${m[2]}${m[3] ? `.${m[3].padEnd(6, "0")}` : ""}+00:00`;
}

// numeric(…, 2) text to cents and back: money is never a float.
function cents(text) {
  const [whole, fraction = ""] = text.replace("-", "").split(".");
  const value = BigInt(whole) * 100n + BigInt(fraction.padEnd(2, "0"));
  return text.startsWith("-") ? -value : value;
}

function fromCents(value) {
  const sign = value < 0n ? "-" : "";
  const abs = value < 0n ? -value : value;
  return `${sign}${abs / 100n}.${String(abs % 100n).padStart(2, "0")}`;
}

function amountDue(invoice, payments) {
  if (!ISSUED.has(invoice.status)) return "0.00";
  let kept = 0n;
  for (const p of payments) {
    if (SETTLED.has(p.status)) kept += cents(p.amount) - cents(p.refunded_amount);
  }
  return fromCents(cents(invoice.amount) - kept);
}

function group(rows, column, keys) {
  const grouped = new Map(keys.map((key) => [key, []]));
  for (const row of rows) grouped.get(row[column])?.push(row);
  return keys.map((key) => grouped.get(key));
}

function byKey(rows, keys) {
  const found = new Map(rows.map((row) => [row.id, row]));
  return keys.map((key) => found.get(key) ?? null);
}

function loaders() {
  const pages = new Map();
  return {
    users: new DataLoader(async (ids) => byKey(await fetch("users", [ids]), ids)),
    customerByUser: new DataLoader(async (ids) => {
      const rows = await fetch("customersByUser", [ids]);
      const found = new Map(rows.map((row) => [row.user_id, row]));
      return ids.map((id) => found.get(id) ?? null);
    }),
    contracts: new DataLoader(async (ids) =>
      group(await fetch("contracts", [ids]), "customer_id", ids),
    ),
    tariffs: new DataLoader(async (ids) => byKey(await fetch("tariffs", [ids]), ids)),
    subscriptions: new DataLoader(async (ids) =>
      group(await fetch("subscriptions", [ids]), "customer_id", ids),
    ),
    payments: new DataLoader(async (ids) =>
      group(await fetch("payments", [ids]), "invoice_id", ids),
    ),
    // One loader per page size, so equal pages of many customers share one statement.
    invoicePages(limit) {
      if (!pages.has(limit)) {
        pages.set(
          limit,
          new DataLoader(async (ids) =>
            group(await fetch("invoicePages", [limit + 1, ids]), "customer_id", ids).map(
              (rows) => ({ rows: rows.slice(0, limit), hasNext: rows.length > limit }),
            ),
          ),
        );
      }
      return pages.get(limit);
    },
  };
}

const typeDefs = /* GraphQL */ `
  scalar Date
  scalar DateTime
  scalar Decimal
  enum ContractStatus { ACTIVE SUSPENDED TERMINATED }
  enum SubscriptionStatus { ACTIVE PAUSED CANCELLED }
  enum InvoiceStatus { DRAFT ISSUED PAID OVERDUE VOID }
  enum PaymentMethod { BALANCE CARD }
  enum PaymentStatus { PENDING SUCCEEDED FAILED REFUNDED }
  type Money { amount: Decimal! currency: String! }
  type PageInfo {
    hasNextPage: Boolean!
    hasPreviousPage: Boolean!
    startCursor: String
    endCursor: String
  }
  type User { id: ID! email: String! customer: Customer }
  type Customer {
    id: ID!
    contractNum: String!
    fullName: String!
    user: User!
    balance: Money!
    contracts: [Contract!]!
    subscriptions: [ServiceSubscription!]!
    invoices(first: Int = null): InvoiceConnection!
  }
  type Contract { id: ID! address: String! status: ContractStatus! tariff: Tariff! }
  type Tariff { id: ID! name: String! downloadMbps: Int! uploadMbps: Int! monthlyPrice: Money! }
  type ServiceSubscription { id: ID! status: SubscriptionStatus! startedAt: DateTime! }
  type Invoice {
    id: ID!
    number: String!
    status: InvoiceStatus!
    periodStart: Date!
    periodEnd: Date!
    dueDate: Date
    amount: Money!
    amountDue: Money!
    payments: [Payment!]!
  }
  type Payment {
    id: ID!
    method: PaymentMethod!
    status: PaymentStatus!
    createdAt: DateTime!
    amount: Money!
  }
  type InvoiceEdge { node: Invoice! cursor: String! }
  type InvoiceConnection { edges: [InvoiceEdge!]! pageInfo: PageInfo! }
  type CustomerEdge { node: Customer! cursor: String! }
  type CustomerConnection { edges: [CustomerEdge!]! pageInfo: PageInfo! }
  type Query { me: User! customers(first: Int = null): CustomerConnection! }
`;

const DEFAULT_PAGE_SIZE = 20; // resolvers.relay.DEFAULT_PAGE_SIZE

function connection(rows, hasNext, cursorOf) {
  const edges = rows.map((node) => ({ node, cursor: cursorOf(node) }));
  return {
    edges,
    pageInfo: {
      hasNextPage: hasNext,
      hasPreviousPage: false,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
}

// resolvers.relay.encode_cursor: JSON as Python's json.dumps writes it, base64url.
const invoiceCursor = (invoice) => b64(`[${JSON.stringify(invoice.period_start)}, ${invoice.id}]`);
const customerCursor = (customer) => b64(`[${customer.id}]`);

function fail(message, code) {
  return new GraphQLError(message, { extensions: { code } });
}

const resolvers = {
  Query: {
    async me(_root, _args, { viewer, load }) {
      const user = await load.users.load(viewer.userId);
      if (!user) throw fail("user not found", "NOT_FOUND");
      return user;
    },
    async customers(_root, { first }, { viewer }) {
      if (!STAFF.has(viewer.role)) throw fail("staff only", "FORBIDDEN");
      const limit = first ?? DEFAULT_PAGE_SIZE;
      const rows = await fetch("customerPage", [limit + 1]);
      return connection(rows.slice(0, limit), rows.length > limit, customerCursor);
    },
  },
  User: {
    id: (user) => globalId("User", user.id),
    customer: (user, _args, { load }) => load.customerByUser.load(user.id),
  },
  Customer: {
    id: (customer) => globalId("Customer", customer.id),
    contractNum: (customer) => customer.contract_num,
    fullName: (customer) => customer.full_name,
    user: (customer, _args, { load }) => load.users.load(customer.user_id),
    balance: (customer) => money(customer.balance, customer.currency),
    contracts: (customer, _args, { load }) => load.contracts.load(customer.id),
    subscriptions: (customer, _args, { load }) => load.subscriptions.load(customer.id),
    async invoices(customer, { first }, { load }) {
      const page = await load.invoicePages(first ?? DEFAULT_PAGE_SIZE).load(customer.id);
      return connection(page.rows, page.hasNext, invoiceCursor);
    },
  },
  Contract: {
    id: (contract) => globalId("Contract", contract.id),
    status: upper("status"),
    tariff: (contract, _args, { load }) => load.tariffs.load(contract.tariff_id),
  },
  Tariff: {
    id: (tariff) => globalId("Tariff", tariff.id),
    downloadMbps: (tariff) => tariff.download_mbps,
    uploadMbps: (tariff) => tariff.upload_mbps,
    monthlyPrice: (tariff) => money(tariff.monthly_price, tariff.currency),
  },
  ServiceSubscription: {
    id: (subscription) => globalId("Subscription", subscription.id),
    status: upper("status"),
    startedAt: (subscription) => isoDateTime(subscription.started_at),
  },
  Invoice: {
    id: (invoice) => globalId("Invoice", invoice.id),
    status: upper("status"),
    periodStart: (invoice) => invoice.period_start,
    periodEnd: (invoice) => invoice.period_end,
    dueDate: (invoice) => invoice.due_date,
    amount: (invoice) => money(invoice.amount, invoice.currency),
    async amountDue(invoice, _args, { load }) {
      const payments = await load.payments.load(invoice.id);
      return money(amountDue(invoice, payments), invoice.currency);
    },
    payments: (invoice, _args, { load }) => load.payments.load(invoice.id),
  },
  Payment: {
    id: (payment) => globalId("Payment", payment.id),
    method: upper("method"),
    status: upper("status"),
    createdAt: (payment) => isoDateTime(payment.created_at),
    amount: (payment) => money(payment.amount, payment.currency),
  },
};

// As domains.identity.tokens.TokenService.verify_access_token: Ed25519 only, typ at+jwt,
// the key's kid, no header that names a key, iss, aud, and every claim it calls essential.
async function viewerOf(request) {
  const [scheme, token] = (request.headers.get("authorization") ?? "").split(" ");
  if (scheme?.toLowerCase() !== "bearer" || !token) return null;
  try {
    const { payload, protectedHeader } = await jwtVerify(token, publicKey, {
      algorithms: ["Ed25519"],
      typ: "at+jwt",
      issuer: ISSUER,
      audience: AUDIENCE,
      clockTolerance: LEEWAY_SECONDS,
      requiredClaims: ["sub", "exp", "iat", "nbf", "jti", "sid"],
    });
    if (protectedHeader.kid !== KID || FORBIDDEN_HEADERS.some((name) => name in protectedHeader)) {
      return null;
    }
    return { userId: Number(payload.sub), role: payload.role };
  } catch {
    return null;
  }
}

const yoga = createYoga({
  schema: createSchema({ typeDefs, resolvers }),
  graphqlEndpoint: PATH,
  graphiql: false,
  landingPage: false,
  logging: false,
  plugins: [
    {
      // Unauthenticated is HTTP 401 at the gateway too, before any field runs.
      async onRequest({ request, endResponse, fetchAPI, serverContext }) {
        if (new URL(request.url).pathname !== PATH) return;
        const viewer = await viewerOf(request);
        if (!viewer) {
          const code = "UNAUTHENTICATED";
          const error = { message: "invalid access token", extensions: { code } };
          const headers = { "content-type": "application/json" };
          endResponse(
            new fetchAPI.Response(JSON.stringify({ errors: [error] }), { status: 401, headers }),
          );
          return;
        }
        serverContext.viewer = viewer;
      },
    },
  ],
  context: ({ viewer }) => ({ viewer, load: loaders() }),
});

const server = createServer((req, res) => {
  if (req.url === "/metrics") {
    const lines = [`kabinet_db_statements_total ${counters.statements}`];
    for (const [status, n] of [...counters.requests].sort()) {
      const labels = `method="POST",route="${PATH}",status="${status}"`;
      lines.push(`kabinet_http_requests_total{${labels}} ${n}`);
    }
    res.writeHead(200, { "content-type": "text/plain" }).end(`${lines.join("\n")}\n`);
    return;
  }
  if (req.url === "/health/ready") {
    res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
    return;
  }
  // On close, not finish: a request whose client left still ran its statements.
  res.on("close", () => {
    counters.requests.set(res.statusCode, (counters.requests.get(res.statusCode) ?? 0) + 1);
  });
  yoga(req, res);
});

function stop() {
  server.close(() => pool.end().then(() => process.exit(0)));
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
server.listen(Number(env.KABINET_PORT ?? 8000), env.KABINET_HOST ?? "127.0.0.1");
