export interface Sizes {
  initial: { files: string[]; raw: number; gzip: number };
  total: { files: number; raw: number; gzip: number };
}
export function htmlEntries(html: string): string[];
export function staticImports(code: string): string[];
export function measure(dist: string): Sizes;
export function bundleSize(dist?: string): Promise<{ pide: Sizes; react: Sizes; ratio: number }>;
