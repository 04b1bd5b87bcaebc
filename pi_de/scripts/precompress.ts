// A Vite plugin: after a build writes its files, each compressible one (JS, CSS, HTML, SVG, JSON) of at least
// 1 KiB gets a gzip -9 sibling `<file>.gz`. The hypivisor serves files with aiohttp's FileResponse, which sends
// that sibling with `Content-Encoding: gzip` to a browser that accepts gzip: a phone on a slow link downloads
// ~90 KiB on first load instead of ~290 KiB, and the server spends no CPU compressing per request.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { Plugin } from "vite";

const COMPRESSIBLE = /\.(js|mjs|css|html|svg|json|webmanifest|txt)$/;
export const MIN_BYTES = 1024;

/** The gzip sibling for `data`, or null when it is too small to bother or gzip would not make it smaller. */
export function gzipSibling(name: string, data: Buffer): Buffer | null {
	if (!COMPRESSIBLE.test(name) || data.length < MIN_BYTES) return null;
	const gz = gzipSync(data, { level: 9 });
	return gz.length < data.length ? gz : null;
}

export function precompress(): Plugin {
	return {
		name: "hyper-pi-precompress",
		apply: "build",
		writeBundle(options, bundle) {
			const dir = options.dir;
			if (!dir) return;
			for (const fileName of Object.keys(bundle)) {
				const path = join(dir, fileName);
				const gz = gzipSibling(fileName, readFileSync(path));
				if (gz) writeFileSync(`${path}.gz`, gz);
			}
		},
	};
}
