// The command that opens a spawned agent's pi in a terminal (pure). The hypivisor names its tmux sessions
// `pi-<folder>-<hex>` (shell-safe); anything else is single-quoted so a pasted command never runs more.
export function attachCommand(session: string): string {
  return `tmux attach -t ${shellWord(session)}`;
}

export function shellWord(s: string): string {
  return /^[A-Za-z0-9._@%+=:,\/-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

