// Files picked, pasted or dropped become prompt attachments `{name, mime_type, data(base64)}`.
import type { PendingPrompt } from "../model/agentReducer";

export type Attachment = PendingPrompt["attachments"][number];
export const MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024; // the bridge's limit (pi_socket/protocol.py)
export const MAX_ATTACHMENTS = 10;

/** Images go to pi as images; anything text-like as text. Other binaries are refused up front. */
export function acceptable(file: { type: string; name: string }): boolean {
  if (file.type.startsWith("image/") || file.type.startsWith("text/")) return true;
  if (/json|xml|javascript|typescript|yaml|toml|x-sh/.test(file.type)) return true;
  return file.type === "" && /\.(txt|md|py|ts|tsx|js|json|ya?ml|toml|sh|rs|go|c|h|cpp|java|rb|css|html|csv|log)$/i.test(file.name);
}

export function readAttachment(file: File): Promise<Attachment> {
  return new Promise((resolve, reject) => {
    if (file.size > MAX_ATTACHMENT_BYTES) return reject(new Error(`${file.name} is larger than 5 MB`));
    if (!acceptable(file)) return reject(new Error(`${file.name}: only images and text files can be attached`));
    const r = new FileReader();
    r.onerror = () => reject(r.error ?? new Error(`could not read ${file.name}`));
    r.onload = () => {
      const url = String(r.result);
      resolve({ name: file.name, mime_type: file.type || "text/plain", data: url.slice(url.indexOf(",") + 1) });
    };
    r.readAsDataURL(file);
  });
}
