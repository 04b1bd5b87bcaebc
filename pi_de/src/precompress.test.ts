import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { gzipSibling, MIN_BYTES } from "../scripts/precompress";

describe("gzipSibling", () => {
	const text = Buffer.from("const a = 1;\n".repeat(400));

	it("compresses a compressible file to something that unzips to the same bytes", () => {
		const gz = gzipSibling("assets/index-abc.js", text);
		expect(gz).not.toBeNull();
		expect(gz!.length).toBeLessThan(text.length);
		expect(gunzipSync(gz!).equals(text)).toBe(true);
	});

	it("skips small files, images and files gzip would not shrink", () => {
		expect(gzipSibling("a.js", Buffer.alloc(MIN_BYTES - 1, 97))).toBeNull();
		expect(gzipSibling("icon.png", text)).toBeNull();
		const random = randomBytes(4096);
		expect(gzipSibling("noise.json", random)).toBeNull();
	});
});
