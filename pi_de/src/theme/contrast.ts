// WCAG 2.x relative luminance and contrast ratio, used by the theme mapping (text on accent
// buttons) and by the test that keeps every theme readable.
function channel(c: number): number {
  const s = c / 255;
  return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
}

export function parseHex(hex: string): [number, number, number] {
  const h = hex.replace("#", "");
  const full = h.length === 3 ? h.replace(/./g, (x) => x + x) : h;
  const n = parseInt(full.slice(0, 6), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

export function luminance(hex: string): number {
  const [r, g, b] = parseHex(hex);
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
}

export function contrast(a: string, b: string): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

/** Black or white, whichever reads better on the given background. */
export function bestTextOn(bg: string): string {
  return contrast("#000000", bg) >= contrast("#ffffff", bg) ? "#000000" : "#ffffff";
}

function toHex([r, g, b]: [number, number, number]): string {
  return "#" + [r, g, b].map((x) => Math.round(x).toString(16).padStart(2, "0")).join("");
}

/** Moves fg towards white (dark bg) or black (light bg) in small steps until it reaches `min`. */
export function ensureContrast(fg: string, bg: string, min: number): string {
  const target = luminance(bg) < 0.4 ? 255 : 0;
  let rgb = parseHex(fg);
  for (let i = 0; i < 40 && contrast(toHex(rgb), bg) < min; i++) {
    rgb = rgb.map((x) => x + (target - x) * 0.06) as [number, number, number];
  }
  return toHex(rgb);
}
