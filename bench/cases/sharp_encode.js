// Encode one PNG with sharp across a quality sweep; print JSON lines of {fmt, variant, q, file, ms}.
// Usage: node bench/sharp_encode.js MODULE_DIR INPUT.png OUT_DIR JSON_SWEEP
"use strict";
const path = require("path");
const fs = require("fs");
const sharp = require(path.join(process.argv[2], "node_modules", "sharp"));
const [input, outDir, sweepJson] = process.argv.slice(3);
const sweep = JSON.parse(sweepJson);
sharp.concurrency(1); // as ours: one libvips thread per encode
sharp.cache(false);
// sharp's defaults per format, plus mozjpeg for context.
const VARIANTS = {
  jpg: { default: (s, q) => s.jpeg({ quality: q }), mozjpeg: (s, q) => s.jpeg({ quality: q, mozjpeg: true }) },
  webp: { default: (s, q) => s.webp({ quality: q }) },
  avif: { default: (s, q) => s.avif({ quality: q }) },
};

async function main() {
  const raw = await sharp(input).raw().toBuffer({ resolveWithObject: true });
  const base = () => sharp(raw.data, { raw: raw.info });
  for (const [fmt, qualities] of Object.entries(sweep)) {
    for (const [variant, apply] of Object.entries(VARIANTS[fmt])) {
      for (const q of qualities) {
        const start = process.hrtime.bigint();
        const body = await apply(base(), q).toBuffer();
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        const file = path.join(outDir, `${path.basename(input, ".png")}.${variant}.${q}.${fmt}`);
        fs.writeFileSync(file, body);
        console.log(JSON.stringify({ fmt, variant, q, file, ms }));
      }
    }
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
