// Compiles contracts/src/*.sol with solc-js (pinned in package.json) into
// contracts/artifacts/<Contract>.json: ABI, creation and runtime bytecode, compiler settings.
//   node scripts/compile.mjs           write the artifacts
//   node scripts/compile.mjs --check   compile and fail (exit 1) if the committed ones differ
import { readFileSync, readdirSync, writeFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");

const settings = {
  optimizer: { enabled: true, runs: 200 },
  // Cancun: supported by anvil and by current OP Stack chains.
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};
const sources = {};
for (const file of readdirSync(join(root, "src")).filter((f) => f.endsWith(".sol")).sort()) {
  sources[`src/${file}`] = { content: readFileSync(join(root, "src", file), "utf8") };
}
function findImports(path) {
  const candidate = join(root, "node_modules", path);
  return existsSync(candidate) ? { contents: readFileSync(candidate, "utf8") } : { error: `not found: ${path}` };
}
const output = JSON.parse(solc.compile(JSON.stringify({ language: "Solidity", sources, settings }), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);

const outDir = join(root, "artifacts");
mkdirSync(outDir, { recursive: true });
let drift = 0;
for (const [source, contracts] of Object.entries(output.contracts)) {
  if (!source.startsWith("src/")) continue;
  for (const [name, compiled] of Object.entries(contracts)) {
    const artifact = {
      contractName: name,
      sourceName: source,
      compiler: { version: solc.version(), settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion } },
      abi: compiled.abi,
      bytecode: `0x${compiled.evm.bytecode.object}`,
      deployedBytecode: `0x${compiled.evm.deployedBytecode.object}`,
    };
    const text = `${JSON.stringify(artifact, null, 2)}\n`;
    const path = join(outDir, `${name}.json`);
    if (check) {
      const committed = existsSync(path) ? readFileSync(path, "utf8") : "";
      if (committed !== text) {
        console.error(`${path} differs from a fresh compile of ${source}: run node contracts/scripts/compile.mjs`);
        drift += 1;
      }
    } else {
      writeFileSync(path, text);
      console.log(`wrote ${path}`);
    }
  }
}
process.exit(drift > 0 ? 1 : 0);
