/// <reference types="vite/client" />
interface ImportMetaEnv {
  /** Dev-only convenience: never set this for `npm run build` (the bundle must not carry a token). */
  readonly VITE_HYPI_TOKEN?: string;
}
