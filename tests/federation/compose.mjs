// Composes the Federation v2 subgraph SDL files in a directory the way a router would.
//
// Usage: node tests/federation/compose.mjs DIR/subgraphs
// Each DIR/subgraphs/<name>.graphql is subgraph <name>. Prints one JSON object:
// {"errors": [{code, message}], "hints": [{code, message}],
//  "supergraphSdl": string|null, "apiSchemaSdl": string|null}
// and exits 0 whether or not composition succeeds; exits 2 on usage errors.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import process from "node:process";

import { composeServices } from "@apollo/composition";
import { errorCode, printSchema } from "@apollo/federation-internals";
import { parse } from "graphql";

function usage(message) {
  process.stderr.write(`${message}\nusage: node tests/federation/compose.mjs DIR/subgraphs\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length !== 1) usage("expected exactly one argument: the directory of subgraph SDL files");
const directory = args[0];
let files;
try {
  if (!statSync(directory).isDirectory()) usage(`not a directory: ${directory}`);
  files = readdirSync(directory).filter((file) => file.endsWith(".graphql")).sort();
} catch (error) {
  usage(`cannot read ${directory}: ${error.message}`);
}
if (files.length === 0) usage(`no *.graphql files in ${directory}`);

const errors = [];
const services = [];
for (const file of files) {
  const name = basename(file, ".graphql");
  const sdl = readFileSync(join(directory, file), "utf8");
  try {
    services.push({
      name,
      url: `http://127.0.0.1/subgraphs/${name}/graphql`,
      typeDefs: parse(sdl),
    });
  } catch (error) {
    errors.push({ code: "SDL_SYNTAX_ERROR", message: `[${name}] ${error.message}` });
  }
}

const result = { errors, hints: [], supergraphSdl: null, apiSchemaSdl: null };
if (errors.length === 0) {
  const composed = composeServices(services);
  if (composed.errors) {
    result.errors = composed.errors.map((error) => ({
      code: errorCode(error) ?? "UNKNOWN",
      message: error.message,
    }));
  } else {
    result.hints = composed.hints.map((hint) => ({
      code: hint.definition.code,
      message: hint.message,
    }));
    result.supergraphSdl = composed.supergraphSdl;
    result.apiSchemaSdl = printSchema(composed.schema.toAPISchema());
  }
}
process.stdout.write(`${JSON.stringify(result)}\n`);
