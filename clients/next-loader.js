// Next.js custom image loader for imgproxy: signs URLs on the server.
//
//   next.config.js:  images: { loader: "custom", loaderFile: "./clients/next-loader.js",
//                              deviceSizes: [320, 640, 960, 1280, 1920], imageSizes: [] }
//   environment:     IMGPROXY_KEY (secret), IMGPROXY_BASE_URL, IMGPROXY_PRESET,
//                    IMGPROXY_WIDTHS="320,640,960,1280,1920" (the preset's `widths`),
//                    IMGPROXY_FORMAT (default webp)
//   page:            <Image src="shop/42" width={1280} height={720} sizes="100vw" alt="" />
//
// `src` is the original's id; an optional focal point rides along as
// "shop/42#0.8,0.3". `width` goes up to the smallest ladder width that is at
// least as wide (the largest one past the top), so an image is never blurrier
// than asked for; `quality` is ignored, the preset decides it.
//
// The key must never reach a browser: render <Image> from Server Components
// (or call createLoader in server code and pass URLs down). In a browser
// bundle IMGPROXY_KEY is undefined and the loader throws rather than sign
// with nothing.
"use strict";

const crypto = require("node:crypto");

function fraction(value) {
  if (!(value >= 0 && value <= 1)) throw new Error(`imgproxy: focal coordinate ${value} is not in 0..1`);
  return (Math.round(value * 1000) / 1000).toString(); // 0.8, 0.125, 0, 1: the server's spelling
}

function createLoader({ key, baseUrl = "", preset, widths, format = "webp" }) {
  if (!key) throw new Error("imgproxy: no signing key (IMGPROXY_KEY); sign on the server only");
  const ladder = [...widths].map(Number).sort((a, b) => a - b);
  if (!preset || ladder.length === 0) throw new Error("imgproxy: a preset and its widths are required");
  return function imgproxyLoader({ src, width }) {
    const [id, focus] = String(src).replace(/^\/+/, "").split("#");
    const w = ladder.find((allowed) => allowed >= width) ?? ladder[ladder.length - 1];
    let modifiers = `@w${w}`;
    if (focus) {
      const [x, y] = focus.split(",").map(Number);
      modifiers += `@f${fraction(x)}x${fraction(y)}`;
    }
    const path = `${preset}${modifiers}/${id}.${format}`;
    const sig = crypto.createHmac("sha256", key).update(path).digest("base64url");
    return `${baseUrl.replace(/\/+$/, "")}/v/${path}?s=${sig}`;
  };
}

function loader(props) {
  const env = process.env;
  return createLoader({
    key: env.IMGPROXY_KEY,
    baseUrl: env.IMGPROXY_BASE_URL || "",
    preset: env.IMGPROXY_PRESET,
    widths: (env.IMGPROXY_WIDTHS || "").split(",").filter(Boolean),
    format: env.IMGPROXY_FORMAT || "webp",
  })(props);
}

module.exports = loader;
module.exports.default = loader;
module.exports.createLoader = createLoader;
