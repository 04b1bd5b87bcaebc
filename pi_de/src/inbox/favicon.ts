// The inbox count on the favicon: the page's own icon with a dot and the number drawn over it on a
// canvas; the original icon again at 0. Browsers without a canvas keep the plain icon.
import { useEffect } from "react";

/** What the dot says: the number up to 9, then "9+". */
export function badgeText(count: number): string {
  return count > 9 ? "9+" : String(count);
}

let original: string | null = null;
let originalType: string | null = null;
let image: HTMLImageElement | null = null;

function iconLink(): HTMLLinkElement | null {
  return document.querySelector<HTMLLinkElement>("link[rel=icon]");
}

function draw(link: HTMLLinkElement, count: number, img: HTMLImageElement) {
  const size = 64;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.drawImage(img, 0, 0, size, size);
  const r = 19;
  ctx.beginPath();
  ctx.arc(size - r, r, r, 0, 2 * Math.PI);
  ctx.fillStyle = "#e5484d";
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.font = `bold ${count > 9 ? 22 : 28}px sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(badgeText(count), size - r, r + 1);
  link.href = canvas.toDataURL("image/png");
  link.type = "image/png";
  link.dataset.count = String(count);
}

export function useFaviconCount(count: number): void {
  useEffect(() => {
    const link = iconLink();
    if (!link || typeof HTMLCanvasElement === "undefined") return;
    if (original === null) {
      original = link.getAttribute("href");
      originalType = link.getAttribute("type");
    }
    if (count <= 0) {
      if (original !== null && link.getAttribute("href") !== original) {
        link.href = original;
        if (originalType) link.type = originalType;
      }
      delete link.dataset.count;
      return;
    }
    let cancelled = false;
    const go = (img: HTMLImageElement) => {
      if (!cancelled) {
        try {
          draw(link, count, img);
        } catch {
          /* a canvas that cannot export: keep the plain icon */
        }
      }
    };
    if (image?.complete && image.naturalWidth > 0) go(image);
    else {
      image = new Image();
      const img = image;
      img.onload = () => go(img);
      img.src = original ?? "/favicon.svg";
    }
    return () => {
      cancelled = true;
    };
  }, [count]);
}
