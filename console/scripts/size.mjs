// The console's JavaScript, gzipped, against its budget; exits 1 above it (the build fails).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET = 250 * 1024;
const dir = join(import.meta.dirname, "..", "dist", "assets");
let total = 0;
for (const name of readdirSync(dir).filter((n) => n.endsWith(".js"))) {
  const size = gzipSync(readFileSync(join(dir, name)), { level: 9 }).length;
  total += size;
  console.log(`${name}\t${(size / 1024).toFixed(1)} KiB gzipped`);
}
console.log(`console JavaScript: ${(total / 1024).toFixed(1)} KiB gzipped (budget ${BUDGET / 1024} KiB)`);
if (total > BUDGET) {
  console.error("over the budget");
  process.exit(1);
}
