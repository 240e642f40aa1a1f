// Routes GraphQL operations over running subgraphs with Apollo Gateway, as a router would.
//
// Usage: node tests/federation/router.mjs NAME=URL... < operations.json
// Each NAME=URL is a subgraph and where it answers GraphQL. The gateway composes them
// from their `_service { sdl }` (IntrospectAndCompose), offline: no Apollo key, no uplink.
// operations.json is a JSON list of {query, variables?, operationName?, authorization?};
// `authorization` is the client's Authorization header, forwarded to every subgraph fetch.
// KABINET_ROUTER_SECRET, when set, goes with every fetch (SDL and operations) as the
// Kabinet-Router-Secret header: subgraphs that have the secret answer no one else.
// Prints one JSON list, the result ({data, errors?}) of each operation in order, and exits 0;
// exits 1 when the gateway cannot compose the subgraphs, 2 on usage errors.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import process from "node:process";

import { ApolloGateway, IntrospectAndCompose, RemoteGraphQLDataSource } from "@apollo/gateway";
import { parse, validate } from "graphql";

function usage(message) {
  process.stderr.write(`${message}\nusage: node tests/federation/router.mjs NAME=URL... < operations.json\n`);
  process.exit(2);
}

const subgraphs = process.argv.slice(2).map((arg) => {
  const [name, url] = arg.split(/=(.*)/s, 2);
  if (!name || !url) usage(`not NAME=URL: ${arg}`);
  return { name, url };
});
if (subgraphs.length === 0) usage("expected at least one subgraph");
let operations;
try {
  operations = JSON.parse(readFileSync(0, "utf8"));
} catch (error) {
  usage(`standard input is not JSON: ${error.message}`);
}
if (!Array.isArray(operations)) usage("standard input must be a JSON list of operations");

// Standard output carries the results alone: the gateway's own log goes to stderr.
const log = (level) => (message) => process.stderr.write(`${level} ${message}\n`);
const logger = {
  debug: () => {},
  info: () => {},
  warn: log("warn"),
  error: log("error"),
};

const routerSecret = process.env.KABINET_ROUTER_SECRET;

class ForwardingDataSource extends RemoteGraphQLDataSource {
  // Called for the `_service { sdl }` fetches that compose the supergraph too.
  willSendRequest({ request, context }) {
    if (routerSecret) request.http.headers.set("Kabinet-Router-Secret", routerSecret);
    if (context?.authorization) request.http.headers.set("Authorization", context.authorization);
  }
}

const gateway = new ApolloGateway({
  supergraphSdl: new IntrospectAndCompose({ subgraphs }),
  buildService: ({ url }) => new ForwardingDataSource({ url }),
  logger,
});

let loaded;
try {
  loaded = await gateway.load();
} catch (error) {
  process.stderr.write(`the gateway could not compose the subgraphs: ${error.message}\n`);
  process.exit(1);
}
const { schema, executor } = loaded;

// What Apollo Server does before it hands an operation to the gateway: parse, validate.
async function run({ query, variables = {}, operationName = null, authorization = null }) {
  const document = parse(query);
  const errors = validate(schema, document);
  if (errors.length > 0) return { errors };
  return executor({
    request: { query, variables, operationName },
    document,
    source: query,
    queryHash: createHash("sha256").update(query).digest("hex"),
    operationName,
    context: { authorization },
    logger,
    metrics: {},
  });
}

const results = [];
for (const operation of operations) {
  results.push(await run(operation));
}
await gateway.stop();
process.stdout.write(`${JSON.stringify(results)}\n`);
